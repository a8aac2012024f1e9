"""Which GPS fixes agree: a survey is one place, so fixes far from the rest (another continent, a receiver
that had not locked) must not steer matching or the georegistration.

Fixes are linked when within `link_m` of each other (single linkage, so a long corridor stays one group);
the largest group is the consensus when it holds more than half of the fixes and at least three. Fixes
outside it are outliers. With no consensus (two far groups of equal size, scattered fixes) no fix is used.
The SfM stage then sees the outliers as images without GPS: the GPS-neighbour matcher is only chosen when
every image has an agreeing fix, and georegistration fits agreeing fixes only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .georegister import WGS84

DEFAULT_LINK_M = 1000.0


@dataclass
class GpsConsensus:
    fixes: int  # images with a GPS fix
    agreeing: list[str] = field(default_factory=list)  # image names in the consensus group
    outliers: list[str] = field(default_factory=list)  # image names whose fix is left out
    reason: str = ""

    @property
    def consistent(self) -> bool:
        return not self.outliers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def without_outliers(self, manifest_images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The manifest records with the outliers' GPS removed (everything else unchanged)."""
        drop = set(self.outliers)
        return [{**r, "gps": None} if r["name"] in drop else r for r in manifest_images]


def _components(points: np.ndarray, link_m: float) -> list[list[int]]:
    """Single-linkage groups of `points` (N, 3) at distance `link_m`, largest first."""
    n = len(points)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, 512):  # blocks keep the distance matrix small for large surveys
        block = points[start:start + 512]
        near = np.linalg.norm(block[:, None, :] - points[None, :, :], axis=2) <= link_m
        for offset, row in enumerate(near):
            i = start + offset
            for j in np.flatnonzero(row[i + 1:]) + i + 1:
                a, b = find(i), find(int(j))
                if a != b:
                    parent[a] = b
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=len, reverse=True)


def gps_consensus(manifest_images: list[dict[str, Any]], link_m: float = DEFAULT_LINK_M) -> GpsConsensus:
    with_gps = [r for r in manifest_images if r.get("gps")]
    if not with_gps:
        return GpsConsensus(0, reason="no image carries GPS")
    names = [r["name"] for r in with_gps]
    lat = [float(r["gps"]["latitude"]) for r in with_gps]
    lon = [float(r["gps"]["longitude"]) for r in with_gps]
    lla = np.stack([np.array(lat, float), np.array(lon, float), np.zeros(len(with_gps))], axis=1)
    points = np.asarray(WGS84.ellipsoid_to_ecef(lla))  # horizontal position only
    groups = _components(points, link_m)
    largest = groups[0]
    if len(largest) == len(names):
        return GpsConsensus(len(names), names, [], f"all {len(names)} fixes within {link_m:.0f} m of each other")
    if len(largest) * 2 > len(names) and len(largest) >= 3:
        kept = {names[i] for i in largest}
        outliers = sorted(set(names) - kept)
        return GpsConsensus(len(names), sorted(kept), outliers,
                            f"{len(outliers)} of {len(names)} fixes lie over {link_m:.0f} m from the other "
                            f"{len(kept)}: left out of matching and georegistration")
    return GpsConsensus(len(names), [], sorted(names),
                        f"the {len(names)} fixes form {len(groups)} groups over {link_m:.0f} m apart, none with a "
                        "majority: GPS is not used")
