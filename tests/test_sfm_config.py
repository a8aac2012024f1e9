"""SfM config presets, EXIF-driven camera grouping and focal prior, matcher selection (no SfM run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pycolmap
import pytest

from spaceport_dagster.resources.sagemaker.settings import StageSettings
from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
from spaceport_dagster.stages.sfm.camera_groups import camera_params, focal_prior_px, group_cameras
from spaceport_dagster.stages.sfm.config import SfmConfig, load_config
from spaceport_dagster.stages.sfm.matching import is_ordered_capture, select_matcher
from spaceport_dagster.stages.sfm.reconstruct import extract
from spaceport_dagster.stages.sfm.stage import run

DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def _record(name: str, camera: str = "DJI FC300S", w: int = 1600, h: int = 900, f35: float | None = 20.0,
            gps: bool = True, captured_at: str | None = None) -> dict:
    fix = {"latitude": 46.8, "longitude": -91.9, "altitude": 198.0, "relative_altitude": 40.0} if gps else None
    return {"name": name, "camera": camera, "width": w, "height": h, "focal_length_35mm": f35, "gps": fix,
            "captured_at": captured_at}


def test_default_preset_is_fast_and_quality_carries_the_tuned_values() -> None:
    fast = load_config({})
    assert fast == load_config({"preset": "fast"})
    assert fast.engine == "colmap" and fast.matcher == "auto" and fast.mapper == "incremental"
    quality = load_config({"preset": "quality"})
    assert (quality.max_image_size, quality.max_num_features, quality.first_octave, quality.num_octaves,
            quality.octave_resolution) == (4096, 16384, -1, 4, 3)
    assert (quality.max_ratio, quality.max_distance, quality.cross_check, quality.guided_matching,
            quality.max_num_matches) == (0.8, 0.7, True, True, 32768)
    assert fast.max_num_features < quality.max_num_features
    assert load_config({"preset": "quality", "min_points": 5000}).min_points == 5000


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'turbo'"):
        load_config({"preset": "turbo"})
    with pytest.raises(ConfigError, match="has no option.*max_features"):
        load_config({"max_features": 10})
    with pytest.raises(ConfigError, match="engine must be 'colmap' or 'opensfm'"):
        load_config({"engine": "meshroom"})
    with pytest.raises(ConfigError, match="vocab_tree_path"):
        load_config({"matcher": "vocab_tree"})
    with pytest.raises(ConfigError, match="georegister_warn_uncertainty <= georegister_max_uncertainty"):
        load_config({"georegister_warn_uncertainty": 0.3})  # above the default 0.2 at which it refuses


def test_one_camera_groups_all_images_with_the_exif_focal_prior() -> None:
    groups = group_cameras([_record(f"DJI_{i:04d}.JPG") for i in range(18, 36)])
    assert len(groups) == 1
    group = groups[0]
    assert group.shared and len(group.images) == 18
    assert group.focal_prior_px == pytest.approx(20.0 / 36.0 * 1600)  # 888.9 px
    assert camera_params("SIMPLE_RADIAL", group) == "888.888889,800.000000,450.000000,0.000000"
    assert camera_params("OPENCV", group).count(",") == 7


def test_camera_groups_split_on_model_size_and_zoom() -> None:
    images = [_record("a.jpg"), _record("b.jpg", w=1024, h=768), _record("c.jpg", camera="NIKON D3200", f35=60.0),
              _record("d.jpg", f35=28.0), _record("e.jpg")]
    groups = group_cameras(images)
    assert [g.images for g in groups] == [["a.jpg", "e.jpg"], ["b.jpg"], ["c.jpg"], ["d.jpg"]]
    assert groups[2].focal_prior_px == pytest.approx(60.0 / 36.0 * 1600)


def test_unknown_camera_without_focal_gets_per_image_intrinsics() -> None:
    groups = group_cameras([_record(f"{i}.jpg", camera="unknown camera", f35=None) for i in range(3)])
    assert len(groups) == 1 and not groups[0].shared
    assert groups[0].focal_prior_px is None and camera_params("SIMPLE_RADIAL", groups[0]) == ""
    assert focal_prior_px(35.0, 1024, 768) == pytest.approx(995.56, abs=0.01)  # lund: f35 35 mm, 1024 px wide


def test_matcher_auto_selection() -> None:
    config = SfmConfig(exhaustive_max_images=10)
    small = [_record(f"{i:02d}.jpg") for i in range(8)]
    assert select_matcher(config, small)[0] == "exhaustive"
    gps = [_record(f"{i:03d}.jpg") for i in range(40)]
    assert select_matcher(config, gps)[0] == "spatial"
    ordered = [_record(f"IMG_{i:04d}.jpg", gps=False) for i in range(40)]
    assert select_matcher(config, ordered)[0] == "sequential"
    unordered = [_record(f"view_{i}.jpg", gps=False) for i in range(26)]  # view_1, view_10, view_11, view_2
    assert select_matcher(config, unordered)[0] == "exhaustive"
    tree = SfmConfig(exhaustive_max_images=10, vocab_tree_path="/trees/vocab.bin")
    assert select_matcher(tree, unordered)[0] == "vocab_tree"
    assert select_matcher(SfmConfig(matcher="sequential"), small) == ("sequential", "configured")


def test_ordered_capture_uses_timestamps_before_file_numbers() -> None:
    late_first = [_record("DJI_0001.JPG", captured_at="2016-06-23T19:24:38"),
                  _record("DJI_0002.JPG", captured_at="2016-06-23T16:31:59"),
                  _record("DJI_0003.JPG", captured_at="2016-06-23T16:32:06")]
    assert not is_ordered_capture(late_first)
    assert is_ordered_capture([_record(f"{i:02d}.jpg") for i in range(1, 30)])


@pytest.fixture(scope="module")
def lund_image_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lund_set")
    ingest(str(DATASETS / "lund" / "images"), out, IngestConfig(), logging.getLogger("test"))
    return out


def _database_cameras(image_set: Path, db_path: Path, config: SfmConfig) -> list[pycolmap.Camera]:
    manifest = json.loads((image_set / "manifest.json").read_text())["images"][:3]
    cameras = extract(db_path, image_set / "images", manifest, config, logging.getLogger("test"))
    db = pycolmap.Database.open(db_path)
    try:
        assert db.num_images() == 3 and db.num_keypoints() > 0
        found = db.read_all_cameras()
    finally:
        db.close()
    assert cameras == len(found)
    return found


@pytest.mark.parametrize("trust", [False, True])
def test_colmap_database_gets_one_camera_starting_at_the_exif_focal(lund_image_set: Path, tmp_path: Path,
                                                                     trust: bool) -> None:
    config = SfmConfig(max_image_size=320, max_num_features=256, trust_exif_focal=trust)
    (camera,) = _database_cameras(lund_image_set, tmp_path / "db.db", config)
    assert camera.focal_length == pytest.approx(35.0 / 36.0 * 1024, abs=0.01)
    assert (camera.width, camera.height, camera.model.name) == (1024, 768, "SIMPLE_RADIAL")
    assert camera.has_prior_focal_length is trust


def test_missing_image_set_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="input named 'image_set'"):
        run({}, tmp_path, {}, logging.getLogger("test"))
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        run({"image_set": str(tmp_path)}, tmp_path / "out", {}, logging.getLogger("test"))


def test_opensfm_engine_without_opensfm_fails_with_install_hint(lund_image_set: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceport_dagster.stages.opensfm.engine import OpenSfmUnavailable

    monkeypatch.setenv("SPACEPORT_OPENSFM", str(tmp_path / "no-such-opensfm"))
    with pytest.raises(OpenSfmUnavailable, match="is not an executable file.*engine: colmap"):
        run({"image_set": str(lund_image_set)}, tmp_path / "out", {"engine": "opensfm"}, logging.getLogger("test"))


def test_sift_up_samples_only_small_images() -> None:
    """The quality preset's 4096 px on a 20 MP photo must not build an 8192 px pyramid (~2 GB per thread)."""
    from spaceport_dagster.stages.sfm.config import load_config
    from spaceport_dagster.stages.sfm.reconstruct import extraction_options, sift_long_side

    fast, quality = load_config({}), load_config({"preset": "quality"})
    assert sift_long_side(fast, 5472, 3648) == 1024 and sift_long_side(quality, 5472, 3648) == 4096
    assert sift_long_side(quality, 1600, 900) == 1600
    assert extraction_options(fast, sift_long_side(fast, 5472, 3648)).sift.first_octave == -1
    assert extraction_options(quality, sift_long_side(quality, 5472, 3648)).sift.first_octave == 0
    assert extraction_options(quality, sift_long_side(quality, 1600, 900)).sift.first_octave == -1


def test_every_choice_field_names_its_choices_and_the_bad_value() -> None:
    """check_choices reads the choices from the fields' Literal annotations: one source for type and check."""
    with pytest.raises(ConfigError, match=r"matcher must be 'auto', 'exhaustive', 'spatial', 'sequential' or "
                                          r"'vocab_tree', not 'nearest'"):
        load_config({"matcher": "nearest"})
    with pytest.raises(ConfigError, match="mapper must be 'incremental' or 'global', not 'hierarchical'"):
        load_config({"mapper": "hierarchical"})
    with pytest.raises(ValueError, match="job_kind must be 'processing' or 'training', not 'batch'"):
        StageSettings("ml.c6i.xlarge", 30, 3600, job_kind="batch")  # type: ignore[arg-type]
