"""The OpenSfM -> COLMAP converter on real OpenSfM output (../shared/fixtures/opensfm/{lund,brighton_beach}).

Expected values are read from the fixture's own files (reconstruction.json, tracks.csv, reference_lla.json),
never typed in. Point counts: the converted model has the kept OpenSfM reconstruction's points minus those left
with fewer than two observations once observations above the residual threshold are dropped
(`result.points_dropped`, a handful: 12 of 2,692 on lund, 4 of 4,414 on brighton_beach at 4 px).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

from spaceport_dagster.stages import colmap_io
from spaceport_dagster.stages.opensfm.convert import ConversionError, ConversionResult, convert, rotation_matrix
from spaceport_dagster.stages.opensfm.dataset import load_tracks

from .conftest import FIXTURES, dataset_images

SETS = ["lund", "brighton_beach"]


def _fixture(name: str) -> Path:
    path = FIXTURES / "opensfm" / name
    if not path.is_dir():
        pytest.skip(f"OpenSfM fixture {name} not found at {path}")
    return path


@functools.cache
def _convert_once(name: str) -> ConversionResult:
    return convert(_fixture(name), dataset_images(name))


@pytest.fixture(scope="module", params=SETS)
def converted(request: pytest.FixtureRequest) -> tuple[str, ConversionResult, list[dict]]:
    name = request.param
    return name, _convert_once(name), json.loads((_fixture(name) / "reconstruction.json").read_text())


def _kept(converted: tuple[str, ConversionResult, list[dict]]) -> dict:
    _, result, recs = converted
    return recs[result.kept_index]


def test_largest_reconstruction_kept_others_reported(converted) -> None:
    _, result, recs = converted
    sizes = [len(r["shots"]) for r in recs]
    assert len(recs[result.kept_index]["shots"]) == max(sizes)
    assert sorted((d.index, d.images, d.points) for d in result.dropped_reconstructions) == sorted(
        (i, len(r["shots"]), len(r["points"])) for i, r in enumerate(recs) if i != result.kept_index
    )


def test_model_loads_in_pycolmap_after_writing(converted, tmp_path: Path) -> None:
    _, result, _ = converted
    result.reconstruction.write_binary(str(tmp_path))
    loaded = pycolmap.Reconstruction(str(tmp_path))
    rec = result.reconstruction
    assert loaded.num_reg_images() == rec.num_reg_images()
    assert loaded.num_points3D() == rec.num_points3D()
    assert loaded.compute_num_observations() == rec.compute_num_observations()
    for cid, camera in rec.cameras.items():
        assert loaded.cameras[cid].model == camera.model
        assert np.allclose(loaded.cameras[cid].params, camera.params)
    for image_id, image in rec.images.items():
        other = loaded.images[image_id]
        assert other.name == image.name
        assert np.allclose([p.xy for p in other.points2D], [p.xy for p in image.points2D])


def test_counts_equal_the_kept_opensfm_reconstruction(converted) -> None:
    _, result, _ = converted
    kept = _kept(converted)
    rec = result.reconstruction
    assert rec.num_reg_images() == len(kept["shots"]) == result.opensfm_images
    assert sorted(img.name for img in rec.images.values()) == sorted(kept["shots"])
    assert rec.num_points3D() == len(kept["points"]) - result.points_dropped
    assert result.points_dropped <= 0.01 * len(kept["points"])
    assert set(result.point_track_ids.values()) <= set(kept["points"])


def test_points_keep_opensfm_coordinates_and_colours(converted) -> None:
    _, result, _ = converted
    kept = _kept(converted)
    for pid, point in result.reconstruction.points3D.items():
        source = kept["points"][result.point_track_ids[pid]]
        assert np.array_equal(point.xyz, source["coordinates"])
        assert np.array_equal(point.color, np.round(source["color"]).astype(np.uint8))
        assert point.track.length() >= 2


def test_one_colmap_camera_per_opensfm_camera_with_refined_intrinsics(converted) -> None:
    name, result, _ = converted
    kept = _kept(converted)
    rec = result.reconstruction
    assert rec.num_cameras() == len({shot["camera"] for shot in kept["shots"].values()})
    for cid, camera in rec.cameras.items():
        source = kept["cameras"][result.camera_keys[cid]]
        first = next(img for img in rec.images.values() if img.camera_id == cid)
        with Image.open(dataset_images(name) / first.name) as im:
            width, height = im.size
        assert (camera.width, camera.height) == (width, height)
        assert camera.focal_length == pytest.approx(source["focal"] * max(width, height), rel=1e-12)
        assert (camera.principal_point_x, camera.principal_point_y) == (width / 2, height / 2)


def test_mean_reprojection_error_below_one_pixel(converted) -> None:
    name, result, _ = converted
    rec = result.reconstruction
    rec.update_point_3d_errors()
    error = rec.compute_mean_reprojection_error()
    assert 0 < error < 1.0, f"{name}: {error:.3f} px"
    worst = max(p.error for p in rec.points3D.values())
    assert worst <= result.max_reprojection_error_px


def test_keypoints_use_colmaps_pixel_centre_convention(converted) -> None:
    """Shifting every keypoint to OpenSfM's pixel frame (-0.5 px) makes the model fit worse: the convention is real."""
    _, result, _ = converted
    rec = result.reconstruction
    errors = {}
    for shift in (0.0, -0.5):
        residuals = []
        for image in rec.images.values():
            xy = np.array([p.xy for p in image.points2D]) + shift
            world = np.stack([rec.points3D[p.point3D_id].xyz for p in image.points2D])
            cam_pts = world @ image.cam_from_world().rotation.matrix().T + image.cam_from_world().translation
            projected = rec.cameras[image.camera_id].img_from_cam(cam_pts)
            residuals.append(np.linalg.norm(projected - xy, axis=1))
        errors[shift] = float(np.concatenate(residuals).mean())
    assert errors[0.0] < errors[-0.5] - 0.1, errors


