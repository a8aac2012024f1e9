"""Where artifacts live: `<root>/<dataset>/<asset>/`, published atomically, on a local disk or an S3 prefix.

Local: a stage writes into a hidden temporary sibling; publishing renames it to a versioned folder
(`.<asset>.<version>/`) and swaps the `<asset>` symlink onto it with one atomic rename.
S3: files go under `<asset>/<version>/`; the `_SUCCESS` manifest naming that version is written last, so
readers (which start from the manifest) never see a half-written artifact and a failed run leaves the
previous manifest, and its files, in place.

Superseded versions stay readable for a retention period (`SPACEPORT_VERSION_RETENTION_HOURS`, default 24 h)
and are removed by a later publish of the same asset once that period has passed since they were superseded:
a reader that resolved a version (a later step of the run that published it, a SageMaker input channel, a
concurrent rerun) never finds it gone under it. Every version folder carries its own copy of the manifest, so
a reader can ask for a version by id (`pin`) rather than for whatever is current.

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

RETENTION_ENV = "SPACEPORT_VERSION_RETENTION_HOURS"
DEFAULT_RETENTION_HOURS = 24.0
LOG = logging.getLogger(__name__)


def retention_seconds(hours: float | None = None) -> float:
    """How long a superseded version stays readable: `hours`, else $SPACEPORT_VERSION_RETENTION_HOURS, else 24 h."""
    if hours is None:
        text = os.environ.get(RETENTION_ENV, "").strip()
        try:
            hours = float(text) if text else DEFAULT_RETENTION_HOURS
        except ValueError:
            raise ValueError(f"{RETENTION_ENV}={text!r} is not a number of hours") from None
    if hours < 0:
        raise ValueError(f"the version retention must be 0 hours or more, not {hours}")
    return hours * 3600.0


def expired_versions(published: dict[str, float], current: str | None, retention_s: float, now: float) -> list[str]:
    """The versions (id -> published_at) superseded more than `retention_s` ago. A version is superseded when
    the next one in publishing order was published; the current one never expires."""
    order = sorted(published, key=lambda v: (published[v], v))
    out = []
    for version, successor in zip(order, order[1:], strict=False):
        if version != current and now - published[successor] >= retention_s:
            out.append(version)
    return out


class ArtifactMissing(FileNotFoundError):
    pass


class StorageUnavailable(RuntimeError):
    """The artifact root cannot be used (S3 bucket gone, endpoint down)."""


def _rejected_name(run_id: str | None) -> str:
    """The folder of one run's rejected output (one per run: a later rejected run never overwrites it)."""
    return run_id or time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class VersionPins:
    """Versions a reader asked for by id (`pin`): `manifest` and `fetch` of a pinned asset give that version,
    not the current one."""

    def __init__(self) -> None:
        self.pins: dict[tuple[str, str], str] = {}

    def pin(self, dataset: str, asset: str, version: str) -> None:
        """Read `version` of `asset` from now on (ArtifactMissing when it is no longer kept)."""
        self.pins[(validate_dataset_id(dataset), asset)] = version
        self.version_manifest(dataset, asset, version)

    def pinned(self, dataset: str, asset: str) -> str | None:
        return self.pins.get((dataset, asset))

    def version_manifest(self, dataset: str, asset: str, version: str) -> dict[str, Any]:
        raise NotImplementedError

    def current_manifest(self, dataset: str, asset: str) -> dict[str, Any]:
        raise NotImplementedError

    def manifest(self, dataset: str, asset: str) -> dict[str, Any]:
        """The manifest of the pinned version, else of the published (current) one."""
        version = self.pinned(dataset, asset)
        if version is not None:
            return self.version_manifest(dataset, asset, version)
        return self.current_manifest(dataset, asset)


def _gone(dataset: str, asset: str, version: str, where: str) -> ArtifactMissing:
    return ArtifactMissing(f"version {version} of {asset} for dataset {dataset!r} is no longer kept at {where} "
                           f"(superseded longer ago than the retention, {RETENTION_ENV}); rerun from {asset}: "
                           f"spaceport rerun {dataset} --from {asset}")


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


