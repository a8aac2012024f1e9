"""The asset graph through a real Dagster instance on real photos: lund, brighton_beach, and a set that must fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pycolmap
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter

from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.runner import run_pipeline

from .conftest import dagster_home, dataset_images
from .test_sfm_stage import UNRELATED

pytestmark = pytest.mark.slow


def _run(tmp_path_factory: pytest.TempPathFactory, dataset: str, source: Path, until: str = "colmap_export"):
    home = dagster_home(tmp_path_factory.mktemp(f"home-{dataset}"))
    instance = DagsterInstance.local_temp(str(home))
    with pytest.MonkeyPatch.context() as env:  # the run's steps build their resources from the environment
        env.setenv("SPACEPORT_HOME", str(home))
        env.setenv("DAGSTER_HOME", str(home))
        env.delenv("SPACEPORT_ARTIFACT_ROOT", raising=False)
        outcome = run_pipeline(dataset, str(source), until=until, preset="preview", instance=instance,
                               poll_seconds=0.2)
    return outcome, instance, LocalArtifactStore(home / "artifacts")


def _checks(instance: DagsterInstance, asset: str) -> dict[str, bool]:
    records = instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION), limit=100)
    out = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.asset_key == AssetKey(asset):
            out[evaluation.check_name] = evaluation.passed
    return out


@pytest.fixture(scope="module")
def lund(tmp_path_factory: pytest.TempPathFactory):
    return _run(tmp_path_factory, "lund", dataset_images("lund"))


def test_lund_registers_everything_and_exports_tracks(lund) -> None:
    outcome, instance, store = lund
    assert outcome.success, outcome.failure_message()
    stages = {s.asset: s for s in outcome.stages}
    sfm = stages["sparse_reconstruction"].metadata
    assert sfm["registered_images"] == 29
    assert sfm["points"] >= 1000
    assert all(_checks(instance, "sparse_reconstruction").values())
    assert _checks(instance, "colmap_export") == {"every_image_has_correspondences": True, "export_reads_back": True}
    export = store.fetch("lund", "colmap_export")
    model = pycolmap.Reconstruction(str(export / "sparse" / "0"))
    assert model.num_reg_images() == 29
    for image in model.images.values():
        assert image.num_points3D > 0, image.name
        assert (export / "images" / image.name).is_file()
    assert all(cam.model == pycolmap.CameraModelId.PINHOLE for cam in model.cameras.values())


def test_lund_artifacts_and_metadata_in_the_instance(lund) -> None:
    outcome, instance, store = lund
    for asset in ("image_set", "sparse_reconstruction", "colmap_export"):
        assert store.exists("lund", asset)
        event = instance.get_latest_materialization_event(AssetKey(asset))
        assert event is not None and event.dagster_event.partition == "lund"
        metadata = event.asset_materialization.metadata
        assert metadata["published"].value is True
        assert metadata["uri"].value == store.uri("lund", asset)


def test_brighton_beach_registers_and_georegisters(tmp_path_factory: pytest.TempPathFactory) -> None:
    outcome, instance, store = _run(tmp_path_factory, "brighton", dataset_images("brighton_beach"))
    assert outcome.success, outcome.failure_message()
    sfm = {s.asset: s for s in outcome.stages}["sparse_reconstruction"].metadata
    assert sfm["registered_images"] == 18
    assert sfm["points"] >= 1000
    assert sfm["georegistered"] is True


def test_unrelated_images_fail_the_sfm_gate_and_stop_the_export(tmp_path_factory: pytest.TempPathFactory) -> None:
    src = tmp_path_factory.mktemp("unrelated")
    for name, file in UNRELATED:
        shutil.copy(dataset_images(name) / file, src / f"{name}-{file}")
    outcome, instance, store = _run(tmp_path_factory, "unrelated", src)
    stages = {s.asset: s for s in outcome.stages}
    assert stages["image_set"].status == "ok"
    assert stages["sparse_reconstruction"].status == "gate failed"
    message = outcome.failure_message()
    assert message.startswith("sparse_reconstruction: quality gate failed")
    assert "min_points" in message and "registered_fraction" in message
    assert stages["colmap_export"].status == "skipped"  # run_pipeline reports a stage the run never reached so
    assert not store.exists("unrelated", "sparse_reconstruction")  # a failed gate never publishes
    assert not store.exists("unrelated", "colmap_export")
    assert instance.get_latest_materialization_event(AssetKey("colmap_export")) is None
