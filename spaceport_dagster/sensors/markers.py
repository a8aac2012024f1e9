"""What makes an upload ready, pure logic shared by the S3 and inbox sensors (no I/O, no Dagster).

An upload lives at `<uploads root>/<dataset>/`. It is ready when a marker object sits directly in that folder:
`_READY` (empty) or `dataset.json` (options and a notification address). Each *version* of a marker object
(S3 ETag + LastModified, or file size + mtime + content hash) starts one run; photos that keep arriving after
it start nothing until a new marker version is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from spaceport_dagster.presets import PIPELINE_PRESETS
from spaceport_dagster.stages.dataset_id import InvalidDatasetId, validate_dataset_id

MARKER_NAMES = ("_READY", "dataset.json")
OPTIONS_FILE = "dataset.json"
CURSOR_VERSION = 1
MAX_OPTIONS_BYTES = 1 << 20  # dataset.json is small; never read more


@dataclass(frozen=True)
class MarkerObject:
    """One marker object as listed: `key` is relative to the uploads root, e.g. `survey-1/_READY`."""

    key: str
    version: str


@dataclass(frozen=True)
class Classified:
    dataset: str | None  # None when the key is refused
    reason: str = ""


def is_marker_key(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in MARKER_NAMES


def classify(key: str) -> Classified:
    """Where a marker key (relative to the uploads root) belongs: a dataset, or a reason to refuse it."""
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return Classified(None, "key is outside the uploads prefix")
    if len(parts) == 1:
        return Classified(None, "marker is not inside a dataset folder")
    if len(parts) > 2:
        return Classified(None, "marker is nested below the dataset folder; put it at <dataset>/" + parts[-1])
    try:
        return Classified(validate_dataset_id(parts[0]))
    except InvalidDatasetId as exc:
        return Classified(None, str(exc))


@dataclass
class UploadOptions:
    """`dataset.json`: every field optional; unknown fields are reported, not fatal."""

    email: list[str] = field(default_factory=list)
    preset: str | None = None
    unknown: list[str] = field(default_factory=list)


class InvalidOptions(ValueError):
    pass


def parse_options(raw: bytes | None) -> UploadOptions:
    if raw is None or not raw.strip():
        return UploadOptions()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidOptions(f"dataset.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidOptions("dataset.json must hold a JSON object")
    email = data.get("email") or data.get("notify_email") or []
    emails = [email] if isinstance(email, str) else email
    if not isinstance(emails, list) or not all(isinstance(e, str) and "@" in e for e in emails):
        raise InvalidOptions(f"dataset.json 'email' must be an address or a list of addresses, got {email!r}")
    preset = data.get("preset")
    if preset is not None and preset not in PIPELINE_PRESETS:
        raise InvalidOptions(f"dataset.json 'preset' {preset!r} is unknown; choose one of {', '.join(PIPELINE_PRESETS)}")
    known = {"email", "notify_email", "preset", "dataset", "files", "bytes", "submitted_at", "client", "title"}
    return UploadOptions(email=[e.strip() for e in emails], preset=preset,
                         unknown=sorted(k for k in data if k not in known))


@dataclass
class UploadCursor:
    """Sensor state: where the sweep resumes and which marker versions were already handled.

    Versions, not timestamps, decide what is new, so two objects written in the same second (or a
    multipart upload whose LastModified is its start time) are never lost.
    """

    after: str = ""
    done: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> tuple[UploadCursor, str | None]:
        """The cursor, and a warning when the stored one could not be read (run keys still prevent duplicates)."""
        if not raw:
            return cls(), None
        try:
            data = json.loads(raw)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}")
            return cls(after=str(data.get("after", "")), done={str(k): str(v) for k, v in data["done"].items()}), None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return cls(), f"ignored an unreadable sensor cursor ({exc}); starting a fresh sweep"

    def dump(self) -> str:
        return json.dumps({"v": CURSOR_VERSION, "after": self.after, "done": self.done}, sort_keys=True,
                          separators=(",", ":"))


def run_key(scheme: str, marker: MarkerObject) -> str:
    """Stable per marker version, so a re-evaluated tick never launches twice."""
    return f"{scheme}:{marker.key}@{marker.version}"


def pipeline_run_config(source: str, preset: str, assets: list[str] | None = None) -> dict[str, Any]:
    """Run config of the main job: the upload as image_set's source and each stage's preset."""
    from spaceport_dagster.presets import stage_presets

    presets = stage_presets(preset)
    ops: dict[str, Any] = {}
    if assets is None or "image_set" in assets:
        ops["image_set"] = {"config": {"source": source}} if source else {"config": {}}
    for name, stage_preset in presets.items():
        if assets is None or name in assets:
            ops[name] = {"config": {"preset": stage_preset}}
    return {"ops": ops}
