"""The training loop: render a random training view, L1 + SSIM loss, Adam, densify; score the test views
plainly (as published), choose only on validation views, checkpoint and resume."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from spaceport_dagster.stages.evaluation import score_plain
from spaceport_dagster.stages.image_metrics import ssim_map_mean
from spaceport_dagster.stages.render import rasterize_params

from .config import TrainConfig
from .data import Scene
from .early_stop import EarlyStop
from .finite_guard import FiniteGuard
from .model import Appearance, init_params, make_optimizers, make_strategy, means_lr_gamma


@dataclass
class Camera:
    viewmat: Tensor
    K: Tensor
    width: int
    height: int


@dataclass
class TrainResult:
    params: dict[str, torch.nn.Parameter]
    appearance: Appearance | None
    evals: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0
    train_seconds: float = 0.0
    resumed_from: str | None = None
    stopped_early: bool = False
    nonfinite_removed: int = 0  # Gaussians removed during training because a parameter became NaN or infinite


def _cameras(scene: Scene, device: torch.device, factor: int = 1) -> list[Camera]:
    cams = []
    for v in scene.views:
        K = torch.as_tensor(v.K, dtype=torch.float32, device=device).clone()
        w, h = max(1, v.width // factor), max(1, v.height // factor)
        K[0] *= w / v.width
        K[1] *= h / v.height
        cams.append(Camera(torch.as_tensor(v.viewmat, dtype=torch.float32, device=device), K, w, h))
    return cams


def _crop_camera(cam: Camera, x0: int, y0: int, width: int, height: int) -> Camera:
    """The camera of the window (x0, y0, width, height) of `cam`'s image: the principal point moves."""
    K = cam.K.clone()
    K[0, 2] -= x0
    K[1, 2] -= y0
    return Camera(cam.viewmat, K, width, height)


def _downscale(photo: Tensor, cam: Camera) -> Tensor:
    if photo.shape[0] == cam.height and photo.shape[1] == cam.width:
        return photo
    x = photo.permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=(cam.height, cam.width), mode="area")[0].permute(1, 2, 0).round().to(torch.uint8)


