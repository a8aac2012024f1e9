"""GPS fixes that disagree: outliers are named and left out of matching and georegistration; with no majority
GPS is not used at all. The stage test runs real SfM on lund with half its fixes moved to another continent."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
from spaceport_dagster.stages.sfm.gps_outliers import gps_consensus
from spaceport_dagster.stages.sfm.stage import run as run_sfm

from .conftest import dataset_images

LOG = logging.getLogger("test_gps_outliers")


def _records(fixes: list[tuple[float, float] | None]) -> list[dict]:
    return [{"name": f"{i:02d}.jpg", "gps": None if f is None else {"latitude": f[0], "longitude": f[1],
                                                                   "altitude": 50.0, "relative_altitude": None}}
            for i, f in enumerate(fixes)]


def test_agreeing_fixes_along_a_corridor_are_one_group() -> None:
    corridor = [(55.70 + i * 0.002, 13.19) for i in range(40)]  # 40 fixes ~220 m apart: 8.7 km long
    consensus = gps_consensus(_records(corridor))
    assert consensus.consistent and len(consensus.agreeing) == 40


def test_a_minority_far_away_is_named_and_dropped() -> None:
    fixes = [(55.70 + i * 1e-4, 13.19) for i in range(7)] + [(-33.9, 151.2), (-33.9, 151.2001), None]
    consensus = gps_consensus(_records(fixes))
    assert consensus.outliers == ["07.jpg", "08.jpg"] and len(consensus.agreeing) == 7
    assert "2 of 9 fixes lie over 1000 m from the other 7" in consensus.reason
    cleaned = {r["name"]: r["gps"] for r in consensus.without_outliers(_records(fixes))}
    assert cleaned["07.jpg"] is None and cleaned["08.jpg"] is None and cleaned["00.jpg"] is not None


def test_no_majority_means_no_gps() -> None:
    fixes = [(55.70 + i * 1e-4, 13.19) for i in range(5)] + [(-33.9 + i * 1e-4, 151.2) for i in range(5)]
    consensus = gps_consensus(_records(fixes))
    assert consensus.agreeing == [] and len(consensus.outliers) == 10
    assert "none with a majority: GPS is not used" in consensus.reason


@pytest.mark.slow
def test_lund_with_half_its_gps_on_another_continent(tmp_path: Path) -> None:
    image_set = tmp_path / "image_set"
    ingest(str(dataset_images("lund")), image_set, IngestConfig(), LOG)
    manifest = json.loads((image_set / "manifest.json").read_text())
    moved = [r["name"] for r in manifest["images"][1::2]]  # 14 of 29
    for record in manifest["images"]:
        if record["name"] in moved:
            record["gps"]["latitude"] -= 89.0  # Antarctica
            record["gps"]["longitude"] += 120.0
    (image_set / "manifest.json").write_text(json.dumps(manifest))
    report = run_sfm({"image_set": str(image_set)}, tmp_path / "sfm", {}, LOG)
    m = report.metadata
    assert m["registered_images"] == 29, m["registered"]
    assert m["matcher"] != "spatial" and "GPS of 14 image(s) left out" in m["matcher_reason"]
    assert m["georegistered"] is True and m["georegistration_residual_m"] < 10.0  # fitted on the 15 that agree
    check = next(c for c in report.checks if c.name == "gps_consistent")
    assert not check.passed and not check.blocking and all(name in check.description for name in moved)
    saved = json.loads((tmp_path / "sfm" / "report.json").read_text())
    assert saved["gps_consensus"]["outliers"] == sorted(moved)
    assert saved["georegistration"]["images_with_gps"] == 15
    shutil.rmtree(tmp_path / "sfm")
