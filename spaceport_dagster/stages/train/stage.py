"""The splat trainer stage: colmap_export in, splat_model out.

Inputs: `export` (folder with images/ + sparse/0/), optional `resume` (a checkpoint file or folder), optional
`checkpoints` (a folder that outlives a failed attempt, so a retry resumes; default `output/checkpoints/`).
Output folder: point_cloud.ply, cameras.json (at the export's resolution; `heldout` marks the test views),
metrics.json, previews/*.png, training_curve.png, checkpoints/. The headline figures are the written PLY
rendered plainly on the test views (`stages/evaluation.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spaceport_dagster.presets import GPU_TRAIN_PRESETS
from spaceport_dagster.stages.evaluation import PlainScores, score_plain
from spaceport_dagster.stages.ply import GaussianCloud, read_ply, write_ply
from spaceport_dagster.stages.render import cloud_to_params, gsplat_available, pick_device, render_view
from spaceport_dagster.stages.report import StageReport, md
from spaceport_dagster.stages.tiles.options import split_tile
from spaceport_dagster.stages.tiles.restrict import restrict_scene
from spaceport_dagster.stages.tiles.spec import TileSpec
from spaceport_dagster.stages.ui_metadata import curve_svg_markdown, inline_picture_markdown

from .checks import quality_checks
from .config import TrainConfig, load_config
from .coverage import sfm_coverage
from .data import Scene, load_scene
from .model import to_cloud
from .outputs import data_uri, side_by_side, write_cameras, write_curve, write_metrics
from .survey_scale import fit_to_survey
from .trainer import Trainer


def find_checkpoint(resume: str | None, checkpoints: Path) -> Path | None:
    """The newest checkpoint in `resume` (file or folder), else in the checkpoint folder."""
    if resume and not Path(resume).exists():
        raise FileNotFoundError(f"resume checkpoint {resume} does not exist")
    for place in ([Path(resume)] if resume else []) + [checkpoints]:
        if place.is_file():
            return place
        if place.is_dir():
            found = sorted(place.glob("ckpt_*.pt"))
            if found:
                return found[-1]
    return None


# Options that may change between a checkpoint and its resumption (run length, reporting, gates, device).
RESUME_INDEPENDENT = {"steps", "checkpoint_every", "eval_every", "previews", "device", "early_stop_patience",
                      "early_stop_min_delta", "early_stop_restore_best", "early_stop_min_step", "min_gaussians",
                      "baseline_margin_db", "psnr_floor_db", "min_alpha"}


def prepare_checkpoints(folder: Path, cfg: TrainConfig, log: logging.Logger) -> None:
    """Checkpoints are resumed only under the config that wrote them (run length aside); others are cleared."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "config.json"
    model_config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUME_INDEPENDENT}
    current = json.dumps(model_config, sort_keys=True, default=str)
    if stamp.is_file() and stamp.read_text() != current:
        stale = list(folder.glob("ckpt_*.pt"))
        log.warning(f"{len(stale)} checkpoint(s) in {folder} were written under another config; starting over")
        for path in stale:
            path.unlink()
    stamp.write_text(current)


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """PyTorch's deterministic kernels while training on the CPU. The rasteriser's backward pass scatters
    per-tile gradients back onto the Gaussians (an indexed accumulate); with more than one thread its default
    kernel adds them in whatever order the threads finish, so the last bits of the model, and after densification
    its whole course, changed from run to run. The deterministic kernel gives the same PLY whatever the thread
    count and load (tests/test_train.py). gsplat's CUDA kernels are not covered: on CUDA this is left off."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or before)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def score_published(cloud: GaussianCloud, scene: Scene, baseline: torch.Tensor,
                    device: torch.device) -> PlainScores:
    """The headline figures: the PLY as written, rendered plainly on the test views at the export's size."""
    indices = scene.test or scene.train  # no test views (test_every=0): training views, reported as such
    params = cloud_to_params(cloud, device)
    return score_plain(params, cloud.sh_degree, [scene.export_views[i] for i in indices],
                       scene.export_photos(indices), baseline)


