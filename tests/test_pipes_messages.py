"""Issue 17: a stage's Pipes messages arrive whole, or the step fails naming the stage and the cause.

The root cause, reproduced deterministically: a reader that polls while a large append is half visible gets a
cut line (Dagster's `tail_file` hands it on). The stress test runs a real stage that logs from several threads
and reports ~1 MB metadata, many times under CPU load, through the real launcher and asset code.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    MaterializeResult,
    PipesEnvContextInjector,
    StaticPartitionsDefinition,
    asset,
    materialize,
    open_pipes_session,
)
from dagster._utils import tail_file

from spaceport_dagster.assets.stage_asset import run_stage_asset
from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.pipes_messages import WholeLineFileMessageReader
from spaceport_dagster.resources.storage import StorageResource

from .conftest import dagster_home, resources_for_test_stages
from .stages import chatty

DATASET = "talkative"
CHECKS = 3


def message_line(method: str, params: dict[str, Any] | None = None) -> bytes:
    return (json.dumps({"__dagster_pipes_version": "0.1", "method": method, "params": params}) + "\n").encode()


def test_upstream_tail_file_hands_on_a_half_written_line(tmp_path: Path) -> None:
    """What Dagster's file reader does when it polls in the middle of a large append (the incident's error)."""
    line = message_line("log", {"message": "x" * 5000, "level": "INFO"})
    path = tmp_path / "messages.jsonl"
    path.write_bytes(line[:2298])  # the part of the write that is visible so far
    seen = next(tail_file(str(path), lambda: True))
    assert seen == line[:2298].decode()
    with pytest.raises(json.JSONDecodeError, match="Unterminated string"):
        json.loads(seen)


def test_a_message_visible_in_parts_is_read_once_whole() -> None:
    """The same half-visible append under our reader: nothing is handed on until the line end arrives."""
    metadata = {"table": {"raw_value": "| a |\n|---|\n" + "| é |\n" * 2000, "type": "md"}}
    report = message_line("report_asset_materialization", {"asset_key": "talk", "metadata": metadata,
                                                           "data_version": None})
    reader = WholeLineFileMessageReader()
    got: dict[str, Any] = {}

    @asset
    def talk(context: AssetExecutionContext):
        with open_pipes_session(context=context, context_injector=PipesEnvContextInjector(),
                                message_reader=reader) as session:
            path = Path(session.message_reader_params["path"])
            with open(path, "ab") as stream:
                stream.write(message_line("opened", {}))
                for start in range(0, len(report), 2298):  # the line appears piece by piece, polled in between
                    stream.write(report[start:start + 2298])
                    stream.flush()
                    time.sleep(0.03)
                stream.write(message_line("closed", {}))
        results = list(session.get_results())
        got["tables"] = [r.metadata["table"].value for r in results]
        yield from results

    assert materialize([talk]).success
    assert reader.problems == []
    assert reader.messages == 3
    assert got["tables"] == [metadata["table"]["raw_value"]]


def _home_and_resources(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A private Dagster home and the resources of a run of the test stages whose artifacts go under it."""
    home = dagster_home(tmp_path / "home")
    return home, resources_for_test_stages(home)


