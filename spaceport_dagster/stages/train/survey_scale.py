"""Fit a preset's schedule to the survey: a 1,000-photo survey is not trained like an 18-photo one.

A preset names a floor (`steps`) and, with `steps_per_train_view` > 0, a rate: the run trains
`max(steps, min(rate x training views, max_steps))` steps, so every training view is seen about `rate` times
however large the survey. The densification schedule and the reporting intervals stretch by the same factor,
so growth stops at the same fraction of the run (gsplat's schedules are written for 30k steps; its MCMC
refinement stops at 25k). The Gaussian cap already scales with the training megapixels (`cap_per_train_mp`,
`model.gaussian_cap`) up to `cap_max`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import TrainConfig

# schedule fields stretched with the run (steps, not rates); refine_start_iter stays: the first densification
# waits for the initial Gaussians to settle, which does not depend on the survey's size
STRETCHED = ("refine_stop_iter", "reset_every", "eval_every", "checkpoint_every", "coarse_until_step")


@dataclass(frozen=True)
class SurveyFit:
    config: TrainConfig
    train_views: int
    preset_steps: int  # the preset's floor
    factor: float  # steps / preset_steps

    def describe(self) -> str:
        cfg = self.config
        if self.factor == 1.0:
            return f"{cfg.steps} steps for {self.train_views} training views (the preset's own schedule)"
        return (f"{cfg.steps} steps for {self.train_views} training views ({cfg.steps / self.train_views:.0f} per "
                f"view; the preset's {self.preset_steps} stretched x{self.factor:.2f}, densification until step "
                f"{cfg.refine_stop_iter})")


def planned_steps(cfg: TrainConfig, train_views: int) -> int:
    """Steps for `train_views` training views under `cfg`'s rate, floor (`steps`) and ceiling (`max_steps`)."""
    if cfg.steps_per_train_view <= 0:
        return cfg.steps
    steps = round(cfg.steps_per_train_view * train_views)
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    return max(cfg.steps, steps)


def fit_to_survey(cfg: TrainConfig, train_views: int) -> SurveyFit:
    """`cfg` with its steps and schedule fitted to a survey of `train_views` training views."""
    steps = planned_steps(cfg, train_views)
    if steps == cfg.steps:
        return SurveyFit(dataclasses.replace(cfg, steps_per_train_view=0.0, max_steps=0), train_views, cfg.steps, 1.0)
    factor = steps / cfg.steps
    stretched = {name: round(getattr(cfg, name) * factor) for name in STRETCHED if getattr(cfg, name)}
    # the rate has been applied: the fitted config is a plain fixed schedule (a resumed run keeps it)
    fitted = dataclasses.replace(cfg, steps=steps, steps_per_train_view=0.0, max_steps=0, **stretched)
    return SurveyFit(fitted, train_views, cfg.steps, factor)
