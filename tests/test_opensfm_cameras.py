"""Each OpenSfM camera model converted to COLMAP projects every point to the same pixel (1e-6 px).

OpenSfM's projection is written out here from its source (opensfm/src/geometry/camera_functions.h: projection,
then distortion, then UniformScale or Affine, into normalised coordinates) and its documented pixel frame
(doc/source/geometry.rst: pixel = normalised * max(w, h) + (w - 1) / 2, top-left pixel centre at 0), moved to
COLMAP's frame (top-left pixel centre at 0.5). The COLMAP side is pycolmap's own camera model.
"""

from __future__ import annotations

import numpy as np
import pytest

from spaceport_dagster.stages.opensfm.cameras import (
    UnsupportedCameraModel,
    colmap_camera,
    normalized_to_pixels,
    pixels_to_normalized,
)

TOL_PX = 1e-6


def _fisheye(p: np.ndarray) -> np.ndarray:
    r = np.linalg.norm(p[:, :2], axis=1)
    theta = np.arctan2(r, p[:, 2])
    return p[:, :2] * (theta / r)[:, None]


def _perspective(p: np.ndarray) -> np.ndarray:
    return p[:, :2] / p[:, 2:3]


def _radial(q: np.ndarray, ks: list[float]) -> np.ndarray:
    r2 = (q**2).sum(axis=1)
    return q * (1 + sum(k * r2 ** (i + 1) for i, k in enumerate(ks)))[:, None]


def _tangential(q: np.ndarray, p1: float, p2: float) -> np.ndarray:
    x, y = q[:, 0], q[:, 1]
    r2 = x * x + y * y
    return np.stack([2 * p1 * x * y + p2 * (r2 + 2 * x * x), 2 * p2 * x * y + p1 * (r2 + 2 * y * y)], axis=1)


def opensfm_project(cam: dict, points: np.ndarray) -> np.ndarray:
    """OpenSfM's Camera::Project, in normalised image coordinates."""
    kind = cam["projection_type"]
    g = lambda k: cam.get(k, 0.0)  # noqa: E731
    if kind == "perspective":
        return cam["focal"] * _radial(_perspective(points), [g("k1"), g("k2")])
    if kind == "fisheye":
        return cam["focal"] * _radial(_fisheye(points), [g("k1"), g("k2")])
    if kind == "brown":
        q = _perspective(points)
        d = _radial(q, [g("k1"), g("k2"), g("k3")]) + _tangential(q, g("p1"), g("p2"))
    elif kind == "radial":
        d = _radial(_perspective(points), [g("k1"), g("k2")])
    elif kind == "simple_radial":
        d = _radial(_perspective(points), [g("k1")])
    elif kind == "fisheye_opencv":
        d = _radial(_fisheye(points), [g(f"k{i}") for i in range(1, 5)])
    elif kind == "fisheye62":
        q = _fisheye(points)
        d = _radial(q, [g(f"k{i}") for i in range(1, 7)]) + _tangential(q, g("p1"), g("p2"))
    else:
        raise AssertionError(kind)
    # Affine: focal * x + c_x, focal * aspect_ratio * y + c_y, with focal_y = focal * aspect_ratio in the JSON.
    return d * np.array([cam["focal_x"], cam["focal_y"]]) + np.array([g("c_x"), g("c_y")])


def opensfm_to_colmap_pixels(n: np.ndarray, width: int, height: int) -> np.ndarray:
    size = max(width, height)
    opencv_px = n * size + np.array([(width - 1) / 2, (height - 1) / 2])
    return opencv_px + 0.5