def train(export: str, output: Path, cfg: TrainConfig, log: logging.Logger, resume: str | None = None,
          checkpoints: str | None = None, tile: TileSpec | None = None) -> StageReport:
    t_start = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    backend = "gsplat" if gsplat_available(device) else "torch"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    log.info(f"training {cfg.steps} steps on {device_name} with the {backend} rasteriser")  # progress.py reads it
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.backends.cudnn.benchmark = True  # fixed image sizes: let cuDNN pick the fastest SSIM convolutions
    scene = load_scene(export, cfg.max_long_side, cfg.test_every, device, log, cfg.validation_every,
                       cfg.photo_residency, cfg.gpu_photo_budget, cfg.host_photo_budget)
    if tile is not None:  # one tile of a tiled training (stages/tiles): its photos and SfM points only
        scene = restrict_scene(scene, tile, export, log)
        (output / "tile.json").write_text(json.dumps(tile.as_dict(), indent=1))
    fit = fit_to_survey(cfg, len(scene.train))
    cfg = fit.config
    log.info(f"schedule: {fit.describe()}")
    t_loaded = time.perf_counter()
    trainer = Trainer(scene, cfg, device, log)
    ckpt_dir = Path(checkpoints) if checkpoints else output / "checkpoints"
    prepare_checkpoints(ckpt_dir, cfg, log)
    ckpt = find_checkpoint(resume, ckpt_dir)
    if ckpt is not None:
        trainer.load_checkpoint(ckpt)
    with deterministic_algorithms(backend == "torch"):
        result = trainer.train(ckpt_dir if cfg.checkpoint_every else None)
    result.resumed_from = str(ckpt) if ckpt else None

    t_trained = time.perf_counter()
    cloud = to_cloud(trainer.published_params())
    ply_path = output / "point_cloud.ply"
    ply_bytes = write_ply(ply_path, cloud)
    t_written = time.perf_counter()
    published = read_ply(ply_path)  # read back once: scored here, checked by check_ply
    plain = score_published(published, scene, trainer.baseline, device)
    coverage = sfm_coverage([scene.views[i] for i in scene.train], scene.points)
    t_scored = time.perf_counter()
    write_cameras(output / "cameras.json", scene.export_views, scene.scene_scale)
    previews_md = _write_previews(output / "previews", trainer, cfg)
    wall = time.perf_counter() - t_start
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    summary = {
        "steps": result.steps_done, "wall_seconds": round(wall, 2), "train_seconds": round(result.train_seconds, 2),
        "gaussians": len(cloud), **plain.summary(), "scored_on": "test views" if scene.test else "training views",
        "ply_bytes": ply_bytes, "peak_gpu_mem_mb": round(peak_mb, 1), "device": device_name, "backend": backend,
        "train_views": len(scene.train), "validation_views": len(scene.val), "test_views": len(scene.test),
        "training_resolution": f"{scene.views[0].width}x{scene.views[0].height}"
                               + (f" (patches of {cfg.patch_size} px)" if cfg.patch_size else ""),
        "schedule": fit.describe(), "photo_residency": scene.photos.residency,
        "resumed_from": result.resumed_from, "stopped_early": result.stopped_early,
        "nonfinite_gaussians_removed": result.nonfinite_removed,
        "scene_fills_photos": coverage.fills, **({"tile": tile.label} if tile else {}),
        "seconds": {"load": round(t_loaded - t_start, 2), "train_loop": round(result.train_seconds, 2),
                    "to_ply_written": round(t_written - t_start, 2), "ply_write": round(t_written - t_trained, 2),
                    "plain_scoring": round(t_scored - t_written, 2)},
    }
    write_metrics(output / "metrics.json", result.evals, dataclasses.asdict(cfg), summary, plain.as_dict())
    write_curve(output / "training_curve.png", result.evals, log,
                title=f"scored at the training resolution {summary['training_resolution']}; the headline PSNR "
                      f"is the published PLY at {plain.resolution}")
    checks = quality_checks(cloud, ply_path, plain, coverage, cfg, from_disk=published)
    metadata: dict[str, Any] = {k: v for k, v in summary.items() if v is not None and k != "seconds"}
    metadata["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    curve = _curve_markdown(result.evals, metadata["training_resolution"], plain.resolution)
    if curve:
        metadata["training_curve"] = md(curve)
    if previews_md:
        first = sorted((output / "previews").glob("*.png"))[0]
        metadata["preview"] = md(inline_picture_markdown(Image.open(first), first.name,
                                                         f"{first.stem}: render | photo; all previews below"))
        metadata["previews"] = md(previews_md)
    log.info(f"trained {result.steps_done} steps in {wall:.1f} s: {len(cloud)} Gaussians; published PLY on the "
             f"test views, plainly: PSNR {plain.psnr:.2f} dB (flat mean colour {plain.baseline_psnr:.2f} dB), "
             f"SSIM {plain.ssim:.3f}, alpha {plain.alpha:.3f}; colour-corrected PSNR {plain.psnr_colour_corrected:.2f} dB")
    return StageReport(metadata, checks)


def _curve_markdown(evals: list[dict[str, Any]], scored_at: str, headline_at: str) -> str | None:
    """The held-out PSNR against the flat mean colour over training, small enough to show inline. It is
    scored at the training resolution (`scored_at`), the headline at the export's (`headline_at`): the caption
    says both, since the two figures differ."""
    rows = [e for e in evals if e.get("psnr") is not None and e.get("baseline_psnr") is not None
            and np.isfinite(e["psnr"]) and np.isfinite(e["baseline_psnr"])]
    if not rows:
        return None
    return curve_svg_markdown([e["step"] for e in rows], {"psnr": [e["psnr"] for e in rows],
                                                          "baseline": [e["baseline_psnr"] for e in rows]},
                              caption=f"test views while training (blue; flat mean colour: orange) at "
                                      f"{scored_at}; the headline is the PLY at {headline_at}")


@torch.no_grad()
def _write_previews(folder: Path, trainer: Trainer, cfg: TrainConfig) -> str:
    """Test views rendered as published (plainly) beside their photos; returns markdown with small copies."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = trainer.scene
    params = trainer.published_params()
    lines = []
    for i in (scene.test or scene.train)[: cfg.previews]:
        image, _ = render_view(params, cfg.sh_degree, scene.views[i])
        pair = side_by_side(image, scene.photos[i])
        name = Path(scene.views[i].name).stem + ".png"
        pair.save(folder / name)
        lines.append(f"**{scene.views[i].name}** (render | photo)\n\n![{name}]({data_uri(pair)})\n")
    return "\n".join(lines)


def refuse_gpu_preset_without_gpu(config: dict[str, Any]) -> None:
    """A GPU preset stops before training on a machine without a GPU (thousands of full-resolution steps would
    take hours on the CPU without a word), unless the CPU was asked for (`device: cpu`)."""
    preset = config.get("preset", "standard")
    if preset in GPU_TRAIN_PRESETS and config.get("device", "auto") == "auto" and not torch.cuda.is_available():
        raise ValueError(f"preset {preset!r} trains for a GPU and this machine has none: use the preview preset, or "
                         "SPACEPORT_COMPUTE=sagemaker for a GPU instance, or the option device: cpu to train it here")


def load_stage_config(config: dict[str, Any]) -> TrainConfig:
    """The typed config of `config`, whose tile spec (if any) is checked too (stages/options.py)."""
    return load_config(split_tile(config)[0])


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    if "export" not in inputs:
        raise ValueError("train needs an input named 'export' (a colmap_export folder with images/ and sparse/0/)")
    refuse_gpu_preset_without_gpu(config)
    options, tile = split_tile(config)
    return train(inputs["export"], output, load_config(options), log, inputs.get("resume"), inputs.get("checkpoints"),
                 tile)