class Trainer:
    def __init__(self, scene: Scene, cfg: TrainConfig, device: torch.device, log: logging.Logger):
        self.scene, self.cfg, self.device, self.log = scene, cfg, device, log
        self.generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.params = init_params(scene.points, scene.colors, cfg, device, self.generator)
        if cfg.depth_lambda:
            observations = sum(len(scene.sparse_depths[i][1]) for i in scene.train)
            if observations:
                log.info(f"depth loss on {observations} SfM observations in {len(scene.train)} training views")
            else:
                log.warning("depth loss: the export lists no SfM observations for the training views; it is off")
        self.lr_scale = scene.lr_scale(cfg.lr_scale_max_depths)
        if self.lr_scale < scene.scene_scale:
            log.info(f"means learning rate scaled by {self.lr_scale:.1f} ({cfg.lr_scale_max_depths} x 1.1 x the median "
                     f"camera depth {scene.median_depth:.1f}), not the camera extent {scene.scene_scale:.1f}")
        self.optimizers = make_optimizers(self.params, cfg, self.lr_scale)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"], means_lr_gamma(cfg.steps))
        train_mp = sum(scene.views[i].width * scene.views[i].height for i in scene.train) / 1e6
        self.strategy, self.mcmc = make_strategy(cfg, device, log, train_mp)
        self.strategy_state = (self.strategy.initialize_state() if self.mcmc
                               else self.strategy.initialize_state(scene_scale=scene.scene_scale))
        self.appearance = Appearance(len(scene.views), device) if cfg.appearance == "affine" else None
        self.app_opt = (torch.optim.Adam(self.appearance.parameters(), lr=cfg.appearance_lr)
                        if self.appearance is not None else None)
        self.baseline = scene.mean_colour()  # the photos never change: the baseline colour is computed once
        self.background = self.baseline.to(device) if cfg.background == "mean" else None
        # random backgrounds come from their own seeded stream, so they do not shift the view order
        self.background_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.cams = _cameras(scene, device)
        self.coarse_cams = _cameras(scene, device, cfg.coarse_factor) if cfg.coarse_factor > 1 else self.cams
        # patch windows come from their own seeded stream too
        self.patch_generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.evals: list[dict[str, Any]] = []
        # published parameters and evaluation record of the best validation PSNR so far, for early stop's restore
        self.best_state: tuple[dict[str, Tensor], dict[str, Any]] | None = None
        self.start_step = 0
        self.elapsed_before = 0.0
        self.finite_guard = FiniteGuard()

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save_checkpoint(self, folder: Path, step: int, elapsed: float) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ckpt_{step:07d}.pt"
        state = {
            "step": step, "elapsed": elapsed, "evals": self.evals,
            "params": {k: v.detach() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scheduler": self.scheduler.state_dict(), "strategy_state": self.strategy_state,
            "appearance": None if self.appearance is None else self.appearance.state_dict(),
            "app_opt": None if self.app_opt is None else self.app_opt.state_dict(),
            "generator": self.generator.get_state(), "config_steps": self.cfg.steps,
            "background_generator": self.background_generator.get_state(),
            "best_state": self.best_state, "finite_guard": self.finite_guard.state_dict(),
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint behind
        for old in sorted(folder.glob("ckpt_*.pt"))[:-1]:
            old.unlink()
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.params.clear()
        for k, v in state["params"].items():
            self.params[k] = torch.nn.Parameter(v.to(self.device))
        self.optimizers = make_optimizers(self.params, self.cfg, self.lr_scale)
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"], means_lr_gamma(self.cfg.steps))
        self.scheduler.load_state_dict(state["scheduler"])
        self.strategy_state = state["strategy_state"]
        if self.appearance is not None and state["appearance"] is not None:
            self.appearance.load_state_dict(state["appearance"])
            self.app_opt.load_state_dict(state["app_opt"])
        self.generator.set_state(state["generator"])
        if "background_generator" in state:
            self.background_generator.set_state(state["background_generator"])
        self.evals = list(state["evals"])
        best = state.get("best_state")
        self.best_state = None if best is None else ({k: v.to(self.device) for k, v in best[0].items()}, best[1])
        if "finite_guard" in state:
            self.finite_guard.load_state_dict(state["finite_guard"])
        self.start_step = int(state["step"])
        self.elapsed_before = float(state["elapsed"])
        self.log.info(f"resumed from {path} at step {self.start_step}")

    # -- rendering ---------------------------------------------------------------------------------------------
    def training_background(self) -> Tensor | None:
        if self.cfg.background == "random":
            return torch.rand(3, generator=self.background_generator).to(self.device, non_blocking=True)
        return self.background

    def patch_window(self, cam: Camera) -> tuple[int, int, int, int] | None:
        """A random patch_size window (x0, y0, width, height) of `cam`'s image, or None for the whole view."""
        size = self.cfg.patch_size
        if not size or (cam.width <= size and cam.height <= size):
            return None
        width, height = min(size, cam.width), min(size, cam.height)
        x0 = int(torch.randint(0, cam.width - width + 1, (1,), generator=self.patch_generator))
        y0 = int(torch.randint(0, cam.height - height + 1, (1,), generator=self.patch_generator))
        return x0, y0, width, height

    def training_target(self, index: int, coarse: bool) -> tuple[Camera, Tensor, tuple[int, int]]:
        """The camera, photo (float, [0, 1]) and window offset a training step of view `index` uses: the whole
        view (at the coarse size early in a coarse-to-fine run) or a random patch of it."""
        cam = self.coarse_cams[index] if coarse else self.cams[index]
        photo = self.scene.photos[index]
        if coarse:
            photo = _downscale(photo, cam)
        window = self.patch_window(cam)
        if window is None:
            return cam, photo.float() / 255.0, (0, 0)
        x0, y0, width, height = window
        return (_crop_camera(cam, x0, y0, width, height), photo[y0:y0 + height, x0:x0 + width].float() / 255.0,
                (x0, y0))

    def render(self, index: int, sh_degree: int, coarse: bool = False, cam: Camera | None = None):
        """Training view `index` as the loss sees it: its colour map (if any) and the training background; `cam`
        (a patch's camera) replaces the view's own."""
        cam = cam or (self.coarse_cams[index] if coarse else self.cams[index])
        params = self.params if self.appearance is None else self.appearance.transform(self.params, index)
        return rasterize_params(
            params, cam.viewmat, cam.K, cam.width, cam.height, sh_degree, background=self.training_background(),
            near_plane=self.cfg.near_plane, far_plane=self.cfg.far_plane, absgrad=self.cfg.absgrad,
            expected_depth=self.cfg.depth_lambda > 0,
        )

    def depth_loss(self, index: int, info: dict, coarse: bool, cam: Camera | None = None,
                   offset: tuple[int, int] = (0, 0)) -> Tensor | None:
        """Mean |log rendered depth - log SfM depth| at the keypoints training view `index` observed (those
        inside the patch `cam` at `offset`, when training on patches)."""
        uv, depth = self.scene.sparse_depths[index]
        if not len(depth):
            return None
        full, view = (self.coarse_cams if coarse else self.cams)[index], self.scene.views[index]
        cam = cam or full
        col = (uv[:, 0] * (full.width / view.width)).long().clamp(0, full.width - 1) - offset[0]
        row = (uv[:, 1] * (full.height / view.height)).long().clamp(0, full.height - 1) - offset[1]
        inside = (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
        if not bool(inside.any()):
            return None
        rendered = info["expected_depth"][row[inside], col[inside], 0]
        return (torch.log(rendered.clamp_min(1e-6)) - torch.log(depth[inside])).abs().mean()

    def published_params(self) -> dict[str, Tensor]:
        """The parameters as the PLY will hold them: the mean training colour map folded in, no other model."""
        params = {k: v.detach() for k, v in self.params.items()}
        return params if self.appearance is None else self.appearance.fold_mean(params, self.scene.train)

    @torch.no_grad()
    def evaluate(self, step: int, elapsed: float, train_loss: float) -> dict[str, Any]:
        """Plain figures of the splat as it would be published: test views (reported) and validation views
        (early stop's figure), at training resolution. The final, export-resolution figures are the stage's."""
        scene = self.scene
        sh = min(step // self.cfg.sh_degree_interval, self.cfg.sh_degree)
        params = self.published_params()
        scored = scene.test or scene.train  # no test views (test_every=0): report training views
        test = score_plain(params, sh, [scene.views[i] for i in scored], scene.photos.iterate(scored), self.baseline)
        record = {
            "step": step, "seconds": round(elapsed, 2), "gaussians": int(self.params["means"].shape[0]),
            "train_loss": None if math.isnan(train_loss) else round(train_loss, 5),  # step 0: nothing trained
            "psnr": test.psnr, "ssim": test.ssim, "alpha_mean": test.alpha, "baseline_psnr": test.baseline_psnr,
            "psnr_colour_corrected": test.psnr_colour_corrected,
        }
        if scene.val:
            val = score_plain(params, sh, [scene.views[i] for i in scene.val], scene.photos.iterate(scene.val))
            record["val_psnr"] = val.psnr
        self.evals.append(record)
        loss = "" if record["train_loss"] is None else f"loss {train_loss:.4f}, "
        val_text = f", validation {record['val_psnr']:.2f} dB" if "val_psnr" in record else ""
        self.log.info(f"step {step}: {record['gaussians']} Gaussians, {loss}test PSNR {record['psnr']:.2f} dB "
                      f"(mean colour {record['baseline_psnr']:.2f}), alpha {record['alpha_mean']:.3f}{val_text}, "
                      f"{elapsed:.1f} s")
        return record

    # -- the loop ----------------------------------------------------------------------------------------------
    def train(self, checkpoint_dir: Path | None) -> TrainResult:
        cfg, scene = self.cfg, self.scene
        sync = self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter() - self.elapsed_before
        loss_sum = torch.zeros((), device=self.device)
        loss_n = 0
        order: list[int] = []
        stopped = False
        early_stop = EarlyStop(cfg.early_stop_min_step, cfg.early_stop_min_delta, cfg.early_stop_patience)
        early_stop.replay(self.evals)  # a resumed run goes on counting where its checkpoint left off
        if self.start_step == 0:
            self.evaluate(0, 0.0, float("nan"))
        step = self.start_step
        for step in range(self.start_step, cfg.steps):
            if not order:
                order = [scene.train[i] for i in torch.randperm(len(scene.train), generator=self.generator).tolist()]
                scene.photos.announce(order[::-1])  # decoded ahead when the photos live on disk
            index = order.pop()
            coarse = cfg.coarse_factor > 1 and step < cfg.coarse_until_step
            cam, gt, offset = self.training_target(index, coarse)
            sh = min(step // cfg.sh_degree_interval, cfg.sh_degree)
            image, _, info = self.render(index, sh, coarse, cam)
            if not self.mcmc:
                self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
            l1 = (image - gt).abs().mean()
            ssim_loss = 1.0 - ssim_map_mean(image.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None])
            loss = l1 * (1.0 - cfg.ssim_lambda) + ssim_loss * cfg.ssim_lambda
            if cfg.depth_lambda:
                depth_loss = self.depth_loss(index, info, coarse, cam, offset)
                if depth_loss is not None:
                    loss = loss + cfg.depth_lambda * depth_loss
            if cfg.opacity_reg:
                loss = loss + cfg.opacity_reg * torch.sigmoid(self.params["opacities"]).mean()
            if cfg.scale_reg:
                loss = loss + cfg.scale_reg * torch.exp(self.params["scales"]).mean()
            if self.appearance is not None and cfg.appearance_reg:
                loss = loss + cfg.appearance_reg * self.appearance.penalty(scene.train)
            loss.backward()
            loss_sum += loss.detach()
            loss_n += 1
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            if self.app_opt is not None:
                self.app_opt.step()
                self.app_opt.zero_grad(set_to_none=True)
            self.scheduler.step()
            if self.mcmc:
                self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info,
                                                 lr=self.scheduler.get_last_lr()[0])
            else:
                self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info,
                                                 packed=False)
            removed = self.finite_guard.check(self.params, self.optimizers, self.strategy_state, step)
            if removed:
                self.log.warning(f"step {step}: removed {removed} Gaussian(s) whose "
                                 f"{', '.join(self.finite_guard.events[-1]['parameters'])} became NaN or infinite")
            done = step + 1
            if (cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps) or done == cfg.steps:
                if sync:
                    torch.cuda.synchronize()
                train_loss = float(loss_sum.item() / max(1, loss_n))
                loss_sum.zero_()
                loss_n = 0
                record = self.evaluate(done, time.perf_counter() - t0, train_loss)
                improved = bool(scene.val) and early_stop.observe(done, record["val_psnr"])
                if improved and cfg.early_stop_patience and cfg.early_stop_restore_best:
                    self.best_state = ({k: v.clone() for k, v in self.published_params().items()}, dict(record))
                if early_stop.should_stop and done < cfg.steps:
                    self.log.info(f"early stop at step {done}: validation PSNR has not improved for "
                                  f"{early_stop.since_best} evaluations")
                    stopped = True
            if checkpoint_dir is not None and cfg.checkpoint_every and (done % cfg.checkpoint_every == 0
                                                                        and done < cfg.steps):
                self.save_checkpoint(checkpoint_dir, done, time.perf_counter() - t0)
            if stopped:
                break
        if sync:
            torch.cuda.synchronize()
        best_state = self.best_state
        if stopped and best_state is not None and best_state[1]["step"] != self.evals[-1]["step"]:
            for k, v in best_state[0].items():  # published parameters: any colour map is folded in already
                self.params[k] = torch.nn.Parameter(v)
            if self.appearance is not None:
                self.appearance.affine.data.zero_()
            self.evals.append({**best_state[1], "restored_best": True})
            self.log.info(f"restored the parameters of step {best_state[1]['step']} (best validation PSNR)")
        steps_done = step + 1 if cfg.steps > self.start_step else self.start_step
        return TrainResult(self.params, self.appearance, self.evals, steps_done, time.perf_counter() - t0,
                           stopped_early=stopped, nonfinite_removed=self.finite_guard.removed)
