"""GPS -> ENU against known values and an independent implementation, and sim3 georegistration of a synthetic model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from spaceport_dagster.demo.geodesy import geodetic_to_enu
from spaceport_dagster.stages.sfm.georegister import (
    Origin,
    altitude_source,
    georegister,
    gps_positions,
    lla_to_enu,
)


def test_enu_axes_and_lengths() -> None:
    origin = Origin(0.0, 0.0, 0.0, "altitude")
    enu = lla_to_enu([0.001, 0.0, 0.0], [0.0, 0.001, 0.0], [0.0, 0.0, 10.0], origin)
    # one thousandth of a degree along the equator / the meridian at the equator, and 10 m straight up
    np.testing.assert_allclose(enu[0], [0.0, 110.574, 0.0], atol=0.01)
    np.testing.assert_allclose(enu[1], [111.319, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(enu[2], [0.0, 0.0, 10.0], atol=1e-6)


def test_enu_matches_an_independent_geodesy_at_brighton() -> None:
    origin = Origin(46.8426071, -91.9945599, 198.31, "altitude")
    lla = np.array([[46.8430381, -91.9939231, 198.51], [46.8422816, -91.9940842, 198.61]])
    ours = lla_to_enu(lla[:, 0], lla[:, 1], lla[:, 2], origin)
    at = (origin.latitude, origin.longitude, origin.altitude)
    reference = [geodetic_to_enu(*row, at) for row in lla]  # the demo's hand-written WGS84 -> ECEF -> ENU
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert ours[0][0] > 0 and ours[0][1] > 0  # north-east of the first fix
    assert 45 < np.linalg.norm(ours[0][:2]) < 70


def test_altitude_source_prefers_absolute_then_relative() -> None:
    both = {"latitude": 1, "longitude": 2, "altitude": 198.0, "relative_altitude": 40.0}
    rel_only = {"latitude": 1, "longitude": 2, "altitude": None, "relative_altitude": 40.0}
    bare = {"latitude": 1, "longitude": 2, "altitude": None, "relative_altitude": None}
    assert altitude_source([both, both]) == "altitude"
    assert altitude_source([both, rel_only]) == "relative_altitude"
    assert altitude_source([both, bare]) == "none"


def test_gps_positions_origin_is_first_fix() -> None:
    images = [
        {"name": "a.jpg", "gps": None},
        {"name": "b.jpg", "gps": {"latitude": 10.0, "longitude": 20.0, "altitude": None, "relative_altitude": 30.0}},
        {"name": "c.jpg", "gps": {"latitude": 10.0, "longitude": 20.0, "altitude": None, "relative_altitude": 35.0}},
    ]
    origin, positions = gps_positions(images)
    assert origin == Origin(10.0, 20.0, 30.0, "relative_altitude")
    assert set(positions) == {"b.jpg", "c.jpg"}
    np.testing.assert_allclose(positions["b.jpg"], [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(positions["c.jpg"], [0, 0, 5.0], atol=1e-6)


def _synthetic_model(centres: np.ndarray, rotations: list[np.ndarray] | None = None) -> pycolmap.Reconstruction:
    """A model with images at `centres` and world_from_camera `rotations` (default: arbitrary ones)."""
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera.create_from_model_name(1, "PINHOLE", 100.0, 100, 100))
    for i, centre in enumerate(centres, start=1):
        image = pycolmap.Image(name=f"{i:02d}.jpg", camera_id=1, image_id=i)
        if rotations is None:
            cam_from_world_r = pycolmap.Rotation3d(np.array([0.1 * i, -0.05 * i, 0.02 * i])).matrix()
        else:
            cam_from_world_r = rotations[i - 1].T
        cam_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(cam_from_world_r), -(cam_from_world_r @ centre))
        rec.add_image_with_trivial_frame(image, cam_from_world)
    return rec


def _rz(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


NADIR = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]).T  # world_from_camera, image top north


def _nadir_survey(enu: np.ndarray, model_from_enu: tuple[float, np.ndarray, np.ndarray],
                  headings: np.ndarray | None = None) -> pycolmap.Reconstruction:
    """Nadir cameras at the true ENU centres, expressed in an arbitrary SfM frame (scale, rotation, shift)."""
    scale, rotation, shift = model_from_enu
    headings = np.zeros(len(enu)) if headings is None else headings
    centres = scale * enu @ rotation.T + shift
    return _synthetic_model(centres, [rotation @ _rz(-h) @ NADIR for h in headings])


def _lawnmower(lines: int = 4, shots: int = 6, height: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Centres (ENU, first at the origin) and headings of a lawnmower flight at one height."""
    centres, headings = [], []
    for line in range(lines):
        for shot in range(shots):
            k = shot if line % 2 == 0 else shots - 1 - shot
            centres.append([18.0 * line, 10.0 * k, height])
            headings.append(0.0 if line % 2 == 0 else 180.0)
    enu = np.array(centres)
    return enu - enu[0], np.array(headings)


