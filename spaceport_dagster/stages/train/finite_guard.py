"""Training's guard against non-finite Gaussians: one Gaussian whose parameters became NaN or infinite is
removed as soon as it appears, and counted, so it cannot sink an otherwise good splat at the `finite_parameters`
gate (which still blocks whatever non-finite parameter would reach the published PLY)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .densify import Optimizers, Params, keep_gaussians


@dataclass
class FiniteGuard:
    removed: int = 0
    events: list[dict] = field(default_factory=list)  # {"step", "gaussians", "parameters"} per removal

    @torch.no_grad()
    def check(self, params: Params, optimizers: Optimizers, state: dict, step: int) -> int:
        """Remove the Gaussians with any non-finite parameter; returns how many were removed at this step."""
        finite = {name: torch.isfinite(p.reshape(p.shape[0], -1)).all(dim=1) for name, p in params.items()}
        keep = torch.stack(list(finite.values())).all(dim=0)
        bad = int((~keep).sum())
        if not bad:
            return 0
        names = sorted(name for name, ok in finite.items() if not bool(ok.all()))
        keep_gaussians(params, optimizers, state, keep)
        self.removed += bad
        self.events.append({"step": step, "gaussians": bad, "parameters": names})
        return bad

    def state_dict(self) -> dict:
        return {"removed": self.removed, "events": list(self.events)}

    def load_state_dict(self, state: dict) -> None:
        self.removed, self.events = int(state["removed"]), list(state["events"])
