"""Read-only access to an upload: a local folder or an S3 prefix. The source is never written to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spaceport_dagster.stages.s3uri import is_s3_uri, list_keys, s3_client, split_s3_uri

# Markers and sidecars that belong to an upload but are not photos.
IGNORED_NAMES = {"_READY", "dataset.json", ".DS_Store", "Thumbs.db"}


@dataclass
class SourceFile:
    name: str  # path relative to the source root, '/'-separated
    data: bytes


def iter_source(source: str) -> Iterator[SourceFile]:
    if is_s3_uri(source):
        bucket, prefix = split_s3_uri(source.rstrip("/") + "/")
        client = s3_client()
        objects = list_keys(client, bucket, prefix)
        if not objects:
            raise FileNotFoundError(f"no uploads under {source}")
        for obj in sorted(objects, key=lambda o: o["Key"]):
            name = obj["Key"][len(prefix):]
            if name and not name.endswith("/") and Path(name).name not in IGNORED_NAMES:
                yield SourceFile(name, client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        return
    root = Path(source).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image source {source!r} is not a folder")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name not in IGNORED_NAMES and not path.name.startswith("._"):
            yield SourceFile(path.relative_to(root).as_posix(), path.read_bytes())
