"""The one evaluation protocol of a trained splat, shared by the trainer, its checks, the SOG stage, the
benchmarks and the UI.

- Test views: every `TEST_EVERY`-th registered image sorted by name (indices 0, 8, 16, ...; gsplat's parser
  rule). Nothing in training may choose anything on them: selection (early stop, best-model restore) uses
  validation views taken from the training views (`validation_indices`).
- Headline figures: the published splat rendered plainly, as every viewer shows it: black background, no
  per-image colour model, at the export's resolution. PSNR and SSIM against the photo, the mean alpha (how
  much of the photo the splat covers) and the PSNR of a flat image of the training photos' mean colour (the
  trivial baseline).
- Secondary, named so: the colour-corrected PSNR, after the per-view affine colour map (3x4, least squares)
  that best fits the render to the photo. Its gap to the plain PSNR is what a per-image colour model would hide.
PSNR and SSIM are averaged over views, as gsplat's simple_trainer and the peer scorer do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from .image_metrics import psnr, ssim
from .render import View, render_view

TEST_EVERY = 8


def split_indices(n_views: int, test_every: int = TEST_EVERY) -> tuple[list[int], list[int]]:
    """(train, test) indices of `n_views` views sorted by name; `test_every` 0 holds none out."""
    test = [i for i in range(n_views) if test_every and i % test_every == 0]
    held = set(test)
    return [i for i in range(n_views) if i not in held], test


def validation_indices(train: Sequence[int], every: int) -> list[int]:
    """Every `every`-th training view (offset to the middle of each stride), kept out of training so that a
    selection (early stop, best-model restore) never reads a test view; `every` 0 takes none."""
    if not every or len(train) < 2 * every:
        return []
    return [t for k, t in enumerate(train) if k % every == every // 2]


def photo_float(photo: Tensor) -> Tensor:
    """(H, W, 3) uint8 or float photo -> float32 in [0, 1]."""
    return photo.float() / 255.0 if photo.dtype == torch.uint8 else photo.float()


def colour_corrected(render: Tensor, photo: Tensor) -> Tensor:
    """`render` after the affine colour map (3x4) that best fits it to `photo` in the least-squares sense."""
    x = render.reshape(-1, 3).double()
    y = photo.reshape(-1, 3).double()
    design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    gram = design.T @ design + 1e-6 * torch.eye(4, dtype=design.dtype, device=design.device)
    coeffs = torch.linalg.solve(gram, design.T @ y)
    return (design @ coeffs).clamp(0, 1).reshape(render.shape).to(render.dtype)


@dataclass
class ViewScore:
    name: str
    psnr: float
    ssim: float
    alpha: float
    psnr_colour_corrected: float
    baseline_psnr: float | None = None


@dataclass
class PlainScores:
    """Figures of one splat on the test views, rendered plainly (see the module docstring)."""

    psnr: float
    ssim: float
    alpha: float
    psnr_colour_corrected: float
    baseline_psnr: float | None
    resolution: str
    views: list[ViewScore] = field(default_factory=list)

    @property
    def colour_corrected_gap_db(self) -> float:
        return self.psnr_colour_corrected - self.psnr

    def summary(self) -> dict[str, Any]:
        """The flat figures for metrics.json and metadata (per-view scores left out)."""
        out = {"psnr": self.psnr, "ssim": self.ssim, "alpha_mean": self.alpha, "baseline_psnr": self.baseline_psnr,
               "psnr_colour_corrected": self.psnr_colour_corrected,
               "colour_corrected_gap_db": self.colour_corrected_gap_db, "resolution": self.resolution,
               "views": len(self.views)}
        return {k: v for k, v in out.items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_view": [asdict(v) for v in self.views]}


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


@torch.no_grad()
def score_plain(params: dict[str, Tensor], sh_degree: int, views: Sequence[View], photos: Sequence[Tensor],
                baseline_colour: Tensor | None = None) -> PlainScores:
    """Plain figures of `params` on `views` against `photos` ((H, W, 3), uint8 or float, at the views' size).
    `baseline_colour` (3,) in [0, 1]: the flat image whose PSNR is the trivial baseline (None: not scored)."""
    if not views:
        raise ValueError("no views to score")
    device = params["means"].device
    scores = []
    for view, photo in zip(views, photos, strict=True):
        gt = photo_float(photo).to(device)
        if gt.shape[:2] != (view.height, view.width):
            raise ValueError(f"photo {view.name} is {gt.shape[1]}x{gt.shape[0]}, the view {view.width}x{view.height}")
        image, alpha = render_view(params, sh_degree, view)
        base = None if baseline_colour is None else psnr(baseline_colour.to(device).expand_as(gt), gt)
        scores.append(ViewScore(view.name, psnr(image, gt), ssim(image, gt), float(alpha.mean()),
                                psnr(colour_corrected(image, gt), gt), base))
    baseline = None if baseline_colour is None else _mean([s.baseline_psnr for s in scores])
    sizes = sorted({f"{v.width}x{v.height}" for v in views})
    return PlainScores(_mean([s.psnr for s in scores]), _mean([s.ssim for s in scores]),
                       _mean([s.alpha for s in scores]), _mean([s.psnr_colour_corrected for s in scores]),
                       baseline, ", ".join(sizes), scores)


def psnr_drop(before: PlainScores, after: PlainScores) -> float:
    """PSNR lost between two scorings of the same views (positive = `after` is worse)."""
    if [v.name for v in before.views] != [v.name for v in after.views]:
        raise ValueError("the two scorings cover different views")
    return before.psnr - after.psnr
