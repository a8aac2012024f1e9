"""The OpenSfM engine: finding the CLI, the config it writes, running the steps, failing clearly.

OpenSfM itself cannot be installed on this machine (not on PyPI; it builds from source against Ceres and
OpenCV), so the step-running tests use a stand-in executable with OpenSfM's command-line shape
(`opensfm <command> <dataset>`): it records each command and, on `reconstruct`, writes the real OpenSfM
output of the brighton_beach fixture into the dataset folder. The real CLI runs in containers/opensfm/.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from spaceport_dagster.stages.config import ConfigError, from_dict
from spaceport_dagster.stages.opensfm import engine
from spaceport_dagster.stages.opensfm.convert import convert
from spaceport_dagster.stages.opensfm.engine import (
    OpenSfmFailed,
    OpenSfmOptions,
    OpenSfmUnavailable,
    find_opensfm,
    reconstruct,
)
from spaceport_dagster.stages.opensfm.options import STEPS, opensfm_config, options_from, write_config

from .conftest import FIXTURES, dataset_images

LOG = logging.getLogger("test_opensfm_engine")


@pytest.fixture
def no_opensfm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv(engine.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(engine, "KNOWN_LOCATIONS", ())


def _stand_in(tmp_path: Path, fail_at: str | None = None, empty: bool = False) -> Path:
    fixture = FIXTURES / "opensfm" / "brighton_beach"
    if not fixture.is_dir():
        pytest.skip("OpenSfM fixture brighton_beach not found")
    script = tmp_path / "bin" / "opensfm"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        "from pathlib import Path\n"
        "cmd, dataset = sys.argv[1], Path(sys.argv[2])\n"
        "with open(dataset / 'commands.txt', 'a') as f:\n"
        "    f.write(cmd + '\\n')\n"
        "assert (dataset / 'config.yaml').is_file() and (dataset / 'images').is_dir()\n"
        f"if cmd == {fail_at!r}:\n"
        "    print('Traceback: something broke in ' + cmd, file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "if cmd == 'reconstruct':\n"
        "    for name in ('reconstruction.json', 'tracks.csv', 'reference_lla.json'):\n"
        f"        shutil.copy(Path({str(fixture)!r}) / name, dataset / name)\n"
        f"    if {empty!r}:\n"
        "        (dataset / 'reconstruction.json').write_text('[]')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_unavailable_says_how_to_get_it(no_opensfm: None, tmp_path: Path) -> None:
    with pytest.raises(OpenSfmUnavailable) as err:
        find_opensfm()
    text = str(err.value)
    assert "containers/opensfm" in text and "SPACEPORT_OPENSFM" in text and "engine: colmap" in text
    work = tmp_path / "work"
    with pytest.raises(OpenSfmUnavailable):
        reconstruct(tmp_path, work, OpenSfmOptions(), LOG)
    assert not work.exists()  # failed before doing anything


def test_env_var_must_name_an_executable(no_opensfm: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(engine.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(OpenSfmUnavailable, match="SPACEPORT_OPENSFM=.*nope is not an executable"):
        find_opensfm()


def test_found_through_env_var_or_path(no_opensfm: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = _stand_in(tmp_path)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    assert find_opensfm() == script
    monkeypatch.setenv(engine.ENV_VAR, str(script))
    assert find_opensfm() == script


def test_config_written_from_options(tmp_path: Path) -> None:
    options = OpenSfmOptions(use_gps=False, use_altitude_tag=False, feature_min_frames=8000, processes=3,
                             config_overrides={"feature_type": "SIFT"})
    written = write_config(options, tmp_path / "config.yaml")
    parsed = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert parsed == written
    assert parsed["use_exif_size"] is False
    assert parsed["use_altitude_tag"] is False and parsed["bundle_use_gps"] is False
    assert parsed["matching_gps_distance"] == 0
    assert parsed["feature_min_frames"] == 8000 and parsed["processes"] == 3
    assert parsed["feature_type"] == "SIFT"
    defaults = opensfm_config(OpenSfmOptions())
    assert defaults["bundle_use_gps"] is True and "matching_gps_distance" not in defaults
    assert defaults["processes"] == os.cpu_count()


def test_options_from_stage_config_are_strict() -> None:
    assert from_dict(OpenSfmOptions, {"feature_min_frames": 6000}).feature_min_frames == 6000
    with pytest.raises(ConfigError, match="no option"):
        from_dict(OpenSfmOptions, {"feature_count": 6000})
    with pytest.raises(ConfigError, match="scalars"):
        from_dict(OpenSfmOptions, {"config_overrides": {"x": [1]}})
    assert options_from({"max_image_size": 1024}).feature_process_size == 1024
    with pytest.raises(ConfigError, match="no option"):
        options_from({"mapper": "global"})


def test_reconstruct_runs_the_steps_in_order_and_converts(no_opensfm: None, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv(engine.ENV_VAR, str(_stand_in(tmp_path)))
    images = dataset_images("brighton_beach")
    work = tmp_path / "work"
    # the options as the SfM stage passes them: a plain dict with its own key names
    result = reconstruct(images, work, {"max_image_size": 1600, "max_num_features": 4096, "processes": 2}, LOG)
    assert (work / "commands.txt").read_text().split() == list(STEPS)
    assert (work / "images").resolve() == images.resolve()
    config = yaml.safe_load((work / "config.yaml").read_text())
    assert config["use_exif_size"] is False
    assert (config["feature_process_size"], config["feature_min_frames"], config["processes"]) == (1600, 4096, 2)
    assert list(result.step_seconds) == [*STEPS, "convert"] and result.seconds is result.step_seconds
    assert all(s >= 0 for s in result.step_seconds.values())
    direct = convert(FIXTURES / "opensfm" / "brighton_beach", images)
    assert result.reconstruction.num_points3D() == direct.reconstruction.num_points3D()
    assert result.reconstruction.num_reg_images() == direct.reconstruction.num_reg_images()
    assert result.reference_lla == direct.reference_lla


def test_failed_step_reports_its_log(no_opensfm: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(engine.ENV_VAR, str(_stand_in(tmp_path, fail_at="match_features")))
    work = tmp_path / "work"
    with pytest.raises(OpenSfmFailed, match=r"opensfm match_features exited with status 3(.|\n)*something broke"):
        reconstruct(dataset_images("brighton_beach"), work, OpenSfmOptions(), LOG)
    assert (work / "commands.txt").read_text().split() == ["extract_metadata", "detect_features", "match_features"]
    assert (work / "logs" / "match_features.log").is_file()


@pytest.mark.slow
def test_real_opensfm_cli_on_lund(tmp_path: Path) -> None:
    """Runs only where OpenSfM is installed (e.g. inside containers/opensfm/): the real five steps on lund."""
    try:
        find_opensfm()
    except OpenSfmUnavailable as exc:
        pytest.skip(str(exc))
    images = dataset_images("lund")
    result = reconstruct(images, tmp_path / "work", OpenSfmOptions(processes=os.cpu_count() or 1), LOG)
    rec = result.reconstruction
    rec.write_binary(str(tmp_path))
    import pycolmap

    loaded = pycolmap.Reconstruction(str(tmp_path))
    assert loaded.num_reg_images() >= 5 and loaded.num_points3D() >= 1000
    loaded.update_point_3d_errors()
    assert loaded.compute_mean_reprojection_error() < 1.0
    assert all(img.num_points3D > 0 for img in loaded.images.values())
    assert result.reference_lla is not None
    assert list(result.step_seconds) == [*STEPS, "convert"]


def test_sfm_stage_with_the_opensfm_engine(no_opensfm: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
    from spaceport_dagster.stages.sfm.stage import run

    monkeypatch.setenv(engine.ENV_VAR, str(_stand_in(tmp_path)))
    images = dataset_images("brighton_beach")
    ingest(str(images), tmp_path / "image_set", IngestConfig(), LOG)
    report = run({"image_set": str(tmp_path / "image_set")}, tmp_path / "out", {"engine": "opensfm"}, LOG)
    direct = convert(FIXTURES / "opensfm" / "brighton_beach", images).reconstruction
    assert report.metadata["engine"] == "opensfm" and report.metadata["mapper"] == "opensfm"
    assert report.metadata["points"] == direct.num_points3D()
    assert report.metadata["registered_images"] == direct.num_reg_images()
    assert {"seconds_features", "seconds_matching", "seconds_mapping"} <= set(report.metadata)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["opensfm"]["points3D"] == direct.num_points3D()
    assert report.metadata["models"] == 1 + len(written["dropped_model_sizes"])
    assert all((tmp_path / "out" / "sparse" / f).is_file() for f in ("cameras.bin", "images.bin", "points3D.bin"))


def test_sfm_stage_reports_an_empty_opensfm_result_through_the_gates(no_opensfm: None, monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
    from spaceport_dagster.stages.sfm.stage import run

    monkeypatch.setenv(engine.ENV_VAR, str(_stand_in(tmp_path, empty=True)))
    ingest(str(dataset_images("brighton_beach")), tmp_path / "image_set", IngestConfig(), LOG)
    report = run({"image_set": str(tmp_path / "image_set")}, tmp_path / "out", {"engine": "opensfm"}, LOG)
    assert report.metadata["points"] == 0 and report.metadata["registered_images"] == 0
    failed = {c.name for c in report.failed_gates()}
    assert failed == {"min_points", "registered_fraction", "upright"}
    assert "no reconstruction" in json.loads((tmp_path / "out" / "report.json").read_text())["opensfm_error"]
