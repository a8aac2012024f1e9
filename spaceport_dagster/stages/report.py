"""What a stage hands back: metadata for the asset and the outcome of each quality check.

Stages import no dagster; the entry point turns a StageReport into Dagster Pipes messages.
Metadata values are plain JSON values, or typed values built with the helpers below (rendered by the UI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    blocking: bool = True  # False: a warning that never stops downstream assets
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return "ERROR" if self.blocking else "WARN"


@dataclass
class StageReport:
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)

    def failed_gates(self) -> list[CheckOutcome]:
        return [c for c in self.checks if c.blocking and not c.passed]


def md(text: str) -> dict[str, Any]:
    """Markdown metadata (tables, embedded images as data URIs)."""
    return {"raw_value": text, "type": "md"}


def path_value(path: str) -> dict[str, Any]:
    return {"raw_value": str(path), "type": "path"}


def url_value(url: str) -> dict[str, Any]:
    return {"raw_value": url, "type": "url"}


def json_value(value: Any) -> dict[str, Any]:
    return {"raw_value": value, "type": "json"}


def plain_value(value: Any) -> Any:
    """The value inside a typed metadata value (md, path, url, json above); anything else as it is."""
    return value["raw_value"] if isinstance(value, dict) and "raw_value" in value else value
