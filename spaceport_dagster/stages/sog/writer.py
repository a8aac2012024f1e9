"""GaussianCloud -> `.sog` ZIP and/or the unbundled folder (meta.json + WebP images)."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaceport_dagster.stages.ply import GaussianCloud

from . import bundle, webp
from .encode import EncodedSog, EncodeOptions, encode_cloud


@dataclass
class WriteResult:
    encoded: EncodedSog
    files: dict[str, bytes]
    sog_bytes: int = 0
    folder_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def order(self) -> np.ndarray:
        return self.encoded.order


def meta_bytes(meta: dict) -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode("utf-8")


def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def write_sog(
    cloud: GaussianCloud,
    sog_path: str | Path | None = None,
    folder: str | Path | None = None,
    options: EncodeOptions | None = None,
    webp_settings: webp.WebpSettings | None = None,
) -> WriteResult:
    """Encode `cloud`; write the `.sog` bundle to `sog_path` and/or the files into `folder`.

    Each texture is WebP-compressed (and verified) in a thread pool as soon as it is ready, while the SH
    k-means still runs.
    """
    options = options or EncodeOptions()
    settings = webp_settings or webp.WebpSettings()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        pending: dict[str, Future[bytes]] = {}
        encoded = encode_cloud(cloud, options,
                               lambda name, texture: pending.__setitem__(name, pool.submit(webp.encode, texture, settings)),
                               settings)
        t1 = time.perf_counter()
        blobs = {name: pending[name].result() for name in encoded.images}
    t2 = time.perf_counter()
    files = {"meta.json": meta_bytes(encoded.meta), **blobs}
    result = WriteResult(encoded, files)
    if sog_path is not None:
        result.sog_bytes = bundle.write_zip(Path(sog_path), files)
    if folder is not None:
        result.folder_bytes = bundle.write_folder(Path(folder), files)
    result.timings = {**encoded.timings, "encode": t1 - t0, "webp_wait": t2 - t1, "write": time.perf_counter() - t2,
                      "total": time.perf_counter() - t0}
    return result
