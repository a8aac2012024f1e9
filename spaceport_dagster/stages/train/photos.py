"""Where the decoded training photos live, chosen by their size: GPU, pinned host memory, or disk.

A 30-photo survey at 1600 px is 0.2 GB of uint8 pixels and lives on the GPU, so a training step does no host
work. A 1,000-photo survey of 20 MP photos at full resolution is 60 GB: more than a GPU's share and than a
64 GB host budget. Then photos are decoded from the export's JPEGs on worker threads a few steps before the
trainer asks for them (it announces its view order), and only those are held (Pillow releases the GIL while it
decodes, so threads suffice). The middle case keeps them in pinned host memory and copies one per step.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

RESIDENCIES = ("device", "host", "disk")


def available_host_bytes() -> int:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping); total RAM where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose_residency(total_bytes: int, device: torch.device, requested: str, gpu_budget: float,
                     host_budget: float) -> str:
    """`requested` unless "auto": the GPU when the photos fit in `gpu_budget` of its free memory (always on a
    CPU device, where "device" is host memory), else pinned host memory within `host_budget` of the available
    RAM, else the disk."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "device" if total_bytes <= host_budget * available_host_bytes() else "disk"
    free, _ = torch.cuda.mem_get_info(device)
    if total_bytes <= gpu_budget * free:
        return "device"
    return "host" if total_bytes <= host_budget * available_host_bytes() else "disk"


class PhotoStore(Sequence[Tensor]):
    """The photos of a scene, `store[i]` an (H, W, 3) uint8 tensor on the training device."""

    def __init__(self, load: Callable[[int], np.ndarray], sizes: Sequence[tuple[int, int]], device: torch.device,
                 residency: str, workers: int = 8, lookahead: int = 16, log: logging.Logger | None = None):
        if residency not in RESIDENCIES:
            raise ValueError(f"photo residency must be one of {', '.join(RESIDENCIES)}, not {residency!r}")
        self._load, self._sizes, self.device, self.residency = load, list(sizes), device, residency
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="photo")
        self._lookahead = lookahead
        self._pending: OrderedDict[int, Future[np.ndarray]] = OrderedDict()
        self._upcoming: list[int] = []
        self._held: list[Tensor | None] = []
        if residency != "disk":
            pin = residency == "host" and device.type == "cuda"
            for array in self._pool.map(load, range(len(self._sizes))):
                tensor = torch.from_numpy(array)
                self._held.append(tensor.to(device) if residency == "device" else
                                  (tensor.pin_memory() if pin else tensor))
        if log:
            log.info(f"photos: {len(self)} views, {self.nbytes / 2**30:.2f} GB decoded, held on "
                     f"{ {'device': str(device), 'host': 'pinned host memory', 'disk': 'disk (decoded ahead of use)'}[residency] }")

    @property
    def nbytes(self) -> int:
        return sum(w * h * 3 for w, h in self._sizes)

    def __len__(self) -> int:
        return len(self._sizes)

    def __getitem__(self, index: int) -> Tensor:  # type: ignore[override]
        if self.residency != "disk" and self._held[index] is None:  # freed by keep_only: decoded again
            return torch.from_numpy(self._load(index)).to(self.device)
        if self.residency == "device":
            return self._held[index]
        if self.residency == "host":
            return self._held[index].to(self.device, non_blocking=True)
        future = self._pending.pop(index, None)
        array = future.result() if future is not None else self._load(index)
        self._refill()
        return torch.from_numpy(array).to(self.device)

    def keep_only(self, indices: set[int]) -> None:
        """Free the decoded photos outside `indices` (the views one tile uses); one asked for later is decoded
        again from disk."""
        for i in range(len(self._held)):
            if i not in indices:
                self._held[i] = None

    def iterate(self, indices: Iterable[int]) -> Iterator[Tensor]:
        """The photos of `indices` one at a time (decoded ahead on disk residency), for scoring passes."""
        indices = list(indices)
        training_order, self._upcoming = self._upcoming, []
        self.announce(indices)
        try:
            for i in indices:
                yield self[i]
        finally:
            self._upcoming = training_order  # the trainer's own order goes on being decoded ahead

    def announce(self, order: Sequence[int]) -> None:
        """The views about to be asked for, in order: on disk residency, decoding starts ahead of use."""
        if self.residency != "disk":
            return
        self._upcoming = list(order)
        self._refill()

    def _refill(self) -> None:
        while self._upcoming and len(self._pending) < self._lookahead:
            index = self._upcoming.pop(0)
            if index not in self._pending:
                self._pending[index] = self._pool.submit(self._load, index)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending.clear()
