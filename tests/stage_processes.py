"""A running stage's process, for the tests and benchmarks that kill or stop one (imports no pytest)."""

from __future__ import annotations

import time
from pathlib import Path

from spaceport_dagster.resources.compute import SCRATCH_PREFIX
from spaceport_dagster.resources.owned_dirs import process_alive
from spaceport_dagster.stages.lifeline import PID_FILE


def stage_pid(scratch: Path, stage: str, timeout: float = 120) -> int:
    """The pid of the `stage` process a run started under the TMPDIR `scratch` (waits for it to start)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid_file in scratch.glob(f"{SCRATCH_PREFIX}*-{stage}-*/control/{PID_FILE}"):
            text = pid_file.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.1)
    raise TimeoutError(f"stage {stage} never started")


def seconds_until_gone(pid: int, timeout: float) -> float | None:
    """Seconds until `pid` was gone, None if it still lives after `timeout`."""
    start = time.time()
    while time.time() - start < timeout:
        if not process_alive(pid):
            return time.time() - start
        time.sleep(0.05)
    return None
