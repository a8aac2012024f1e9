"""Export stage on a small synthetic model: real undistortion, layout, and the correspondence gate."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.export.stage import run
from spaceport_dagster.stages.export.verify import verify_export

LOG = logging.getLogger("test_export")
W, H = 320, 240


def _synthetic(root: Path, observed_by_last: bool) -> tuple[Path, Path]:
    """An image_set (3 noise images) and a sparse_reconstruction whose points all project into them."""
    rng = np.random.default_rng(0)
    (root / "image_set" / "images").mkdir(parents=True)
    (root / "sparse_reconstruction" / "sparse").mkdir(parents=True)
    rec = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL", 300.0, W, H)
    camera.params = [300.0, W / 2, H / 2, -0.05]
    rec.add_camera_with_trivial_rig(camera)
    points = np.column_stack([rng.uniform(-1, 1, 40), rng.uniform(-0.7, 0.7, 40), rng.uniform(4, 6, 40)])
    poses = {i: pycolmap.Rigid3d(pycolmap.Rotation3d(), np.array([-0.3 * (i - 2), 0.0, 0.0])) for i in (1, 2, 3)}
    observers = (1, 2, 3) if observed_by_last else (1, 2)
    tracks: dict[int, list[pycolmap.TrackElement]] = {j: [] for j in range(len(points))}
    for i, pose in poses.items():
        name = f"view_{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "image_set" / "images" / name)
        image = pycolmap.Image(name=name, camera_id=1, image_id=i)
        if i in observers:
            xy = [camera.img_from_cam(pose * p) for p in points]
            image.points2D = pycolmap.Point2DList([pycolmap.Point2D(np.asarray(p, float)) for p in xy])
            for j in range(len(points)):
                tracks[j].append(pycolmap.TrackElement(i, j))
        rec.add_image_with_trivial_frame(image, pose)
    for j, xyz in enumerate(points):
        track = pycolmap.Track()
        track.add_elements(tracks[j])
        rec.add_point3D(xyz, track, np.array([200, 100, 50], np.uint8))
    rec.write_binary(str(root / "sparse_reconstruction" / "sparse"))
    return root / "sparse_reconstruction", root / "image_set"


def test_export_writes_pinhole_layout_and_passes(tmp_path: Path) -> None:
    sparse, image_set = _synthetic(tmp_path, observed_by_last=True)
    report = run({"sparse": str(sparse), "image_set": str(image_set)}, tmp_path / "out", {}, LOG)
    assert {c.name: c.passed for c in report.checks} == {"every_image_has_correspondences": True,
                                                         "export_reads_back": True}
    m = report.metadata
    assert (m["images"], m["points"], m["camera_models"]) == (3, 40, ["PINHOLE"])
    assert m["min_correspondences_per_image"] == 40 and m["mean_correspondences_per_image"] == 40
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images", "sparse"]
    assert {p.name for p in (tmp_path / "out" / "sparse" / "0").iterdir()} >= {"cameras.bin", "images.bin",
                                                                               "points3D.bin"}
    width, height = (int(v) for v in m["image_size"].split("x"))
    with Image.open(tmp_path / "out" / "images" / "view_1.jpg") as im:
        assert im.size == (width, height)
    assert m["bytes"] == sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_export_caps_the_image_size(tmp_path: Path) -> None:
    sparse, image_set = _synthetic(tmp_path, observed_by_last=True)
    report = run({"sparse": str(sparse), "image_set": str(image_set)}, tmp_path / "out", {"max_image_size": 160}, LOG)
    width, height = (int(v) for v in report.metadata["image_size"].split("x"))
    assert max(width, height) <= 160 and all(c.passed for c in report.checks)


def test_image_without_correspondences_fails_the_gate(tmp_path: Path) -> None:
    sparse, image_set = _synthetic(tmp_path, observed_by_last=False)
    report = run({"sparse": str(sparse), "image_set": str(image_set)}, tmp_path / "out", {}, LOG)
    gate = {c.name: c for c in report.checks}["every_image_has_correspondences"]
    assert not gate.passed and gate.blocking
    assert gate.description.startswith("2/3 exported images have >= 1 2D-3D correspondences")
    assert "lacking: view_3.jpg" in gate.description
    assert report.metadata["min_correspondences_per_image"] == 0
    assert [c.name for c in report.failed_gates()] == ["every_image_has_correspondences"]


def test_damaged_export_does_not_read_back(tmp_path: Path) -> None:
    sparse, image_set = _synthetic(tmp_path, observed_by_last=True)
    run({"sparse": str(sparse), "image_set": str(image_set)}, tmp_path / "out", {}, LOG)
    (tmp_path / "out" / "images" / "view_2.jpg").unlink()
    facts = verify_export(tmp_path / "out")
    assert facts.problems == ["view_2.jpg missing from images/"]
    (tmp_path / "out" / "sparse" / "0" / "images.bin").write_bytes(b"\x00" * 7)
    assert verify_export(tmp_path / "out").problems[0].startswith("cannot read")


def test_missing_inputs_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing \['image_set'\]"):
        run({"sparse": str(tmp_path)}, tmp_path / "out", {}, LOG)
    with pytest.raises(FileNotFoundError, match="no COLMAP binary model"):
        run({"sparse": str(tmp_path), "image_set": str(tmp_path)}, tmp_path / "out", {}, LOG)
    with pytest.raises(ConfigError, match="has no option"):
        run({"sparse": str(tmp_path), "image_set": str(tmp_path)}, tmp_path / "out", {"size": 3}, LOG)
