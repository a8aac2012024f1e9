"""Read-only access to an upload: a local folder or an S3 prefix. The source is never written to.

Nothing outside the upload is ever opened: symbolic links are resolved and refused when they point out of
the upload folder, linked folders are not entered, and only regular files are read (a FIFO would block).
Hidden files and folders (`.git/`, `.DS_Store`, AppleDouble `._*`) and upload markers are skipped, as
`spaceport submit` skips them. A file that cannot be read is refused with the reason, never fatal.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spaceport_dagster.stages.s3uri import is_s3_uri, list_keys, s3_client, split_s3_uri

# Markers and sidecars that belong to an upload but are not photos.
IGNORED_NAMES = {"_READY", "dataset.json", ".DS_Store", "Thumbs.db", "desktop.ini"}
IGNORED_FOLDERS = {"__MACOSX"}
MAX_FILE_BYTES = 1 << 30  # 1 GiB: far above any photo; larger files are refused unread


@dataclass
class SourceFile:
    name: str  # path relative to the source root, '/'-separated
    data: bytes | None  # None when the file was refused before decoding
    refusal: str | None = None  # why it was refused unread (I/O error, link out of the upload, ...)


def is_ignored(relative: str) -> bool:
    """Hidden files and folders, OS litter and upload markers: not photos, not reported as refused."""
    parts = relative.split("/")
    return (any(p.startswith(".") or p in IGNORED_FOLDERS for p in parts) or parts[-1] in IGNORED_NAMES
            or parts[-1].lower() in {n.lower() for n in IGNORED_NAMES})


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
    given = Path(source).expanduser()
    if not given.is_dir():
        raise FileNotFoundError(f"image source {source!r} is not a folder")
    root = given.resolve()
    found: list[tuple[str, Path]] = []
    unreadable: list[SourceFile] = []

    def folder_error(exc: OSError) -> None:
        relative = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?"
        unreadable.append(SourceFile(relative + "/", None, f"folder cannot be read ({exc.strerror or exc})"))

    for folder, dirs, files in os.walk(root, followlinks=False, onerror=folder_error):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in IGNORED_FOLDERS)
        for name in files + [d for d in os.listdir(here) if (here / d).is_symlink() and (here / d).is_dir()]:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if not is_ignored(relative):
                found.append((relative, path))
    yield from unreadable
    for relative, path in sorted(set(found)):
        yield _read_local(root, relative, path)


def _read_local(root: Path, relative: str, path: Path) -> SourceFile:
    try:
        if path.is_symlink():
            target = path.resolve()
            if not target.exists():
                return SourceFile(relative, None, "broken symbolic link")
            if target.is_dir():
                return SourceFile(relative, None, "symbolic link to a folder (not followed)")
            if not target.is_relative_to(root):
                return SourceFile(relative, None, "symbolic link to a file outside the upload (not read)")
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return SourceFile(relative, None, "not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            return SourceFile(relative, None, f"file too large ({info.st_size:,} bytes; limit {MAX_FILE_BYTES:,})")
        return SourceFile(relative, path.read_bytes())
    except OSError as exc:
        return SourceFile(relative, None, f"cannot be read ({exc.strerror or exc})")
