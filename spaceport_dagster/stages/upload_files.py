"""The files of an upload folder: the one definition used by ingest, `spaceport submit` and the SageMaker
launcher's copy of a local source, so that what is submitted or copied is exactly what ingest would read.

- Only regular files are files of the upload; a FIFO, socket or device is refused (reading a FIFO blocks).
- Symbolic links are never followed out of the upload: a link to a file inside the upload stands for that file
  (it is read through its resolved path); a link to a file outside it, to a folder, a broken link and a link
  loop (`a.jpg -> b.jpg -> a.jpg`, `loop -> .`, `up -> ..`) are refused by name, each with its reason, and the
  rest of the upload is kept. Linked folders are not entered.
- Hidden files and folders (`.git/`, `.DS_Store`, AppleDouble `._*`, submit's `._spaceport-*` temporaries),
  OS litter and upload markers are not photos: skipped, not reported.
- A folder that cannot be listed is refused by name (`name/`), never fatal.

No Dagster here: stage containers import this module.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# Markers and sidecars that belong to an upload but are not photos (sensors/markers.py names the markers).
IGNORED_NAMES = {"_READY", "dataset.json", ".DS_Store", "Thumbs.db", "desktop.ini"}
IGNORED_FOLDERS = {"__MACOSX"}
_IGNORED_LOWER = {n.lower() for n in IGNORED_NAMES}

LINK_OUTSIDE = "symbolic link to a file outside the upload (not read)"
LINK_TO_FOLDER = "symbolic link to a folder (not followed)"
LINK_BROKEN = "broken symbolic link"
LINK_LOOP = "symbolic link loop (not followed)"
LINK_UP = "symbolic link to the upload folder or a folder above it (a loop; not followed)"
NOT_REGULAR = "not a regular file"


def is_ignored(relative: str) -> bool:
    """Hidden files and folders, OS litter and upload markers: not photos, not reported as refused."""
    parts = relative.split("/")
    return (any(p.startswith(".") or p in IGNORED_FOLDERS for p in parts) or parts[-1] in IGNORED_NAMES
            or parts[-1].lower() in _IGNORED_LOWER)


@dataclass(frozen=True)
class UploadFile:
    name: str  # path relative to the upload folder, '/'-separated (a link's own name, not its target's)
    path: Path  # what to read: the file itself, or the file inside the upload that a link names
    size: int


@dataclass
class UploadFiles:
    root: Path  # the upload folder, resolved
    files: list[UploadFile] = field(default_factory=list)  # sorted by name
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), sorted by name

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def _link_target(root: Path, path: Path) -> tuple[Path | None, str | None]:
    """Where a symbolic link leads, inside the upload, or why it is refused. Never raises for a loop: Python
    3.11's Path.resolve raises RuntimeError there, os.path.realpath(strict=True) an OSError with ELOOP."""
    try:
        target = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, LINK_LOOP
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, LINK_BROKEN
        return None, f"cannot be read ({exc.strerror or exc})"
    except RuntimeError:  # a resolver that reports loops this way
        return None, LINK_LOOP
    if target == root or root.is_relative_to(target):
        return None, LINK_UP  # `loop -> .`, `up -> ..`: following it would list the upload again
    if target.is_dir():
        return None, LINK_TO_FOLDER
    if not target.is_relative_to(root):
        return None, LINK_OUTSIDE
    return target, None


def upload_files(folder: str | Path) -> UploadFiles:
    """The files of the upload folder `folder` (see the module docstring); FileNotFoundError when it is not a
    folder. Nothing is opened: entries are listed and stat'ed, links resolved."""
    given = Path(folder).expanduser()
    if not given.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    root = given.resolve(strict=True)
    out = UploadFiles(root)

    def walk(here: Path, prefix: str) -> None:
        try:
            with os.scandir(here) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            out.refused.append((prefix or "./", f"folder cannot be read ({exc.strerror or exc})"))
            return
        for entry in entries:
            relative = prefix + entry.name
            if is_ignored(relative):
                continue
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    target, reason = _link_target(root, path)
                    if target is None:
                        out.refused.append((relative, reason or LINK_BROKEN))
                        continue
                    info = target.stat()
                    if not stat.S_ISREG(info.st_mode):
                        out.refused.append((relative, NOT_REGULAR))
                        continue
                    out.files.append(UploadFile(relative, target, info.st_size))
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                out.refused.append((relative, f"cannot be read ({exc.strerror or exc})"))
                continue
            if stat.S_ISDIR(info.st_mode):
                walk(path, relative + "/")
            elif stat.S_ISREG(info.st_mode):
                out.files.append(UploadFile(relative, path, info.st_size))
            else:
                out.refused.append((relative, NOT_REGULAR))

    walk(root, "")
    out.files.sort(key=lambda f: f.name)
    out.refused.sort()
    return out


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading without following a link put in its place since it was listed (O_NOFOLLOW),
    without blocking on a FIFO (O_NONBLOCK), and refused (OSError) unless it is a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR, str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_upload_file(item: UploadFile) -> bytes:
    """The bytes of one file of an upload (opened as `open_regular` does)."""
    with open_regular(item.path) as handle:
        return handle.read()
