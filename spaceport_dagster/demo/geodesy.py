"""Local east-north-up metres to WGS84 latitude, longitude and height, around a fixed origin.

Hand-written on purpose, not pycolmap's GPSTransform: the demo's survey generator (survey.py) imports no
pycolmap, and this is the independent reference that checks the SfM stage's georegistration, which does use
GPSTransform, rather than mirroring it.
"""

from __future__ import annotations

import math

import numpy as np

WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)


def geodetic_to_ecef(lat: float, lon: float, h: float) -> np.ndarray:
    phi, lam = math.radians(lat), math.radians(lon)
    n = WGS84_A / math.sqrt(1.0 - WGS84_E2 * math.sin(phi) ** 2)
    return np.array([(n + h) * math.cos(phi) * math.cos(lam), (n + h) * math.cos(phi) * math.sin(lam),
                     (n * (1.0 - WGS84_E2) + h) * math.sin(phi)])


def ecef_to_geodetic(xyz: np.ndarray) -> tuple[float, float, float]:
    """Iterative inverse (converges to well below a millimetre in a few rounds near the surface)."""
    x, y, z = (float(v) for v in xyz)
    lon = math.atan2(y, x)
    p = math.hypot(x, y)
    lat = math.atan2(z, p * (1.0 - WGS84_E2))
    h = 0.0
    for _ in range(10):
        n = WGS84_A / math.sqrt(1.0 - WGS84_E2 * math.sin(lat) ** 2)
        h = p / math.cos(lat) - n
        lat = math.atan2(z, p * (1.0 - WGS84_E2 * n / (n + h)))
    return math.degrees(lat), math.degrees(lon), h


def enu_basis(lat: float, lon: float) -> np.ndarray:
    """Rows: east, north, up unit vectors in ECEF."""
    phi, lam = math.radians(lat), math.radians(lon)
    return np.array([
        [-math.sin(lam), math.cos(lam), 0.0],
        [-math.sin(phi) * math.cos(lam), -math.sin(phi) * math.sin(lam), math.cos(phi)],
        [math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)],
    ])


def enu_to_geodetic(enu: np.ndarray, origin: tuple[float, float, float]) -> tuple[float, float, float]:
    lat0, lon0, h0 = origin
    ecef = geodetic_to_ecef(lat0, lon0, h0) + enu_basis(lat0, lon0).T @ np.asarray(enu, float)
    return ecef_to_geodetic(ecef)


def geodetic_to_enu(lat: float, lon: float, h: float, origin: tuple[float, float, float]) -> np.ndarray:
    lat0, lon0, h0 = origin
    return enu_basis(lat0, lon0) @ (geodetic_to_ecef(lat, lon, h) - geodetic_to_ecef(lat0, lon0, h0))