def _manifest_for(enu: np.ndarray, origin: Origin) -> list[dict]:
    """Manifest records whose GPS fixes sit exactly at the given ENU positions (found by inverting ECEF)."""
    gt = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84)
    lla = gt.enu_to_ellipsoid(enu, origin.latitude, origin.longitude, origin.altitude)
    return [{"name": f"{i:02d}.jpg", "gps": {"latitude": a, "longitude": b, "altitude": c, "relative_altitude": None}}
            for i, (a, b, c) in enumerate(lla, start=1)]


ARBITRARY = (1 / 7.5, pycolmap.Rotation3d(np.array([0.3, -0.2, 1.1])).matrix(), np.array([3.0, -1.0, 2.0]))


def _centres(rec: pycolmap.Reconstruction) -> np.ndarray:
    return np.array([rec.image(i).projection_center() for i in sorted(rec.reg_image_ids())])


def _view_up_error_deg(rec: pycolmap.Reconstruction) -> float:
    views = np.array([rec.image(i).cam_from_world().rotation.matrix()[2] for i in rec.reg_image_ids()])
    return float(np.degrees(np.arccos(np.clip(-np.mean(views, axis=0)[2] / np.linalg.norm(views.mean(axis=0)),
                                              -1, 1))))


def test_georegister_recovers_a_known_similarity() -> None:
    enu, headings = _lawnmower()
    rec = _nadir_survey(enu, ARBITRARY, headings)
    manifest = _manifest_for(enu, Origin(46.84, -91.99, 198.0, "altitude"))
    result = georegister(rec, manifest)
    assert result.georegistered and result.frame == "enu" and result.altitude_used
    assert result.images_with_gps == 24 and result.inliers == 24 and result.outliers == []
    assert result.residual_rms_m is not None and result.residual_rms_m < 1e-3
    assert result.residual_vertical_rms_m is not None and result.residual_vertical_rms_m < 1e-3
    assert result.scale == pytest.approx(7.5, rel=1e-4)
    np.testing.assert_allclose(_centres(rec), enu, atol=1e-3)
    assert result.up is not None and result.up["nadir"] is True


def test_drifting_gps_altitude_is_not_used_and_the_frame_stays_upright() -> None:
    """Camera GPS: altitude climbing 100 m over a flight at one height, 5 m horizontal noise, one 60 m blunder."""
    enu, headings = _lawnmower(lines=5, shots=8)
    rng = np.random.default_rng(3)
    gps = enu.copy()
    gps[:, :2] += rng.normal(0.0, 5.0, (len(enu), 2))
    gps[:, 2] += np.linspace(0.0, 100.0, len(enu))
    gps[17, :2] += [60.0, 0.0]
    gps -= gps[0]
    rec = _nadir_survey(enu, ARBITRARY, headings)
    result = georegister(rec, _manifest_for(gps, Origin(55.7, 13.2, 37.0, "altitude")))
    assert result.georegistered and result.frame == "enu_horizontal" and not result.altitude_used
    assert "tilt" in result.altitude_reason
    # the blunder is left out; so may be the rare fix whose Gaussian noise passes 3 sigma (15 m)
    assert "18.jpg" in result.outliers and len(result.outliers) <= 3
    assert result.inliers == len(enu) - len(result.outliers)
    assert result.scale == pytest.approx(7.5, rel=0.02)
    # the cameras look straight down and fly level in the published frame
    assert _view_up_error_deg(rec) < 0.01
    centres = _centres(rec)
    assert np.ptp(centres[:, 2]) < 1e-6
    # residuals: horizontal ~ the GPS noise (5 m per axis: ~7 m RMS), vertical ~ the detrended drift
    assert 4.0 < result.residual_horizontal_rms_m < 10.0
    assert result.residual_vertical_rms_m == pytest.approx(100 / np.sqrt(12), rel=0.1)
    assert result.residual_max_m == pytest.approx(60.0, abs=20.0)  # the blunder, over every fix
    # against the truth: the best rigid fit of the true centres leaves the horizontal GPS noise, averaged out
    offset = (centres - enu)[np.arange(len(enu)) != 17].mean(axis=0)
    assert np.sqrt(np.mean(np.sum((centres - offset - enu) ** 2, axis=1))) < 0.01 * 40 * 5  # 2 m


