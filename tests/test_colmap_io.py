"""The numpy COLMAP reader: round trip through the writer, agreement with pycolmap, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from spaceport_dagster.stages.colmap_io import (
    Camera,
    ColmapFormatError,
    Image,
    Points3D,
    qvec_to_rotmat,
    read_cameras,
    read_images,
    read_model,
    rotmat_to_qvec,
    write_model,
)


def _model() -> tuple[dict, dict, Points3D]:
    rng = np.random.default_rng(0)
    cameras = {1: Camera(1, "PINHOLE", 640, 480, np.array([500.0, 510.0, 320.5, 240.25])),
               2: Camera(2, "SIMPLE_RADIAL", 800, 600, np.array([700.0, 400.0, 300.0, 0.01]))}
    images = {}
    for i in range(1, 4):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        xys = rng.uniform(0, 400, (5, 2))
        ids = np.array([1, -1, 2, 3, -1], np.int64)
        images[i] = Image(i, f"img_{i}.jpg", 1 + (i == 3), q, rng.normal(size=3), xys, ids)
    points = Points3D(np.array([1, 2, 3], np.int64), rng.normal(size=(3, 3)),
                      np.array([[255, 0, 0], [0, 255, 0], [1, 2, 3]], np.uint8), np.array([0.5, 1.0, 0.25]),
                      np.zeros(3, np.int64))
    return cameras, images, points


def test_round_trip(tmp_path):
    cameras, images, points = _model()
    write_model(tmp_path, cameras, images, points)
    model = read_model(tmp_path)
    assert model.cameras[1].model == "PINHOLE" and model.cameras[2].model == "SIMPLE_RADIAL"
    assert np.array_equal(model.cameras[1].params, cameras[1].params)
    assert (model.cameras[1].width, model.cameras[1].height) == (640, 480)
    for i, im in images.items():
        got = model.images[i]
        assert got.name == im.name and got.camera_id == im.camera_id
        assert np.allclose(got.qvec, im.qvec) and np.allclose(got.tvec, im.tvec)
        assert np.allclose(got.xys, im.xys) and np.array_equal(got.point3D_ids, im.point3D_ids)
        w2c = got.world_to_camera()
        assert np.allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.allclose(got.center(), -w2c[:3, :3].T @ im.tvec)
    assert np.allclose(model.points.xyz, points.xyz) and np.array_equal(model.points.rgb, points.rgb)
    assert np.allclose(model.points.errors, points.errors)


def test_intrinsics_refuse_distorted_models():
    cameras, _, _ = _model()
    K = cameras[1].intrinsics()
    assert K[0, 0] == 500.0 and K[1, 1] == 510.0 and K[0, 2] == 320.5 and K[1, 2] == 240.25
    with pytest.raises(ColmapFormatError, match="SIMPLE_RADIAL.*PINHOLE"):
        cameras[2].intrinsics()


def test_quaternion_helpers_agree():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q *= np.sign(q[0])
        assert np.allclose(rotmat_to_qvec(qvec_to_rotmat(q)), q, atol=1e-9)


def test_truncated_and_missing_files(tmp_path):
    cameras, images, points = _model()
    write_model(tmp_path, cameras, images, points)
    data = (tmp_path / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ColmapFormatError, match="truncated"):
        read_images(tmp_path / "images.bin")
    (tmp_path / "cameras.bin").write_bytes((tmp_path / "cameras.bin").read_bytes() + b"junk")
    with pytest.raises(ColmapFormatError, match="trailing"):
        read_cameras(tmp_path / "cameras.bin")
    (tmp_path / "points3D.bin").unlink()
    with pytest.raises(ColmapFormatError, match=r"lacks points3D\.bin"):
        read_model(tmp_path)


def test_matches_pycolmap(tmp_path):
    """pycolmap (where installed) reads the same poses, intrinsics and points from our files."""
    pycolmap = pytest.importorskip("pycolmap")
    cameras, images, points = _model()
    cameras = {1: cameras[1]}
    images = {i: Image(im.image_id, im.name, 1, im.qvec, im.tvec, np.zeros((0, 2)), np.zeros(0, np.int64))
              for i, im in images.items()}
    write_model(tmp_path, cameras, images, points)
    rec = pycolmap.Reconstruction(str(tmp_path))
    ours = read_model(tmp_path)
    assert rec.num_points3D() == 3 and len(rec.images) == 3
    for image_id, im in rec.images.items():
        assert im.name == ours.images[image_id].name
        assert np.allclose(im.cam_from_world().matrix(), ours.images[image_id].world_to_camera()[:3], atol=1e-9)
    assert np.allclose(rec.cameras[1].params, ours.cameras[1].params)
    for pid, p in rec.points3D.items():
        i = int(np.where(ours.points.ids == pid)[0][0])
        assert np.allclose(p.xyz, ours.points.xyz[i]) and np.array_equal(p.color, ours.points.rgb[i])