def _asset(stage: str, config: dict[str, Any], checks: int = 0):
    @asset(name="talk", partitions_def=StaticPartitionsDefinition([DATASET]),
           check_specs=[AssetCheckSpec(f"check_{k}", asset="talk", blocking=True) for k in range(checks)])
    def talk(context: AssetExecutionContext, storage: StorageResource, compute: StageLauncher) -> MaterializeResult:
        return run_stage_asset(context, storage, compute, stage=stage, config=config)

    return talk


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """Busy processes at normal priority, as other work on a shared 2-core machine."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


# Three threads log small tables every 0.1 s, every fourth time a 1 MB one; the report embeds images. The pause
# lets the reader catch up and poll at the end of the file, where a large append is seen half written. With
# Dagster's reader, 4 of 4 tries of this test failed (3 on the first run, 1 on the second; 2026-11-30, 2 loaded
# cores); 5 runs here.
STRESS = {"threads": 3, "lines_per_thread": 16, "wide_every": 4, "wide_rows": 25000, "pause_s": 0.1,
          "image_px": 600, "checks": CHECKS, "table_rows": 2000}
STRESS_RUNS = 5


def test_many_large_messages_from_many_threads_under_load_all_arrive(tmp_path: Path) -> None:
    home, resources = _home_and_resources(tmp_path)
    talk = _asset("chatty", STRESS, checks=CHECKS)
    preview = chatty.preview_markdown(STRESS["image_px"], seed=0)
    expected_lines = {chatty.log_line(t, i, STRESS["wide_every"], STRESS["wide_rows"])
                      for t in range(STRESS["threads"]) for i in range(STRESS["lines_per_thread"])}
    with DagsterInstance.local_temp(str(home)) as instance, cpu_load(os.cpu_count() or 2):
        for attempt in range(STRESS_RUNS):
            result = materialize([talk], resources=resources, instance=instance, partition_key=DATASET,
                                 raise_on_error=False)
            assert result.success, f"run {attempt}: {_step_failure(result)}"
            metadata = result.asset_materializations_for_node("talk")[0].metadata
            assert metadata["preview"].value == preview
            assert metadata["preview_sha256"].value == hashlib.sha256(preview.encode()).hexdigest()
            assert metadata["details"].value["per_image"] == chatty.image_table(STRESS["table_rows"])
            assert metadata["published"].value is True
            evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
            assert sorted(evaluations) == [f"check_{k}" for k in range(CHECKS)]
            for k, evaluation in evaluations.items():
                assert evaluation.passed
                index = int(k.split("_")[1])
                assert evaluation.metadata["evidence"].value == chatty.preview_markdown(300, seed=index + 1)
            logged = {entry.user_message for entry in instance.all_logs(result.run_id)
                      if entry.user_message.startswith("chatty t")}
            assert logged == expected_lines, f"run {attempt}: {len(expected_lines - logged)} log lines lost or cut"
    assert (LocalArtifactStore(home / "artifacts").fetch(DATASET, "talk") / "result.txt").read_text() == "chatty\n"


def _step_failure(result: Any) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    return failures[0].step_failure_data.error.message if failures else "no step failure event"


def _run_garbled(instance: DagsterInstance, resources: dict[str, Any], **config: bool) -> Any:
    """A run of the `garbled` test stage (one blocking check) with `config`; failures are returned, not raised."""
    return materialize([_asset("garbled", config, checks=1)], resources=resources, instance=instance,
                       partition_key=DATASET, raise_on_error=False)


def test_a_message_that_cannot_be_read_fails_the_step_naming_the_stage_and_a_retry_publishes(tmp_path: Path) -> None:
    home, resources = _home_and_resources(tmp_path)
    store = LocalArtifactStore(home / "artifacts")
    with DagsterInstance.local_temp(str(home)) as instance:
        broken = _run_garbled(instance, resources, garble=True)
        assert not broken.success
        message = _step_failure(broken)
        assert "stage garbled finished for dataset 'talkative'" in message
        assert "nothing was published" in message
        assert "message 3 (byte " in message and "not a whole JSON message" in message
        assert "Unterminated string" in message
        assert not store.exists(DATASET, "talk")
        retried = _run_garbled(instance, resources, garble=False)
        assert retried.success, _step_failure(retried)
        assert store.exists(DATASET, "talk")
        assert retried.get_asset_check_evaluations()[0].passed
        assert AssetKey("talk") in {m.asset_key for m in retried.asset_materializations_for_node("talk")}


def test_a_stage_that_ends_without_its_closing_message_fails_the_step(tmp_path: Path) -> None:
    home, resources = _home_and_resources(tmp_path)
    with DagsterInstance.local_temp(str(home)) as instance:
        result = _run_garbled(instance, resources, vanish=True)
    assert not result.success
    message = _step_failure(result)
    assert "stage garbled finished" in message
    assert "the stage's closing message never arrived" in message
    assert "message file" in message and "ends inside a message" in message

