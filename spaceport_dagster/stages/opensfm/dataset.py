"""Read the files of an OpenSfM dataset folder: reconstruction.json, tracks.csv, reference_lla.json.
Plain JSON/CSV reading, no OpenSfM import."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class OpenSfmDatasetError(ValueError):
    """An OpenSfM dataset folder is missing a file or has one we cannot read."""


@dataclass
class Tracks:
    """All observations of tracks.csv, as parallel arrays (one entry per observation)."""

    images: np.ndarray  # (N,) str image name
    track_ids: np.ndarray  # (N,) str track id (= point id in reconstruction.json)
    feature_ids: np.ndarray  # (N,) int feature index in the image's feature file
    xy: np.ndarray  # (N, 2) float64 normalised image coordinates

    def __len__(self) -> int:
        return len(self.images)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise OpenSfmDatasetError(f"{path.name} not found in {path.parent} (is this an OpenSfM dataset after `reconstruct`?)")
    return path


def load_reconstructions(dataset: Path) -> list[dict[str, Any]]:
    data = json.loads(_need(dataset / "reconstruction.json").read_text())
    if not isinstance(data, list) or not all(isinstance(r, dict) and "shots" in r for r in data):
        raise OpenSfmDatasetError(f"{dataset / 'reconstruction.json'} is not a list of reconstructions")
    return data


def load_tracks(dataset: Path) -> Tracks:
    """tracks.csv, versions v0 (no header) to v3: tab separated, the first five columns are always
    image, track id, feature id, x, y (normalised)."""
    path = _need(dataset / "tracks.csv")
    images: list[str] = []
    tracks: list[str] = []
    features: list[int] = []
    xy: list[tuple[float, float]] = []
    with path.open() as f:
        for n, line in enumerate(f):
            if n == 0 and line.startswith("OPENSFM_TRACKS_VERSION"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5:
                if not line.strip():
                    continue
                raise OpenSfmDatasetError(f"{path}:{n + 1}: expected at least 5 tab-separated columns, got {len(cols)}")
            images.append(cols[0])
            tracks.append(cols[1])
            features.append(int(cols[2]))
            xy.append((float(cols[3]), float(cols[4])))
    return Tracks(
        images=np.array(images, dtype=object),
        track_ids=np.array(tracks, dtype=object),
        feature_ids=np.array(features, dtype=np.int64),
        xy=np.array(xy, dtype=np.float64).reshape(-1, 2),
    )


def load_reference_lla(dataset: Path, reconstruction: dict[str, Any] | None = None) -> tuple[float, float, float] | None:
    """The geodetic origin (lat, lon, alt) of the local east-north-up frame: reference_lla.json, else the
    reconstruction's own `reference_lla`, else None (no GPS)."""
    path = dataset / "reference_lla.json"
    lla = json.loads(path.read_text()) if path.is_file() else (reconstruction or {}).get("reference_lla")
    if not lla:
        return None
    return float(lla["latitude"]), float(lla["longitude"]), float(lla["altitude"])
