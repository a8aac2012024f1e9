"""GPS to local east-north-up metres, and a similarity alignment of the model to those positions.

WGS84 geodetic -> ECEF -> ENU around an origin (the first GPS fix). The model is aligned with a robust
(LO-RANSAC) sim3 from camera centres to ENU positions; the residual is the RMS distance between the aligned
camera centres and their GPS positions over every registered image with GPS, inliers or not.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pycolmap

WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)


@dataclass
class Origin:
    latitude: float
    longitude: float
    altitude: float
    altitude_source: str  # "altitude" (above sea level), "relative_altitude" (above take-off) or "none"


def lla_to_ecef(lat_deg: np.ndarray, lon_deg: np.ndarray, alt_m: np.ndarray) -> np.ndarray:
    """WGS84 geodetic (degrees, metres above the ellipsoid) to earth-centred earth-fixed metres, (N, 3)."""
    lat, lon = np.radians(np.asarray(lat_deg, float)), np.radians(np.asarray(lon_deg, float))
    alt = np.asarray(alt_m, float)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
    x = (n + alt) * np.cos(lat) * np.cos(lon)
    y = (n + alt) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - WGS84_E2) + alt) * np.sin(lat)
    return np.stack([x, y, z], axis=-1)


def ecef_to_enu_rotation(lat_deg: float, lon_deg: float) -> np.ndarray:
    """Rows are the east, north and up unit vectors at (lat, lon), in ECEF."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    return np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])


def lla_to_enu(lat_deg: Any, lon_deg: Any, alt_m: Any, origin: Origin) -> np.ndarray:
    """Geodetic coordinates to east-north-up metres around `origin`, (N, 3)."""
    ref = lla_to_ecef(np.array([origin.latitude]), np.array([origin.longitude]), np.array([origin.altitude]))[0]
    ecef = lla_to_ecef(np.atleast_1d(lat_deg), np.atleast_1d(lon_deg), np.atleast_1d(alt_m))
    return (ecef - ref) @ ecef_to_enu_rotation(origin.latitude, origin.longitude).T


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
    residual_rms_m: float | None = None
    residual_max_m: float | None = None
    scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def georegister(
    reconstruction: pycolmap.Reconstruction,
    manifest_images: list[dict[str, Any]],
    min_images: int = 3,
    max_error_m: float = 10.0,
    log: logging.Logger | None = None,
) -> Georegistration:
    """Transform `reconstruction` in place into ENU metres when enough registered images carry GPS."""
    origin, positions = gps_positions(manifest_images)
    registered = [reconstruction.image(i) for i in reconstruction.reg_image_ids()]
    pairs = [(img.projection_center(), positions[img.name]) for img in registered if img.name in positions]
    if len(pairs) < min_images:
        return Georegistration(False, f"{len(pairs)} registered image(s) carry GPS (need {min_images})",
                               origin, len(pairs))
    src = np.array([p[0] for p in pairs])
    tgt = np.array([p[1] for p in pairs])
    options = pycolmap.RANSACOptions()
    options.max_error = max_error_m
    options.random_seed = 0
    result = pycolmap.estimate_sim3d_robust(src, tgt, options)
    if result is None or "tgt_from_src" not in result:
        return Georegistration(False, "no similarity transform fits the GPS positions", origin, len(pairs))
    tgt_from_src: pycolmap.Sim3d = result["tgt_from_src"]
    if not np.isfinite(tgt_from_src.scale) or tgt_from_src.scale <= 0:
        return Georegistration(False, f"degenerate alignment (scale {tgt_from_src.scale})", origin, len(pairs))
    reconstruction.transform(tgt_from_src)
    aligned = np.array([img.projection_center() for img in registered if img.name in positions])
    errors = np.linalg.norm(aligned - tgt, axis=1)
    inliers = int(np.sum(np.asarray(result.get("inlier_mask", errors <= max_error_m))))
    reg = Georegistration(
        True, "aligned to GPS", origin, len(pairs), inliers,
        float(np.sqrt(np.mean(errors**2))), float(errors.max()), float(tgt_from_src.scale),
    )
    if log:
        log.info(f"georegistration: {len(pairs)} GPS images, {inliers} inliers, RMS {reg.residual_rms_m:.2f} m")
    return reg
