"""Artifact storage: URIs, atomic publish, failed and killed runs, and S3 against a real moto server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from spaceport_dagster.resources.artifact_store import (
    RETENTION_ENV,
    ArtifactMissing,
    LocalArtifactStore,
    S3ArtifactStore,
    open_store,
)
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.stages.dataset_id import (
    InvalidDatasetId,
    dataset_id_for_source,
    suggest_dataset_id,
    validate_dataset_id,
)

from .conftest import dataset_images, publish_files


@pytest.mark.parametrize("good", ["a", "lund", "brighton-beach-2026", "0abc", "a" * 63])
def test_valid_dataset_ids(good: str) -> None:
    assert validate_dataset_id(good) == good


@pytest.mark.parametrize("bad", ["", "-lead", "Upper", "has_underscore", "a" * 64, "dot.ted", "sl/ash", "sp ace"])
def test_invalid_dataset_ids_name_the_rule(bad: str) -> None:
    with pytest.raises(InvalidDatasetId, match=r"must match \[a-z0-9\]\[a-z0-9-\]\{0,62\}"):
        validate_dataset_id(bad)


def test_suggested_ids_are_valid() -> None:
    assert suggest_dataset_id("Brighton Beach_2016") == "brighton-beach-2016"
    assert suggest_dataset_id("___") == "dataset"


def test_a_generic_folder_name_gives_way_to_the_survey_above_it() -> None:
    assert dataset_id_for_source("/work/shared/datasets/lund/images") == "lund"
    assert dataset_id_for_source("/data/Brighton Beach/Photos/") == "brighton-beach"
    assert dataset_id_for_source("/data/survey-7") == "survey-7"
    assert dataset_id_for_source("s3://bucket/uploads/farm-north/") == "farm-north"
    assert dataset_id_for_source("s3://bucket/images/") == "bucket"
    assert dataset_id_for_source("images") == "images"  # nothing above it to name the survey


def test_local_uri_layout_andpublish_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    uri = publish_files(store, "lund", "image_set", {"manifest.json": b"{}", "images/a.jpg": b"1"})
    assert uri == f"{tmp_path.resolve()}/lund/image_set/"
    folder = store.fetch("lund", "image_set")
    assert (folder / "images" / "a.jpg").read_bytes() == b"1"
    manifest = store.manifest("lund", "image_set")
    assert [f["path"] for f in manifest["files"]] == ["images/a.jpg", "manifest.json"]
    # nothing but the link and its target are left behind
    assert sorted(p.name for p in (tmp_path / "lund").iterdir()) == sorted(["image_set", folder.name])


def test_republish_replaces_and_keeps_the_previous_version_for_the_retention(tmp_path: Path) -> None:
    """A reader that resolved version 1 still reads it after version 2 is published; a publish made after the
    retention has passed removes it, and keeps the version superseded only now."""
    store = LocalArtifactStore(tmp_path, retention_s=2.0)
    publish_files(store, "lund", "x", {"v": b"1"})
    first = store.manifest("lund", "x")["version"]
    old = store.fetch("lund", "x")
    publish_files(store, "lund", "x", {"v": b"2"})
    second = store.manifest("lund", "x")["version"]
    assert (store.fetch("lund", "x") / "v").read_bytes() == b"2"
    assert (old / "v").read_bytes() == b"1"  # a reader's folder is still there
    reader = LocalArtifactStore(tmp_path)
    reader.pin("lund", "x", first)
    assert reader.manifest("lund", "x")["version"] == first
    assert (reader.fetch("lund", "x") / "v").read_bytes() == b"1"
    assert reader.version_uri("lund", "x") == str(old) + "/"
    time.sleep(2.1)
    publish_files(store, "lund", "x", {"v": b"3"})
    assert not old.exists()  # superseded 2.1 s ago: past the retention
    assert set(store.versions("lund", "x")) == {second, store.manifest("lund", "x")["version"]}
    with pytest.raises(ArtifactMissing, match=f"version {first} of x for dataset 'lund' is no longer kept"):
        reader.fetch("lund", "x")
    with pytest.raises(ArtifactMissing, match="no longer kept"):
        LocalArtifactStore(tmp_path).pin("lund", "x", first)


def test_retention_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RETENTION_ENV, raising=False)
    assert LocalArtifactStore(tmp_path).retention_s == 24 * 3600
    monkeypatch.setenv(RETENTION_ENV, "0.5")
    assert LocalArtifactStore(tmp_path).retention_s == 1800
    assert StorageResource(root=str(tmp_path), retention_hours=2).store().retention_s == 7200
    monkeypatch.setenv(RETENTION_ENV, "a day")
    with pytest.raises(ValueError, match=f"{RETENTION_ENV}='a day' is not a number of hours"):
        LocalArtifactStore(tmp_path)


def test_zero_retention_removes_the_superseded_version_at_once(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, retention_s=0)
    publish_files(store, "lund", "x", {"v": b"1"})
    old = store.fetch("lund", "x")
    publish_files(store, "lund", "x", {"v": b"2"})
    assert not old.exists()
    assert list(store.versions("lund", "x")) == [store.manifest("lund", "x")["version"]]


def test_failed_run_leaves_last_good_artifact(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    publish_files(store, "lund", "x", {"v": b"good"})
    with pytest.raises(RuntimeError), store.staging("lund", "x") as staging:
        (staging.local_dir / "v").write_bytes(b"half")
        raise RuntimeError("stage crashed")
    assert (store.fetch("lund", "x") / "v").read_bytes() == b"good"
    assert not [p for p in (tmp_path / "lund").iterdir() if p.name.endswith(".tmp")]


def test_publish_over_a_real_folder_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    (tmp_path / "lund" / "x").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="is a real folder"), store.staging("lund", "x") as staging:
        (staging.local_dir / "v").write_bytes(b"new")
        store.publish(staging)
    assert sorted(p.name for p in (tmp_path / "lund").iterdir()) == ["x"]  # no orphaned version folder


def test_missing_artifact_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    assert not store.exists("lund", "image_set")
    with pytest.raises(ArtifactMissing, match="no published image_set for dataset 'lund'"):
        store.fetch("lund", "image_set")
    with pytest.raises(InvalidDatasetId):
        store.uri("../etc", "image_set")


def test_killed_stage_publishes_nothing(tmp_path: Path) -> None:
    """SIGKILL a real stage process mid-write: the published artifact is the previous one, byte for byte."""
    store = LocalArtifactStore(tmp_path)
    publish_files(store, "lund", "image_set", {"manifest.json": b'{"good": true}'})
    src = dataset_images("lund")
    with store.staging("lund", "image_set") as staging:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spaceport_dagster.stages.ingest", "--input", f"source={src}",
             "--output", str(staging.local_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and not any((staging.local_dir / "images").glob("*")):
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        partial = list((staging.local_dir / "images").glob("*"))
        assert 0 < len(partial) < 29  # it really was killed half way
    assert json.loads((store.fetch("lund", "image_set") / "manifest.json").read_text()) == {"good": True}
    assert not list((tmp_path / "lund").glob("*.tmp"))


def test_rejected_output_is_kept_aside_one_folder_per_run(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    publish_files(store, "lund", "x", {"v": b"good"})
    where = {}
    for run_id, data in (("run-a", b"bad a"), ("run-b", b"bad b")):
        with store.staging("lund", "x") as staging:
            (staging.local_dir / "v").write_bytes(data)
            where[run_id] = store.reject(staging, run_id=run_id)
    assert where == {r: f"{tmp_path.resolve()}/lund/x.rejected/{r}/" for r in ("run-a", "run-b")}
    assert Path(where["run-a"], "v").read_bytes() == b"bad a"  # not overwritten by the next rejected run
    assert Path(where["run-b"], "v").read_bytes() == b"bad b"
    assert (store.fetch("lund", "x") / "v").read_bytes() == b"good"


def test_s3_rejected_output_is_kept_one_folder_per_run(bucket: str) -> None:
    store = open_store(f"s3://{bucket}/root")
    for run_id in ("run-a", "run-b"):
        with store.staging("lund", "x") as staging:
            (staging.local_dir / "v").write_bytes(run_id.encode())
            assert store.reject(staging, run_id=run_id) == f"s3://{bucket}/root/lund/x.rejected/{run_id}/"
    s3 = boto3.client("s3")
    for run_id in ("run-a", "run-b"):
        assert s3.get_object(Bucket=bucket, Key=f"root/lund/x.rejected/{run_id}/v")["Body"].read() == run_id.encode()
    assert not store.exists("lund", "x")


def test_s3_publish_is_manifest_last(bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}/artifacts")
    assert isinstance(store, S3ArtifactStore)
    assert store.uri("lund", "image_set") == f"s3://{bucket}/artifacts/lund/image_set/"
    s3 = boto3.client("s3")
    with store.staging("lund", "image_set") as staging:
        (staging.local_dir / "images").mkdir()
        (staging.local_dir / "images" / "a.jpg").write_bytes(b"A")
        (staging.local_dir / "manifest.json").write_text("{}")
        # files uploaded before the manifest are invisible to readers
        store._upload_folder(staging.local_dir, store._key("lund", "image_set", staging.version) + "/")
        assert not store.exists("lund", "image_set")
        store.publish(staging)
    manifest = store.manifest("lund", "image_set")
    assert {f["path"] for f in manifest["files"]} == {"images/a.jpg", "manifest.json"}
    fetched = store.fetch("lund", "image_set")
    assert (fetched / "images" / "a.jpg").read_bytes() == b"A"
    first_version = manifest["version"]
    publish_files(store, "lund", "image_set", {"manifest.json": b'{"v": 2}'})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="artifacts/lund/")["Contents"]]
    # the superseded version stays for the retention (24 h by default), with its own manifest
    assert sorted(k for k in keys if first_version in k) == [
        f"artifacts/lund/image_set/{first_version}/{name}" for name in ("_SUCCESS", "images/a.jpg", "manifest.json")]
    assert json.loads((store.fetch("lund", "image_set") / "manifest.json").read_text()) == {"v": 2}


def test_s3_superseded_version_stays_readable_for_the_retention(bucket: str, tmp_path: Path) -> None:
    """A SageMaker channel or a concurrent rerun that resolved version 1 reads it after version 2 is published;
    the publish after the retention removes version 1 (every object of it) and keeps version 2."""
    store = S3ArtifactStore(f"s3://{bucket}/root", cache_dir=tmp_path / "cache", retention_s=2.0)
    s3 = boto3.client("s3")
    publish_files(store, "lund", "x", {"v": b"1", "sub/w": b"w"})
    first = store.manifest("lund", "x")["version"]
    channel = store.version_uri("lund", "x")
    publish_files(store, "lund", "x", {"v": b"2"})
    second = store.manifest("lund", "x")["version"]
    assert second != first
    reader = S3ArtifactStore(f"s3://{bucket}/root", cache_dir=tmp_path / "reader-cache")
    reader.pin("lund", "x", first)
    assert reader.version_uri("lund", "x") == channel == f"s3://{bucket}/root/lund/x/{first}/"
    assert (reader.fetch("lund", "x") / "v").read_bytes() == b"1"
    assert (store.fetch("lund", "x") / "v").read_bytes() == b"2"
    time.sleep(2.1)
    publish_files(store, "lund", "x", {"v": b"3"})
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="root/lund/x/")["Contents"]]
    assert not [k for k in keys if first in k]
    assert f"root/lund/x/{second}/v" in keys and f"root/lund/x/{second}/_SUCCESS" in keys
    fresh = S3ArtifactStore(f"s3://{bucket}/root", cache_dir=tmp_path / "fresh-cache")
    with pytest.raises(ArtifactMissing, match=f"version {first} of x for dataset 'lund' is no longer kept"):
        fresh.pin("lund", "x", first)


def test_s3_failed_run_keeps_previous_manifest(bucket: str) -> None:
    store = open_store(f"s3://{bucket}/root")
    publish_files(store, "lund", "x", {"v": b"good"})
    with pytest.raises(RuntimeError), store.staging("lund", "x") as staging:
        (staging.local_dir / "v").write_bytes(b"partial")
        store._upload_folder(staging.local_dir, store._key("lund", "x", staging.version) + "/")
        raise RuntimeError("upload interrupted")
    assert (store.fetch("lund", "x") / "v").read_bytes() == b"good"
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="root/lund/x/")["Contents"]]
    assert len(keys) == 3  # the manifests and the good version's one file: the partial upload was discarded


def test_s3_failed_fetch_leaves_no_partial_copy_in_the_cache(bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(f"s3://{bucket}/root", cache_dir=tmp_path / "cache")
    publish_files(store, "lund", "x", {"a": b"A", "b": b"B"})
    version = store.manifest("lund", "x")["version"]
    boto3.client("s3").delete_object(Bucket=bucket, Key=f"root/lund/x/{version}/b")
    with pytest.raises(ClientError):
        store.fetch("lund", "x")
    assert not list((tmp_path / "cache" / "lund" / "x").iterdir())


def test_s3_refuses_emptypublish_files(bucket: str) -> None:
    store = open_store(f"s3://{bucket}/root")
    with store.staging("lund", "x") as staging, pytest.raises(RuntimeError, match="empty"):
        store.publish(staging)


def test_storage_resource_reads_the_environment_when_used_not_when_defined(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceport_dagster.resources.selection import resources_from_env
    from spaceport_dagster.resources.storage import StorageResource

    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", str(tmp_path / "first"))
    storage = resources_from_env()["storage"]
    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", str(tmp_path / "second"))
    publish_files(storage.store(), "lund", "image_set", {"manifest.json": b"{}"})
    assert (tmp_path / "second" / "lund" / "image_set" / "manifest.json").is_file()
    assert not (tmp_path / "first").exists()
    monkeypatch.delenv("SPACEPORT_ARTIFACT_ROOT")
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path / "home"))
    assert storage.store().uri("lund", "image_set") == f"{tmp_path}/home/artifacts/lund/image_set/"
    explicit = StorageResource(root=str(tmp_path / "fixed"))  # configured: the environment is not read
    assert explicit.store().uri("lund", "image_set") == f"{tmp_path}/fixed/lund/image_set/"


def test_compute_resource_picks_its_launcher_when_a_stage_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceport_dagster.resources.compute import LocalStageLauncher
    from spaceport_dagster.resources.sagemaker.launcher import SageMakerStageLauncher
    from spaceport_dagster.resources.selection import EnvironmentStageLauncher, resources_from_env

    monkeypatch.delenv("SPACEPORT_COMPUTE", raising=False)
    compute = resources_from_env()["compute"]
    assert isinstance(compute.launcher(), LocalStageLauncher)
    monkeypatch.setenv("SPACEPORT_COMPUTE", "sagemaker")
    monkeypatch.setenv("SPACEPORT_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/spaceport")
    monkeypatch.setenv("SPACEPORT_SAGEMAKER_IMAGE_REPO", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spaceport")
    sagemaker = compute.launcher()
    assert isinstance(sagemaker, SageMakerStageLauncher)
    assert sagemaker.role_arn == "arn:aws:iam::123456789012:role/spaceport"
    monkeypatch.setenv("SPACEPORT_COMPUTE", "lambda")
    with pytest.raises(ValueError, match="SPACEPORT_COMPUTE='lambda' is not a known launcher"):
        compute.launcher()
    assert isinstance(EnvironmentStageLauncher(kind="local").launcher(), LocalStageLauncher)  # set wins


def test_every_resource_setting_says_where_it_comes_from_in_the_ui() -> None:
    """The definitions' resources leave their fields empty (an EnvVar fails a run when its variable is unset):
    the description the UI shows beside each field must name the variable read instead."""
    from spaceport_dagster.definitions import defs

    assert set(defs.resources) == {"storage", "compute", "notifier"}
    for key, resource in defs.resources.items():
        fields = resource.get_resource_definition().config_schema.config_type.fields
        assert fields, key
        for name, field in fields.items():
            assert re.search(r"\b(SPACEPORT|AWS)_[A-Z_]+\b", field.description or ""), (key, name, field.description)
