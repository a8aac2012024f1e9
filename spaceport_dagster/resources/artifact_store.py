"""Where artifacts live: `<root>/<dataset>/<asset>/`, published atomically, on a local disk or an S3 prefix.

Local: a stage writes into a hidden temporary sibling; publishing renames it to a versioned folder and
swaps the `<asset>` symlink onto it with one atomic rename, then drops the previous version.
S3: files go under `<asset>/<version>/`; the `_SUCCESS` manifest naming that version is written last, so
readers (which start from the manifest) never see a half-written artifact and a failed run leaves the
previous manifest, and its files, in place.

The manifest lists every file with its size and SHA-256; readers check them (sizes always, hashes when the
files are read anyway) and refuse a damaged artifact (ArtifactDamaged) instead of handing a stage a cut file.
A killed run's staging is removed by the next run (owned_dirs); on S3, a version prefix a failed publish
left behind is removed by the next publish of that asset.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaceport_dagster.stages.artifact_check import (  # noqa: F401 - re-exported: readers use them from here
    MANIFEST,
    ArtifactDamaged,
    parse_manifest,
    sha256_file,
    verify_files,
)
from spaceport_dagster.stages.dataset_id import validate_dataset_id
from spaceport_dagster.stages.s3uri import is_s3_uri, list_keys, s3_client, split_s3_uri

from .owned_dirs import owner_tag, sweep

LOG = logging.getLogger(__name__)


class ArtifactMissing(FileNotFoundError):
    pass


class StorageUnavailable(RuntimeError):
    """The artifact root cannot be used (S3 bucket gone, endpoint down)."""


def _new_version() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def _file_list(folder: Path) -> list[dict[str, Any]]:
    return [
        {"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    ]


@dataclass
class Staging:
    """A stage's output before publishing: `local_dir` always; `remote_prefix` for S3 roots."""

    dataset: str
    asset: str
    version: str
    local_dir: Path
    remote_prefix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output_uri(self) -> str:
        return self.remote_prefix or str(self.local_dir)


class LocalArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def uri(self, dataset: str, asset: str) -> str:
        return str(self._link(dataset, asset)) + "/"

    def _link(self, dataset: str, asset: str) -> Path:
        return self.root / validate_dataset_id(dataset) / asset

    def exists(self, dataset: str, asset: str) -> bool:
        return (self._link(dataset, asset) / MANIFEST).is_file()

    def manifest(self, dataset: str, asset: str) -> dict[str, Any]:
        path = self._link(dataset, asset) / MANIFEST
        if not path.is_file():
            raise ArtifactMissing(f"no published {asset} for dataset {dataset!r} at {self.uri(dataset, asset)}")
        return parse_manifest(path.read_bytes(), dataset, asset)

    def fetch(self, dataset: str, asset: str) -> Path:
        """The published folder (resolved, so a later publish cannot swap it under a running reader), checked
        against its manifest: ArtifactDamaged when a file was cut, changed or removed."""
        manifest = self.manifest(dataset, asset)
        folder = self._link(dataset, asset).resolve()
        verify_files(folder, manifest, dataset, asset)
        return folder

    @contextmanager
    def staging(self, dataset: str, asset: str) -> Iterator[Staging]:
        version = _new_version()
        parent = self.root / validate_dataset_id(dataset)
        parent.mkdir(parents=True, exist_ok=True)
        sweep(parent, ".")  # staging folders of runs that were killed
        tmp = parent / f".{asset}.{version}{owner_tag()}.tmp"
        tmp.mkdir()
        try:
            yield Staging(dataset, asset, version, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def publish(self, staging: Staging, info: dict[str, Any] | None = None) -> str:
        parent = staging.local_dir.parent
        final = parent / f".{staging.asset}.{staging.version}"
        manifest = {"dataset": staging.dataset, "asset": staging.asset, "version": staging.version,
                    "published_at": time.time(), "files": _file_list(staging.local_dir), **(info or {})}
        link = parent / staging.asset
        if link.exists() and not link.is_symlink():  # refuse before the output leaves its staging folder
            raise RuntimeError(f"{link} is a real folder, not a published artifact link; move it away")
        previous = link.resolve() if link.is_symlink() else None
        (staging.local_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.replace(staging.local_dir, final)
        tmp_link = parent / f".{staging.asset}.{staging.version}.link"
        os.symlink(final.name, tmp_link)
        os.replace(tmp_link, link)  # the atomic step
        if previous is not None and previous != final:
            shutil.rmtree(previous, ignore_errors=True)
        return self.uri(staging.dataset, staging.asset)

    def reject(self, staging: Staging) -> str:
        """Keep a gate-failing output for inspection at `<dataset>/<asset>.rejected/`, never as the artifact."""
        target = staging.local_dir.parent / f"{staging.asset}.rejected"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging.local_dir, target)
        return str(target) + "/"


class S3ArtifactStore:
    def __init__(self, root: str, endpoint_url: str | None = None, cache_dir: str | Path | None = None):
        self.bucket, prefix = split_s3_uri(root.rstrip("/") + "/")
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.client = s3_client(endpoint_url)
        self.cache = Path(cache_dir or Path(tempfile.gettempdir()) / "spaceport-s3-cache")

    def _key(self, dataset: str, asset: str, *parts: str) -> str:
        return self.prefix + "/".join([validate_dataset_id(dataset), asset, *parts])

    def uri(self, dataset: str, asset: str) -> str:
        return f"s3://{self.bucket}/{self._key(dataset, asset)}/"

    def manifest(self, dataset: str, asset: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(dataset, asset, MANIFEST))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ArtifactMissing(f"no published {asset} for dataset {dataset!r} at {self.uri(dataset, asset)}") from None
        except self.client.exceptions.NoSuchBucket:
            raise StorageUnavailable(f"the artifact root's bucket {self.bucket!r} does not exist (reading {asset} "
                                     f"of {dataset!r}); check SPACEPORT_ARTIFACT_ROOT") from None
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"cannot read {self.uri(dataset, asset)}{MANIFEST}: {exc}") from None
        return parse_manifest(body, dataset, asset)

    def exists(self, dataset: str, asset: str) -> bool:
        try:
            self.manifest(dataset, asset)
            return True
        except ArtifactMissing:
            return False

    def version_uri(self, dataset: str, asset: str, manifest: dict[str, Any] | None = None) -> str:
        """The S3 prefix holding the published version's files (what a SageMaker input channel reads)."""
        version = (manifest or self.manifest(dataset, asset))["version"]
        return f"s3://{self.bucket}/{self._key(dataset, asset, version)}/"

    def fetch(self, dataset: str, asset: str) -> Path:
        manifest = self.manifest(dataset, asset)
        target = self.cache / dataset / asset / manifest["version"]
        if (target / MANIFEST).is_file():
            try:
                verify_files(target, manifest, dataset, asset, hashes=False)
                return target
            except ArtifactDamaged:
                shutil.rmtree(target, ignore_errors=True)  # a damaged cache copy: download again
        tmp = target.with_name(target.name + f".{uuid.uuid4().hex[:6]}.tmp")
        base = self._key(dataset, asset, manifest["version"]) + "/"
        try:
            for entry in manifest["files"]:
                dest = tmp / entry["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, base + entry["path"], str(dest))
            verify_files(tmp, manifest, dataset, asset)
            (tmp / MANIFEST).write_text(json.dumps(manifest))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:  # a failed download must not leave a partial copy in the cache
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @contextmanager
    def staging(self, dataset: str, asset: str) -> Iterator[Staging]:
        version = _new_version()
        scratch = Path(tempfile.gettempdir())
        sweep(scratch, "spaceport-")  # local copies of killed runs' staging
        tmp = Path(tempfile.mkdtemp(prefix=f"spaceport-{dataset}-{asset}-", suffix=owner_tag()))
        remote = f"s3://{self.bucket}/{self._key(dataset, asset, version)}/"
        staging = Staging(dataset, asset, version, tmp, remote_prefix=remote)
        try:
            yield staging
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if not staging.extra.get("published"):
                try:
                    self.discard(staging)
                except Exception as exc:  # the error that ended the run matters more; the next publish cleans up
                    LOG.warning(f"could not remove the unpublished {remote}: {exc}; the next publish of {asset} "
                                "removes it")

    def _upload_folder(self, folder: Path, key_prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.client.upload_file(str(path), self.bucket, key_prefix + path.relative_to(folder).as_posix())

    def publish(self, staging: Staging, info: dict[str, Any] | None = None) -> str:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        uri = f"s3://{self.bucket}/{self._key(staging.dataset, staging.asset, staging.version)}/"
        try:
            previous = self._publish(staging, info)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:  # the first error, the one that counts
            if "NoSuchBucket" in str(exc):
                raise StorageUnavailable(f"the artifact root's bucket {self.bucket!r} does not exist (publishing "
                                         f"{staging.asset} of {staging.dataset!r}); check SPACEPORT_ARTIFACT_ROOT") from exc
            raise StorageUnavailable(f"S3 failed while publishing {staging.asset} of {staging.dataset!r} to {uri}: "
                                     f"{exc}; nothing was published (the last published version is unchanged); run "
                                     "the command again when S3 answers") from exc
        try:  # published: older versions are only clutter now, and the next publish removes them as well
            if previous and previous != staging.version:
                self.delete_prefix(self._key(staging.dataset, staging.asset, previous) + "/")
            self._remove_abandoned_versions(staging)
        except (BotoCoreError, ClientError) as exc:
            LOG.warning(f"published {uri}, but could not remove older versions of {staging.asset}: {exc}; the next "
                        "publish removes them")
        return self.uri(staging.dataset, staging.asset)

    def _publish(self, staging: Staging, info: dict[str, Any] | None) -> str | None:
        """Upload the files, then the manifest naming them; the version this replaced (None if first)."""
        base = self._key(staging.dataset, staging.asset, staging.version) + "/"
        self._upload_folder(staging.local_dir, base)
        local = {p.relative_to(staging.local_dir).as_posix(): p for p in staging.local_dir.rglob("*") if p.is_file()}
        files = [
            {"path": obj["Key"][len(base):], "bytes": obj["Size"],
             **({"sha256": sha256_file(local[rel])} if (rel := obj["Key"][len(base):]) in local
                and local[rel].stat().st_size == obj["Size"] else {})}
            for obj in list_keys(self.client, self.bucket, base)
            if obj["Key"][len(base):] != MANIFEST
        ]
        if not files:
            raise RuntimeError(f"refusing to publish an empty {staging.asset} for {staging.dataset!r}")
        try:
            previous = self.manifest(staging.dataset, staging.asset)["version"]
        except ArtifactMissing:
            previous = None
        manifest = {"dataset": staging.dataset, "asset": staging.asset, "version": staging.version,
                    "published_at": time.time(), "files": files, **(info or {})}
        self.client.put_object(Bucket=self.bucket, Key=self._key(staging.dataset, staging.asset, MANIFEST),
                               Body=json.dumps(manifest, indent=2).encode(), ContentType="application/json")
        staging.extra["published"] = True
        return previous

    def _remove_abandoned_versions(self, staging: Staging) -> None:
        """Version prefixes of this asset older than the one just published and not named by its manifest:
        what a publish that failed half-way (an S3 outage) left behind."""
        asset_prefix = self._key(staging.dataset, staging.asset) + "/"
        versions = {o["Key"][len(asset_prefix):].split("/", 1)[0] for o in list_keys(self.client, self.bucket,
                                                                                      asset_prefix)}
        started = staging.version.split("-", 1)[0]  # versions begin with their UTC start time
        for version in sorted(versions - {MANIFEST, staging.version}):
            if version.split("-", 1)[0] <= started:
                self.delete_prefix(asset_prefix + version + "/")

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix` of this bucket."""
        keys = [{"Key": o["Key"]} for o in list_keys(self.client, self.bucket, prefix)]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i : i + 1000]})

    def discard(self, staging: Staging) -> None:
        """Remove whatever a failed remote job left under the staging version prefix."""
        self.delete_prefix(self._key(staging.dataset, staging.asset, staging.version) + "/")

    def reject(self, staging: Staging) -> str:
        base = self._key(staging.dataset, staging.asset + ".rejected") + "/"
        self.delete_prefix(base)
        self._upload_folder(staging.local_dir, base)
        return f"s3://{self.bucket}/{base}"


ArtifactStore = LocalArtifactStore | S3ArtifactStore


def open_store(root: str, endpoint_url: str | None = None) -> ArtifactStore:
    return S3ArtifactStore(root, endpoint_url) if is_s3_uri(root) else LocalArtifactStore(root)