def test_good_altitude_with_one_outlier_reports_robust_residuals() -> None:
    enu, headings = _lawnmower(lines=2, shots=5)
    rec = _nadir_survey(enu, (0.2, np.eye(3), np.zeros(3)), headings)
    gps = enu.copy()
    gps[4] += [40.0, 0.0, 0.0]  # one fix 40 m off
    result = georegister(rec, _manifest_for(gps, Origin(55.7, 13.2, 37.0, "altitude")), max_error_m=5.0)
    assert result.georegistered and result.altitude_used and result.inliers == 9
    assert result.outliers == ["05.jpg"]
    assert result.residual_max_m == pytest.approx(40.0, abs=0.1)
    assert result.residual_rms_m is not None and result.residual_rms_m < 1e-3  # the inliers fit exactly
    assert result.residual_horizontal_rms_m < 1e-3 and result.residual_vertical_rms_m < 1e-3


def test_single_line_falls_back_to_up_from_the_cameras_with_a_warning() -> None:
    enu = np.column_stack([np.zeros(8), 10.0 * np.arange(8), np.full(8, 40.0)])
    enu -= enu[0]
    rec = _nadir_survey(enu, ARBITRARY)
    gps = enu + np.column_stack([np.zeros((8, 2)), np.linspace(0, 30, 8)])  # climbing altitude
    result = georegister(rec, _manifest_for(gps, Origin(10.0, 10.0, 0.0, "altitude")))
    assert result.georegistered and result.frame == "enu_horizontal" and not result.altitude_used
    assert "line" in result.altitude_reason and any("line" in w for w in result.warnings)
    assert _view_up_error_deg(rec) < 0.01
    assert result.scale == pytest.approx(7.5, rel=1e-3)
    np.testing.assert_allclose(_centres(rec)[:, :2], enu[:, :2], atol=1e-3)


def test_too_few_gps_images_give_an_upright_local_frame_with_a_warning() -> None:
    enu, headings = _lawnmower(lines=2, shots=3)
    rec = _nadir_survey(enu, ARBITRARY, headings)
    manifest = _manifest_for(enu[:2], Origin(10.0, 10.0, 0.0, "altitude"))
    result = georegister(rec, manifest)
    assert not result.georegistered and result.frame == "local_upright"
    assert "2 registered image(s) carry GPS (need 3)" in result.reason
    assert result.warnings and "upright local frame" in result.warnings[0]
    assert _view_up_error_deg(rec) < 0.01
    np.testing.assert_allclose(_centres(rec).mean(axis=0), 0.0, atol=1e-9)


def test_cameras_that_fix_no_up_keep_the_model_frame_without_gps() -> None:
    rng = np.random.default_rng(5)  # a cloud of cameras pointing every way: no up in them
    rotations = [pycolmap.Rotation3d(v).matrix() for v in rng.uniform(-np.pi, np.pi, (12, 3))]
    rec = _synthetic_model(rng.uniform(-10, 10, (12, 3)), rotations)
    before = _centres(rec)
    result = georegister(rec, [])
    assert not result.georegistered and result.frame == "model" and result.warnings
    np.testing.assert_allclose(_centres(rec), before)


