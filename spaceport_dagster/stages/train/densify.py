"""Densification without CUDA: the 3DGS paper's grow / prune / opacity-reset schedule in plain PyTorch.

A port of the behaviour of gsplat 1.5.3's DefaultStrategy (same thresholds and schedule) for the CPU path,
where gsplat is not installed. On CUDA the trainer uses gsplat's own DefaultStrategy and MCMCStrategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spaceport_dagster.stages.raster_torch import quat_to_rotmat

Params = dict[str, torch.nn.Parameter]
Optimizers = dict[str, torch.optim.Optimizer]


def _edit(params: Params, optimizers: Optimizers, param_fn: Callable[[Tensor], Tensor],
          state_fn: Callable[[Tensor], Tensor]) -> None:
    """Replace every parameter by param_fn(p) and its Adam moments by state_fn(moment)."""
    for name, param in list(params.items()):
        new = torch.nn.Parameter(param_fn(param.data), requires_grad=param.requires_grad)
        opt = optimizers[name]
        old_state = opt.state.pop(param, None)
        opt.param_groups[0]["params"] = [new]
        if old_state is not None:
            opt.state[new] = {k: (state_fn(v) if k in ("exp_avg", "exp_avg_sq") else v) for k, v in old_state.items()}
        params[name] = new


# the strategies' per-Gaussian statistics (ours and gsplat's DefaultStrategy): masked with the Gaussians
PER_GAUSSIAN_STATE = ("grad2d", "count", "radii")


def keep_gaussians(params: Params, optimizers: Optimizers, state: dict, keep: Tensor) -> None:
    """Keep only the Gaussians where `keep` is True: parameters, Adam moments and per-Gaussian statistics."""
    _edit(params, optimizers, lambda p: p[keep], lambda s: s[keep])
    for key in PER_GAUSSIAN_STATE:
        value = state.get(key)
        if isinstance(value, Tensor) and value.shape[:1] == keep.shape:
            state[key] = value[keep]


@dataclass
class TorchDefaultStrategy:
    """gsplat's DefaultStrategy in PyTorch. Built from a TrainConfig (model.make_strategy): no defaults here,
    the config's are the only ones."""

    prune_opa: float
    grow_grad2d: float
    grow_scale3d: float
    prune_scale3d: float
    refine_start_iter: int
    refine_stop_iter: int
    reset_every: int
    refine_every: int

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        return {"grad2d": None, "count": None, "scene_scale": scene_scale}

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int, info: dict) -> None:
        info["means2d"].retain_grad()

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int, info: dict,
                           **_: Any) -> None:
        if step >= self.refine_stop_iter:
            return
        self._update_state(params, state, info)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            self._grow(params, optimizers, state)
            self._prune(params, optimizers, state, step)
            state["grad2d"].zero_()
            state["count"].zero_()
        if step % self.reset_every == 0 and step > 0:
            self._reset_opacity(params, optimizers, self.prune_opa * 2.0)

    def _update_state(self, params: Params, state: dict, info: dict) -> None:
        n = params["means"].shape[0]
        if state["grad2d"] is None or state["grad2d"].shape[0] != n:
            state["grad2d"] = torch.zeros(n, device=params["means"].device)
            state["count"] = torch.zeros(n, device=params["means"].device)
        grad = info["means2d"].grad
        if grad is None:
            return
        grads = grad.clone().reshape(n, 2)
        grads[:, 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[:, 1] *= info["height"] / 2.0 * info["n_cameras"]
        visible = (info["radii"].reshape(n, -1) > 0).all(dim=-1)
        state["grad2d"][visible] += grads[visible].norm(dim=-1)
        state["count"][visible] += 1

    @torch.no_grad()
    def _grow(self, params: Params, optimizers: Optimizers, state: dict) -> None:
        grads = state["grad2d"] / state["count"].clamp_min(1)
        high = grads > self.grow_grad2d
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        dupli, split = high & small, high & ~small
        n_dupli = int(dupli.sum())
        if n_dupli:
            _edit(params, optimizers, lambda p: torch.cat([p, p[dupli]]),
                  lambda s: torch.cat([s, torch.zeros_like(s[dupli])]))
            for key in ("grad2d", "count"):
                state[key] = torch.cat([state[key], state[key][dupli]])
        split = torch.cat([split, torch.zeros(n_dupli, dtype=torch.bool, device=split.device)])
        if int(split.sum()):
            self._split(params, optimizers, state, split)

    @staticmethod
    def _split(params: Params, optimizers: Optimizers, state: dict, mask: Tensor) -> None:
        scales = torch.exp(params["scales"][mask])
        rot = quat_to_rotmat(params["quats"][mask])
        samples = torch.einsum("nij,nj,bnj->bni", rot, scales, torch.randn(2, len(scales), 3, device=mask.device))
        new_means = (params["means"][mask] + samples).reshape(-1, 3)
        rest = ~mask

        def param_fn(name: str) -> Callable[[Tensor], Tensor]:
            def fn(p: Tensor) -> Tensor:
                if name == "means":
                    extra = new_means
                elif name == "scales":
                    extra = torch.log(scales / 1.6).repeat(2, 1)
                else:
                    extra = p[mask].repeat(2, *[1] * (p.dim() - 1))
                return torch.cat([p[rest], extra])
            return fn

        for name in list(params):
            _edit({name: params[name]}, optimizers, param_fn(name),
                  lambda s: torch.cat([s[rest], torch.zeros_like(s[mask]).repeat(2, *[1] * (s.dim() - 1))]))
            params[name] = optimizers[name].param_groups[0]["params"][0]
        for key in ("grad2d", "count"):
            state[key] = torch.cat([state[key][rest], state[key][mask].repeat(2)])

    @torch.no_grad()
    def _prune(self, params: Params, optimizers: Optimizers, state: dict, step: int) -> None:
        prune = torch.sigmoid(params["opacities"]) < self.prune_opa
        if step > self.reset_every:
            prune |= torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        if int(prune.sum()):
            keep_gaussians(params, optimizers, state, ~prune)

    @staticmethod
    @torch.no_grad()
    def _reset_opacity(params: Params, optimizers: Optimizers, value: float) -> None:
        limit = torch.logit(torch.tensor(value)).item()
        sub = {"opacities": params["opacities"]}
        _edit(sub, optimizers, lambda p: p.clamp_max(limit), torch.zeros_like)
        params["opacities"] = sub["opacities"]