def test_every_image_keeps_its_correspondences(converted) -> None:
    name, result, _ = converted
    kept = _kept(converted)
    tracks = load_tracks(_fixture(name))
    in_points = np.array([t in kept["points"] for t in tracks.track_ids])
    for image in result.reconstruction.images.values():
        assert image.num_points2D() == image.num_points3D > 0, image.name
        opensfm_observations = int((in_points & (tracks.images == image.name)).sum())
        assert image.num_points3D >= 0.8 * opensfm_observations, image.name


def test_camera_centres_agree_with_opensfm(converted) -> None:
    _, result, _ = converted
    kept = _kept(converted)
    for image in result.reconstruction.images.values():
        shot = kept["shots"][image.name]
        centre = -rotation_matrix(shot["rotation"]).T @ np.asarray(shot["translation"])
        got = image.projection_center()
        assert np.linalg.norm(got - centre) <= 1e-6 * max(np.linalg.norm(centre), 1.0), image.name


def test_georeference_from_reference_lla(converted) -> None:
    name, result, _ = converted
    lla = json.loads((_fixture(name) / "reference_lla.json").read_text())
    assert result.reference_lla == (lla["latitude"], lla["longitude"], lla["altitude"])
    meta = result.metadata()
    assert meta["reference_lla"] == [lla["latitude"], lla["longitude"], lla["altitude"]]
    assert meta["registered_images"] == result.reconstruction.num_reg_images()
    assert meta["observations_dropped_residual"] == result.observations_dropped_residual
    assert meta["images_without_points"] == []
    json.dumps(meta)  # plain JSON for the stage report


def test_residual_threshold_is_applied_and_reported() -> None:
    dataset, images = _fixture("brighton_beach"), dataset_images("brighton_beach")
    loose = convert(dataset, images, max_reprojection_error_px=1000.0)
    strict = convert(dataset, images, max_reprojection_error_px=1.0)
    assert loose.observations_dropped_residual < strict.observations_dropped_residual
    assert strict.reconstruction.compute_num_observations() < loose.reconstruction.compute_num_observations()
    for result in (loose, strict):
        rec = result.reconstruction
        total = rec.compute_num_observations() + result.observations_dropped_residual + result.observations_dropped_with_points
        tracks = load_tracks(dataset)
        kept = json.loads((dataset / "reconstruction.json").read_text())[result.kept_index]
        assert total == sum(1 for i, t in zip(tracks.images, tracks.track_ids, strict=True)
                            if i in kept["shots"] and t in kept["points"])
        rec.update_point_3d_errors()
        assert max(p.error for p in rec.points3D.values()) <= result.max_reprojection_error_px


