"""Damaged artifacts are refused with a rerun hint; killed runs' staging and a publish cut by an S3 outage are
cleaned up; the first error is the one reported. Real files, real processes, a real moto server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from spaceport_dagster.resources.artifact_store import (
    ArtifactDamaged,
    LocalArtifactStore,
    S3ArtifactStore,
    StorageUnavailable,
)
from spaceport_dagster.resources.owned_dirs import owner_gone

from .conftest import publish_files

FILES = {"sparse/points3D.bin": os.urandom(4096), "report.json": b'{"ok": true}'}


def test_manifest_lists_checksums_and_a_cut_file_is_refused(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    publish_files(store, "site", "sparse_reconstruction", FILES)
    entry = next(f for f in store.manifest("site", "sparse_reconstruction")["files"] if f["path"].endswith(".bin"))
    assert len(entry["sha256"]) == 64 and entry["bytes"] == 4096
    points = store.fetch("site", "sparse_reconstruction") / "sparse" / "points3D.bin"
    points.write_bytes(FILES["sparse/points3D.bin"][:2048])  # cut to half
    with pytest.raises(ArtifactDamaged, match=r"artifact sparse_reconstruction of dataset 'site' is damaged "
                                              r"\(sparse/points3D.bin has 2,048 bytes, the manifest says 4,096\); "
                                              r"rerun from sparse_reconstruction"):
        store.fetch("site", "sparse_reconstruction")


def test_bytes_overwritten_in_place_fail_the_checksum(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    folder = Path(publish_files(store, "site", "sparse_reconstruction", FILES))
    path = folder / "sparse" / "points3D.bin"
    data = bytearray(path.read_bytes())
    data[100:108] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactDamaged, match="points3D.bin does not match its SHA-256 checksum"):
        store.fetch("site", "sparse_reconstruction")


def test_a_cut_manifest_is_a_damaged_artifact_not_a_json_error(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    folder = Path(publish_files(store, "site", "image_set", FILES))
    manifest = folder / "_SUCCESS"
    manifest.write_bytes(manifest.read_bytes()[:40])
    with pytest.raises(ArtifactDamaged, match="_SUCCESS manifest is not valid JSON.*rerun from image_set"):
        store.fetch("site", "image_set")


def test_a_killed_runs_staging_is_removed_by_the_next_run(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    holder = (
        "import sys, time\n"
        "from spaceport_dagster.resources.artifact_store import LocalArtifactStore\n"
        "with LocalArtifactStore(sys.argv[1]).staging('site', 'image_set') as s:\n"
        "    (s.local_dir / 'half.bin').write_bytes(b'x' * 1000)\n"
        "    print(s.local_dir, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    staging = Path(proc.stdout.readline().strip())
    assert staging.is_dir() and not owner_gone(staging.name)
    publish_files(store, "site", "sparse_reconstruction", FILES)  # a live run's staging is left alone
    assert staging.is_dir()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert staging.is_dir() and owner_gone(staging.name)  # kill -9 ran no cleanup
    publish_files(store, "site", "sparse_reconstruction", FILES)
    assert not staging.exists()
    kept = sorted(p.name.split(".")[1] for p in (tmp_path / "site").iterdir() if p.name.startswith("."))
    assert kept == ["sparse_reconstruction"] * 2  # only the published version folders (the superseded one is
    assert len(store.versions("site", "sparse_reconstruction")) == 2  # kept for the retention) are left


def _outage_after(store: S3ArtifactStore, server, puts: int) -> None:
    """Stop the real moto server once `puts` objects were uploaded through this store's client."""
    sent = {"n": 0}

    def count(**_: object) -> None:
        sent["n"] += 1
        if sent["n"] == puts:
            server.stop()

    store.client.meta.events.register("after-call.s3.PutObject", count)


