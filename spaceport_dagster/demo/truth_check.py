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


def compare_artifact(sparse_artifact: Path, truth_path: Path) -> TruthComparison:
    """Compare a published sparse_reconstruction folder (`sparse/` + `report.json`) with `truth.json`."""
    report = json.loads((sparse_artifact / "report.json").read_text())
    return compare_reconstruction(sparse_artifact / "sparse", report, json.loads(truth_path.read_text()))
