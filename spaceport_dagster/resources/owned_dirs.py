"""Scratch folders that name the process owning them, so a later run removes those of a killed one.

A `kill -9` runs no cleanup: the staging folder, the S3 upload copy and the stage's TMPDIR stay behind.
Their names end in `@<host>-<pid>`; `sweep` removes the ones of this host whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

_OWNER = re.compile(r"@(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)(?:\.[a-z]+)?$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def owner_tag() -> str:
    """`@<host>-<pid>` of this process, to end a scratch folder's name with."""
    return f"@{_host()}-{os.getpid()}"


def process_alive(pid: int) -> bool:
    """Whether `pid` runs and is not a zombie (a killed child its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    status = Path(f"/proc/{pid}/status")  # Linux; elsewhere a live pid is taken as running
    if status.is_file():
        state = next((line for line in status.read_text().splitlines() if line.startswith("State:")), "")
        return "zombie" not in state
    return True


def owner_gone(name: str) -> bool:
    """Whether `name` carries an owner tag of this host whose process no longer exists."""
    match = _OWNER.search(name)
    return bool(match) and match["host"] == _host() and not process_alive(int(match["pid"]))


def sweep(parent: Path, prefix: str = "") -> list[Path]:
    """Remove the folders under `parent` (names starting with `prefix`) left by dead processes of this host."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and owner_gone(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
