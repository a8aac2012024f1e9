"""ECEF/ENU conversion against known values, and sim3 georegistration of a synthetic model."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from spaceport_dagster.stages.sfm.georegister import (
    Origin,
    altitude_source,
    georegister,
    gps_positions,
    lla_to_ecef,
    lla_to_enu,
)


def test_ecef_known_points() -> None:
    ecef = lla_to_ecef(np.array([0.0, 90.0, 0.0]), np.array([0.0, 0.0, 90.0]), np.array([0.0, 0.0, 100.0]))
    np.testing.assert_allclose(ecef[0], [6378137.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(ecef[1], [0.0, 0.0, 6356752.314245], atol=1e-5)  # WGS84 semi-minor axis
    np.testing.assert_allclose(ecef[2], [0.0, 6378237.0, 0.0], atol=1e-6)


def test_ecef_matches_colmap() -> None:
    lla = np.array([[46.8426071, -91.9945599, 198.31], [55.6981667, 13.1953889, 37.0], [-33.86, 151.21, 5.0]])
    reference = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84).ellipsoid_to_ecef(lla)
    np.testing.assert_allclose(lla_to_ecef(lla[:, 0], lla[:, 1], lla[:, 2]), reference, atol=1e-4)


def test_enu_axes_and_lengths() -> None:
    origin = Origin(0.0, 0.0, 0.0, "altitude")
    enu = lla_to_enu([0.001, 0.0, 0.0], [0.0, 0.001, 0.0], [0.0, 0.0, 10.0], origin)
    # one thousandth of a degree along the equator / the meridian at the equator, and 10 m straight up
    np.testing.assert_allclose(enu[0], [0.0, 110.574, 0.0], atol=0.01)
    np.testing.assert_allclose(enu[1], [111.319, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(enu[2], [0.0, 0.0, 10.0], atol=1e-6)


def test_enu_matches_colmap_at_brighton() -> None:
    origin = Origin(46.8426071, -91.9945599, 198.31, "altitude")
    lla = np.array([[46.8430381, -91.9939231, 198.51], [46.8422816, -91.9940842, 198.61]])
    ours = lla_to_enu(lla[:, 0], lla[:, 1], lla[:, 2], origin)
    ref = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84).ellipsoid_to_enu(
        lla, origin.latitude, origin.longitude, origin.altitude)
    np.testing.assert_allclose(ours, ref, atol=1e-3)
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


def _synthetic_model(centres: np.ndarray) -> pycolmap.Reconstruction:
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera.create_from_model_name(1, "PINHOLE", 100.0, 100, 100))
    for i, centre in enumerate(centres, start=1):
        image = pycolmap.Image(name=f"{i:02d}.jpg", camera_id=1, image_id=i)
        rotation = pycolmap.Rotation3d(np.array([0.1 * i, -0.05 * i, 0.02 * i]))
        cam_from_world = pycolmap.Rigid3d(rotation, -(rotation.matrix() @ centre))
        rec.add_image_with_trivial_frame(image, cam_from_world)
    return rec


def _manifest_for(enu: np.ndarray, origin: Origin) -> list[dict]:
    """Manifest records whose GPS fixes sit exactly at the given ENU positions (found by inverting ECEF)."""
    gt = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84)
    lla = gt.enu_to_ellipsoid(enu, origin.latitude, origin.longitude, origin.altitude)
    return [{"name": f"{i:02d}.jpg", "gps": {"latitude": a, "longitude": b, "altitude": c, "relative_altitude": None}}
            for i, (a, b, c) in enumerate(lla, start=1)]


def test_georegister_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(0)
    enu = np.column_stack([rng.uniform(-60, 60, 8), rng.uniform(-40, 40, 8), rng.uniform(35, 45, 8)])
    enu -= enu[0]  # the first fix is the origin
    rotation = pycolmap.Rotation3d(np.array([0.3, -0.2, 1.1])).matrix()
    model_centres = (enu @ rotation.T) / 7.5 + np.array([3.0, -1.0, 2.0])  # arbitrary SfM frame and scale
    rec = _synthetic_model(model_centres)
    manifest = _manifest_for(enu, Origin(46.84, -91.99, 198.0, "altitude"))
    result = georegister(rec, manifest)
    assert result.georegistered
    assert result.images_with_gps == 8 and result.inliers == 8
    assert result.residual_rms_m is not None and result.residual_rms_m < 1e-3
    assert result.scale == pytest.approx(7.5, rel=1e-4)
    aligned = np.array([rec.image(i).projection_center() for i in sorted(rec.reg_image_ids())])
    np.testing.assert_allclose(aligned, enu, atol=1e-3)


def test_georegister_reports_an_outlier_in_the_residual() -> None:
    rng = np.random.default_rng(1)
    enu = np.column_stack([rng.uniform(-60, 60, 10), rng.uniform(-40, 40, 10), rng.uniform(-3, 3, 10)])
    enu -= enu[0]
    rec = _synthetic_model(enu * 0.2)
    gps = enu.copy()
    gps[4] += [40.0, 0.0, 0.0]  # one fix 40 m off
    result = georegister(rec, _manifest_for(gps, Origin(55.7, 13.2, 37.0, "altitude")), max_error_m=5.0)
    assert result.georegistered and result.inliers == 9
    assert result.residual_max_m == pytest.approx(40.0, abs=0.1)
    assert result.residual_rms_m == pytest.approx(40.0 / np.sqrt(10), abs=0.1)


def test_georegister_needs_three_gps_images() -> None:
    rec = _synthetic_model(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float))
    manifest = _manifest_for(np.array([[0, 0, 0], [5, 0, 0]], float), Origin(10.0, 10.0, 0.0, "altitude"))
    result = georegister(rec, manifest)
    assert not result.georegistered
    assert "2 registered image(s) carry GPS (need 3)" in result.reason