def test_good_altitude_is_used_when_the_views_are_pitched_but_the_flight_is_level() -> None:
    """A gimbal 10 deg off nadir on a fixed heading: the views are off, the camera plane is not, and good GPS
    altitude agrees with the plane, so it is used."""
    enu, _ = _lawnmower(lines=4, shots=6)
    pitch = np.radians(10.0)
    pitched = NADIR @ np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pitch), -np.sin(pitch)],
                                [0.0, np.sin(pitch), np.cos(pitch)]])
    scale, rotation, shift = ARBITRARY
    rec = _synthetic_model(scale * enu @ rotation.T + shift, [rotation @ pitched] * len(enu))
    result = georegister(rec, _manifest_for(enu, Origin(46.84, -91.99, 198.0, "altitude")))
    assert result.frame == "enu" and result.altitude_used, result.altitude_reason
    np.testing.assert_allclose(_centres(rec), enu, atol=1e-3)
    assert result.up is not None and set(result.up["candidates"]) == {"views", "plane"}


def _poor_gps_survey(seed: int, lines: int = 6, shots: int = 11, noise_m: float = 15.0, drift_m: float = 30.0
                     ) -> tuple[pycolmap.Reconstruction, list[dict], np.ndarray, np.ndarray]:
    """A lawnmower survey (66 photos over 90 x 100 m by default: the 75-photo demo's grid) whose camera GPS
    has `noise_m` of horizontal noise per axis and an altitude drifting by `drift_m`. Returns the model, the
    manifest, and the true and written positions (ENU around the first written fix)."""
    enu, headings = _lawnmower(lines=lines, shots=shots)
    rng = np.random.default_rng(seed)
    gps = enu.copy()
    gps[:, :2] += rng.normal(0.0, noise_m, (len(enu), 2))
    gps[:, 2] += np.linspace(0.0, drift_m, len(enu))
    true = enu - gps[0]
    gps = gps - gps[0]
    rec = _nadir_survey(true, ARBITRARY, headings)
    return rec, _manifest_for(gps, Origin(55.7, 13.2, 37.0, "altitude")), true, gps


def _gps_implied_scale(true: np.ndarray, written: np.ndarray) -> float:
    """The scale of the best 2D similarity from the true to the written positions (as sfm_survey_scale.py)."""
    from spaceport_dagster.demo.truth_check import umeyama

    flat = np.zeros((len(true), 1))
    return umeyama(np.hstack([true[:, :2], flat]), np.hstack([written[:, :2], flat]), with_scale=True)[0]


def test_fifteen_metre_gps_noise_gives_metric_scale_with_an_honest_uncertainty() -> None:
    """The issue's poor camera GPS (15 m per axis, drifting altitude) on the 75-photo demo's grid: the model
    is georegistered, its scale is the one the GPS implies, and the stated uncertainty covers the error."""
    rec, manifest, true, written = _poor_gps_survey(seed=3)
    result = georegister(rec, manifest)
    assert result.georegistered and result.frame == "enu_horizontal" and result.units == "metres"
    assert not result.altitude_used
    assert result.outliers == []  # the whole track agrees within its noise: nobody is an outlier
    error = result.scale / 7.5 - 1  # ARBITRARY maps ENU metres to model units at 1/7.5
    implied = _gps_implied_scale(true, written) - 1
    assert abs(implied) > 0.05  # this draw of the noise implies a large scale error (9 %): the case that matters
    assert abs(error - implied) < 1e-6, (error, implied)  # the fit gets what the GPS implies, no worse
    # the stated 1-sigma: noise over the track's extent, 15 / sqrt(66 * 1945 m^2) = 4.2 %; it covers the error
    assert result.scale_uncertainty == pytest.approx(0.042, rel=0.2)
    assert abs(error) < 3 * result.scale_uncertainty
    assert result.heading_uncertainty_deg == pytest.approx(np.degrees(result.scale_uncertainty), rel=1e-6)
    assert result.gps_noise_m == pytest.approx(15.0, rel=0.15)
    assert _view_up_error_deg(rec) < 0.01  # up from the cameras, not from the drifting altitude
    assert not any("warns" in w for w in result.warnings)  # 4 % is under the 5 % warning


