"""A tile: its core cell (what it contributes to the merged splat), its expanded cell (what it trains on) and
the photos that see the expanded cell. Cells are axis-aligned rectangles on the ground plane (world x, y of the
published, upright reconstruction); a side at the edge of the survey is open (None), so the core cells of a
plan cover the whole plane and every Gaussian lies in exactly one of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Bound = float | None  # None: the cell is open on that side


@dataclass(frozen=True)
class Cell:
    xmin: Bound = None
    xmax: Bound = None
    ymin: Bound = None
    ymax: Bound = None

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(N,) bool: the points of (N, 2+) `xy` inside the cell (half-open: min <= v < max)."""
        inside = np.ones(len(xy), dtype=bool)
        for axis, (lo, hi) in enumerate(((self.xmin, self.xmax), (self.ymin, self.ymax))):
            if lo is not None:
                inside &= xy[:, axis] >= lo
            if hi is not None:
                inside &= xy[:, axis] < hi
        return inside

    def grown(self, dx: float, dy: float) -> Cell:
        """The cell with each closed side moved out by `dx` (x sides) or `dy` (y sides)."""
        def out(v: Bound, d: float) -> Bound:
            return None if v is None else v + d
        return Cell(out(self.xmin, -dx), out(self.xmax, dx), out(self.ymin, -dy), out(self.ymax, dy))

    def split(self, axis: int, at: float) -> tuple[Cell, Cell]:
        if axis == 0:
            return Cell(self.xmin, at, self.ymin, self.ymax), Cell(at, self.xmax, self.ymin, self.ymax)
        return Cell(self.xmin, self.xmax, self.ymin, at), Cell(self.xmin, self.xmax, at, self.ymax)

    def as_list(self) -> list[Bound]:
        return [self.xmin, self.xmax, self.ymin, self.ymax]

    @classmethod
    def from_list(cls, values: list[Bound]) -> Cell:
        if len(values) != 4:
            raise ValueError(f"a cell is [xmin, xmax, ymin, ymax] (null for an open side), not {values!r}")
        return cls(*[None if v is None else float(v) for v in values])


@dataclass
class TileSpec:
    """What one tile's training needs; travels in the train stage's config as `tile` (JSON-safe)."""

    index: int  # 1-based
    count: int
    core: Cell
    expanded: Cell
    photos: list[str] = field(default_factory=list)  # the training photos (never a test view)

    @property
    def label(self) -> str:
        return f"tile {self.index}/{self.count}"

    @property
    def key(self) -> str:
        """Safe in artifact names, folder names and SageMaker job names."""
        return f"tile{self.index}of{self.count}"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count, "core": self.core.as_list(),
                "expanded": self.expanded.as_list(), "photos": list(self.photos)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TileSpec:
        unknown = sorted(set(values) - {"index", "count", "core", "expanded", "photos"})
        if unknown:
            raise ValueError(f"tile spec has unknown key(s) {', '.join(unknown)}")
        try:
            spec = cls(int(values["index"]), int(values["count"]), Cell.from_list(values["core"]),
                       Cell.from_list(values["expanded"]), [str(p) for p in values.get("photos") or []])
        except KeyError as exc:
            raise ValueError(f"tile spec lacks {exc.args[0]!r} (needs index, count, core, expanded, photos)") from None
        if not 1 <= spec.index <= spec.count:
            raise ValueError(f"tile index {spec.index} is outside 1..{spec.count}")
        return spec
