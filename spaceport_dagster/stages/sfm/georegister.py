"""GPS to local east-north-up metres, and the alignment of the model to those positions.

WGS84 geodetic -> ENU around an origin (the first GPS fix) is pycolmap's GPSTransform. Camera GPS is good
horizontally and often bad vertically (an altitude that climbs 100 m over a flight at one height), and a
similarity fitted to bad altitudes tilts the whole model. So up comes from the reconstruction itself (gravity.py), the horizontal part
(scale, heading, east/north) from a robust 2D fit to every GPS fix (robust_fit.py), and the GPS altitude is
used for the full 3D fit only when it agrees with that up and with the model's heights (altitude_trust).
The model is georegistered whenever the fixes fix scale and heading to within `max_uncertainty` (1 sigma,
from the residuals and the track's geometry), with a warning above `warn_uncertainty`; poor camera GPS
(15 m of noise) still gives metric scale, with its uncertainty stated. Residuals are reported horizontally
and vertically, over the inlier fixes, with the outliers named.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pycolmap

from .gravity import CameraAxes, UpEstimate, angle_deg, estimate_up
from .robust_fit import Similarity3D, Uncertainty, fit_similarity_2d, fit_similarity_3d

WGS84 = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84)


@dataclass
class Origin:
    latitude: float
    longitude: float
    altitude: float
    altitude_source: str  # "altitude" (above sea level), "relative_altitude" (above take-off) or "none"


def lla_to_enu(lat_deg: Any, lon_deg: Any, alt_m: Any, origin: Origin) -> np.ndarray:
    """WGS84 geodetic (degrees, metres above the ellipsoid) to east-north-up metres around `origin`, (N, 3)."""
    lla = np.stack([np.atleast_1d(np.asarray(v, float)) for v in (lat_deg, lon_deg, alt_m)], axis=1)
    return np.asarray(WGS84.ellipsoid_to_enu(lla, origin.latitude, origin.longitude, origin.altitude))


def altitude_source(fixes: list[dict[str, Any]]) -> str:
    """One height source for every fix, so heights are comparable: absolute, else relative, else none."""
    if fixes and all(f.get("altitude") is not None for f in fixes):
        return "altitude"
    if fixes and all(f.get("relative_altitude") is not None for f in fixes):
        return "relative_altitude"
    return "none"


def gps_positions(manifest_images: list[dict[str, Any]]) -> tuple[Origin | None, dict[str, np.ndarray]]:
    """ENU position of every manifest image with GPS, around the first GPS fix (manifest order)."""
    with_gps = [r for r in manifest_images if r.get("gps")]
    if not with_gps:
        return None, {}
    fixes = [r["gps"] for r in with_gps]
    source = altitude_source(fixes)
    heights = [float(f[source]) if source != "none" else 0.0 for f in fixes]
    first = fixes[0]
    origin = Origin(float(first["latitude"]), float(first["longitude"]), heights[0], source)
    enu = lla_to_enu([f["latitude"] for f in fixes], [f["longitude"] for f in fixes], heights, origin)
    return origin, {r["name"]: enu[i] for i, r in enumerate(with_gps)}


@dataclass
class Georegistration:
    georegistered: bool
    reason: str
    origin: Origin | None = None
    images_with_gps: int = 0
    inliers: int = 0
    residual_rms_m: float | None = None  # inlier fixes, over the parts of the GPS used (3D, or horizontal only)
    residual_max_m: float | None = None  # every fix, same parts
    scale: float | None = None
    # "enu": GPS east, north and altitude; "enu_horizontal": GPS east/north, up from the cameras, heights from
    # the median GPS altitude; "local_upright": up from the cameras, no GPS fit; "model": SfM's own frame
    frame: str = "model"
    altitude_used: bool = False
    altitude_reason: str = ""
    residual_horizontal_rms_m: float | None = None  # inliers
    residual_horizontal_median_m: float | None = None  # inliers
    residual_vertical_rms_m: float | None = None  # inliers, after the best vertical offset
    residual_vertical_median_m: float | None = None  # inliers, absolute
    outliers: list[str] = field(default_factory=list)
    up: dict[str, Any] | None = None  # the cameras' own up (gravity.UpEstimate)
    warnings: list[str] = field(default_factory=list)
    # 1 sigma, from the residuals and the track's geometry (robust_fit.similarity_uncertainty); also set when
    # the fixes were too poor to georegister, to say how poor
    scale_uncertainty: float | None = None  # relative: 0.03 is 3 %
    heading_uncertainty_deg: float | None = None
    gps_noise_m: float | None = None  # per axis, estimated from the residuals
    gps_spread_m: float | None = None  # RMS distance of the kept fixes from their centroid, horizontally
    gps_residual_correlation: float | None = None  # lag-1 in capture order: consecutive fixes err alike

    @property
    def units(self) -> str:
        """What one unit of the published frame is."""
        return "metres" if self.georegistered else "model units"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AltitudeTrust:
    trusted: bool
    reason: str
    tilt_deg: float | None = None  # between the 3D GPS fit's up and the cameras' up
    vertical_rms_m: float | None = None


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the unit vector `up` to +z."""
    up = up / np.linalg.norm(up)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(up, z)
    sin, cos = np.linalg.norm(axis), float(up @ z)
    if sin < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * kx @ kx


