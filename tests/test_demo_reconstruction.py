"""Reconstruct the built-in demo survey with the real SfM stage and compare the cameras with the truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from spaceport_dagster.demo.survey import SurveySpec, generate_survey
from spaceport_dagster.demo.truth_check import compare_artifact
from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate_survey(out, SurveySpec())
    return out


def test_every_image_registers_and_cameras_match_truth(demo_survey: Path, tmp_path: Path) -> None:
    from spaceport_dagster.stages.sfm.stage import run as run_sfm

    log = logging.getLogger("test")
    image_set = tmp_path / "image_set"
    ingest(str(demo_survey / "images"), image_set, IngestConfig(), log)
    sparse = tmp_path / "sparse_reconstruction"
    report = run_sfm({"image_set": str(image_set)}, sparse, {"preset": "fast"}, log)
    truth = json.loads((demo_survey / "truth.json").read_text())

    assert report.metadata["registered_images"] == len(truth["images"]) == 28
    assert all(check.passed for check in report.checks), [c.description for c in report.checks if not c.passed]
    assert report.metadata["georegistered"] is True

    comparison = compare_artifact(sparse, demo_survey / "truth.json")
    assert comparison.missing == []
    assert comparison.registered == 28
    # the acceptance bar: RMS camera-centre error within 1 % of the flight altitude (40 m -> 0.4 m)
    assert comparison.rms_m <= 0.01 * truth["altitude_m"], comparison.summary()
    assert comparison.rms_fraction_of_altitude == pytest.approx(comparison.rms_m / 40.0)
