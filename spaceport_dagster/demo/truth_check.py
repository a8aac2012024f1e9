"""Compare a georegistered sparse reconstruction with the demo survey's true cameras."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .geodesy import geodetic_to_enu


@dataclass
class TruthComparison:
    registered: int
    total: int
    rms_m: float
    max_m: float
    altitude_m: float
    missing: list[str]

    @property
    def rms_fraction_of_altitude(self) -> float:
        return self.rms_m / self.altitude_m

    def summary(self) -> str:
        return (f"{self.registered}/{self.total} images registered; camera centres vs truth: RMS {self.rms_m:.3f} m "
                f"({100 * self.rms_fraction_of_altitude:.2f} % of the {self.altitude_m:.0f} m flight altitude), "
                f"max {self.max_m:.3f} m")


def true_centres(truth: dict[str, Any], origin: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """True camera centres in east-north-up metres around `origin` (lat, lon, height)."""
    return {r["name"]: geodetic_to_enu(r["latitude"], r["longitude"], r["altitude"], origin) for r in truth["images"]}


def compare_reconstruction(sparse_dir: Path, report: dict[str, Any], truth: dict[str, Any]) -> TruthComparison:
    """`sparse_dir`: COLMAP model in the SfM stage's ENU frame; `report`: its report.json (for the origin)."""
    import pycolmap

    geo = report.get("georegistration") or {}
    if not geo.get("georegistered"):
        raise ValueError(f"the reconstruction is not georegistered ({geo.get('reason', 'no georegistration')})")
    o = geo["origin"]
    truth_enu = true_centres(truth, (o["latitude"], o["longitude"], o["altitude"]))
    model = pycolmap.Reconstruction(str(sparse_dir))
    errors = []
    seen = set()
    for image_id in model.reg_image_ids():
        image = model.image(image_id)
        if image.name in truth_enu:
            seen.add(image.name)
            errors.append(float(np.linalg.norm(np.asarray(image.projection_center()) - truth_enu[image.name])))
    err = np.array(errors) if errors else np.array([np.inf])
    return TruthComparison(len(seen), len(truth_enu), float(np.sqrt(np.mean(err**2))), float(err.max()),
                           float(truth["altitude_m"]), sorted(set(truth_enu) - seen))


@dataclass
class FrameComparison:
    """How the published frame sits against the true one: the best similarity from model to truth."""

    up_error_deg: float  # angle between the model's +z and true up (from the camera orientations)
    scale_ratio: float  # model metres per true metre (1 = right scale)
    rigid_rms_m: float  # camera centres after the best rigid alignment (rotation + translation, no scale)
    altitude_m: float

    def summary(self) -> str:
        return (f"published frame: up {self.up_error_deg:.2f} deg from true up, scale {100 * (self.scale_ratio - 1):+.2f} %, "
                f"centres {self.rigid_rms_m:.3f} m RMS after the best rigid alignment "
                f"({100 * self.rigid_rms_m / self.altitude_m:.2f} % of the flight height)")


def umeyama(src: np.ndarray, tgt: np.ndarray, with_scale: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) minimising |scale * R src + t - tgt| (Umeyama 1991)."""
    mu_s, mu_t = src.mean(axis=0), tgt.mean(axis=0)
    s0, t0 = src - mu_s, tgt - mu_t
    u, d, vt = np.linalg.svd(t0.T @ s0 / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / np.mean(np.sum(s0**2, axis=1))) if with_scale else 1.0
    return scale, rotation, mu_t - scale * rotation @ mu_s


def compare_frame(sparse_dir: Path, report: dict[str, Any], truth: dict[str, Any]) -> FrameComparison:
    """Up, scale and shape of the published model against the true cameras (needs an ENU origin)."""
    import pycolmap

    o = (report.get("georegistration") or {}).get("origin")
    if not o:
        raise ValueError("the reconstruction has no ENU origin (no GPS)")
    truth_enu = true_centres(truth, (o["latitude"], o["longitude"], o["altitude"]))
    model = pycolmap.Reconstruction(str(sparse_dir))
    images = [model.image(i) for i in model.reg_image_ids() if model.image(i).name in truth_enu]
    if len(images) < 3:
        raise ValueError(f"{len(images)} registered images to compare (need 3)")
    src = np.array([img.projection_center() for img in images])
    tgt = np.array([truth_enu[img.name] for img in images])
    scale, _, _ = umeyama(src, tgt, with_scale=True)
    # the rotation from the model frame to the true one, averaged over the cameras (true world_from_camera times
    # model camera_from_world): well defined even for a single flight line, where the centres leave the roll
    # about the line open
    records = {r["name"]: r for r in truth["images"]}
    summed = sum(np.array(records[img.name]["cam_from_world_rotation"]).T @ img.cam_from_world().rotation.matrix()
                 for img in images)
    u, _, vt = np.linalg.svd(summed)
    true_from_model = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    up_error = float(np.degrees(np.arccos(np.clip((true_from_model @ np.array([0.0, 0.0, 1.0]))[2], -1.0, 1.0))))
    _, rigid_r, rigid_t = umeyama(src, tgt, with_scale=False)
    rigid = src @ rigid_r.T + rigid_t
    return FrameComparison(up_error, 1.0 / scale, float(np.sqrt(np.mean(np.sum((rigid - tgt) ** 2, axis=1)))),
                           float(truth["altitude_m"]))


def compare_artifact(sparse_artifact: Path, truth_path: Path) -> TruthComparison:
    """Compare a published sparse_reconstruction folder (`sparse/` + `report.json`) with `truth.json`."""
    report = json.loads((sparse_artifact / "report.json").read_text())
    return compare_reconstruction(sparse_artifact / "sparse", report, json.loads(truth_path.read_text()))
