"""A 60-photo survey (grid plus obliques, camera GPS with 5 m noise and a drifting altitude) from photos to .sog
with the preview presets, the way a user runs it: `spaceport demo --photos 60 ...` in a fresh SPACEPORT_HOME.
Every stage publishes, every blocking gate passes, and the published cameras and frame match the truth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spaceport_dagster.demo.truth_check import compare_artifact, compare_frame
from spaceport_dagster.stage_order import ASSET_ORDER

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def survey_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("home60")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEPORT_", "DAGSTER_"))}
    env["SPACEPORT_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "spaceport_dagster.cli", "demo", "--photos", "60", "--size", "640x480",
                           "--gps-noise", "5", "--gps-altitude-drift", "30"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    return home, done


def test_sixty_photos_reach_a_bundle_with_every_gate_passing(survey_run) -> None:
    home, done = survey_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    artifacts = home / "artifacts" / "demo"
    for asset in ASSET_ORDER:
        assert re.search(rf"\[\s+ok\s+\] {asset}\b", done.stdout), f"{asset} not ok:\n{done.stdout}"
        assert (artifacts / asset / "_SUCCESS").is_file()
    assert (artifacts / "sogs_bundle" / "demo.sog").stat().st_size > 10_000
    metrics = json.loads((artifacts / "splat_model" / "metrics.json").read_text())["summary"]
    assert metrics["train_views"] + metrics["test_views"] == 60 and metrics["test_views"] == 8
    assert metrics["psnr"] >= metrics["baseline_psnr"] + 3.0 and metrics["alpha_mean"] >= 0.9, metrics
    assert metrics["steps"] == 300  # 52 training views: the preview's floor, not its per-view rate


def test_sixty_photos_register_in_the_true_frame(survey_run) -> None:
    home, done = survey_run
    assert done.returncode == 0
    sparse = home / "artifacts" / "demo" / "sparse_reconstruction"
    truth = json.loads((home / "demo" / "truth.json").read_text())
    assert compare_artifact(sparse, home / "demo" / "truth.json").registered == 60
    frame = compare_frame(sparse / "sparse", json.loads((sparse / "report.json").read_text()), truth)
    assert frame.up_error_deg < 1.0, frame
    assert abs(frame.scale_ratio - 1) < 0.03, frame  # 5 m GPS noise over a ~100 m site
