"""The local inbox sensor, the embedded default: `SPACEPORT_HOME/inbox/<dataset>/` (or a local SPACEPORT_UPLOADS)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .markers import MARKER_NAMES, MAX_OPTIONS_BYTES, OPTIONS_FILE, MarkerObject
from .upload_sensor import Listing, build_upload_sensor


class InboxUploads:
    """Marker files directly inside each dataset folder; only marker paths are looked at, never the photos."""

    scheme = "inbox"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser().resolve()
        self.root = str(self.folder)

    def _candidates(self) -> list[str]:
        keys: list[str] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    keys += [f"{entry.name}/{name}" for name in MARKER_NAMES]
                elif entry.name in MARKER_NAMES:
                    keys.append(entry.name)  # refused by classify: not inside a dataset folder
        return sorted(keys)

    def list_markers(self, after: str, budget: int) -> Listing:
        if not self.folder.is_dir():
            return Listing([], "")
        pending = [k for k in self._candidates() if k > after]
        markers: list[MarkerObject] = []
        refused: list[tuple[MarkerObject, str]] = []
        for key in pending[:budget]:
            path = self.folder / key
            if not path.is_file():
                continue
            stat = path.stat()
            with path.open("rb") as handle:
                digest = hashlib.sha256(handle.read(MAX_OPTIONS_BYTES)).hexdigest()[:16]
            marker = MarkerObject(key, f"{digest}-{stat.st_size}-{stat.st_mtime_ns}")
            if not path.resolve().is_relative_to(self.folder):
                refused.append((marker, f"resolves to {path.resolve()}, outside the inbox"))
                continue
            markers.append(marker)
        next_after = pending[budget - 1] if len(pending) > budget else ""
        return Listing(markers, next_after, refused)

    def read_options(self, dataset: str) -> bytes | None:
        path = self.folder / dataset / OPTIONS_FILE
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            return handle.read(MAX_OPTIONS_BYTES + 1)  # one byte more: parse_options refuses a larger marker

    def source(self, dataset: str) -> str:
        return str(self.folder / dataset)


inbox_sensor = build_upload_sensor(
    "inbox_uploads",
    "Starts a run of spaceport_main for each new `_READY` / `dataset.json` marker in the local inbox "
    "(SPACEPORT_HOME/inbox/<dataset>/, the folder `spaceport submit` writes to).",
    watches_s3=False, open_location=InboxUploads, default_preset="preview", other_sensor="s3_uploads",
)
