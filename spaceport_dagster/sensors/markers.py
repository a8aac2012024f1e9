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

from spaceport_dagster.emails import InvalidEmail, validate_addresses
from spaceport_dagster.presets import PIPELINE_PRESETS
from spaceport_dagster.stages.dataset_id import InvalidDatasetId, validate_dataset_id

MARKER_NAMES = ("_READY", "dataset.json")
OPTIONS_FILE = "dataset.json"
CURSOR_VERSION = 1
MAX_OPTIONS_BYTES = 64 * 1024  # dataset.json is a few hundred bytes; a larger one is refused, never parsed
MAX_OPTIONS_DEPTH = 8  # nesting of arrays and objects; ours is 2 (an object holding a list of addresses)


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


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text `raw` (brackets inside strings not counted), found
    without parsing: the parser recurses once per level, so a deep text must be refused before it is parsed."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_options(raw: bytes | None) -> UploadOptions:
    """`dataset.json` (at most MAX_OPTIONS_BYTES; a reader passes one byte more when there is more), or
    InvalidOptions with the reason. Bounded in size and nesting before it is parsed, so no marker can make a
    sensor tick fail (a deep one would raise RecursionError in the parser)."""
    if raw is None or not raw.strip():
        return UploadOptions()
    if len(raw) > MAX_OPTIONS_BYTES:
        raise InvalidOptions(f"dataset.json is larger than {MAX_OPTIONS_BYTES // 1024} KiB (it holds a few options)")
    depth = json_depth(raw)
    if depth > MAX_OPTIONS_DEPTH:
        raise InvalidOptions(f"dataset.json nests {depth} levels deep (at most {MAX_OPTIONS_DEPTH})")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidOptions(f"dataset.json is not valid JSON: {exc}") from exc
    except RecursionError:  # not reached with the depth bound; kept so that no marker can fail a tick
        raise InvalidOptions("dataset.json nests too deeply") from None
    if not isinstance(data, dict):
        raise InvalidOptions("dataset.json must hold a JSON object")
    key = "email" if "email" in data else "notify_email"
    email = data.get(key)
    emails = [] if email is None else [email] if isinstance(email, str) else email
    if not isinstance(emails, list):
        raise InvalidOptions(f"dataset.json {key!r} must be an address or a list of addresses, got {email!r}")
    try:
        emails = validate_addresses(emails, f"dataset.json {key!r}")
    except InvalidEmail as exc:
        raise InvalidOptions(str(exc)) from None
    preset = data.get("preset")
    if preset is not None and preset not in PIPELINE_PRESETS:
        raise InvalidOptions(f"dataset.json 'preset' {preset!r} is unknown; choose one of {', '.join(PIPELINE_PRESETS)}")
    known = {"email", "notify_email", "preset", "dataset", "files", "bytes", "submitted_at", "client", "title"}
    return UploadOptions(email=emails, preset=preset, unknown=sorted(k for k in data if k not in known))


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
