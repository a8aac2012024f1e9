"""Up from the cameras alone, and the `upright` gate, on camera layouts with a known up."""

from __future__ import annotations

import numpy as np
import pytest

from spaceport_dagster.stages.sfm.gravity import CameraAxes, angle_deg, estimate_up, measure_uprightness
from spaceport_dagster.stages.sfm.upright import upright_check

UP = np.array([0.0, 0.0, 1.0])


def _rx(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def _rz(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


NADIR = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]).T  # world_from_camera, top north


def _axes(world_from_cams: list[np.ndarray], centres: np.ndarray, frame: np.ndarray | None = None) -> CameraAxes:
    """CameraAxes of cameras given in ENU, seen in a frame rotated by `frame` (frame @ ENU)."""
    frame = np.eye(3) if frame is None else frame
    rotations = np.array([(frame @ r).T for r in world_from_cams])  # cam_from_world rows = camera axes
    return CameraAxes(rotations[:, 0], rotations[:, 1], rotations[:, 2], centres @ frame.T)


def _lawnmower(tilt_jitter: float = 0.0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    rotations, centres = [], []
    for line in range(4):
        for shot in range(6):
            heading = 0.0 if line % 2 == 0 else 180.0
            jitter = rng.uniform(-tilt_jitter, tilt_jitter, 2)
            rotations.append(_rz(-heading) @ NADIR @ _rx(jitter[0]) @ _rz(jitter[1]))
            centres.append([18.0 * line, 10.0 * shot, 40.0])
    return rotations, np.array(centres)


def test_nadir_lawnmower_up_in_any_frame() -> None:
    rotations, centres = _lawnmower(tilt_jitter=1.5)
    frame = _rz(40.0) @ _rx(39.0)  # the tilt the survey was published with
    estimate = estimate_up(_axes(rotations, centres, frame))
    assert estimate.nadir and estimate.flight == "area" and "camera plane" in estimate.source
    assert angle_deg(estimate.up, frame @ UP) < 0.5


def test_forward_looking_street_capture_is_not_nadir() -> None:
    """A car camera looking along a straight street: views cluster, but the track runs along them."""
    rng = np.random.default_rng(1)
    level_forward = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # columns: x east, y down, z north
    rotations = [_rz(h) @ level_forward for h in rng.uniform(-8, 8, 15)]
    centres = np.column_stack([rng.normal(0, 0.3, 15), 5.0 * np.arange(15), np.full(15, 1.5)])
    frame = _rx(25.0)
    estimate = estimate_up(_axes(rotations, centres, frame))
    assert not estimate.nadir and estimate.up is not None
    assert angle_deg(estimate.up, frame @ UP) < 1.0


def test_orbit_of_oblique_level_cameras() -> None:
    rotations, centres = [], []
    for bearing in range(0, 360, 30):
        heading = (bearing + 180) % 360  # looking at the centre
        rotations.append(_rz(-heading) @ NADIR @ _rx(50.0))  # 50 deg off nadir
        b = np.radians(bearing)
        centres.append([30 * np.sin(b), 30 * np.cos(b), 25.0])
    estimate = estimate_up(_axes(rotations, np.array(centres), _rx(-70.0)))
    assert angle_deg(estimate.up, _rx(-70.0) @ UP) < 1.0


def test_cameras_pointing_every_way_fix_no_up() -> None:
    rng = np.random.default_rng(2)
    import pycolmap

    rotations = [pycolmap.Rotation3d(v).matrix() for v in rng.uniform(-np.pi, np.pi, (20, 3))]
    estimate = estimate_up(_axes(rotations, rng.uniform(-10, 10, (20, 3))))
    assert estimate.up is None and not estimate.nadir
    check = upright_check(measure_uprightness(_axes(rotations, rng.uniform(-10, 10, (20, 3)))), 5.0)
    assert not check.passed and not check.blocking  # unmeasured never passes; it warns instead of blocking
    assert check.metadata["measured"] is False and "not measured" in check.description


@pytest.mark.parametrize(("tilt", "passes"), [(0.0, True), (3.0, True), (7.0, False), (39.0, False)])
def test_upright_gate_on_a_tilted_nadir_survey(tilt: float, passes: bool) -> None:
    rotations, centres = _lawnmower()
    u = measure_uprightness(_axes(rotations, centres, _rx(tilt)))
    assert u.nadir and u.median_view_from_down_deg == pytest.approx(tilt, abs=0.01)
    assert u.camera_plane_tilt_deg == pytest.approx(tilt, abs=0.01)
    check = upright_check(u, 5.0)
    assert check.passed is passes and check.blocking
    assert f"median view direction {tilt:.1f} deg from straight down" in check.description


def _climbing_survey(climb_deg: float) -> tuple[list[np.ndarray], np.ndarray]:
    """A nadir lawnmower whose flight climbs `climb_deg` to the north (the cameras still look straight down):
    the viewing direction and the camera plane disagree by that much."""
    rotations, centres = _lawnmower(tilt_jitter=0.5)
    centres = centres.copy()
    centres[:, 2] += np.tan(np.radians(climb_deg)) * centres[:, 1]
    return rotations, centres


@pytest.mark.parametrize("climb", [9.5, 10.0, 10.5, 12.0])
def test_without_gps_views_and_plane_that_disagree_warn_and_never_block(climb: float) -> None:
    """Issue 27: photos without GPS were refused in 2 of 4 runs ("median view direction 0.3 deg from straight
    down, camera plane tilted 10.5 deg"): with up from the cameras alone, a disagreement near 10 deg put the frame
    on the views in one run and between views and plane in the next. Whatever SfM's noise, the gate now warns."""
    from spaceport_dagster.stages.sfm.georegister import rotation_to_z

    rotations, centres = _climbing_survey(climb)
    model_frame = _rz(70.0) @ _rx(-33.0)  # SfM's arbitrary frame
    estimate = estimate_up(_axes(rotations, centres, model_frame))
    assert estimate.nadir and estimate.views_vs_plane_deg == pytest.approx(climb, abs=0.5)
    published = rotation_to_z(estimate.up) @ model_frame  # what level_local_frame publishes
    u = measure_uprightness(_axes(rotations, centres, published))
    assert u.estimated_up_tilt_deg < 0.01
    check = upright_check(u, 5.0, gps_up=False)
    assert check.metadata["measured"] is True
    if not check.passed:  # a disagreement past the limit: a warning that names both angles, never a refusal
        assert not check.blocking and "camera plane tilted" in check.description
        assert "no GPS altitude to tell which of the two is level" in check.description
        assert check.description.endswith("A warning: the survey is not refused")
    # the same cameras in a GPS frame (up from the GPS altitudes): the climbing plane is measured and blocks
    gps = upright_check(measure_uprightness(_axes(rotations, centres)), 5.0, gps_up=True)
    assert not gps.passed and gps.blocking and f"camera plane tilted {climb:.1f} deg" in gps.description


def test_without_gps_a_frame_that_does_not_follow_the_cameras_still_blocks() -> None:
    rotations, centres = _climbing_survey(10.5)
    u = measure_uprightness(_axes(rotations, centres, _rx(30.0)))  # the frame was never levelled
    check = upright_check(u, 5.0, gps_up=False)
    assert not check.passed and check.blocking and "from the cameras' own up" in check.description