def _points(max_angle_deg: float, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(7)
    angle = np.radians(rng.uniform(0, max_angle_deg, n))
    azimuth = rng.uniform(0, 2 * np.pi, n)
    depth = rng.uniform(0.5, 50, n)
    direction = np.stack([np.sin(angle) * np.cos(azimuth), np.sin(angle) * np.sin(azimuth), np.cos(angle)], axis=1)
    return direction * depth[:, None]


BROWN = {"projection_type": "brown", "focal_x": 0.85, "focal_y": 0.851, "c_x": 0.004, "c_y": -0.003,
         "k1": -0.11, "k2": 0.09, "k3": -0.02, "p1": 0.0012, "p2": -0.0007}
CASES = [
    ("perspective", {"projection_type": "perspective", "focal": 0.593, "k1": -0.0121, "k2": 0.0162}, "RADIAL", 35),
    ("perspective k2=0", {"projection_type": "perspective", "focal": 0.97, "k1": 0.0018, "k2": 0.0}, "SIMPLE_RADIAL", 30),
    ("brown", BROWN, "FULL_OPENCV", 35),
    ("brown k3=0", {**BROWN, "k3": 0.0}, "OPENCV", 35),
    ("radial", {"projection_type": "radial", "focal_x": 0.7, "focal_y": 0.7, "c_x": 0.01, "c_y": 0.002,
                "k1": -0.05, "k2": 0.01}, "RADIAL", 35),
    ("radial aspect", {"projection_type": "radial", "focal_x": 0.7, "focal_y": 0.72, "c_x": 0.01, "c_y": 0.002,
                       "k1": -0.05, "k2": 0.01}, "OPENCV", 35),
    ("simple_radial", {"projection_type": "simple_radial", "focal_x": 0.8, "focal_y": 0.8, "c_x": -0.01,
                       "c_y": 0.0, "k1": -0.04}, "SIMPLE_RADIAL", 35),
    ("simple_radial aspect", {"projection_type": "simple_radial", "focal_x": 0.8, "focal_y": 0.79, "c_x": -0.01,
                              "c_y": 0.0, "k1": -0.04}, "OPENCV", 35),
    ("fisheye", {"projection_type": "fisheye", "focal": 0.35, "k1": -0.03, "k2": 0.004}, "RADIAL_FISHEYE", 85),
    ("fisheye k2=0", {"projection_type": "fisheye", "focal": 0.35, "k1": -0.03, "k2": 0.0}, "SIMPLE_RADIAL_FISHEYE", 85),
    ("fisheye_opencv", {"projection_type": "fisheye_opencv", "focal_x": 0.32, "focal_y": 0.321, "c_x": 0.002,
                        "c_y": -0.001, "k1": 0.02, "k2": -0.01, "k3": 0.003, "k4": -0.0005}, "OPENCV_FISHEYE", 85),
    ("fisheye62 radial only", {"projection_type": "fisheye62", "focal_x": 0.32, "focal_y": 0.321, "c_x": 0.002,
                               "c_y": -0.001, "k1": 0.02, "k2": -0.01, "k3": 0.003, "k4": -0.0005, "k5": 1e-4,
                               "k6": -2e-5, "p1": 0.0, "p2": 0.0}, "RAD_TAN_THIN_PRISM_FISHEYE", 85),
]


@pytest.mark.parametrize("size", [(1600, 900), (768, 1024)], ids=["landscape", "portrait"])
@pytest.mark.parametrize(("label", "cam", "model", "max_angle"), CASES, ids=[c[0] for c in CASES])
def test_projection_round_trip(label: str, cam: dict, model: str, max_angle: float, size: tuple[int, int]) -> None:
    width, height = size
    converted = colmap_camera(cam, width, height)
    assert converted.model == model
    camera = converted.to_pycolmap(1)
    assert camera.model.name == model and (camera.width, camera.height) == size
    points = _points(max_angle)
    expected = opensfm_to_colmap_pixels(opensfm_project(cam, points), width, height)
    got = camera.img_from_cam(points)
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() < TOL_PX


def test_focal_is_scaled_by_the_long_side() -> None:
    cam = colmap_camera({"projection_type": "perspective", "focal": 0.5, "k1": 0.0, "k2": 0.0}, 768, 1024)
    assert cam.params[:3] == (512.0, 384.0, 512.0)


def test_normalized_pixel_round_trip_and_centre() -> None:
    xy = np.array([[0.0, 0.0], [-0.5, -0.28125], [0.5, 0.28125]])
    px = normalized_to_pixels(xy, 1600, 900)
    # image centre, and the outer corners of the corner pixels (COLMAP: pixel centres at k + 0.5)
    assert np.allclose(px, [[800, 450], [0, 0], [1600, 900]])
    assert np.allclose(pixels_to_normalized(px, 1600, 900), xy)


@pytest.mark.parametrize(
    "cam",
    [
        {"projection_type": "fisheye62", "focal_x": 0.3, "focal_y": 0.3, "k1": 0.01, "p1": 0.001, "p2": 0.0},
        {"projection_type": "spherical"},
        {"projection_type": "equirectangular"},
        {"projection_type": "dual", "focal": 0.5, "transition": 0.5},
    ],
    ids=["fisheye62 tangential", "spherical", "equirectangular", "dual"],
)
def test_models_without_an_exact_colmap_equivalent_are_refused(cam: dict) -> None:
    with pytest.raises(UnsupportedCameraModel, match=cam["projection_type"]):
        colmap_camera(cam, 1600, 900)
