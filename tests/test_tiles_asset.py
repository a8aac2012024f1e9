"""splat_model as tiles through Dagster: a killed tile is retrained alone on the rerun, and on SageMaker the
tiles are K Training jobs started at once (emulator + moto), merged into one published splat."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, materialize

from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.artifact_store import LocalArtifactStore, S3ArtifactStore
from spaceport_dagster.resources.compute import LocalStageLauncher
from spaceport_dagster.resources.selection import resources_from_env
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.run_events import flat_metadata
from spaceport_dagster.stages.ply import read_ply
from spaceport_dagster.stages.tiles.spec import TileSpec
from spaceport_dagster.stages.train.synthetic import write_synthetic_export

from .conftest import publish_files
from .stage_processes import stage_pid
from .test_train import TINY

pytest.register_assert_rewrite("tests.sagemaker_fixtures")
pytest_plugins = ("tests.sagemaker_fixtures",)  # the sagemaker, sagemaker_env fixtures

DATASET = "tiny"
# two tiles of the synthetic ring survey, each a few checkpointed steps
OPTIONS = {k: v for k, v in TINY.items() if k != "preset"} | {"steps": 60, "checkpoint_every": 20, "eval_every": 60}


@pytest.fixture(scope="module")
def synthetic_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_export(tmp_path_factory.mktemp("export"), n_views=12)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _materialize(instance: DagsterInstance, resources: dict, tiles: int, **options: object):
    config = {"preset": "preview", "options": {**OPTIONS, **options}, "tiles": tiles}
    return materialize(PIPELINE_ASSETS, selection=[AssetKey("splat_model")], instance=instance, partition_key=DATASET,
                       resources=resources, raise_on_error=False,
                       run_config={"ops": {"splat_model": {"config": config}}})


def _failure(result) -> str:
    [event] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    return event.step_failure_data.error.message


def _assert_merged_from_cores(folder: Path, tile_folders: list[Path]) -> None:
    """Every merged Gaussian is one of its tile's, inside that tile's core cell, and no tile trained a test view."""
    merged = read_ply(folder / "point_cloud.ply")
    cameras = json.loads((folder / "cameras.json").read_text())["cameras"]
    test = {c["name"] for c in cameras if c.get("heldout")}
    assert test
    rows = []
    for tile_folder in tile_folders:
        spec = TileSpec.from_dict(json.loads((tile_folder / "tile.json").read_text()))
        assert not test & set(spec.photos)
        summary = json.loads((tile_folder / "metrics.json").read_text())["summary"]
        assert summary["train_views"] == len(spec.photos)
        own = read_ply(tile_folder / "point_cloud.ply").means
        rows.append(own[spec.core.contains(own)])
        mine = merged.means[spec.core.contains(merged.means)]
        assert {tuple(r) for r in mine.tolist()} <= {tuple(r) for r in own.tolist()}
    assert len(merged) <= sum(len(r) for r in rows)
    owners = sum(TileSpec.from_dict(json.loads((f / "tile.json").read_text())).core.contains(merged.means).astype(int)
                 for f in tile_folders)
    assert (np.asarray(owners) == 1).all()


def test_a_killed_tile_is_retrained_alone_and_the_rerun_publishes_the_merge(
        synthetic_export: Path, instance: DagsterInstance, tmp_path: Path, scratch: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    publish_files(store, DATASET, "colmap_export", _files(synthetic_export))
    register_dataset(instance, DATASET)
    checkpoints = tmp_path / "checkpoints"
    resources = {"storage": StorageResource(root=str(tmp_path / "artifacts")),
                 "compute": LocalStageLauncher(checkpoint_root=str(checkpoints))}
    killed: list[int] = []

    def kill_tile_two_after_a_checkpoint() -> None:
        pid = stage_pid(scratch, "train-tile2of2", timeout=600)
        deadline = time.time() + 600
        while time.time() < deadline and not list(checkpoints.glob("tiny/splat_model.tile2of2/*/ckpt_*.pt")):
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_tile_two_after_a_checkpoint, daemon=True)
    killer.start()
    first = _materialize(instance, resources, tiles=2)
    killer.join(timeout=5)
    assert killed and not first.success
    message = _failure(first)
    assert "1 of 2 tiles failed: tile 2/2" in message and "signal 9" in message, message
    assert "Kept: tile 1/2, published; a rerun trains only the failed tiles" in message
    tile_one = store.current_manifest(DATASET, "splat_model.tile1of2")
    assert not store.exists(DATASET, "splat_model.tile2of2") and not store.exists(DATASET, "splat_model")

    second = _materialize(instance, resources, tiles=2)
    assert second.success
    assert store.current_manifest(DATASET, "splat_model.tile1of2")["version"] == tile_one["version"]  # not retrained
    metadata = second.asset_materializations_for_node("splat_model")[0].metadata
    assert metadata["tiles_trained"].value == 1 and metadata["tiles_reused"].value == 1
    assert metadata["published"].value is True and metadata["tiles"].value.count("| reused |") == 1
    tile_two = store.fetch(DATASET, "splat_model.tile2of2")
    assert json.loads((tile_two / "metrics.json").read_text())["summary"]["resumed_from"]  # from its checkpoint
    checks = {c.check_name: c.passed for c in second.get_asset_check_evaluations()}
    assert checks["min_gaussians"] and checks["finite_parameters"] and checks["ply_readable"]
    _assert_merged_from_cores(store.fetch(DATASET, "splat_model"),
                              [store.fetch(DATASET, "splat_model.tile1of2"), tile_two])
    observations = instance.fetch_observations(AssetKey("splat_model"), limit=10).records
    assert {o.asset_observation.metadata["tile"].value for o in observations} == {"tile 1/2", "tile 2/2"}


def test_tiles_run_as_parallel_sagemaker_training_jobs_and_merge(
        synthetic_export: Path, sagemaker, sagemaker_env, instance: DagsterInstance, tmp_path: Path) -> None:
    k = 3
    store = S3ArtifactStore(sagemaker_env["SPACEPORT_ARTIFACT_ROOT"], cache_dir=tmp_path / "cache")
    publish_files(store, DATASET, "colmap_export", _files(synthetic_export))
    register_dataset(instance, DATASET)
    result = _materialize(instance, resources_from_env(), tiles=k, steps=30, checkpoint_every=0, eval_every=30)
    assert result.success, _failure(result)
    created = sagemaker.created("training")
    tiles = [r for r in created if r["Environment"]["SPACEPORT_STAGE"] == "train"]
    [merge] = [r for r in created if r["Environment"]["SPACEPORT_STAGE"] == "merge"]
    names = [r["TrainingJobName"] for r in tiles]
    assert len(names) == k == len(set(names)) and all(f"tile{i}of{k}" in " ".join(names) for i in range(1, k + 1))
    bucket = sagemaker_env["SPACEPORT_ARTIFACT_ROOT"][5:].split("/")[0]
    assert {r["CheckpointConfig"]["S3Uri"] for r in tiles} == {
        f"s3://{bucket}/spaceport/{DATASET}/splat_model.tile{i}of{k}.checkpoints/" for i in range(1, k + 1)}
    jobs = [sagemaker.jobs[n] for n in names]
    assert max(j.created for j in jobs) < min(j.ended for j in jobs)  # all started before any finished
    assert sagemaker.jobs[merge["TrainingJobName"]].created >= max(j.ended for j in jobs)
    assert "CheckpointConfig" not in merge
    channels = {c["ChannelName"] for c in merge["InputDataConfig"]}
    assert channels == {"export"} | {f"tile{i}of{k}" for i in range(1, k + 1)}
    metadata = result.asset_materializations_for_node("splat_model")[0].metadata
    assert metadata["published"].value is True and metadata["tiles_trained"].value == k
    assert flat_metadata(metadata)["sagemaker_job_name"] == merge["TrainingJobName"]  # a headline figure
    _assert_merged_from_cores(store.fetch(DATASET, "splat_model"),
                              [store.fetch(DATASET, f"splat_model.tile{i}of{k}") for i in range(1, k + 1)])
    s3 = boto3.client("s3")
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="spaceport/_sagemaker/").get("KeyCount")