def test_noisier_gps_on_a_small_track_is_georegistered_with_a_warning() -> None:
    rec, manifest, _, _ = _poor_gps_survey(seed=1, lines=3, shots=6)  # 18 photos over 36 x 50 m
    result = georegister(rec, manifest)
    assert result.georegistered and result.scale_uncertainty is not None
    assert 0.05 < result.scale_uncertainty < 0.2
    assert any(f"scale ±{100 * result.scale_uncertainty:.1f} %" in w and "above the 5 %" in w
               for w in result.warnings), result.warnings
    from spaceport_dagster.stages.sfm.stage import georegistration_check

    check = georegistration_check(result, 0.05)  # the UI's warning
    assert not check.passed and not check.blocking and "georegistered in metres: scale ±" in check.description


def test_gps_too_poor_for_the_track_leaves_an_upright_local_frame_in_model_units() -> None:
    rec, manifest, _, _ = _poor_gps_survey(seed=2, lines=2, shots=4, noise_m=30.0)  # 8 photos over 18 x 30 m
    result = georegister(rec, manifest)
    assert not result.georegistered and result.frame == "local_upright" and result.units == "model units"
    assert result.scale_uncertainty is not None and result.scale_uncertainty > 0.2  # reported all the same
    assert "more than the 20 % allowed" in result.reason
    assert any("model units" in w for w in result.warnings)
    assert _view_up_error_deg(rec) < 0.01


def test_a_noisy_track_keeps_its_fixes_and_loses_only_the_blunder() -> None:
    """40 fixes with 10 m of noise per axis (the issue's real 40-photo flight: 21 of 40 were called outliers)
    and one fix 150 m off."""
    rec, manifest, _, written = _poor_gps_survey(seed=4, lines=5, shots=8, noise_m=10.0)
    gps = written.copy()
    gps[22, :2] += [150.0, 0.0]
    result = georegister(rec, _manifest_for(gps, Origin(55.7, 13.2, 37.0, "altitude")))
    assert result.georegistered and "23.jpg" in result.outliers and len(result.outliers) <= 2
    assert result.inliers >= 38
    assert result.gps_noise_m == pytest.approx(10.0, rel=0.25)


@pytest.mark.parametrize("noise_m", [15.0, 30.0])
def test_the_ui_metadata_says_metres_or_model_units(tmp_path: Path, noise_m: float) -> None:
    """The sparse_reconstruction metadata the Dagster UI shows, from the SfM stage's report: a survey that is
    not georegistered says model units (key and headline); a georegistered one its uncertainty."""
    from spaceport_dagster.assets.headline import arrange
    from spaceport_dagster.stages.sfm.config import SfmConfig
    from spaceport_dagster.stages.sfm.reconstruct import EngineResult
    from spaceport_dagster.stages.sfm.stage import _report

    rec, manifest, _, _ = _poor_gps_survey(seed=2, lines=6 if noise_m == 15 else 2, shots=11 if noise_m == 15 else 4,
                                           noise_m=noise_m)
    geo = georegister(rec, manifest)
    report = _report(tmp_path, SfmConfig(), manifest, EngineResult([rec], {"mapping": 1.0}, "exhaustive", "test", 1),
                     rec, geo)
    m = report.metadata
    headline = arrange("sparse_reconstruction", m)["georegistration"].value
    saved = json.loads((tmp_path / "report.json").read_text())
    check = next(c for c in report.checks if c.name == "georegistration")
    assert not check.blocking and check.metadata["units"] == m["units"]
    if noise_m == 30.0:  # 8 photos over 18 x 30 m: not georegistered
        assert m["georegistered"] is False and m["units"] == "model units"
        assert headline == "none: model units, not metres (local frame)"
        assert not check.passed and "the model is in model units, not metres" in check.description
    else:
        assert check.passed and f"scale ±{m['georegistration_scale_uncertainty_pct']:.1f} %" in check.description
        assert m["georegistered"] is True and m["units"] == "metres"
        pct = m["georegistration_scale_uncertainty_pct"]
        assert pct == pytest.approx(100 * geo.scale_uncertainty, abs=1e-3) and 2.0 < pct < 6.0
        assert headline == (f"GPS, {m['georegistration_residual_m']:.2f} m residual, scale ±{pct:.1f} %, heading "
                            f"±{m['georegistration_heading_uncertainty_deg']:.1f}°")
    assert saved["georegistration"]["scale_uncertainty"] == pytest.approx(geo.scale_uncertainty)
