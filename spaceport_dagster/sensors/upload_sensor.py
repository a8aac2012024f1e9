"""The evaluation both upload sensors share: sweep markers, turn new marker versions into runs, keep a cursor."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from spaceport_dagster.partitions import datasets_partitions
from spaceport_dagster.resources.uploads import uploads_root
from spaceport_dagster.stages.s3uri import is_s3_uri

from .markers import InvalidOptions, MarkerObject, UploadCursor, classify, parse_options, pipeline_run_config, run_key

MAIN_JOB = "spaceport_main"
TAG_UPLOAD = "spaceport/upload"
TAG_NOTIFY = "spaceport/notify"
TAG_PRESET = "spaceport/preset"


@dataclass
class Listing:
    """Markers found in one bounded sweep step, in key order; `next_after` is "" once the sweep wrapped."""

    markers: list[MarkerObject]
    next_after: str
    refused: list[tuple[MarkerObject, str]] = field(default_factory=list)  # refused by the location itself


class UploadLocation(Protocol):
    scheme: str
    root: str

    def list_markers(self, after: str, budget: int) -> Listing: ...

    def read_options(self, dataset: str) -> bytes | None: ...

    def source(self, dataset: str) -> str: ...


@dataclass
class SensorLimits:
    max_runs: int = 10  # run requests per tick; the rest wait for the next tick
    scan_budget: int = 10_000  # keys (S3) or marker paths (inbox) looked at per tick

    @classmethod
    def from_env(cls) -> SensorLimits:
        return cls(max_runs=max(1, int(os.environ.get("SPACEPORT_SENSOR_MAX_RUNS", "10"))),
                   scan_budget=max(1, int(os.environ.get("SPACEPORT_SENSOR_SCAN", "10000"))))


def evaluate_uploads(context: SensorEvaluationContext, location: UploadLocation, limits: SensorLimits,
                     default_preset: str) -> SensorResult:
    cursor, warning = UploadCursor.load(context.cursor)
    if warning:
        context.log.warning(warning)
    listing = location.list_markers(cursor.after, limits.scan_budget)
    for marker, reason in listing.refused:
        if cursor.done.get(marker.key) != marker.version:
            cursor.done[marker.key] = marker.version
            context.log.warning(f"skipped {location.root}/{marker.key}: {reason}")
    requests: list[RunRequest] = []
    new_partitions: list[str] = []
    started: set[str] = set()
    next_after = listing.next_after
    last_key = cursor.after
    for marker in listing.markers:
        if cursor.done.get(marker.key) == marker.version:
            last_key = marker.key
            continue
        if len(requests) >= limits.max_runs:
            next_after = last_key  # resume right here next tick
            context.log.info(f"{limits.max_runs} runs requested this tick; the rest wait for the next tick")
            break
        last_key = marker.key
        previous = cursor.done.get(marker.key)
        cursor.done[marker.key] = marker.version
        try:
            request = _request_for(context, location, marker, started, default_preset)
        except Exception as exc:  # one upload's problem (a read that failed) never fails the others' tick
            if previous is None:
                cursor.done.pop(marker.key, None)
            else:
                cursor.done[marker.key] = previous
            context.log.error(f"skipped {location.root}/{marker.key} this tick: {type(exc).__name__}: {exc}; "
                              "it is tried again on the next tick")
            continue
        if request is None:
            continue
        requests.append(request)
        dataset = request.partition_key or ""
        started.add(dataset)
        if dataset not in new_partitions and not context.instance.has_dynamic_partition(
                datasets_partitions.name, dataset):
            new_partitions.append(dataset)
    if not cursor.after and not next_after:
        # this tick saw every marker: forget versions of markers that are gone, so the cursor stays small
        present = {m.key for m in listing.markers} | {m.key for m, _ in listing.refused}
        cursor.done = {k: v for k, v in cursor.done.items() if k in present}
    cursor.after = next_after
    if not requests:
        return SensorResult(skip_reason=f"no new upload markers under {location.root}", cursor=cursor.dump())
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[datasets_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=cursor.dump(),
    )


def _request_for(context: SensorEvaluationContext, location: UploadLocation, marker: MarkerObject,
                 started: set[str], default_preset: str) -> RunRequest | None:
    where = f"{location.root}/{marker.key}"
    classified = classify(marker.key)
    dataset = classified.dataset
    if dataset is None:
        context.log.warning(f"skipped {where}: {classified.reason}")
        return None
    if dataset in started:
        context.log.info(f"{where}: dataset {dataset!r} already has a run requested this tick")
        return None
    try:
        options = parse_options(location.read_options(dataset))
    except InvalidOptions as exc:
        context.log.error(f"skipped {where}: {exc}; write a corrected marker to retry")
        return None
    if options.unknown:
        context.log.warning(f"{where}: ignored unknown dataset.json fields {options.unknown}")
    preset = options.preset or default_preset
    source = location.source(dataset)
    tags = {TAG_UPLOAD: where, TAG_PRESET: preset}
    if options.email:
        tags[TAG_NOTIFY] = ",".join(options.email)
    context.log.info(f"dataset {dataset!r} ready ({where}); requesting a run with preset {preset!r}")
    return RunRequest(run_key=run_key(location.scheme, marker), partition_key=dataset,
                      run_config=pipeline_run_config(source, preset), tags=tags)


def build_upload_sensor(name: str, description: str, *, watches_s3: bool,
                        open_location: Callable[[str], UploadLocation], default_preset: str,
                        other_sensor: str) -> SensorDefinition:
    """A sensor on SPACEPORT_UPLOADS when it is an S3 prefix (`watches_s3`) or else a folder; `other_sensor`
    watches the other kind. The run preset is SPACEPORT_PRESET, else `default_preset`."""

    def location() -> UploadLocation | str:
        root = uploads_root()
        if is_s3_uri(root) != watches_s3:
            kind = "an S3 prefix" if is_s3_uri(root) else "not an s3:// prefix"
            return f"SPACEPORT_UPLOADS={root!r} is {kind}; the {other_sensor} sensor watches it"
        return open_location(root)

    default_status = DefaultSensorStatus.RUNNING if is_s3_uri(uploads_root()) == watches_s3 \
        else DefaultSensorStatus.STOPPED

    @sensor(name=name, job_name=MAIN_JOB, minimum_interval_seconds=30, default_status=default_status,
            description=description)
    def _upload_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        try:
            where = location()
            if isinstance(where, str):
                return SkipReason(where)
            preset = os.environ.get("SPACEPORT_PRESET", default_preset)
            return evaluate_uploads(context, where, SensorLimits.from_env(), preset)
        except Exception as exc:  # a sensor must keep ticking: report, keep the cursor, retry next tick
            context.log.exception(f"{name} could not scan uploads")
            return SkipReason(f"{name} could not scan uploads: {type(exc).__name__}: {exc}")

    return _upload_sensor
