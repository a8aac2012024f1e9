"""The notification text, built from whatever a run left behind; every field may be missing.

No Dagster here: `RunSummary` is plain data, so the builder is testable on partial and malformed input (the
old pipeline's error notifier itself crashed on a missing JSON path and the user never heard back).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from spaceport_dagster.stage_order import ASSET_ORDER


@dataclass
class CheckFailure:
    asset: str
    check: str
    text: str = ""
    blocking: bool = True


@dataclass
class StageSummary:
    asset: str
    status: str = "not run"  # ok | failed | skipped | running (started, no end seen) | not run
    seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    failed_checks: list[CheckFailure] = field(default_factory=list)
    error: str | None = None  # the failed step's own words (run_events.step_error)


@dataclass
class RunSummary:
    run_id: str
    succeeded: bool
    dataset: str | None = None
    job: str | None = None
    preset: str | None = None
    upload: str | None = None
    stages: list[StageSummary] = field(default_factory=list)
    failed_step: str | None = None
    failure_message: str | None = None
    seconds: float | None = None


@dataclass
class Notification:
    kind: str  # success | failure
    run_id: str
    dataset: str | None
    to: list[str]
    subject: str
    text: str
    figures: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    failure: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> str | None:
    number = _number(value)
    return f"{number:,.0f}" if number is not None else None


def _db(value: Any) -> str | None:
    number = _number(value)
    return f"{number:.2f} dB" if number is not None else None


def _size(value: Any) -> str | None:
    number = _number(value)
    if number is None:
        return None
    for unit in ("B", "KB", "MB", "GB"):
        if number < 1000 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1000
    return None


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


# label, asset, metadata keys (first present wins), formatter
KEY_FIGURES: list[tuple[str, str, tuple[str, ...], Callable[[Any], str | None]]] = [
    ("usable photos", "image_set", ("usable_images",), _count),
    ("registered images", "sparse_reconstruction", ("registered_images",), _count),
    ("3D points", "sparse_reconstruction", ("points", "num_points"), _count),
    ("Gaussians", "splat_model", ("gaussians",), _count),
    ("test-view PSNR", "splat_model", ("psnr",), _db),
    ("bundle size", "sogs_bundle", ("bundle_bytes",), _size),
]


def key_figures(summary: RunSummary) -> dict[str, str]:
    metadata = {s.asset: s.metadata or {} for s in summary.stages}
    figures: dict[str, str] = {}
    for label, asset, keys, fmt in KEY_FIGURES:
        found = metadata.get(asset, {})
        value = next((found[k] for k in keys if found.get(k) is not None), None)
        text = fmt(value) if value is not None else None
        if text is not None:
            figures[label] = text
    total = _count(metadata.get("sparse_reconstruction", {}).get("total_images"))
    if "registered images" in figures and total:
        figures["registered images"] += f" of {total}"
    return figures


def artifact_uris(summary: RunSummary) -> dict[str, str]:
    out: dict[str, str] = {}
    for stage in summary.stages:
        uri = (stage.metadata or {}).get("uri")
        published = (stage.metadata or {}).get("published", True)
        if isinstance(uri, str) and uri and published is not False:
            out[stage.asset] = uri
    return out


def _ordered(stages: list[StageSummary]) -> list[StageSummary]:
    rank = {name: i for i, name in enumerate(ASSET_ORDER)}
    return sorted(stages, key=lambda s: rank.get(s.asset, len(rank)))


def _failure(summary: RunSummary) -> dict[str, Any]:
    blocking = [c for s in summary.stages for c in s.failed_checks if c.blocking]
    if blocking:
        first = blocking[0]
        return {"step": first.asset, "check": first.check, "message": first.text or "quality gate failed",
                "checks": [asdict(c) for c in blocking]}
    return {"step": summary.failed_step or "unknown step",
            "message": (summary.failure_message or "the run failed without an error message").strip()}


def build_notification(summary: RunSummary, to: list[str] | None = None, ui_url: str | None = None) -> Notification:
    dataset = summary.dataset or "(no dataset)"
    figures = key_figures(summary)
    artifacts = artifact_uris(summary)
    stages = _ordered(summary.stages)
    seconds = {s.asset: round(s.seconds, 3) for s in stages if s.seconds is not None}
    lines: list[str] = []
    failure = None
    if summary.succeeded:
        kind = "success"
        headline = ", ".join(f"{k} {figures[k]}" for k in ("test-view PSNR", "bundle size") if k in figures)
        subject = f"Spaceport: {dataset} is ready" + (f" ({headline})" if headline else "")
        lines.append(f"Your survey {dataset} went through the pipeline.")
    else:
        kind = "failure"
        failure = _failure(summary)
        what = f"check {failure['check']}" if "check" in failure else "an error"
        subject = f"Spaceport: {dataset} stopped at {failure['step']} ({what})"
        lines.append(f"Your survey {dataset} stopped at {failure['step']}.")
        if "check" in failure:
            for check in failure["checks"]:
                lines.append(f"  quality gate {check['asset']}.{check['check']} failed: {check['text'] or '-'}")
        else:
            lines.append(f"  {failure['message']}")
    if figures:
        lines += ["", "Key figures:"] + [f"  {label}: {value}" for label, value in figures.items()]
    if stages:
        lines += ["", "Stages (wall time):"]
        lines += [f"  {s.asset:<22} {s.status:<8} {_seconds(s.seconds)}" for s in stages]
    if summary.seconds is not None:
        lines.append(f"  {'total':<22} {'':<8} {_seconds(summary.seconds)}")
    if artifacts:
        lines += ["", "Artifacts:"] + [f"  {asset}: {uri}" for asset, uri in artifacts.items()]
    lines += ["", f"Run {summary.run_id}" + (f" (preset {summary.preset})" if summary.preset else "")]
    if summary.upload:
        lines.append(f"Upload: {summary.upload}")
    if ui_url:
        lines.append(f"Details: {ui_url.rstrip('/')}/runs/{summary.run_id}")
    return Notification(kind=kind, run_id=summary.run_id, dataset=summary.dataset, to=list(to or []),
                        subject=subject, text="\n".join(lines) + "\n", figures=figures, artifacts=artifacts,
                        stage_seconds=seconds, failure=failure)