def _rz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rms(values: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(values**2))) if len(values) else None


def altitude_trust(source: str, estimate: UpEstimate, sim3: Similarity3D | None, vertical: np.ndarray,
                   horizontal_rms: float, max_tilt_deg: float, min_vertical_tolerance_m: float) -> AltitudeTrust:
    """Whether the GPS altitudes agree with the reconstruction: a 3D fit to them must leave the cameras' up
    within `max_tilt_deg` of vertical, and their residuals after the horizontal fit must be GPS-sized."""
    if source == "none":
        return AltitudeTrust(False, "the GPS fixes carry no altitude")
    if estimate.up is None:
        return AltitudeTrust(True, "the cameras do not fix up; the GPS altitude does")
    if estimate.flight != "area":
        return AltitudeTrust(False, f"the camera track is a {estimate.flight}: positions on it do not fix the "
                             "roll about it, so up comes from the cameras")
    vertical_rms = _rms(vertical) or 0.0
    if sim3 is None:
        return AltitudeTrust(False, "no 3D similarity fits the GPS positions", None, vertical_rms)
    # against the closest of the cameras' own estimates: a gimbal pitched 10 deg off nadir leaves the views
    # off but the camera plane right, and good GPS altitude then agrees with the plane
    z = np.array([0.0, 0.0, 1.0])
    tilt = min(angle_deg(sim3.rotation @ up, z) for up in [estimate.up, *estimate.candidates.values()])
    tolerance = max(min_vertical_tolerance_m, 3.0 * horizontal_rms)
    if tilt > max_tilt_deg:
        return AltitudeTrust(False, f"a fit to the GPS altitudes would tilt the cameras' up by {tilt:.1f} deg "
                             f"(allowed {max_tilt_deg:g})", tilt, vertical_rms)
    if vertical_rms > tolerance:
        return AltitudeTrust(False, f"GPS altitudes disagree with the model's heights by {vertical_rms:.1f} m RMS "
                             f"(allowed {tolerance:.1f})", tilt, vertical_rms)
    return AltitudeTrust(True, f"GPS altitudes agree with the reconstruction (tilt {tilt:.2f} deg, vertical "
                         f"{vertical_rms:.2f} m RMS)", tilt, vertical_rms)


def level_local_frame(reconstruction: pycolmap.Reconstruction, estimate: UpEstimate, reason: str,
                      origin: Origin | None, with_gps: int, log: logging.Logger | None) -> Georegistration:
    """No GPS alignment: make the model upright around its camera centroid (model units), or leave it."""
    if estimate.up is None:
        warning = (f"not georegistered ({reason}) and the cameras do not fix up: the model keeps SfM's frame "
                   "(model units)")
        if log:
            log.warning(warning)
        return Georegistration(False, reason, origin, with_gps, frame="model", up=estimate.to_dict(),
                               warnings=[warning])
    level = rotation_to_z(estimate.up)
    centroid = CameraAxes.of(reconstruction).centres.mean(axis=0)
    reconstruction.transform(pycolmap.Sim3d(1.0, pycolmap.Rotation3d(level), -(level @ centroid)))
    warning = f"not georegistered ({reason}): an upright local frame (up from {estimate.source}; model units)"
    if log:
        log.warning(warning)
    return Georegistration(False, reason, origin, with_gps, frame="local_upright", up=estimate.to_dict(),
                           warnings=[warning])


def capture_order(names: list[str], manifest_images: list[dict[str, Any]]) -> np.ndarray:
    """Indices of `names` in capture order: by EXIF capture time where every one has it, else by name."""
    taken = {r["name"]: r.get("captured_at") for r in manifest_images}
    if all(taken.get(n) for n in names):
        return np.array(sorted(range(len(names)), key=lambda i: (str(taken[names[i]]), names[i])), dtype=int)
    return np.array(sorted(range(len(names)), key=lambda i: names[i]), dtype=int)


