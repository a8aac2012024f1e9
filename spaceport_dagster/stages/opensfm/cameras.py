"""OpenSfM camera models -> COLMAP camera models, and OpenSfM image coordinates -> COLMAP pixels.

OpenSfM (opensfm/src/geometry/camera_functions.h) projects a camera-frame point in three steps:
projection (perspective x/z, or fisheye: theta = atan2(r, z), point scaled by theta / r), distortion in
that projected plane, then an affine map (focal, aspect ratio, principal point) into *normalised image
coordinates*: origin at the image centre, the larger image side has length 1. COLMAP's models apply the
same projection and distortion in the same plane, then scale to pixels. So the distortion coefficients
carry over unchanged and only the affine part is converted:

    focal_px = focal * max(w, h)          c_px = (w / 2 + c_x * max(w, h), h / 2 + c_y * max(w, h))

Pixel convention: OpenSfM's own pixel frame (OpenCV's) puts the centre of the top-left pixel at (0, 0), so
normalised (0, 0) is pixel ((w - 1) / 2, (h - 1) / 2) there; COLMAP puts that centre at (0.5, 0.5), so the
image centre is (w / 2, h / 2). Converting normalised coordinates straight to COLMAP pixels with w / 2 is
exact; going through OpenSfM's `denormalized_image_coordinates` (as its `export_colmap` does) and pairing
it with a w / 2 principal point shifts every keypoint by half a pixel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


class UnsupportedCameraModel(ValueError):
    """An OpenSfM camera model that no COLMAP model reproduces exactly."""


@dataclass(frozen=True)
class ColmapCamera:
    model: str  # COLMAP model name, e.g. "RADIAL"
    width: int
    height: int
    params: tuple[float, ...]

    def to_pycolmap(self, camera_id: int) -> Any:
        import pycolmap

        camera = pycolmap.Camera.create_from_model_name(camera_id, self.model, 1.0, self.width, self.height)
        camera.params = list(self.params)
        return camera


def _get(camera: Mapping[str, Any], key: str, default: float | None = None) -> float:
    if key in camera:
        return float(camera[key])
    if default is None:
        raise UnsupportedCameraModel(f"OpenSfM {camera.get('projection_type')} camera lacks {key!r}")
    return default


def _affine(camera: Mapping[str, Any], width: int, height: int) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy in COLMAP pixels for the models with focal_x / focal_y / c_x / c_y."""
    size = max(width, height)
    fx = _get(camera, "focal_x") * size
    fy = _get(camera, "focal_y") * size
    cx = width / 2 + _get(camera, "c_x", 0.0) * size
    cy = height / 2 + _get(camera, "c_y", 0.0) * size
    return fx, fy, cx, cy


def _all_zero(camera: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    return all(float(camera.get(k, 0.0)) == 0.0 for k in keys)


def colmap_camera(camera: Mapping[str, Any], width: int, height: int) -> ColmapCamera:
    """The COLMAP camera that projects exactly like OpenSfM `camera` (its JSON form) on a `width` x `height` image.

    `width` and `height` are the decoded image size; OpenSfM's normalised parameters are resolution free.
    """
    kind = camera.get("projection_type")
    size = max(width, height)
    k = lambda name: _get(camera, name, 0.0)  # noqa: E731 - distortion terms default to 0 as in OpenSfM

    if kind in ("perspective", "fisheye"):
        f = _get(camera, "focal") * size
        cx, cy = width / 2, height / 2
        if kind == "perspective":
            if k("k2") == 0.0:
                return ColmapCamera("SIMPLE_RADIAL", width, height, (f, cx, cy, k("k1")))
            return ColmapCamera("RADIAL", width, height, (f, cx, cy, k("k1"), k("k2")))
        if k("k2") == 0.0:
            return ColmapCamera("SIMPLE_RADIAL_FISHEYE", width, height, (f, cx, cy, k("k1")))
        return ColmapCamera("RADIAL_FISHEYE", width, height, (f, cx, cy, k("k1"), k("k2")))

    if kind == "brown":
        fx, fy, cx, cy = _affine(camera, width, height)
        base = (fx, fy, cx, cy, k("k1"), k("k2"), k("p1"), k("p2"))
        if k("k3") == 0.0:
            return ColmapCamera("OPENCV", width, height, base)
        return ColmapCamera("FULL_OPENCV", width, height, (*base, k("k3"), 0.0, 0.0, 0.0))

    if kind in ("radial", "simple_radial"):
        fx, fy, cx, cy = _affine(camera, width, height)
        k2 = k("k2") if kind == "radial" else 0.0
        if fx == fy:
            if k2 == 0.0:
                return ColmapCamera("SIMPLE_RADIAL", width, height, (fx, cx, cy, k("k1")))
            return ColmapCamera("RADIAL", width, height, (fx, cx, cy, k("k1"), k2))
        return ColmapCamera("OPENCV", width, height, (fx, fy, cx, cy, k("k1"), k2, 0.0, 0.0))

    if kind == "fisheye_opencv":
        fx, fy, cx, cy = _affine(camera, width, height)
        return ColmapCamera("OPENCV_FISHEYE", width, height, (fx, fy, cx, cy, k("k1"), k("k2"), k("k3"), k("k4")))

    if kind in ("fisheye62", "fisheye624"):
        # COLMAP's RAD_TAN_THIN_PRISM_FISHEYE has the same radial polynomial in theta, but applies its tangential
        # and thin-prism terms to the radially distorted point, OpenSfM to the undistorted one: equal only when
        # those terms are zero.
        extra = ("p1", "p2") + (("s0", "s1", "s2", "s3") if kind == "fisheye624" else ())
        if not _all_zero(camera, extra):
            raise UnsupportedCameraModel(
                f"OpenSfM {kind} camera with non-zero {'/'.join(extra)}: COLMAP's RAD_TAN_THIN_PRISM_FISHEYE applies "
                "those terms after the radial distortion, OpenSfM before it, so no COLMAP model matches; "
                "reconstruct with projection type fisheye_opencv or brown instead"
            )
        fx, fy, cx, cy = _affine(camera, width, height)
        radial = tuple(k(f"k{i}") for i in range(1, 7))
        return ColmapCamera("RAD_TAN_THIN_PRISM_FISHEYE", width, height, (fx, fy, cx, cy, *radial, *(0.0,) * 6))

    raise UnsupportedCameraModel(
        f"OpenSfM projection type {kind!r} has no COLMAP equivalent usable for Gaussian splatting "
        "(supported: perspective, brown, radial, simple_radial, fisheye, fisheye_opencv, "
        "fisheye62/fisheye624 without tangential terms)"
    )


def normalized_to_pixels(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenSfM normalised image coordinates (N, 2) -> COLMAP pixel coordinates (top-left pixel centre (0.5, 0.5))."""
    size = max(width, height)
    return np.asarray(xy, np.float64) * size + np.array([width / 2, height / 2])


def pixels_to_normalized(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Inverse of `normalized_to_pixels`."""
    size = max(width, height)
    return (np.asarray(xy, np.float64) - np.array([width / 2, height / 2])) / size