class LocalArtifactStore(VersionPins):
    def __init__(self, root: str | Path, retention_s: float | None = None):
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        self.retention_s = retention_seconds() if retention_s is None else retention_s

    def uri(self, dataset: str, asset: str) -> str:
        return str(self._link(dataset, asset)) + "/"

    def _link(self, dataset: str, asset: str) -> Path:
        return self.root / validate_dataset_id(dataset) / asset

    def _version_dir(self, dataset: str, asset: str, version: str) -> Path:
        return self.root / validate_dataset_id(dataset) / f".{asset}.{version}"

    def exists(self, dataset: str, asset: str) -> bool:
        version = self.pinned(dataset, asset)
        if version is not None:
            return (self._version_dir(dataset, asset, version) / MANIFEST).is_file()
        return (self._link(dataset, asset) / MANIFEST).is_file()

    def current_manifest(self, dataset: str, asset: str) -> dict[str, Any]:
        path = self._link(dataset, asset) / MANIFEST
        if not path.is_file():
            raise ArtifactMissing(f"no published {asset} for dataset {dataset!r} at {self.uri(dataset, asset)}")
        return parse_manifest(path.read_bytes(), dataset, asset)

    def version_manifest(self, dataset: str, asset: str, version: str) -> dict[str, Any]:
        folder = self._version_dir(dataset, asset, version)
        if not (folder / MANIFEST).is_file():
            raise _gone(dataset, asset, version, str(folder))
        return parse_manifest((folder / MANIFEST).read_bytes(), dataset, asset)

    def version_uri(self, dataset: str, asset: str) -> str:
        """The folder of the version a reader gets (pinned, else current), which no later publish changes."""
        return str(self._version_dir(dataset, asset, self.manifest(dataset, asset)["version"])) + "/"

    def fetch(self, dataset: str, asset: str) -> Path:
        """The version's own folder (pinned, else current; never the link, so a later publish cannot swap it
        under a running reader), checked against its manifest: ArtifactDamaged when a file was cut, changed
        or removed."""
        manifest = self.manifest(dataset, asset)
        folder = self._version_dir(dataset, asset, manifest["version"])
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
        (staging.local_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.replace(staging.local_dir, final)
        tmp_link = parent / f".{staging.asset}.{staging.version}.link"
        os.symlink(final.name, tmp_link)
        os.replace(tmp_link, link)  # the atomic step
        self.remove_expired(staging.dataset, staging.asset)
        return self.uri(staging.dataset, staging.asset)

    def versions(self, dataset: str, asset: str) -> dict[str, float]:
        """Every kept published version of `asset`: id -> published_at."""
        out: dict[str, float] = {}
        prefix = f".{asset}."
        for folder in (self.root / validate_dataset_id(dataset)).glob(prefix + "*"):
            version = folder.name[len(prefix):]
            if folder.is_dir() and not folder.is_symlink() and (folder / MANIFEST).is_file() and "." not in version:
                try:
                    out[version] = float(json.loads((folder / MANIFEST).read_text()).get("published_at", 0))
                except (ValueError, OSError):
                    continue  # a damaged manifest: left for a person to look at
        return out

    def remove_expired(self, dataset: str, asset: str, now: float | None = None) -> list[str]:
        """Remove the versions superseded longer ago than the retention; their ids."""
        link = self._link(dataset, asset)
        current = link.resolve().name[len(f".{asset}."):] if link.is_symlink() else None
        expired = expired_versions(self.versions(dataset, asset), current, self.retention_s, now or time.time())
        for version in expired:
            shutil.rmtree(self._version_dir(dataset, asset, version), ignore_errors=True)
        return expired

    def reject(self, staging: Staging, run_id: str | None = None) -> str:
        """Keep a gate-failing output for inspection at `<dataset>/<asset>.rejected/<run_id>/` (one folder per
        run), never as the artifact."""
        target = staging.local_dir.parent / f"{staging.asset}.rejected" / _rejected_name(run_id)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging.local_dir, target)
        return str(target) + "/"


