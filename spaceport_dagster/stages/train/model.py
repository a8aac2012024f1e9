"""Gaussian parameters, their optimisers, the densification strategy and the per-image appearance model."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spaceport_dagster.stages.ply import GaussianCloud
from spaceport_dagster.stages.raster_torch import SH_C0
from spaceport_dagster.stages.render import gsplat_available

from .config import TrainConfig
from .densify import TorchDefaultStrategy


def knn_mean_dist(points: Tensor, k: int = 3, chunk: int = 4096) -> Tensor:
    """Mean distance from each point to its k nearest neighbours (chunked brute force on the device)."""
    out = torch.empty(points.shape[0], device=points.device)
    for s in range(0, points.shape[0], chunk):
        d = torch.cdist(points[s:s + chunk], points)
        out[s:s + chunk] = d.topk(min(k + 1, points.shape[0]), largest=False).values[:, 1:].mean(dim=1)
    return out


def init_params(points: np.ndarray, colors: np.ndarray, cfg: TrainConfig, device: torch.device,
                generator: torch.Generator) -> dict[str, torch.nn.Parameter]:
    """Gaussians at the SfM points, SH DC from their colours, isotropic scales from neighbour distances."""
    pts = torch.as_tensor(points, dtype=torch.float32)
    rgb = torch.as_tensor(colors, dtype=torch.float32)
    if cfg.max_init_points and len(pts) > cfg.max_init_points:
        keep = torch.randperm(len(pts), generator=generator)[: cfg.max_init_points]
        pts, rgb = pts[keep], rgb[keep]
    pts, rgb = pts.to(device), rgb.to(device)
    n = len(pts)
    dist = knn_mean_dist(pts).clamp_min(1e-7) if n > 1 else torch.ones(1, device=device)
    k = (cfg.sh_degree + 1) ** 2 - 1
    params = {
        "means": pts,
        "scales": torch.log(dist * cfg.init_scale)[:, None].repeat(1, 3),
        "quats": torch.rand((n, 4), generator=generator).to(device),
        "opacities": torch.logit(torch.full((n,), cfg.init_opacity, device=device)),
        "sh0": (rgb - 0.5) / SH_C0,
        "shN": torch.zeros((n, k, 3), device=device),
    }
    return {name: torch.nn.Parameter(t.contiguous()) for name, t in params.items()}


def make_optimizers(params: dict[str, torch.nn.Parameter], cfg: TrainConfig,
                    scene_scale: float) -> dict[str, torch.optim.Optimizer]:
    lrs = {"means": cfg.means_lr * scene_scale, "scales": cfg.scales_lr, "quats": cfg.quats_lr,
           "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}
    fused = next(iter(params.values())).device.type == "cuda"
    return {name: torch.optim.Adam([{"params": [p], "lr": lrs[name], "name": name}], eps=1e-15, fused=fused)
            for name, p in params.items()}


def gaussian_cap(cfg: TrainConfig, train_megapixels: float) -> int:
    """The MCMC cap: cap_max, lowered to cap_per_train_mp per training megapixel when that is set."""
    if cfg.cap_per_train_mp > 0:
        return max(1000, min(cfg.cap_max, int(cfg.cap_per_train_mp * train_megapixels)))
    return cfg.cap_max


def make_strategy(cfg: TrainConfig, device: torch.device, log: logging.Logger,
                  train_megapixels: float = 0.0) -> tuple[Any, bool]:
    """(strategy, is_mcmc). gsplat's strategies on CUDA, the PyTorch port of the default one elsewhere."""
    default = {"prune_opa": cfg.prune_opa, "grow_grad2d": cfg.grow_grad2d, "grow_scale3d": cfg.grow_scale3d,
               "prune_scale3d": cfg.prune_scale3d, "refine_start_iter": cfg.refine_start_iter,
               "refine_stop_iter": cfg.refine_stop_iter, "reset_every": cfg.reset_every,
               "refine_every": cfg.refine_every}
    if gsplat_available(device):
        from gsplat.strategy import DefaultStrategy, MCMCStrategy

        if cfg.strategy == "mcmc":
            cap = gaussian_cap(cfg, train_megapixels)
            log.info(f"MCMC densification capped at {cap} Gaussians")
            return MCMCStrategy(cap_max=cap, refine_start_iter=cfg.refine_start_iter,
                                refine_stop_iter=cfg.refine_stop_iter, refine_every=cfg.refine_every,
                                min_opacity=cfg.prune_opa), True
        return DefaultStrategy(**default, absgrad=cfg.absgrad), False
    if cfg.strategy == "mcmc":
        log.warning("strategy 'mcmc' needs gsplat on CUDA; using the default densification on this device")
    return TorchDefaultStrategy(**default), False


class Appearance(torch.nn.Module):
    """Per-image colour affine c' = A c + b (identity at start), applied to the Gaussians' colours before they
    are rasterised, so it can recolour the scene but never paint where the splat is transparent. It absorbs
    exposure and white-balance changes between drone passes so the shared splat does not bake them in.

    The map is linear in the SH coefficients, so it acts on them directly (DC and higher bands alike) and the
    mean map over the training images can be folded into the published splat exactly (`fold_mean`): the PLY then
    shows the survey's average appearance with no colour model at all."""

    def __init__(self, n_images: int, device: torch.device):
        super().__init__()
        self.affine = torch.nn.Parameter(torch.zeros(n_images, 12, device=device))

    @staticmethod
    def _apply(sh0: Tensor, shN: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        A = torch.eye(3, device=a.device) + a[:9].reshape(3, 3)
        offset = (A @ torch.full((3,), 0.5, device=a.device) + a[9:] - 0.5) / SH_C0
        return sh0 @ A.T + offset, shN @ A.T

    def transform(self, params: dict[str, Tensor], index: int) -> dict[str, Tensor]:
        """`params` with the colours of image `index` (a shallow copy; the Gaussians themselves are shared)."""
        sh0, shN = self._apply(params["sh0"], params["shN"], self.affine[index])
        return {**params, "sh0": sh0, "shN": shN}

    def penalty(self, indices: list[int]) -> Tensor:
        """Mean squared distance of the training images' maps from identity."""
        return self.affine[indices].pow(2).mean()

    @torch.no_grad()
    def fold_mean(self, params: dict[str, Tensor], indices: list[int]) -> dict[str, Tensor]:
        """`params` with the mean map of images `indices` folded into their SH coefficients."""
        sh0, shN = self._apply(params["sh0"], params["shN"], self.affine[indices].mean(dim=0))
        return {**params, "sh0": sh0.detach(), "shN": shN.detach()}


def to_cloud(params: dict[str, Tensor], sh_coeffs: int = 15) -> GaussianCloud:
    """Parameters -> GaussianCloud, shN zero-padded to `sh_coeffs` per channel (the PLY layout viewers expect)."""
    def np32(t: Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    shN = np32(params["shN"])
    if shN.shape[1] < sh_coeffs:
        shN = np.concatenate([shN, np.zeros((shN.shape[0], sh_coeffs - shN.shape[1], 3), np.float32)], axis=1)
    return GaussianCloud(means=np32(params["means"]), sh0=np32(params["sh0"]), shN=shN,
                         opacities=np32(params["opacities"]), scales=np32(params["scales"]),
                         quats=np32(params["quats"]))


def means_lr_gamma(steps: int) -> float:
    """Exponential decay so the means' learning rate falls 100x over the run (simple_trainer)."""
    return math.pow(0.01, 1.0 / max(1, steps))
