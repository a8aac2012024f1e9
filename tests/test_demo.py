"""The demo survey generator: deterministic output, EXIF that our ingest reads back, truth consistent with it."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spaceport_dagster.demo.flight import FlightPlan, attitude, plan_cameras
from spaceport_dagster.demo.geodesy import enu_to_geodetic, geodetic_to_enu
from spaceport_dagster.demo.scene import SceneSpec
from spaceport_dagster.demo.survey import SurveySpec, generate_survey, is_current
from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
from spaceport_dagster.stages.sfm.camera_groups import focal_prior_px

SMALL = SurveySpec(
    scene=SceneSpec(half_x=40.0, half_y=35.0, buildings=4, trees=12),
    flight=FlightPlan(lines=2, line_spacing_m=14.0, shots_per_line=2, shot_spacing_m=8.0, obliques=1,
                      oblique_offset_m=15.0, width=200, height=150),
)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("survey")
    generate_survey(out, SMALL)
    return out


def test_generator_is_deterministic(small_survey: Path, tmp_path: Path) -> None:
    again = generate_survey(tmp_path, SMALL, workers=1)  # also: the output does not depend on the workers
    assert digests(small_survey / "images") == digests(tmp_path / "images")
    assert (small_survey / "truth.json").read_bytes() == (tmp_path / "truth.json").read_bytes()
    first = json.loads((small_survey / "truth.json").read_text())
    assert first == json.loads(json.dumps(again))
    assert len(first["images"]) == SMALL.flight.count == 5
    assert is_current(small_survey, SMALL)
    assert not is_current(small_survey, replace(SMALL, seconds_between_shots=5.0))


def test_files_and_truth_layout(small_survey: Path) -> None:
    truth = json.loads((small_survey / "truth.json").read_text())
    names = sorted(p.name for p in (small_survey / "images").iterdir())
    assert names == [f"demo_{i:04d}.jpg" for i in range(1, 6)]
    assert [r["kind"] for r in truth["images"]] == ["nadir"] * 4 + ["oblique"]
    assert truth["camera"] == {"width": 200, "height": 150, "focal_px": pytest.approx(24 / 36 * 200), "cx": 100.0,
                               "cy": 75.0, "model": "PINHOLE"}
    for record in truth["images"]:
        rotation = np.array(record["cam_from_world_rotation"])
        centre = np.array(record["centre_enu"])
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(-rotation.T @ np.array(record["cam_from_world_translation"]), centre, atol=1e-9)
        assert centre[2] == pytest.approx(SMALL.flight.altitude_m, abs=SMALL.flight.position_jitter_m + 1e-9)


def test_ingest_reads_back_exif(small_survey: Path, tmp_path: Path) -> None:
    report = ingest(str(small_survey / "images"), tmp_path, IngestConfig(min_images=5), logging.getLogger("test"))
    assert report.metadata["usable_images"] == 5 and report.metadata["gps_images"] == 5
    manifest = {r["name"]: r for r in json.loads((tmp_path / "manifest.json").read_text())["images"]}
    truth = json.loads((small_survey / "truth.json").read_text())
    origin = (truth["origin"]["latitude"], truth["origin"]["longitude"], truth["origin"]["height"])
    for record in truth["images"]:
        row = manifest[record["name"]]
        assert row["camera"] == "Spaceport Demo Survey Camera"
        assert row["focal_length_mm"] == pytest.approx(8.8)
        assert row["focal_length_35mm"] == 24
        assert focal_prior_px(row["focal_length_35mm"], row["width"], row["height"]) == pytest.approx(
            truth["camera"]["focal_px"])
        assert row["captured_at"] == record["captured_at"]
        gps = row["gps"]
        read_back = geodetic_to_enu(gps["latitude"], gps["longitude"], gps["altitude"], origin)
        np.testing.assert_allclose(read_back, record["centre_enu"], atol=2e-3)  # EXIF rationals: mm
        assert gps["relative_altitude"] == pytest.approx(record["centre_enu"][2], abs=1e-3)
    times = [manifest[r["name"]]["captured_at"] for r in truth["images"]]
    assert times == sorted(times)


def test_geodesy_round_trip_and_agrees_with_sfm_georegistration() -> None:
    from spaceport_dagster.stages.sfm.georegister import Origin, lla_to_enu

    origin = (46.5191, 6.5668, 372.0)
    points = np.array([[0.0, 0.0, 0.0], [55.0, -40.0, 41.0], [-120.0, 300.0, 12.5]])
    for enu in points:
        lat, lon, h = enu_to_geodetic(enu, origin)
        np.testing.assert_allclose(geodetic_to_enu(lat, lon, h, origin), enu, atol=1e-6)
        theirs = lla_to_enu(lat, lon, h, Origin(*origin, "altitude"))[0]
        np.testing.assert_allclose(theirs, enu, atol=1e-6)
    lat, lon, _ = enu_to_geodetic(np.array([0.0, 111.2, 0.0]), origin)  # ~0.001 degree of latitude north
    assert lat - origin[0] == pytest.approx(0.001, rel=0.01) and lon == pytest.approx(origin[1], abs=1e-9)


def test_flight_plan_geometry() -> None:
    plan = FlightPlan()
    cameras = plan_cameras(plan)
    assert len(cameras) == plan.count == 28
    nadir = [c for kind, c in cameras if kind == "nadir"]
    for camera in nadir:  # looking straight down within the attitude jitter
        forward = camera.rotation[:, 2]
        assert math.degrees(math.acos(-forward[2])) < 3 * plan.attitude_jitter_deg
    obliques = [c for kind, c in cameras if kind == "oblique"]
    for camera in obliques:  # tilted off nadir, looking towards the site centre
        forward = camera.rotation[:, 2]
        assert math.degrees(math.acos(-forward[2])) == pytest.approx(plan.oblique_tilt_deg, abs=3.0)
        assert float(np.dot(forward[:2], -camera.centre[:2])) > 0
    # heading 90 (east): the image top points east, the image x axis south
    rotation = attitude(90.0)
    np.testing.assert_allclose(rotation[:, 1], [-1.0, 0.0, 0.0], atol=1e-12)  # image down = west
    np.testing.assert_allclose(rotation[:, 0], [0.0, -1.0, 0.0], atol=1e-12)


def test_camera_gps_errors_are_written_to_exif_and_truth_keeps_the_true_centres(tmp_path: Path) -> None:
    from spaceport_dagster.demo.survey import GpsErrors

    spec = replace(SMALL, gps=GpsErrors(altitude_drift_m=100.0, horizontal_noise_m=5.0))
    truth = generate_survey(tmp_path / "survey", spec)
    ingest(str(tmp_path / "survey" / "images"), tmp_path / "set", IngestConfig(min_images=5), logging.getLogger("t"))
    manifest = {r["name"]: r for r in json.loads((tmp_path / "set" / "manifest.json").read_text())["images"]}
    origin = (truth["origin"]["latitude"], truth["origin"]["longitude"], truth["origin"]["height"])
    errors = []
    for record in truth["images"]:
        gps = manifest[record["name"]]["gps"]
        written = geodetic_to_enu(gps["latitude"], gps["longitude"], gps["altitude"], origin)
        true = geodetic_to_enu(record["latitude"], record["longitude"], record["altitude"], origin)
        np.testing.assert_allclose(true, record["centre_enu"], atol=1e-6)
        np.testing.assert_allclose(written - true, record["gps"]["error_enu"], atol=2e-3)
        errors.append(written - true)
    errors = np.array(errors)
    np.testing.assert_allclose(errors[:, 2], np.linspace(0, 100, 5), atol=2e-3)  # the drift, in capture order
    assert 0.5 < np.std(errors[:, :2]) < 15.0 and np.abs(errors[:, :2]).max() > 0.5


def test_survey_variants_have_the_asked_photo_count_and_fit_the_site() -> None:
    from spaceport_dagster.demo.variants import survey_for

    for photos in (5, 8, 20, 28, 40, 75, 150, 300):
        spec = survey_for(photos)
        cameras = plan_cameras(spec.flight)
        assert len(cameras) == photos
        centres = np.array([c.centre for _, c in cameras])
        # every camera's footprint centre (below it) lies inside the scene with its half footprint to spare
        assert np.abs(centres[:, 0]).max() + 30 <= spec.scene.half_x
        assert np.abs(centres[:, 1]).max() + 22.5 <= spec.scene.half_y
    corridor = plan_cameras(survey_for(12, corridor=True).flight)
    assert len(corridor) == 12 and np.ptp([c.centre[0] for _, c in corridor]) < 1.0  # one line, north-south
    big = survey_for(8, width=4000, height=3000, render_scale=4)
    assert (big.flight.width, big.flight.height, big.render_scale) == (4000, 3000, 4)
    with pytest.raises(ValueError, match="at least 2 photos"):
        survey_for(1)