def test_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="not in"):
        convert(_fixture("brighton_beach"), tmp_path)


# --- OpenSfM's own export_colmap, kept as a record of its defects: when a fix lands, these fail and say so. ---


@pytest.mark.parametrize("name", SETS)
def test_native_export_does_not_load_in_pycolmap(name: str) -> None:
    with pytest.raises((ValueError, IndexError, RuntimeError)):
        pycolmap.Reconstruction(str(_fixture(name) / "native_colmap_export"))


@pytest.mark.parametrize("name", SETS)
def test_native_export_keypoints_are_shifted_half_a_pixel(name: str) -> None:
    native = colmap_io.read_images(_fixture(name) / "native_colmap_export" / "images.bin")
    ours = _convert_once(name).reconstruction
    offsets = []
    for image in native.values():
        mine = ours.find_image_with_name(image.name)
        if mine is None:
            continue
        xy = np.array([p.xy for p in mine.points2D])
        for kp in image.xys:
            offsets.append(kp - xy[np.linalg.norm(xy - kp, axis=1).argmin()])
    median = np.median(np.array(offsets), axis=0)
    assert np.allclose(median, [-0.5, -0.5], atol=1e-3), median


@pytest.mark.parametrize("name", SETS)
def test_native_export_merges_reconstructions_and_keeps_rejected_observations(name: str) -> None:
    folder = _fixture(name) / "native_colmap_export"
    recs = json.loads((_fixture(name) / "reconstruction.json").read_text())
    native_cameras = colmap_io.read_cameras(folder / "cameras.bin")
    native_images = colmap_io.read_images(folder / "images.bin")
    native_points = colmap_io.read_points3d(folder / "points3D.bin")
    assert len(native_images) == sum(len(r["shots"]) for r in recs)
    assert len(native_points.ids) == sum(len(r["points"]) for r in recs)
    assert len(native_cameras) == 1
    ours = _convert_once(name)
    assert int(native_points.track_lengths.sum()) > ours.reconstruction.compute_num_observations()


def _edited_copy(tmp_path: Path, edit) -> Path:
    source = _fixture("brighton_beach")
    target = tmp_path / "dataset"
    target.mkdir()
    for name in ("tracks.csv", "reference_lla.json"):
        (target / name).write_bytes((source / name).read_bytes())
    recs = json.loads((source / "reconstruction.json").read_text())
    edit(recs[0])
    (target / "reconstruction.json").write_text(json.dumps(recs))
    return target


def test_each_opensfm_camera_gets_its_own_colmap_camera(tmp_path: Path) -> None:
    def split(rec: dict) -> None:
        (key, camera), = rec["cameras"].items()
        rec["cameras"]["second"] = dict(camera)
        for name in sorted(rec["shots"])[::2]:
            rec["shots"][name]["camera"] = "second"

    result = convert(_edited_copy(tmp_path, split), dataset_images("brighton_beach"))
    rec = result.reconstruction
    assert rec.num_cameras() == 2
    kept = json.loads((tmp_path / "dataset" / "reconstruction.json").read_text())[0]
    for image in rec.images.values():
        assert result.camera_keys[image.camera_id] == kept["shots"][image.name]["camera"]


def test_exif_sized_camera_uses_the_decoded_size(tmp_path: Path) -> None:
    """A camera recorded at the original 4000x2250 (EXIF) over 1600x900 copies: same normalised model, same pixels."""
    def exif_size(rec: dict) -> None:
        for camera in rec["cameras"].values():
            camera["width"], camera["height"] = 4000, 2250

    edited = convert(_edited_copy(tmp_path, exif_size), dataset_images("brighton_beach")).reconstruction
    plain = _convert_once("brighton_beach").reconstruction
    assert [(c.width, c.height) for c in edited.cameras.values()] == [(1600, 900)]
    assert np.array_equal(edited.cameras[1].params, plain.cameras[1].params)
    assert edited.compute_num_observations() == plain.compute_num_observations()


def test_camera_with_another_aspect_ratio_is_refused(tmp_path: Path) -> None:
    def portrait(rec: dict) -> None:
        for camera in rec["cameras"].values():
            camera["width"], camera["height"] = 900, 1600

    with pytest.raises(ConversionError, match="aspect"):
        convert(_edited_copy(tmp_path, portrait), dataset_images("brighton_beach"))