class S3ArtifactStore(VersionPins):
    def __init__(self, root: str, endpoint_url: str | None = None, cache_dir: str | Path | None = None,
                 retention_s: float | None = None):
        super().__init__()
        self.retention_s = retention_seconds() if retention_s is None else retention_s
        self.bucket, prefix = split_s3_uri(root.rstrip("/") + "/")
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.client = s3_client(endpoint_url)
        self.cache = Path(cache_dir or Path(tempfile.gettempdir()) / "spaceport-s3-cache")

    def _key(self, dataset: str, asset: str, *parts: str) -> str:
        return self.prefix + "/".join([validate_dataset_id(dataset), asset, *parts])

    def uri(self, dataset: str, asset: str) -> str:
        return f"s3://{self.bucket}/{self._key(dataset, asset)}/"

    def current_manifest(self, dataset: str, asset: str) -> dict[str, Any]:
        return self._read_manifest(dataset, asset, self._key(dataset, asset, MANIFEST), None)

    def version_manifest(self, dataset: str, asset: str, version: str) -> dict[str, Any]:
        return self._read_manifest(dataset, asset, self._key(dataset, asset, version, MANIFEST), version)

    def _read_manifest(self, dataset: str, asset: str, key: str, version: str | None) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            if version is not None:
                raise _gone(dataset, asset, version, f"s3://{self.bucket}/{key}") from None
            raise ArtifactMissing(f"no published {asset} for dataset {dataset!r} at {self.uri(dataset, asset)}") from None
        except self.client.exceptions.NoSuchBucket:
            raise StorageUnavailable(f"the artifact root's bucket {self.bucket!r} does not exist (reading {asset} "
                                     f"of {dataset!r}); check SPACEPORT_ARTIFACT_ROOT") from None
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"cannot read s3://{self.bucket}/{key}: {exc}") from None
        return parse_manifest(body, dataset, asset)

    def exists(self, dataset: str, asset: str) -> bool:
        try:
            self.manifest(dataset, asset)
            return True
        except ArtifactMissing:
            return False

    def version_uri(self, dataset: str, asset: str, manifest: dict[str, Any] | None = None) -> str:
        """The S3 prefix holding the version's files (of `manifest`, else pinned, else current): what a SageMaker
        input channel reads; kept for the retention period after a later publish supersedes it."""
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
            published_at = self._publish(staging, info)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:  # the first error, the one that counts
            if "NoSuchBucket" in str(exc):
                raise StorageUnavailable(f"the artifact root's bucket {self.bucket!r} does not exist (publishing "
                                         f"{staging.asset} of {staging.dataset!r}); check SPACEPORT_ARTIFACT_ROOT") from exc
            raise StorageUnavailable(f"S3 failed while publishing {staging.asset} of {staging.dataset!r} to {uri}: "
                                     f"{exc}; nothing was published (the last published version is unchanged); run "
                                     "the command again when S3 answers") from exc
        try:  # published: versions superseded longer ago than the retention, and abandoned ones, go now
            self._remove_old_versions(staging, published_at)
        except (BotoCoreError, ClientError) as exc:
            LOG.warning(f"published {uri}, but could not remove older versions of {staging.asset}: {exc}; the next "
                        "publish removes them")
        return self.uri(staging.dataset, staging.asset)

    def _publish(self, staging: Staging, info: dict[str, Any] | None) -> float:
        """Upload the files, then the version's manifest, then the asset's manifest naming it; when it was
        published."""
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
        manifest = {"dataset": staging.dataset, "asset": staging.asset, "version": staging.version,
                    "published_at": time.time(), "files": files, **(info or {})}
        body = json.dumps(manifest, indent=2).encode()
        # The version's own copy first (a reader pinned to this version reads it), the asset's manifest last.
        self.client.put_object(Bucket=self.bucket, Key=base + MANIFEST, Body=body, ContentType="application/json")
        self.client.put_object(Bucket=self.bucket, Key=self._key(staging.dataset, staging.asset, MANIFEST),
                               Body=body, ContentType="application/json")
        staging.extra["published"] = True
        return float(manifest["published_at"])

    def _remove_old_versions(self, staging: Staging, published_at: float, now: float | None = None) -> list[str]:
        """Remove the version prefixes of this asset that are older than the one just published and either
        superseded longer ago than the retention, or never published (no manifest of their own: what a
        publish that failed half-way, an S3 outage, left behind). Their ids."""
        asset_prefix = self._key(staging.dataset, staging.asset) + "/"
        keys = [o["Key"][len(asset_prefix):] for o in list_keys(self.client, self.bucket, asset_prefix)]
        versions = {k.split("/", 1)[0] for k in keys if "/" in k}
        published = {k.split("/", 1)[0] for k in keys if k.endswith("/" + MANIFEST) and k.count("/") == 1}
        started = staging.version.split("-", 1)[0]  # versions begin with their UTC start time
        older = {v for v in versions - {staging.version} if v.split("-", 1)[0] <= started}
        kept: dict[str, float] = {staging.version: published_at}
        for version in published & older:
            try:
                kept[version] = float(self.version_manifest(staging.dataset, staging.asset, version)["published_at"])
            except (ArtifactMissing, ArtifactDamaged, KeyError, TypeError, ValueError):
                continue  # unreadable: left for a person to look at
        removed = sorted(older - published)
        removed += expired_versions(kept, staging.version, self.retention_s, now or time.time())
        for version in removed:
            self.delete_prefix(asset_prefix + version + "/")
        return removed

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix` of this bucket."""
        keys = [{"Key": o["Key"]} for o in list_keys(self.client, self.bucket, prefix)]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i : i + 1000]})

    def discard(self, staging: Staging) -> None:
        """Remove whatever a failed remote job left under the staging version prefix."""
        self.delete_prefix(self._key(staging.dataset, staging.asset, staging.version) + "/")

    def reject(self, staging: Staging, run_id: str | None = None) -> str:
        """Keep a gate-failing output at `<dataset>/<asset>.rejected/<run_id>/` (one folder per run)."""
        base = self._key(staging.dataset, staging.asset + ".rejected", _rejected_name(run_id)) + "/"
        self.delete_prefix(base)
        self._upload_folder(staging.local_dir, base)
        return f"s3://{self.bucket}/{base}"


ArtifactStore = LocalArtifactStore | S3ArtifactStore


def open_store(root: str, endpoint_url: str | None = None, retention_s: float | None = None) -> ArtifactStore:
    if is_s3_uri(root):
        return S3ArtifactStore(root, endpoint_url, retention_s=retention_s)
    return LocalArtifactStore(root, retention_s=retention_s)
