"""The container entry point and the stage side's container paths, without a job around them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spaceport_dagster.stages.entry import container_path

ENTRYPOINT = Path(__file__).resolve().parents[1] / "containers" / "entrypoint.py"


def _run(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPACEPORT_CONTAINER_ROOT": str(root), "SPACEPORT_STAGE": stage}
    env.pop("DAGSTER_PIPES_CONTEXT", None)
    return subprocess.run([sys.executable, str(ENTRYPOINT), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_crash_before_the_stage_handler_still_leaves_a_reason(tmp_path: Path) -> None:
    done = _run(tmp_path, "no_such_stage", "train")  # Training jobs pass `train`: ignored
    assert done.returncode == 1
    failure = (tmp_path / "opt/ml/output/failure").read_text()
    assert failure.startswith("stage no_such_stage exited with code 1: ")
    assert "No module named spaceport_dagster.stages.no_such_stage" in failure
    assert (tmp_path / "opt/ml/output/message").read_text() == failure  # a Processing job's ExitMessage
    assert "spaceport: running stage no_such_stage" in done.stdout
    assert "spaceport: stage no_such_stage exited with code 1" in done.stdout


def test_stage_name_is_checked(tmp_path: Path) -> None:
    done = _run(tmp_path, "../etc")
    assert done.returncode == 2
    assert (tmp_path / "opt/ml/output/failure").read_text() == (
        "SPACEPORT_STAGE must name a stage module (e.g. sfm), got '../etc'")


def test_container_paths_are_rebased_only_under_opt_ml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert container_path("/opt/ml/model") == "/opt/ml/model"
    monkeypatch.setenv("SPACEPORT_CONTAINER_ROOT", str(tmp_path))
    assert container_path("/opt/ml/processing/input/image_set") == f"{tmp_path}/opt/ml/processing/input/image_set"
    assert container_path("/opt/ml") == f"{tmp_path}/opt/ml"
    assert container_path("/opt/mlx/a") == "/opt/mlx/a"
    assert container_path("s3://bucket/opt/ml/x") == "s3://bucket/opt/ml/x"