def test_an_s3_outage_during_publish_reports_the_first_error_and_the_next_publish_cleans_up(
        aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.server import ThreadedMotoServer

    from .conftest import _free_port

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="outage")
    store = S3ArtifactStore("s3://outage/root", endpoint_url=endpoint)
    store.client = boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1},
                                                                           connect_timeout=2))
    publish_files(store, "site", "colmap_export", {"a.bin": b"good"})
    good = store.manifest("site", "colmap_export")["version"]
    many = {f"images/{i:03d}.jpg": os.urandom(512) for i in range(12)}
    _outage_after(store, server, 5)
    with pytest.raises(StorageUnavailable, match=r"S3 failed while publishing colmap_export of 'site' to s3://outage/"
                       r"root/site/colmap_export/.*Could not connect .*nothing was published") as failed:
        publish_files(store, "site", "colmap_export", many)
    assert isinstance(failed.value.__cause__, EndpointConnectionError)  # the upload's error, not the cleanup's
    assert "images/" in str(failed.value)  # an upload failed, not the listing of the cleanup
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # S3 is back
    server.start()
    try:
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
            Bucket="outage", Prefix="root/site/colmap_export/")["Contents"]]
        versions = {k.split("/")[3] for k in keys} - {"_SUCCESS"}
        assert len(versions) == 2  # the published one and the half-uploaded one
        assert store.fetch("site", "colmap_export").joinpath("a.bin").read_bytes() == b"good"  # still the good one
        publish_files(store, "site", "colmap_export", {"b.bin": b"newer"})
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(
            Bucket="outage", Prefix="root/site/colmap_export/")["Contents"]]
        manifest = json.loads(boto3.client("s3", endpoint_url=endpoint).get_object(
            Bucket="outage", Key="root/site/colmap_export/_SUCCESS")["Body"].read())
        # the half-uploaded version is gone; the superseded good one stays for the retention period
        assert sorted(keys) == sorted(["root/site/colmap_export/_SUCCESS",
                                       f"root/site/colmap_export/{manifest['version']}/_SUCCESS",
                                       f"root/site/colmap_export/{manifest['version']}/b.bin",
                                       f"root/site/colmap_export/{good}/_SUCCESS",
                                       f"root/site/colmap_export/{good}/a.bin"])
    finally:
        server.stop()


def test_a_lost_bucket_is_one_clear_error(bucket: str) -> None:
    store = S3ArtifactStore(f"s3://{bucket}/root")
    publish_files(store, "site", "image_set", FILES)
    client = boto3.client("s3")
    for obj in client.list_objects_v2(Bucket=bucket)["Contents"]:
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)
    with pytest.raises(StorageUnavailable, match=f"bucket '{bucket}' does not exist"):
        store.exists("site", "image_set")


def test_s3_fetch_verifies_the_download(bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(f"s3://{bucket}/root", cache_dir=tmp_path / "cache")
    publish_files(store, "site", "sparse_reconstruction", FILES)
    version = store.manifest("site", "sparse_reconstruction")["version"]
    boto3.client("s3").put_object(Bucket=bucket, Key=f"root/site/sparse_reconstruction/{version}/report.json",
                                  Body=b'{"ok": null}')  # same size, other bytes
    started = time.time()
    with pytest.raises(ArtifactDamaged, match="report.json does not match its SHA-256"):
        store.fetch("site", "sparse_reconstruction")
    assert time.time() - started < 30
    assert not list((tmp_path / "cache").rglob("report.json"))  # no damaged copy cached


def test_a_bucket_lost_before_the_publish_is_one_clear_error(bucket: str) -> None:
    store = S3ArtifactStore(f"s3://{bucket}/root")
    with store.staging("site", "image_set") as staging:
        (staging.local_dir / "a.bin").write_bytes(b"photo")
        boto3.client("s3").delete_bucket(Bucket=bucket)  # empty: nothing was published yet
        with pytest.raises(StorageUnavailable, match=f"the artifact root's bucket '{bucket}' does not exist "
                                                     r"\(publishing image_set of 'site'\)"):
            store.publish(staging)