def uncertainty_text(u: Uncertainty) -> str:
    return f"scale ±{100 * u.scale:.1f} %, heading ±{u.heading_deg:.1f} deg (1 sigma)"


def _with_uncertainty(reg: Georegistration, u: Uncertainty, spread: float, warn: float) -> Georegistration:
    def finite(value: float) -> float | None:  # an unmeasurable figure is reported as none, never as infinity
        return value if math.isfinite(value) else None

    reg.scale_uncertainty, reg.heading_uncertainty_deg = finite(u.scale), finite(u.heading_deg)
    reg.gps_noise_m, reg.gps_spread_m = finite(u.sigma_m), spread
    reg.gps_residual_correlation = u.residual_correlation
    if max(u.scale, u.heading_rad) > warn:
        reg.warnings.append(f"GPS fixes {u.sigma_m:.1f} m noisy per axis over a track spread {spread:.1f} m fix "
                            f"{uncertainty_text(u)}: above the {100 * warn:g} % this survey warns at")
    return reg


def georegister(
    reconstruction: pycolmap.Reconstruction,
    manifest_images: list[dict[str, Any]],
    min_images: int = 3,
    max_error_m: float = 10.0,
    log: logging.Logger | None = None,
    max_altitude_tilt_deg: float = 2.0,
    min_vertical_tolerance_m: float = 3.0,
    max_uncertainty: float = 0.2,
    warn_uncertainty: float = 0.05,
) -> Georegistration:
    """Transform `reconstruction` in place into ENU metres when enough registered images carry GPS; otherwise
    into an upright local frame. Never into a frame tilted by GPS altitudes that disagree with the cameras."""
    origin, positions = gps_positions(manifest_images)
    estimate = estimate_up(CameraAxes.of(reconstruction))
    registered = [reconstruction.image(i) for i in sorted(reconstruction.reg_image_ids())]
    with_gps = [img for img in registered if img.name in positions]
    if len(with_gps) < min_images:
        return level_local_frame(reconstruction, estimate,
                                 f"{len(with_gps)} registered image(s) carry GPS (need {min_images})", origin,
                                 len(with_gps), log)
    assert origin is not None
    names = [img.name for img in with_gps]
    src = np.array([img.projection_center() for img in with_gps])
    tgt = np.array([positions[n] for n in names])
    order = capture_order(names, manifest_images)
    sim3 = fit_similarity_3d(src, tgt, max_error_m, order)
    if estimate.up is None:
        if origin.altitude_source == "none" or sim3 is None:
            return level_local_frame(reconstruction, estimate, "the cameras do not fix up and the GPS has no "
                                     "usable altitude", origin, len(with_gps), log)
        u3 = sim3.uncertainty
        if max(u3.scale, u3.heading_rad) > max_uncertainty:
            refused = level_local_frame(reconstruction, estimate, f"the GPS fixes fix only {uncertainty_text(u3)}, "
                                        f"more than the {100 * max_uncertainty:g} % allowed", origin, len(with_gps), log)
            return _with_uncertainty(refused, u3, _spread(tgt[sim3.inliers, :2]), warn=math.inf)
        return _apply_3d(reconstruction, sim3, names, tgt, origin, estimate,
                         AltitudeTrust(True, "the cameras do not fix up; the GPS altitude does"),
                         _spread(tgt[sim3.inliers, :2]), warn_uncertainty, log)
    level = rotation_to_z(estimate.up)
    levelled = src @ level.T
    horizontal = fit_similarity_2d(levelled[:, :2], tgt[:, :2], max_error_m, order)
    if horizontal is None:
        return level_local_frame(reconstruction, estimate, "the GPS positions fix no horizontal alignment", origin,
                                 len(with_gps), log)
    inliers = horizontal.inliers
    h_errors = np.linalg.norm(horizontal.apply(levelled[:, :2]) - tgt[:, :2], axis=1)
    spread = _spread(tgt[inliers, :2])
    h_rms = _rms(h_errors[inliers]) or 0.0
    u = horizontal.uncertainty
    if max(u.scale, u.heading_rad) > max_uncertainty:
        refused = level_local_frame(
            reconstruction, estimate, f"the GPS fixes spread {spread:.1f} m with {u.sigma_m:.1f} m of noise per "
            f"axis fix only {uncertainty_text(u)}, more than the {100 * max_uncertainty:g} % allowed", origin,
            len(with_gps), log)
        return _with_uncertainty(refused, u, spread, warn=math.inf)
    heights = horizontal.scale * levelled[:, 2]
    offset = float(np.median(tgt[inliers, 2] - heights[inliers]))
    vertical = tgt[:, 2] - heights - offset
    trust = altitude_trust(origin.altitude_source, estimate, sim3, vertical[inliers], h_rms,
                           max_altitude_tilt_deg, min_vertical_tolerance_m)
    if trust.trusted and sim3 is not None:
        return _apply_3d(reconstruction, sim3, names, tgt, origin, estimate, trust, spread, warn_uncertainty, log)
    rotation = _rz(horizontal.angle_rad) @ level
    translation = np.array([horizontal.b.real, horizontal.b.imag, offset])
    transform = pycolmap.Sim3d(horizontal.scale, pycolmap.Rotation3d(rotation), translation)
    reconstruction.transform(transform)
    reg = _residuals(reconstruction, names, tgt, inliers, altitude_used=False)
    reg.origin, reg.scale, reg.frame = origin, horizontal.scale, "enu_horizontal"
    reg.altitude_reason, reg.up = trust.reason, estimate.to_dict()
    reg.reason = f"aligned to GPS east/north, {uncertainty_text(u)}; up from the cameras ({estimate.source})"
    if estimate.flight != "area":
        reg.warnings.append(f"the camera track is a {estimate.flight}: up rests on the cameras alone "
                            f"({estimate.source})")
    _with_uncertainty(reg, u, spread, warn_uncertainty)
    _log(log, reg)
    return reg


