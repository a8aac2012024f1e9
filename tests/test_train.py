"""The splat trainer on CPU: the PyTorch fallback trains a tiny synthetic drone scene end to end, resumes from a
checkpoint, writes the standard PLY, and refuses broken exports; the quality gates fail on broken models."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from spaceport_dagster.stages.colmap_io import read_model
from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.evaluation import PlainScores
from spaceport_dagster.stages.ply import GaussianCloud, property_names, read_ply, write_ply
from spaceport_dagster.stages.render import View, cloud_to_params, render
from spaceport_dagster.stages.train import load_config, run
from spaceport_dagster.stages.train import stage as train_stage
from spaceport_dagster.stages.train.checks import (
    check_baseline,
    check_coverage,
    check_finite,
    check_floor,
    check_min_gaussians,
    check_ply,
    quality_checks,
)
from spaceport_dagster.stages.train.coverage import SfmCoverage
from spaceport_dagster.stages.train.data import ExportError, load_scene, observed_depths
from spaceport_dagster.stages.train.model import to_cloud
from spaceport_dagster.stages.train.synthetic import write_synthetic_export

LOG = logging.getLogger("test_train")
# small enough for 2 CI cores: 64x48 photos, 400 SfM points, a short schedule with one densification.
# The synthetic photos show black beyond the ground patch, so the background stays black here.
TINY = {"preset": "preview", "max_long_side": 0, "steps": 60, "eval_every": 30, "checkpoint_every": 30,
        "refine_start_iter": 20, "refine_every": 20, "refine_stop_iter": 50, "min_gaussians": 100, "seed": 0,
        "background": "black"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_synthetic_export(tmp_path_factory.mktemp("export"), n_views=12)


@pytest.fixture
def one_thread():
    """Byte-for-byte comparisons at one thread (the stage trains on the CPU with PyTorch's deterministic kernels,
    so any thread count gives the same bytes: tests/test_train_stability.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    torch.set_num_threads(2)
    report = run({"export": str(export)}, out, TINY, LOG)
    return out, report


def test_fallback_trains_tiny_scene(trained):
    out, report = trained
    metrics = json.loads((out / "metrics.json").read_text())
    evals = metrics["evals"]
    assert [e["step"] for e in evals] == [0, 30, 60]
    initial, final = evals[0]["psnr"], evals[-1]["psnr"]
    # the preview preset starts from opaque Gaussians at every SfM point (about 22 dB here at step 0, was 12)
    assert final >= initial + 3.0, (initial, final)
    assert final >= evals[-1]["baseline_psnr"] + 3.0
    assert evals[-1]["ssim"] > evals[0]["ssim"]
    assert metrics["summary"]["backend"] == "torch" and metrics["summary"]["test_views"] == 2
    meta = report.metadata
    assert meta["steps"] == 60 and meta["gaussians"] == len(read_ply(out / "point_cloud.ply"))
    # the headline is the written PLY scored plainly at the export's size (here also the training size)
    assert meta["psnr"] == pytest.approx(final, abs=1e-4) and meta["ply_bytes"] == (out / "point_cloud.ply").stat().st_size
    assert meta["resolution"] == "64x48" and meta["scored_on"] == "test views"
    assert [v["name"] for v in metrics["test_views"]["per_view"]] == ["view_000.png", "view_008.png"]
    assert meta["psnr_colour_corrected"] >= meta["psnr"] - 1e-6  # an affine fit can only help
    assert meta["colour_corrected_gap_db"] == pytest.approx(meta["psnr_colour_corrected"] - meta["psnr"])
    assert "data:image/jpeg;base64," in meta["previews"]["raw_value"]
    assert len(meta["previews"]["raw_value"]) < 60_000
    by_name = {c.name: c for c in report.checks}
    assert set(by_name) == {"min_gaussians", "finite_parameters", "ply_readable", "beats_mean_colour_baseline",
                            "coverage", "absolute_psnr_floor"}
    assert all(by_name[n].passed for n in ("min_gaussians", "finite_parameters", "ply_readable",
                                           "beats_mean_colour_baseline"))
    assert not by_name["absolute_psnr_floor"].blocking


def test_outputs_written(trained):
    out, _ = trained
    cams = json.loads((out / "cameras.json").read_text())["cameras"]
    assert len(cams) == 12 and sum(c["heldout"] for c in cams) == 2
    assert [c["name"] for c in cams if c["heldout"]] == ["view_000.png", "view_008.png"]
    previews = sorted((out / "previews").glob("*.png"))
    assert [p.name for p in previews] == ["view_000.png", "view_008.png"]
    with Image.open(previews[0]) as im:
        assert im.size == (64 * 2 + 4, 48)
    with Image.open(out / "training_curve.png") as im:
        assert im.width > 100
    assert len(list((out / "checkpoints").glob("ckpt_*.pt"))) == 1  # only the newest is kept


def test_ply_is_standard_and_round_trips(trained, tmp_path):
    out, _ = trained
    path = out / "point_cloud.ply"
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header
    assert [line.split()[-1] for line in header.splitlines() if line.startswith("property")] == property_names(15)
    cloud = read_ply(path)
    assert cloud.shN.shape[1:] == (15, 3) and cloud.all_finite()
    assert np.all(cloud.shN[:, 3:] == 0)  # preview trains SH degree 1; the rest is zero padding
    again = tmp_path / "again.ply"
    write_ply(again, cloud)
    assert again.read_bytes() == path.read_bytes()


def test_render_api_matches_training_views(trained, export):
    out, _ = trained
    cloud = read_ply(out / "point_cloud.ply")
    view = View.from_dict(json.loads((out / "cameras.json").read_text())["cameras"][8])
    image = render(cloud, view, view.width, view.height, "cpu")
    assert image.shape == (48, 64, 3) and float(image.min()) >= 0 and float(image.max()) <= 1
    half = render(cloud, view, 32, 24, "cpu")
    assert half.shape == (24, 32, 3)
    params = cloud_to_params(cloud, "cpu")  # converted once, for many views
    assert torch.equal(render(params, view, 32, 24, sh_degree=cloud.sh_degree), half)
    with pytest.raises(ValueError, match="sh_degree"):
        render(params, view)


def test_resume_from_checkpoint(export, trained, tmp_path):
    out, _ = trained
    ckpt = next((out / "checkpoints").glob("ckpt_*.pt"))
    assert ckpt.name == "ckpt_0000030.pt"
    resumed = tmp_path / "resumed"
    report = run({"export": str(export), "resume": str(ckpt)}, resumed, {**TINY, "steps": 40}, LOG)
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["summary"]["resumed_from"] == str(ckpt)
    assert [e["step"] for e in metrics["evals"]] == [0, 30, 40]  # history kept, 10 more steps trained
    assert report.metadata["steps"] == 40


def test_missing_resume_checkpoint_is_a_clear_error(export, tmp_path):
    with pytest.raises(FileNotFoundError, match="resume checkpoint .*nowhere.pt does not exist"):
        run({"export": str(export), "resume": str(tmp_path / "nowhere.pt")}, tmp_path / "out", TINY, LOG)


def test_resume_finds_checkpoint_in_output(export, trained, tmp_path):
    out, _ = trained
    retry = tmp_path / "retry"
    shutil.copytree(out / "checkpoints", retry / "checkpoints")
    report = run({"export": str(export)}, retry, {**TINY, "steps": 31, "checkpoint_every": 0}, LOG)
    assert report.metadata["resumed_from"].endswith("ckpt_0000030.pt") and report.metadata["steps"] == 31


def test_checkpoints_in_a_persistent_folder_resume_only_the_same_config(export, tmp_path):
    """A retried attempt (fresh output folder) resumes from the launcher's checkpoint folder; a run under another
    config clears those checkpoints instead of resuming a different model."""
    keep = tmp_path / "kept-checkpoints"
    first = run({"export": str(export), "checkpoints": str(keep)}, tmp_path / "a1", {**TINY, "steps": 45}, LOG)
    assert "resumed_from" not in first.metadata  # None values are left out of the metadata
    assert (keep / "ckpt_0000030.pt").is_file() and not (tmp_path / "a1" / "checkpoints").exists()
    retry = run({"export": str(export), "checkpoints": str(keep)}, tmp_path / "a2", {**TINY, "steps": 50}, LOG)
    assert retry.metadata["resumed_from"] == str(keep / "ckpt_0000030.pt") and retry.metadata["steps"] == 50
    other = run({"export": str(export), "checkpoints": str(keep)}, tmp_path / "b", {**TINY, "steps": 45, "seed": 7}, LOG)
    assert "resumed_from" not in other.metadata  # seed differs: not the same model, trained from scratch


def test_broken_exports_give_clear_errors(export, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        load_scene(tmp_path / "nowhere", 0, 8, torch.device("cpu"))
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(ExportError, match="no images/ folder or it is empty"):
        load_scene(tmp_path / "empty", 0, 8, torch.device("cpu"))
    bad = tmp_path / "bad"
    shutil.copytree(export, bad)
    (bad / "sparse" / "0" / "images.bin").write_bytes(b"\x05\x00")
    with pytest.raises(ExportError, match="unreadable COLMAP model.*truncated"):
        load_scene(bad, 0, 8, torch.device("cpu"))
    shutil.rmtree(bad / "sparse")
    with pytest.raises(ExportError, match=r"lacks cameras\.bin"):
        load_scene(bad, 0, 8, torch.device("cpu"))
    gone = tmp_path / "gone"
    shutil.copytree(export, gone)
    (gone / "images" / "view_003.png").unlink()
    with pytest.raises(ExportError, match="lacks 1 image file"):
        load_scene(gone, 0, 8, torch.device("cpu"))
    (gone / "images" / "view_003.png").write_bytes(b"not a png")
    with pytest.raises(ExportError, match="cannot decode export image view_003.png"):
        load_scene(gone, 0, 8, torch.device("cpu"))
    with pytest.raises(ValueError, match="input named 'export'"):
        run({}, tmp_path / "x", {}, LOG)


def _cloud(n: int) -> GaussianCloud:
    rng = np.random.default_rng(0)
    return GaussianCloud(means=rng.normal(size=(n, 3)).astype(np.float32), sh0=np.zeros((n, 3), np.float32),
                         shN=np.zeros((n, 15, 3), np.float32), opacities=np.zeros(n, np.float32),
                         scales=np.full((n, 3), -3, np.float32), quats=np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32))


def _plain(psnr: float, baseline: float | None, alpha: float = 0.99) -> PlainScores:
    return PlainScores(psnr, 0.5, alpha, psnr + 0.5, baseline, "64x48")


def test_checks_fail_on_broken_models(tmp_path):
    cfg = load_config({})
    assert check_min_gaussians(_cloud(1000), cfg).passed
    few = check_min_gaussians(_cloud(999), cfg)
    assert not few.passed and few.blocking and "999 Gaussians" in few.description
    nan = _cloud(2000)
    nan.scales[5, 1] = np.nan
    assert check_finite(_cloud(10)).passed
    bad = check_finite(nan)
    assert not bad.passed and bad.blocking
    good = tmp_path / "good.ply"
    write_ply(good, _cloud(1500))
    assert check_ply(good, 1500).passed
    assert not check_ply(good, 1499).passed
    # the cloud the stage already read back serves the check: its count and values are the ones checked
    assert check_ply(good, 1500, from_disk=read_ply(good)).passed
    short = check_ply(good, 1500, from_disk=_cloud(1499))
    assert not short.passed and "1499 vertices, expected 1500" in short.description
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    assert not check_ply(garbage, 1500).passed
    low_sh = tmp_path / "sh1.ply"
    write_ply(low_sh, GaussianCloud(**{**_cloud(1500).__dict__, "shN": np.zeros((1500, 3, 3), np.float32)}))
    assert not check_ply(low_sh, 1500).passed  # 9 f_rest: not the layout viewers expect
    assert check_baseline(_plain(16.4, 13.3), cfg).passed
    dummy = check_baseline(_plain(15.0, 13.3), cfg)
    assert not dummy.passed and dummy.blocking and "black background, no colour model" in dummy.description
    assert dummy.metadata["value"] == 15.0 and dummy.metadata["threshold"] == pytest.approx(16.3)
    assert not check_baseline(_plain(float("nan"), 13.3), cfg).passed
    assert not check_baseline(_plain(20.0, None), cfg).passed  # a baseline that was not measured never passes
    floor = check_floor(15.0, cfg)
    assert not floor.passed and not floor.blocking
    fills, open_sky = SfmCoverage(0.98, 4.0, True), SfmCoverage(0.7, None, False)
    holes = check_coverage(_plain(20.0, 13.0, alpha=0.66), fills, cfg)
    assert not holes.passed and holes.blocking and "mean alpha 0.660" in holes.description
    sky = check_coverage(_plain(20.0, 13.0, alpha=0.66), open_sky, cfg)
    assert not sky.passed and not sky.blocking  # may be right where the scene leaves the photos open: warns
    assert check_coverage(_plain(20.0, 13.0, alpha=0.95), fills, cfg).passed
    checks = quality_checks(nan, good, _plain(30.0, 10.0), fills, load_config({"min_gaussians": 5000}))
    failed = {c.name for c in checks if not c.passed}
    assert failed == {"min_gaussians", "finite_parameters", "ply_readable"}


def test_to_cloud_pads_sh_and_keeps_values():
    params = {"means": torch.ones(3, 3), "sh0": torch.zeros(3, 3), "shN": torch.full((3, 3, 3), 0.5),
              "opacities": torch.zeros(3), "scales": torch.zeros(3, 3), "quats": torch.ones(3, 4)}
    cloud = to_cloud(params)
    assert cloud.shN.shape == (3, 15, 3) and np.all(cloud.shN[:, :3] == 0.5) and np.all(cloud.shN[:, 3:] == 0)


def test_config_presets_and_errors():
    assert load_config({"preset": "standard"}).steps == 7000
    std = load_config({})
    assert (std.strategy, std.appearance, std.background, std.early_stop_patience) == ("mcmc", "none", "random", 0)
    preview = load_config({"preset": "preview"})
    assert (preview.background, preview.appearance) == ("random", "none")
    with pytest.raises(ConfigError, match="validation_every"):
        load_config({"early_stop_patience": 2})  # early stop must not choose on the test views
    ref = load_config({"preset": "reference"})
    assert (ref.strategy, ref.appearance, ref.background, ref.sh_degree) == ("default", "none", "black", 3)
    assert load_config({"preset": "quality"}).cap_max == 5_000_000
    assert load_config({"preset": "preview", "steps": 10}).steps == 10
    with pytest.raises(ConfigError, match="no option"):
        load_config({"stepz": 3})
    with pytest.raises(ConfigError, match="strategy must be 'default' or 'mcmc', not 'magic'"):
        load_config({"strategy": "magic"})
    with pytest.raises(ConfigError, match="background must be 'black', 'random' or 'mean', not 'white'"):
        load_config({"background": "white"})
    with pytest.raises(ConfigError, match="depth_lambda must be >= 0"):
        load_config({"preset": "preview", "depth_lambda": -0.1})
    assert load_config({"preset": "preview"}).depth_lambda == 0.1 and load_config({}).depth_lambda == 0.0
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config({"preset": "turbo"})


def test_a_resumed_run_stops_early_where_the_uninterrupted_run_did(export, tmp_path, one_thread):
    """The evaluations stored in the checkpoint count towards patience, so resuming at step 30 stops at 40 too,
    and the best model so far travels in the checkpoint, so the resumed run restores the same step-20 model."""
    cfg = {**TINY, "steps": 200, "eval_every": 10, "checkpoint_every": 30, "early_stop_patience": 2,
           "early_stop_min_delta": 8.0, "early_stop_min_step": 20, "validation_every": 5}
    whole = run({"export": str(export)}, tmp_path / "whole", cfg, LOG)
    assert whole.metadata["stopped_early"] and whole.metadata["steps"] == 40  # best at 20, then 30 and 40 gain < 8 dB
    ckpt = tmp_path / "whole" / "checkpoints" / "ckpt_0000030.pt"
    resumed = run({"export": str(export), "resume": str(ckpt)}, tmp_path / "resumed", cfg, LOG)
    evals = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["evals"]
    assert resumed.metadata["stopped_early"] and resumed.metadata["steps"] == 40
    assert [e["step"] for e in evals] == [0, 10, 20, 30, 40, 20] and evals[-1]["restored_best"]
    whole_ply = (tmp_path / "whole" / "point_cloud.ply").read_bytes()
    assert (tmp_path / "resumed" / "point_cloud.ply").read_bytes() == whole_ply


def test_early_stop_restores_best(export, tmp_path):
    """Patience 1 with evaluations every 10 steps: training stops early and writes the best evaluation's model."""
    cfg = {**TINY, "steps": 200, "eval_every": 10, "checkpoint_every": 0, "early_stop_patience": 1,
           "early_stop_min_delta": 8.0, "early_stop_min_step": 20, "validation_every": 5}
    report = run({"export": str(export)}, tmp_path, cfg, LOG)
    evals = json.loads((tmp_path / "metrics.json").read_text())["evals"]
    assert report.metadata["stopped_early"] and report.metadata["steps"] == 30
    assert [e["step"] for e in evals] == [0, 10, 20, 30, 20]  # 10 is before min_step; 30 gained < 8 dB
    assert evals[-1]["restored_best"] and report.metadata["psnr"] == pytest.approx(evals[2]["psnr"], abs=1e-4)
    assert report.metadata["validation_views"] == 2  # view 3 and view 9 of 12: out of training, never tests


def test_sparse_depths_are_the_points_each_view_observed(export, tmp_path):
    """The depth loss's targets: each view's keypoints at training resolution with their points' camera depths;
    keypoints whose point a filtered export dropped are left out."""
    scene = load_scene(export, 32, 8, torch.device("cpu"))
    model = read_model(export / "sparse" / "0")
    by_name = {im.name: im for im in model.images.values()}
    xyz = dict(zip(model.points.ids.tolist(), model.points.xyz, strict=True))
    for view, (uv, depth) in zip(scene.views, scene.sparse_depths, strict=True):
        image = by_name[view.name]
        assert len(depth) == len(image.point3D_ids) > 50
        points = np.stack([xyz[i] for i in image.point3D_ids.tolist()])
        cam = points @ view.viewmat[:3, :3].T + view.viewmat[:3, 3]
        np.testing.assert_allclose(depth.numpy(), cam[:, 2], rtol=1e-5)
        np.testing.assert_allclose(uv.numpy(), (cam[:, :2] / cam[:, 2:]) @ view.K[:2, :2].T + view.K[:2, 2],
                                   atol=1e-3)  # 64x48 keypoints at 32x24
    image = next(iter(model.images.values()))
    image.point3D_ids = np.where(np.arange(len(image.point3D_ids)) % 2 == 0, image.point3D_ids, 10**6)
    uv, depth = observed_depths(image, model.points, (1.0, 1.0))
    assert len(depth) == (len(image.point3D_ids) + 1) // 2
    np.testing.assert_allclose(uv, image.xys[::2], atol=1e-4)


def test_preview_covers_a_scene_that_fills_the_photos(tmp_path):
    """The ground fills every photo: the published splat, rendered plainly, must cover the test views and beat a
    flat image of the mean colour by 3 dB, and the coverage check blocks there."""
    export = write_synthetic_export(tmp_path / "export", n_views=12, n_sfm_points=1200, ground_extent=3.0)
    report = run({"export": str(export)}, tmp_path / "model", {"preset": "preview", "min_gaussians": 100,
                                                                "checkpoint_every": 0}, LOG)
    meta = report.metadata
    assert meta["scene_fills_photos"] and meta["alpha_mean"] >= 0.9, meta["alpha_mean"]
    assert meta["psnr"] >= meta["baseline_psnr"] + 3.0, (meta["psnr"], meta["baseline_psnr"])
    coverage = next(c for c in report.checks if c.name == "coverage")
    assert coverage.passed and coverage.blocking
    assert not report.failed_gates()


def test_selection_never_reads_the_test_views(export, tmp_path, monkeypatch, one_thread):
    """Early stop and the best-model restore choose on validation views: with the test photos replaced by noise
    after loading, the same step is chosen and the same PLY written, while the reported figures change."""
    cfg = {**TINY, "steps": 200, "eval_every": 10, "checkpoint_every": 0, "early_stop_patience": 1,
           "early_stop_min_delta": 1.0, "early_stop_min_step": 20, "validation_every": 5}
    clean = run({"export": str(export)}, tmp_path / "clean", cfg, LOG)

    def corrupted(*args, **kwargs):
        scene = load_scene(*args, **kwargs)
        noise = torch.Generator().manual_seed(3)
        for i in scene.test:
            scene.photos[i].copy_(torch.randint(0, 256, scene.photos[i].shape, generator=noise, dtype=torch.uint8))
        return scene

    monkeypatch.setattr(train_stage, "load_scene", corrupted)
    noisy = run({"export": str(export)}, tmp_path / "noisy", cfg, LOG)
    evals = [json.loads((tmp_path / d / "metrics.json").read_text())["evals"] for d in ("clean", "noisy")]
    assert [e["step"] for e in evals[0]] == [e["step"] for e in evals[1]]
    assert clean.metadata["steps"] == noisy.metadata["steps"] and clean.metadata["stopped_early"]
    assert (tmp_path / "clean" / "point_cloud.ply").read_bytes() == (tmp_path / "noisy" / "point_cloud.ply").read_bytes()
    assert noisy.metadata["psnr"] < clean.metadata["psnr"] - 5  # the test views did change
