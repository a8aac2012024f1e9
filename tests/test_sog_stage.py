"""The SOG stage end to end: a splat folder in, <name>.sog + bundle/ out, metadata and quality checks."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.evaluation import score_plain
from spaceport_dagster.stages.ply import GaussianCloud, write_ply
from spaceport_dagster.stages.sog.reader import read_sog
from spaceport_dagster.stages.sog.stage import SogStageError, run
from spaceport_dagster.stages.sog.synthetic import realistic_cloud

render = pytest.importorskip("spaceport_dagster.stages.render", reason="the training stage's renderer is missing")

LOG = logging.getLogger("test_sog_stage")
CHECKS = {"bundle_decodes", "count_matches", "roundtrip_within_bounds", "size_ratio", "psnr_drop"}


def _scene() -> GaussianCloud:
    cloud = realistic_cloud(4000, 3, seed=31, blobs=40)
    cloud.means *= 0.2
    cloud.scales += 1.5
    return cloud


def _views() -> list:
    K = np.array([[80.0, 0, 48], [0, 80.0, 36], [0, 0, 1]])
    views = []
    for i, centre in enumerate([(0.0, 0.0, -12.0), (1.0, 0.0, -12.0), (0.0, 1.0, -12.0)]):
        viewmat = np.eye(4)
        viewmat[:3, 3] = -np.asarray(centre)  # camera axes = world axes, looking along +z
        views.append(render.View(f"view_{i}.png", viewmat, K, 96, 72, heldout=i > 0))
    return views


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, GaussianCloud]:
    root = tmp_path_factory.mktemp("sog_stage")
    splat, images = root / "splat_model", root / "colmap_export" / "images"
    splat.mkdir()
    images.mkdir(parents=True)
    cloud = _scene()
    write_ply(splat / "point_cloud.ply", cloud)
    views = _views()
    (splat / "cameras.json").write_text(json.dumps({"scene_scale": 5.0, "cameras": [v.to_dict() for v in views]}))
    rng = np.random.default_rng(0)
    for view in views:  # "photos": the uncompressed render plus sensor noise
        image = render.render(cloud, view, device="cpu").numpy()
        assert image.mean() > 0.05  # the scene is in view
        noisy = np.clip(image + rng.normal(0, 0.04, image.shape), 0, 1)
        Image.fromarray((noisy * 255).round().astype(np.uint8)).save(images / view.name)
    return splat, images.parent, cloud


def test_stage_with_photos(scene, tmp_path: Path):
    splat, export, cloud = scene
    out = tmp_path / "sogs_bundle"
    report = run({"splat": str(splat), "export": str(export)}, out, {"bundle_name": "demo"}, LOG)
    checks = {c.name: c for c in report.checks}
    assert set(checks) == CHECKS and all(c.blocking for c in checks.values())
    for name in CHECKS - {"size_ratio"}:
        assert checks[name].passed, checks[name].description
    m = report.metadata
    assert (out / "demo.sog").is_file() and (out / "bundle" / "meta.json").is_file()
    # the viewer's camera positions travel with the bundle
    assert (out / "cameras.json").read_bytes() == (splat / "cameras.json").read_bytes()
    assert sorted(p.name for p in (out / "bundle").iterdir()) == sorted(m["file_bytes"]["raw_value"])
    assert m["splats"] == 4000 and m["ply_bytes"] == (splat / "point_cloud.ply").stat().st_size
    assert m["bundle_bytes"] == (out / "demo.sog").stat().st_size
    assert m["ratio"] == pytest.approx(m["ply_bytes"] / m["bundle_bytes"])
    assert checks["size_ratio"].passed == (m["ratio"] >= 10.0)
    assert m["psnr_measured"] is True and m["psnr_views"] == 2 and m["psnr_resolution"] == "96x72"
    assert 20 < m["psnr_uncompressed_db"] < 35 and abs(m["psnr_drop_db"]) < 0.3
    assert m["psnr_drop_db"] == pytest.approx(m["psnr_uncompressed_db"] - m["psnr_decoded_db"])
    # the uncompressed figure is the evaluation protocol's: the PLY rendered plainly on the test views
    views = [v for v in render.load_views(splat / "cameras.json") if v.heldout]
    photos = [render.load_photo(export / "images" / v.name, v.width, v.height) for v in views]
    plain = score_plain(render.cloud_to_params(cloud, "cpu"), cloud.sh_degree, views, photos)
    assert m["psnr_uncompressed_db"] == pytest.approx(plain.psnr, abs=1e-6)
    for key in ("error_position", "error_rotation_deg", "error_log_scale", "error_f_dc", "error_opacity",
                "error_shN"):
        assert np.isfinite(m[key])
    assert m["error_opacity"] <= 1 / 255 + 1e-6
    assert len(read_sog(out / "demo.sog")) == len(cloud)
    saved = json.loads((out / "report.json").read_text())
    assert {c["name"] for c in saved["checks"]} == CHECKS
    assert saved["metadata"]["bundle"] == str(out / "demo.sog")  # typed values saved plain, not {raw_value, type}
    assert saved["metadata"]["file_bytes"] == m["file_bytes"]["raw_value"]


def test_psnr_drop_that_cannot_be_measured_fails_and_says_why(scene, tmp_path: Path):
    """No photos, photos that do not match the test views, or no cameras: the drop is not measured, and the
    check fails with the reason instead of passing without it."""
    splat, export, _ = scene
    copy = tmp_path / "splat"
    copy.mkdir()
    for name in ("point_cloud.ply", "cameras.json"):
        (copy / name).write_bytes((splat / name).read_bytes())
    cfg = {"min_size_ratio": 2.0, "kmeans_iterations": 4}

    def psnr_check(inputs: dict[str, str], out: str):
        report = run(inputs, tmp_path / out, cfg, LOG)
        others = [c for c in report.checks if c.name != "psnr_drop"]
        assert all(c.passed for c in others), [c.description for c in others if not c.passed]
        return next(c for c in report.checks if c.name == "psnr_drop"), report.metadata

    check, meta = psnr_check({"splat": str(copy)}, "no_export")
    assert not check.passed and check.blocking and "could not be measured" in check.description
    assert "no photos" in check.description and meta["psnr_measured"] is False and meta["psnr_drop_db"] is None
    (tmp_path / "other_export" / "images").mkdir(parents=True)
    (tmp_path / "other_export" / "images" / "unrelated.png").write_bytes(b"")
    check, _ = psnr_check({"splat": str(copy), "export": str(tmp_path / "other_export")}, "other")
    assert not check.passed and "2 test-view photo(s) missing" in check.description and "view_1.png" in check.description
    (copy / "cameras.json").unlink()
    check, _ = psnr_check({"splat": str(copy), "export": str(export)}, "no_cameras")
    assert not check.passed and "cameras.json" in check.description


def test_stage_cli_fails_a_gate(scene, tmp_path: Path):
    splat, _, _ = scene
    cfg = {"bundle_name": "strict", "min_size_ratio": 1000, "kmeans_iterations": 2, "sh_bands": 1}
    proc = subprocess.run(
        [sys.executable, "-m", "spaceport_dagster.stages.sog", "--input", f"splat={splat}",
         "--output", str(tmp_path / "out"), "--config", json.dumps(cfg)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    checks = {c["name"]: c for c in out["checks"]}
    assert not checks["size_ratio"]["passed"] and "required >= 1000" in checks["size_ratio"]["description"]
    assert checks["roundtrip_within_bounds"]["passed"] and out["metadata"]["sh_bands"] == 1
    assert (tmp_path / "out" / "strict.sog").is_file()
    assert out["metadata"]["bundle"] == str(tmp_path / "out" / "strict.sog")  # printed plain, not {raw_value, type}


def test_stage_input_and_config_errors(tmp_path: Path):
    with pytest.raises(SogStageError, match="needs input 'splat'"):
        run({}, tmp_path / "o", {}, LOG)
    with pytest.raises(SogStageError, match="no point_cloud.ply"):
        run({"splat": str(tmp_path)}, tmp_path / "o", {}, LOG)
    for bad, message in [({"bogus": 1}, "no option"), ({"bundle_name": "../x"}, "plain file name"),
                         ({"sh_bands": 4}, "sh_bands"), ({"kmeans_method": "fast"}, "kmeans_method"),
                         ({"preset": "nope"}, "unknown preset")]:
        with pytest.raises(ConfigError, match=message):
            run({"splat": str(tmp_path)}, tmp_path / "o", bad, LOG)