def _spread(xy: np.ndarray) -> float:
    """RMS distance of the points from their centroid."""
    return float(np.sqrt(np.mean(np.sum((xy - xy.mean(axis=0)) ** 2, axis=1))))


def _apply_3d(reconstruction: pycolmap.Reconstruction, sim: Similarity3D, names: list[str], tgt: np.ndarray,
              origin: Origin, estimate: UpEstimate, trust: AltitudeTrust, spread: float, warn_uncertainty: float,
              log: logging.Logger | None) -> Georegistration:
    reconstruction.transform(pycolmap.Sim3d(sim.scale, pycolmap.Rotation3d(sim.rotation), sim.translation))
    reg = _residuals(reconstruction, names, tgt, sim.inliers, altitude_used=True)
    reg.origin, reg.scale, reg.frame = origin, float(sim.scale), "enu"
    reg.altitude_reason, reg.up = trust.reason, estimate.to_dict()
    reg.reason = f"aligned to GPS east, north and altitude, {uncertainty_text(sim.uncertainty)}"
    _with_uncertainty(reg, sim.uncertainty, spread, warn_uncertainty)
    _log(log, reg)
    return reg


def _residuals(reconstruction: pycolmap.Reconstruction, names: list[str], tgt: np.ndarray, inliers: np.ndarray,
               altitude_used: bool) -> Georegistration:
    by_name = {reconstruction.image(i).name: reconstruction.image(i) for i in reconstruction.reg_image_ids()}
    aligned = np.array([by_name[n].projection_center() for n in names])
    diff = aligned - tgt
    h = np.linalg.norm(diff[:, :2], axis=1)
    v = diff[:, 2] - (0.0 if altitude_used else float(np.median(diff[inliers, 2])))
    used = np.linalg.norm(diff, axis=1) if altitude_used else h
    return Georegistration(
        True, "", None, len(names), int(inliers.sum()),
        _rms(used[inliers]), float(used.max()), None,
        altitude_used=altitude_used,
        residual_horizontal_rms_m=_rms(h[inliers]), residual_horizontal_median_m=float(np.median(h[inliers])),
        residual_vertical_rms_m=_rms(v[inliers]), residual_vertical_median_m=float(np.median(np.abs(v[inliers]))),
        outliers=[n for n, keep in zip(names, inliers, strict=True) if not keep],
    )


def _log(log: logging.Logger | None, reg: Georegistration) -> None:
    if log:
        log.info(f"georegistration ({reg.frame}): {reg.images_with_gps} GPS images, {reg.inliers} inliers, "
                 f"horizontal {reg.residual_horizontal_rms_m:.2f} m RMS, vertical {reg.residual_vertical_rms_m:.2f} "
                 f"m RMS, scale ±{100 * (reg.scale_uncertainty or 0):.1f} %, heading "
                 f"±{reg.heading_uncertainty_deg or 0:.1f} deg; altitude {'used' if reg.altitude_used else 'not used'}: "
                 f"{reg.altitude_reason}")
        for warning in reg.warnings:
            log.warning(warning)
