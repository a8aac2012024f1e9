"""Read-only access to an upload: a local folder or an S3 prefix. The source is never written to.

A folder's files are those `stages/upload_files.py` defines (the same that `spaceport submit` and the SageMaker
launcher copy): nothing outside the upload is ever opened, links out of it, to folders, broken links and link
loops are refused by name, and only regular files are read (a FIFO would block). Hidden files and folders
(`.git/`, `.DS_Store`, AppleDouble `._*`) and upload markers are skipped. A file that cannot be read is refused
with the reason, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from spaceport_dagster.stages.s3uri import is_s3_uri, list_keys, s3_client, split_s3_uri
from spaceport_dagster.stages.upload_files import UploadFile, is_ignored, read_upload_file, upload_files

MAX_FILE_BYTES = 1 << 30  # 1 GiB: far above any photo; larger files are refused unread


@dataclass
class SourceFile:
    name: str  # path relative to the source root, '/'-separated
    data: bytes | None  # None when the file was refused before decoding
    refusal: str | None = None  # why it was refused unread (I/O error, link out of the upload, ...)


def iter_source(source: str) -> Iterator[SourceFile]:
    if is_s3_uri(source):
        yield from _iter_s3(source)
    else:
        yield from _iter_folder(source)


def _iter_s3(source: str) -> Iterator[SourceFile]:
    bucket, prefix = split_s3_uri(source.rstrip("/") + "/")
    client = s3_client()
    objects = list_keys(client, bucket, prefix)
    if not objects:
        raise FileNotFoundError(f"no uploads under {source}")
    for obj in sorted(objects, key=lambda o: o["Key"]):
        name = obj["Key"][len(prefix):]
        if not name or name.endswith("/") or is_ignored(name):
            continue
        if obj.get("Size", 0) > MAX_FILE_BYTES:
            yield SourceFile(name, None, f"file too large ({obj['Size']:,} bytes; limit {MAX_FILE_BYTES:,})")
            continue
        try:
            yield SourceFile(name, client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        except Exception as exc:  # a read that fails mid-body: refuse this file, keep the rest
            yield SourceFile(name, None, f"cannot be read ({type(exc).__name__}: {exc})")


def _iter_folder(source: str) -> Iterator[SourceFile]:
    """The upload's files as `upload_files` defines them (also what `spaceport submit` copies), each read only
    when reached: refused entries first come with their reason, in name order with the files."""
    try:
        listing = upload_files(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"image source {source!r} is not a folder") from None
    entries: list[tuple[str, UploadFile | str]] = [(f.name, f) for f in listing.files] + list(listing.refused)
    for name, entry in sorted(entries, key=lambda e: e[0]):
        yield SourceFile(name, None, entry) if isinstance(entry, str) else _read_local(entry)


def _read_local(item: UploadFile) -> SourceFile:
    if item.size > MAX_FILE_BYTES:
        return SourceFile(item.name, None, f"file too large ({item.size:,} bytes; limit {MAX_FILE_BYTES:,})")
    try:
        return SourceFile(item.name, read_upload_file(item))
    except OSError as exc:
        return SourceFile(item.name, None, f"cannot be read ({exc.strerror or exc})")
