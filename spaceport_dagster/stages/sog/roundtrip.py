"""Per-attribute round-trip error of a decoded bundle against its source, and the bounds the format allows.

Bounds (all derived from the encoding, none tuned on data):
- position, per axis: the 16-bit log-domain code truncates by less than one step s = (lmax - lmin)/65535,
  and invLogT's slope is at most exp(max(|lmin|, |lmax|)), so |dx| < s * exp(max |l|) (+ float32 rounding).
- rotation: each stored component is truncated by less than sqrt(2)/255; with the largest component
  >= 1/2 that moves the unit quaternion by at most 0.0196, a rotation of at most 2.24 degrees.
- log-scale and f_dc: nearest-entry quantisation errs by at most half the widest codebook gap, or by the
  overhang of the data beyond the codebook's ends.
- opacity (linear): floor(255 * sigmoid) loses less than 1/255.
- shN has no per-value bound (a palette); its RMS error must stay below the RMS of the coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud

from .codebook import spacing_bound
from .format import inv_log_transform, sigmoid

F32_EPS = float(np.finfo(np.float32).eps)
QUAT_STEP = math.sqrt(2.0) / 255.0


def rotation_bound_deg() -> float:
    """Largest rotation the smallest-three encoding can cause (a worst case; measured maxima sit near 2 degrees).

    The three stored components a each lose e_i in [0, QUAT_STEP), |e| < sqrt(3) * QUAT_STEP. The dropped one,
    d = sqrt(1 - |a|^2) >= 1/2 (it is the largest), moves by ||a'|^2 - |a|^2| / (d + d') with
    ||a'|^2 - |a|^2| <= 2|a||e| + |e|^2, |a| <= sqrt(3)/2, and d' >= sqrt(1/4 - sqrt(3)|e| - |e|^2).
    Two unit quaternions a chord c apart differ by a rotation of 4 asin(c / 2).
    """
    e = math.sqrt(3.0) * QUAT_STEP
    growth = math.sqrt(3.0) * e + e * e
    dropped = growth / (0.5 + math.sqrt(0.25 - growth))
    chord = math.hypot(e, dropped)
    return math.degrees(4.0 * math.asin(chord / 2.0))


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle (degrees) between quaternions a and b (rows, w x y z, any norm)."""
    a = a.astype(np.float64) / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-30)
    b = b.astype(np.float64) / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-30)
    dot = np.abs((a * b).sum(axis=1)).clip(0.0, 1.0)
    return np.degrees(2.0 * np.arccos(dot))


@dataclass
class AttributeReport:
    name: str
    max_error: float
    bound: float | None
    unit: str
    rms_error: float

    @property
    def passed(self) -> bool:
        return self.bound is None or self.max_error <= self.bound

    def as_dict(self) -> dict[str, Any]:
        return {"max": self.max_error, "rms": self.rms_error, "bound": self.bound, "unit": self.unit,
                "passed": self.passed}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def roundtrip_errors(source: GaussianCloud, decoded: GaussianCloud, meta: dict[str, Any]) -> list[AttributeReport]:
    """Errors of `decoded` against `source` (already in bundle order, SH cut to the bundle's bands)."""
    errors: list[AttributeReport] = []
    pos_err = np.abs(decoded.means.astype(np.float64) - source.means)
    lmin = np.asarray(meta["means"]["mins"], np.float64)
    lmax = np.asarray(meta["means"]["maxs"], np.float64)
    step = (lmax - lmin) / 65535.0
    reach = np.maximum(np.abs(lmin), np.abs(lmax))
    pos_bound = step * np.exp(reach) + 4 * F32_EPS * (np.abs(inv_log_transform(reach)) + 1.0)
    extent = float(np.max(source.means.max(axis=0) - source.means.min(axis=0))) or 1.0
    worst_axis = int(np.argmax(pos_err.max(axis=0) / pos_bound))
    errors.append(AttributeReport("position", float(pos_err[:, worst_axis].max()), float(pos_bound[worst_axis]),
                                  "scene units", _rms(pos_err)))
    errors.append(AttributeReport("position_rel_extent", float(pos_err.max() / extent), None, "fraction of extent",
                                  _rms(pos_err) / extent))
    rot = rotation_error_deg(source.quats, decoded.quats)
    errors.append(AttributeReport("rotation_deg", float(rot.max()), rotation_bound_deg(), "degrees", _rms(rot)))
    for name, src, dec, book in (("log_scale", source.scales, decoded.scales, meta["scales"]["codebook"]),
                                 ("f_dc", source.sh0, decoded.sh0, meta["sh0"]["codebook"])):
        err = np.abs(dec.astype(np.float64) - src)
        bound = spacing_bound(src, np.asarray(book)) + 4 * F32_EPS * (float(np.abs(src).max()) + 1.0)
        errors.append(AttributeReport(name, float(err.max()), bound, "pre-activation", _rms(err)))
    opa = np.abs(sigmoid(decoded.opacities) - sigmoid(source.opacities))
    errors.append(AttributeReport("opacity", float(opa.max()), 1.0 / 255.0 + 2e-6, "linear alpha", _rms(opa)))
    k = decoded.shN.shape[1]
    if k:
        err = decoded.shN.astype(np.float64) - source.shN[:, :k]
        errors.append(AttributeReport("shN", float(np.abs(err).max()), None, "SH coefficient", _rms(err)))
        errors.append(AttributeReport("shN_rms_vs_signal", _rms(err), _rms(source.shN[:, :k]),
                                      "RMS error vs RMS coefficient", _rms(err)))
    return errors


def reorder(cloud: GaussianCloud, order: np.ndarray, sh_coeffs: int) -> GaussianCloud:
    """`cloud` in bundle order with its SH rest cut to `sh_coeffs` coefficients."""
    return GaussianCloud(means=cloud.means[order], sh0=cloud.sh0[order], shN=cloud.shN[order][:, :sh_coeffs],
                         opacities=cloud.opacities[order], scales=cloud.scales[order], quats=cloud.quats[order])


__all__ = ["AttributeReport", "roundtrip_errors", "reorder", "rotation_bound_deg", "rotation_error_deg"]
