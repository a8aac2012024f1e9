"""A stage's progress lines reach the run's log in the UI while the stage runs, not all at its end.

The SfM stage logs features every 25 photos, the matching counts and the mapper every 10 registrations
(tests/test_sfm_camera_gps.py checks those lines); this checks that Pipes hands each line to Dagster's event
log as it is written: lines written seconds apart are stamped seconds apart, the first well before the step
ends.
"""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, materialize

from .conftest import dagster_home, resources_for_test_stages
from .test_pipes_messages import DATASET, _asset

PAUSE_S = 3.0


def test_progress_lines_are_logged_as_they_happen(tmp_path: Path) -> None:
    home = dagster_home(tmp_path / "home")
    config = {"threads": 1, "lines_per_thread": 3, "pause_s": PAUSE_S, "wide_every": 1000, "image_px": 8,
              "checks": 0, "table_rows": 1}
    with DagsterInstance.local_temp(str(home)) as instance:
        result = materialize([_asset("chatty", config)], instance=instance, partition_key=DATASET,
                             resources=resources_for_test_stages(home))
        assert result.success
        entries = instance.all_logs(result.run_id)
        stamps = [e.timestamp for e in entries if e.user_message.startswith("chatty t0 #")]
        step_end = next(e.timestamp for e in entries
                        if e.dagster_event and e.dagster_event_type == DagsterEventType.STEP_SUCCESS)
    assert len(stamps) == 3
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(gap > 0.5 * PAUSE_S for gap in gaps), gaps  # read back at the end, they would be ~0 s apart
    assert step_end - stamps[0] > 2 * PAUSE_S, (stamps, step_end)
