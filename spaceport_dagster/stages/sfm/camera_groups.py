"""Camera grouping and focal prior from the image_set manifest's EXIF facts.

Images with the same camera key (make + model), decoded size and 35 mm-equivalent focal length share one
COLMAP camera: one set of intrinsics refined from every view. Images of an unknown camera with no focal
length stay on their own cameras, since nothing says they share a lens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FILM_WIDTH_MM = 36.0  # 35 mm film is 36 x 24 mm; the equivalent focal length refers to its long side
UNKNOWN_CAMERA = "unknown camera"


@dataclass
class CameraGroup:
    camera: str
    width: int
    height: int
    focal_length_35mm: float | None
    images: list[str] = field(default_factory=list)

    @property
    def focal_prior_px(self) -> float | None:
        return focal_prior_px(self.focal_length_35mm, self.width, self.height)

    @property
    def shared(self) -> bool:
        """Whether the group's images may share intrinsics."""
        return self.camera != UNKNOWN_CAMERA or self.focal_length_35mm is not None


def focal_prior_px(focal_length_35mm: float | None, width: int, height: int) -> float | None:
    """Focal length in pixels of a `width` x `height` image from its 35 mm-equivalent focal length."""
    if not focal_length_35mm or focal_length_35mm <= 0:
        return None
    return float(focal_length_35mm) / FILM_WIDTH_MM * max(width, height)


def group_cameras(manifest_images: list[dict[str, Any]]) -> list[CameraGroup]:
    """Camera groups in first-seen (manifest) order; every image is in exactly one group."""
    groups: dict[tuple[Any, ...], CameraGroup] = {}
    for record in manifest_images:
        camera = record.get("camera") or UNKNOWN_CAMERA
        f35 = record.get("focal_length_35mm")
        key = (camera, int(record["width"]), int(record["height"]), f35)
        if key not in groups:
            groups[key] = CameraGroup(camera, int(record["width"]), int(record["height"]), f35)
        groups[key].images.append(record["name"])
    return list(groups.values())


# model -> (number of focal parameters, number of distortion parameters)
MODEL_LAYOUT = {"SIMPLE_PINHOLE": (1, 0), "SIMPLE_RADIAL": (1, 1), "RADIAL": (1, 2), "PINHOLE": (2, 0),
                "OPENCV": (2, 4)}


def camera_params(model: str, group: CameraGroup) -> str:
    """COLMAP parameter string with the focal prior, principal point at the centre, zero distortion."""
    if model not in MODEL_LAYOUT:
        raise ValueError(f"camera model {model!r} is not supported; use one of {', '.join(MODEL_LAYOUT)}")
    f = group.focal_prior_px
    if f is None:
        return ""
    n_focal, n_extra = MODEL_LAYOUT[model]
    values = [f] * n_focal + [group.width / 2.0, group.height / 2.0] + [0.0] * n_extra
    return ",".join(f"{v:.6f}" for v in values)
