"""splat_model and sogs_bundle as Dagster assets on a tiny synthetic export: checks, publishing, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, materialize

from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.resources.compute import LocalStageLauncher
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.run_events import flat_metadata
from spaceport_dagster.stages.ply import read_ply
from spaceport_dagster.stages.train.synthetic import write_synthetic_export

from .test_train import TINY


@pytest.fixture
def published_export(tmp_path: Path, instance: DagsterInstance) -> tuple[LocalArtifactStore, dict]:
    store = LocalArtifactStore(tmp_path / "artifacts")
    with store.staging("tiny", "colmap_export") as staging:
        write_synthetic_export(staging.local_dir, n_views=12)
        store.publish(staging)
    register_dataset(instance, "tiny")
    resources = {"storage": StorageResource(root=str(tmp_path / "artifacts")),
                 "compute": LocalStageLauncher(checkpoint_root=str(tmp_path / "checkpoints"))}
    return store, resources


def _train(instance: DagsterInstance, resources: dict, options: dict, assets: list[str]):
    options = {k: v for k, v in options.items() if k != "preset"}
    return materialize(PIPELINE_ASSETS, selection=[AssetKey(a) for a in assets], instance=instance,
                       partition_key="tiny", resources=resources, raise_on_error=False,
                       run_config={"ops": {"splat_model": {"config": {"preset": "preview", "options": options}}}})


def test_splat_model_trains_publishes_and_clears_its_checkpoints(published_export, instance, tmp_path) -> None:
    store, resources = published_export
    result = _train(instance, resources, {**TINY, "steps": 45}, ["splat_model"])
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["min_gaussians"] and checks["finite_parameters"] and checks["ply_readable"]
    assert checks["beats_mean_colour_baseline"]
    metadata = result.asset_materializations_for_node("splat_model")[0].metadata
    figures = flat_metadata(metadata)
    assert figures["published"] is True and figures["steps"] == 45
    folder = store.fetch("tiny", "splat_model")
    assert len(read_ply(folder / "point_cloud.ply")) == figures["gaussians"]
    # each headline figure is one row, not repeated by the stage's raw key
    assert "gaussians" not in metadata and metadata["Gaussians"].value == f"{figures['gaussians']:,}"
    assert {"cameras.json", "metrics.json", "training_curve.png"} <= {p.name for p in folder.iterdir()}
    # the curve and a preview are short enough for the UI to show without a click, right after the headline
    keys = list(metadata)
    assert keys.index("training_curve") == keys.index("ran on") + 1 and keys.index("preview") == keys.index("ran on") + 2
    assert metadata["training_curve"].value.startswith("![training curve](data:image/svg+xml;base64,")
    assert metadata["preview"].value.startswith("![") and "data:image/webp;base64," in metadata["preview"].value
    assert max(len(metadata[k].value) for k in ("training_curve", "preview")) < 1000
    assert len(metadata["previews"].value) > 1000  # the full-size previews stay one click away
    # a finished run leaves no checkpoints behind for the next one to resume by mistake
    assert not (tmp_path / "checkpoints" / "tiny" / "splat_model").exists()


def test_checkpoints_are_keyed_by_the_upstream_version(published_export, instance, tmp_path) -> None:
    """A re-submitted survey (a new colmap_export version) never resumes the checkpoints of the previous one."""
    from spaceport_dagster.resources.compute import StageRequest, checkpoint_folder

    store, resources = published_export
    request = StageRequest("train", "tiny", "splat_model", {"export": "colmap_export"}, {}, {}, resumable=True)
    root = tmp_path / "checkpoints"
    first = checkpoint_folder(root, store, request)
    assert first.name == f"export-{store.manifest('tiny', 'colmap_export')['version']}"
    assert checkpoint_folder(root, store, request) == first  # a retry of the same upstream resumes here
    # a checkpoint the earlier survey's failed run left behind; loading it would fail the step
    (first / "ckpt_000010.pt").write_bytes(b"not a checkpoint of this survey")
    with store.staging("tiny", "colmap_export") as staging:
        write_synthetic_export(staging.local_dir, n_views=12, seed=1)
        store.publish(staging)
    result = _train(instance, resources, {**TINY, "steps": 20}, ["splat_model"])
    assert result.success
    metadata = result.asset_materializations_for_node("splat_model")[0].metadata
    assert "resumed_from" not in metadata and flat_metadata(metadata)["steps"] == 20
    assert not first.exists()  # the superseded survey's checkpoints are gone, not kept for a mistaken resume


def test_a_failing_gate_keeps_the_last_good_model(published_export, instance) -> None:
    store, resources = published_export
    assert _train(instance, resources, {**TINY, "steps": 30}, ["splat_model"]).success
    good = (store.fetch("tiny", "splat_model") / "point_cloud.ply").read_bytes()
    result = _train(instance, resources, {**TINY, "steps": 30, "min_gaussians": 10_000_000}, ["splat_model"])
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed and c.severity == AssetCheckSeverity.ERROR]
    assert [c.check_name for c in failed] == ["min_gaussians"]
    assert (store.fetch("tiny", "splat_model") / "point_cloud.ply").read_bytes() == good
    assert (store.root / "tiny" / "splat_model.rejected" / result.run_id / "point_cloud.ply").is_file()
