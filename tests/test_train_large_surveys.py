"""What lets training take a survey of real size: schedules fitted to the survey, photos held where they fit
(GPU, pinned host memory or decoded from disk ahead of use) with the same result, and full-resolution patches
whose camera renders exactly that window of the view."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.render import rasterize_params
from spaceport_dagster.stages.train import load_config, run
from spaceport_dagster.stages.train.data import load_scene
from spaceport_dagster.stages.train.model import init_params
from spaceport_dagster.stages.train.photos import PhotoStore, choose_residency
from spaceport_dagster.stages.train.survey_scale import fit_to_survey, planned_steps
from spaceport_dagster.stages.train.synthetic import write_synthetic_export
from spaceport_dagster.stages.train.trainer import Camera, _crop_camera

LOG = logging.getLogger("test_train_large_surveys")
TINY = {"preset": "preview", "max_long_side": 0, "steps": 40, "eval_every": 20, "checkpoint_every": 0,
        "refine_start_iter": 10, "refine_every": 10, "refine_stop_iter": 30, "min_gaussians": 100, "seed": 0,
        "background": "black"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("export"), n_views=10)


@pytest.mark.parametrize(("preset", "views", "steps", "refine_stop"), [
    ("standard", 26, 7000, 25_000),        # a 30-photo survey: the preset as it was
    ("standard", 263, 13_150, 46_964),      # 300 photos: 50 steps a view, schedule stretched x1.88
    ("standard", 875, 30_000, 107_143),     # 1,000 photos: the 30k ceiling
    ("quality", 263, 30_000, 25_000),       # below 300 views quality keeps its 30k floor
    ("quality", 875, 87_500, 72_917),       # 100 steps a view
    ("preview", 24, 300, 250),              # the demo: unchanged
    ("preview", 263, 789, 658),             # 3 steps a view
])
def test_presets_fit_the_survey(preset, views, steps, refine_stop):
    cfg = load_config({"preset": preset})
    fit = fit_to_survey(cfg, views)
    assert fit.config.steps == steps == planned_steps(cfg, views)
    # MCMC's refine_stop_iter (25k) sits beyond 7k steps in standard; it stretches by the same factor all the same
    assert fit.config.refine_stop_iter == refine_stop
    assert fit.config.refine_start_iter == cfg.refine_start_iter
    assert fit.config.steps_per_train_view == 0  # applied once: a resumed run does not stretch it again
    assert f"{steps} steps for {views} training views" in fit.describe()


def test_an_explicit_step_count_is_kept():
    cfg = load_config({"preset": "standard", "steps": 2000})
    assert cfg.steps_per_train_view == 0 and fit_to_survey(cfg, 875).config.steps == 2000
    both = load_config({"preset": "standard", "steps": 2000, "steps_per_train_view": 10})
    assert fit_to_survey(both, 875).config.steps == 8750
    with pytest.raises(ConfigError, match="patch_size must be 0"):
        load_config({"patch_size": 16})
    with pytest.raises(ConfigError, match="photo_residency must be"):
        load_config({"photo_residency": "cloud"})


def test_residency_follows_the_budgets():
    cpu = torch.device("cpu")
    assert choose_residency(10**6, cpu, "auto", 0.3, 0.4) == "device"
    assert choose_residency(10**15, cpu, "auto", 0.3, 0.4) == "disk"  # a petabyte of photos stays on disk
    assert choose_residency(10**15, cpu, "host", 0.3, 0.4) == "host"  # asked for explicitly


def test_disk_store_decodes_ahead_and_returns_the_same_pixels():
    calls: list[int] = []

    def load(i: int):
        calls.append(i)
        return torch.full((4, 6, 3), i, dtype=torch.uint8).numpy()

    store = PhotoStore(load, [(6, 4)] * 5, torch.device("cpu"), "disk", workers=2, lookahead=2)
    assert calls == []  # nothing decoded before it is announced
    store.announce([3, 1, 4])
    assert int(store[3][0, 0, 0]) == 3 and int(store[1][0, 0, 0]) == 1
    assert list(store._pending) == [4]  # the next announced view is being decoded ahead, two at a time
    assert int(store[4][0, 0, 0]) == 4 and sorted(calls) == [1, 3, 4]
    assert [int(p[0, 0, 0]) for p in store.iterate([0, 2])] == [0, 2]
    assert store.nbytes == 5 * 4 * 6 * 3
    store.close()


@pytest.mark.parametrize("residency", ["host", "disk"])
def test_training_is_the_same_wherever_the_photos_live(export, tmp_path, residency):
    """CPU training is deterministic at any thread count (test_train_stability.py): the bytes must match."""
    a = run({"export": str(export)}, tmp_path / "device", {**TINY, "photo_residency": "device"}, LOG)
    b = run({"export": str(export)}, tmp_path / residency, {**TINY, "photo_residency": residency}, LOG)
    assert b.metadata["photo_residency"] == residency and a.metadata["photo_residency"] == "device"
    assert (tmp_path / "device" / "point_cloud.ply").read_bytes() == (tmp_path / residency / "point_cloud.ply").read_bytes()
    assert a.metadata["psnr"] == b.metadata["psnr"]


def test_a_patch_camera_renders_that_window_of_the_view(export):
    scene = load_scene(export, 0, 8, torch.device("cpu"))
    cfg = load_config(TINY)
    params = init_params(scene.points, scene.colors, cfg, torch.device("cpu"), torch.Generator().manual_seed(0))
    params = {k: v.detach() for k, v in params.items()}
    view = scene.views[1]
    cam = Camera(torch.as_tensor(view.viewmat, dtype=torch.float32), torch.as_tensor(view.K, dtype=torch.float32),
                 view.width, view.height)
    full, _, _ = rasterize_params(params, cam.viewmat, cam.K, cam.width, cam.height, 0)
    x0, y0, w, h = 11, 7, 32, 24
    patch = _crop_camera(cam, x0, y0, w, h)
    window, _, _ = rasterize_params(params, patch.viewmat, patch.K, w, h, 0)
    assert window.shape[:2] == (h, w)
    difference = full[y0:y0 + h, x0:x0 + w].sub(window).abs()
    # the CPU rasteriser culls and tiles per image, so the last bits differ: under one 8-bit step anywhere
    assert float(difference.max()) < 1 / 255 and float(difference.mean()) < 1e-4
    assert float(window.abs().mean()) > 0.01  # the window shows the scene, not an empty background


def test_patch_training_trains_and_reports_it(export, tmp_path):
    report = run({"export": str(export)}, tmp_path / "patches", {**TINY, "patch_size": 32, "depth_lambda": 0.1}, LOG)
    meta = report.metadata
    assert "patches of 32 px" in meta["training_resolution"]
    summary = json.loads((tmp_path / "patches" / "metrics.json").read_text())["summary"]
    assert summary["steps"] == 40 and meta["psnr"] > meta["baseline_psnr"] + 3.0
    assert not report.failed_gates(), [c.description for c in report.checks if not c.passed]


def test_the_means_learning_rate_follows_the_camera_depth_on_wide_surveys(export):
    """A survey much wider than its camera-to-ground distance would move its Gaussians as fast as its extent
    says (a 300-photo survey did not train at all): the MCMC presets cap that length at 1.25 median depths."""
    scene = load_scene(export, 0, 8, torch.device("cpu"))
    depths = torch.cat([scene.sparse_depths[i][1] for i in scene.train])
    assert scene.median_depth == pytest.approx(float(depths.median()))
    assert scene.lr_scale(0) == scene.scene_scale  # off: gsplat's camera extent
    assert scene.lr_scale(1e6) == scene.scene_scale  # a cap above the extent changes nothing
    tight = 0.1 * scene.scene_scale / (1.1 * scene.median_depth)
    assert scene.lr_scale(tight) == pytest.approx(0.1 * scene.scene_scale)
    cfg = load_config({"preset": "standard", "device": "cpu", "lr_scale_max_depths": tight})
    from spaceport_dagster.stages.train.trainer import Trainer

    trainer = Trainer(scene, cfg, torch.device("cpu"), LOG)
    assert trainer.optimizers["means"].param_groups[0]["lr"] == pytest.approx(cfg.means_lr * 0.1 * scene.scene_scale)
    assert load_config({"preset": "standard"}).lr_scale_max_depths == 1.25
    assert load_config({"preset": "preview"}).lr_scale_max_depths == 0  # the CPU preview keeps its measured scale
