"""The one thing every asset does: run its stage through the compute resource and publish the result.

Publishing happens only when every blocking check passed; otherwise the output is kept beside the artifact
as `<asset>.rejected/<run_id>/` for inspection, the last good artifact stays where it was, and the step fails
without a materialisation (raise_rejected): the latest materialisation of an asset is always its live version.

The upstream artifacts are read at the versions this run published (run_versions.py), and the materialisation
says which (`input versions`) and which version it published itself (`version`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetObservation,
    Failure,
    MaterializeResult,
    MetadataValue,
    PathMetadataValue,
)

from spaceport_dagster.presets import HEARTBEAT_TIMEOUT_MINUTES, PRESET_TAG, stage_timeout_minutes
from spaceport_dagster.resources.artifact_store import ArtifactMissing, ArtifactStore
from spaceport_dagster.resources.compute import StageLauncher, StageRequest
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.run_events import REJECTED_TAG, plain
from spaceport_dagster.stages.dataset_id import validate_dataset_id
from spaceport_dagster.stages.ui_metadata import links_markdown

from .headline import arrange, ran_on_tag, rounded_verdict
from .run_versions import INPUT_VERSIONS_KEY, VERSION_KEY, InputVersion, version_published_by_run

RAN_ON_TAG = "spaceport/ran_on"


def published_paths(metadata: dict[str, Any], staging_dir: Any, location: str) -> dict[str, Any]:
    """Path metadata that points into the staging folder (gone after publishing) points at `location` instead."""
    staging = str(staging_dir).rstrip("/")
    out = dict(metadata)
    for key, value in metadata.items():
        path = getattr(value, "path", None) if isinstance(value, PathMetadataValue) else None
        if path is not None and str(path).startswith(staging):
            out[key] = MetadataValue.path(location.rstrip("/") + str(path)[len(staging):])
    return out


def stage_limits(context: AssetExecutionContext, asset: str) -> tuple[float, float]:
    """(timeout, heartbeat limit) in seconds: the asset's run config, else the run's pipeline preset."""
    op_config = context.op_config if isinstance(context.op_config, dict) else {}
    preset = context.run.tags.get(PRESET_TAG)
    timeout = float(op_config.get("timeout_minutes") or stage_timeout_minutes(asset, preset))
    heartbeat = float(op_config.get("heartbeat_minutes") or HEARTBEAT_TIMEOUT_MINUTES)
    return timeout * 60.0, heartbeat * 60.0


def pin_input_versions(context: AssetExecutionContext, store: ArtifactStore, dataset: str,
                       artifacts: dict[str, str], announce: bool = True) -> dict[str, InputVersion]:
    """Pin every upstream artifact in `store` to the version this run published (else the current one), so the
    stage reads that version whatever is published meanwhile. Failure when it is not there any more."""
    asset = context.asset_key.to_user_string()
    pinned: dict[str, InputVersion] = {}
    for upstream in dict.fromkeys(artifacts.values()):
        found = version_published_by_run(context.instance, context.run, upstream, dataset)
        try:
            if found is None:
                found = InputVersion(upstream, store.manifest(dataset, upstream)["version"], None)
            store.pin(dataset, upstream, found.version)
        except ArtifactMissing as exc:
            if found is None:
                raise Failure(f"{asset} needs {upstream} for dataset {dataset!r}, but none is published at "
                              f"{store.uri(dataset, upstream)}; materialize {upstream} first") from None
            raise Failure(f"{asset} reads {upstream} version {found.version}, published by run {found.run_id}, "
                          f"but: {exc}") from None
        pinned[upstream] = found
        if announce:
            context.log.info(f"{asset} reads {upstream} version {found.version} "
                             f"({'published by run ' + found.run_id if found.run_id else 'the published version'})")
    return pinned


def run_stage_asset(
    context: AssetExecutionContext,
    storage: StorageResource,
    compute: StageLauncher,
    *,
    stage: str,
    artifacts: dict[str, str] | None = None,
    sources: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    resumable: bool = False,
) -> MaterializeResult:
    dataset = validate_dataset_id(context.partition_key)
    asset = context.asset_key.to_user_string()
    store = storage.store()
    inputs = pin_input_versions(context, store, dataset, artifacts or {})
    timeout_s, heartbeat_s = stage_limits(context, asset)
    request = StageRequest(stage, dataset, asset, dict(artifacts or {}), dict(sources or {}), dict(config or {}),
                           resumable, timeout_s, heartbeat_s)
    with store.staging(dataset, asset) as staging:
        results = compute.launch(context, store, request, staging)
        reported = [r for r in results if isinstance(r, MaterializeResult)]
        checks = [r for r in results if isinstance(r, AssetCheckResult)]
        failed = [c for c in checks if not c.passed and c.severity == AssetCheckSeverity.ERROR]
        if failed:
            location = store.reject(staging, run_id=context.run_id)
        else:
            location = store.publish(staging, info={"run_id": context.run_id})
            context.log.info(f"{asset} published at {location}")
    reported_metadata = dict(reported[0].metadata or {}) if reported else {}
    metadata: dict[str, Any] = arrange(asset, published_paths(reported_metadata, staging.local_dir, location))
    metadata["published"] = not failed
    metadata["uri"] = MetadataValue.path(location)
    if inputs:
        metadata[INPUT_VERSIONS_KEY] = MetadataValue.json({name: v.as_metadata() for name, v in inputs.items()})
    # Only locations that stay: the inputs' version folders are removed a day after they are superseded, so the
    # inputs are named by version (`input versions`), and reached through their own asset pages.
    links = {("source" if name == "source" else f"source {name}"): uri for name, uri in (sources or {}).items()}
    links["this artifact" if not failed else "rejected output"] = location
    metadata["artifacts"] = MetadataValue.md(links_markdown(links))
    ran_on = ran_on_tag({k: getattr(v, "value", v) for k, v in reported_metadata.items()})
    checks = [rounded_check(c) for c in checks]
    if failed:
        raise_rejected(context, store, dataset, [rounded_check(c) for c in failed], checks, metadata, location)
    # the version first: the latest materialisation is the live one (a rejected output never materialises)
    metadata = {VERSION_KEY: MetadataValue.text(staging.version), **metadata}
    return MaterializeResult(metadata=metadata, check_results=checks, tags={RAN_ON_TAG: ran_on})


def rounded_check(check: AssetCheckResult) -> AssetCheckResult:
    """The check with its numbers rounded to what they mean (headline.rounded_verdict): the UI lists them and
    plots them over time, where 22.900572499160784 or a 1e-5 dB wobble drawn as a steep trend says nothing."""
    raw = dict(check.metadata or {})
    numbers = {k: plain(v) for k, v in raw.items() if isinstance(plain(v), int | float)}
    return check.with_metadata({**raw, **rounded_verdict(numbers)})


class Rejected(Exception):
    """An output that failed a blocking check: the events that record it, and the Failure that ends the step.
    `reports_rejections` yields the events (events logged with `context.log_event` are lost when the step
    raises) and raises the Failure."""

    def __init__(self, events: list[AssetObservation | AssetCheckEvaluation], failure: Failure) -> None:
        super().__init__(failure.description)
        self.events = events
        self.failure = failure


def reports_rejections(fn: Callable[..., MaterializeResult]) -> Callable[..., Iterator[Any]]:
    """The asset function `fn` as a generator that records a Rejected output and fails the step (the signature,
    and so the config and resources Dagster reads from it, stay `fn`'s)."""
    @functools.wraps(fn)
    def asset_fn(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            result = fn(*args, **kwargs)
        except Rejected as rejected:
            yield from rejected.events
            raise rejected.failure from None
        yield result
    return asset_fn


def gate_text(check: AssetCheckResult) -> str:
    """What a check found, in its own words (Pipes carries them as the `description` metadata entry)."""
    return check.description or str(plain((check.metadata or {}).get("description")) or "failed")


def raise_rejected(context: AssetExecutionContext, store: ArtifactStore, dataset: str,
                   failed: list[AssetCheckResult], checks: list[AssetCheckResult], metadata: dict[str, Any],
                   location: str) -> None:
    """A rejected output is a failed materialisation, never the asset's latest one: the asset page and the
    lineage keep the published version as current, and this run's step fails (downstream assets are skipped).

    What the rejected output measured stays visible: its check results (they evaluated no materialisation), an
    observation of the asset with its figures, and the Failure's metadata, all naming the version that stays
    live."""
    asset = context.asset_key.to_user_string()
    try:
        live = store.manifest(dataset, asset)["version"]
    except ArtifactMissing:
        live = None
    stays = f"version {live} stays live" if live else "nothing is published yet"
    gates = "; ".join(f"{c.check_name}: {gate_text(c)}" for c in failed)
    context.log.error(f"{asset} failed {len(failed)} quality gate(s); output kept at {location}, {stays}")
    events: list[AssetObservation | AssetCheckEvaluation] = [AssetObservation(
        asset_key=context.asset_key, partition=context.partition_key,
        description=f"rejected output of run {context.run_id}: not published, {stays}",
        metadata={"rejected": MetadataValue.text(f"failed {gates}; {stays}"), **metadata},
        tags={REJECTED_TAG: "true"})]
    events += [AssetCheckEvaluation(
        asset_key=context.asset_key, check_name=check.check_name or "", passed=check.passed,
        metadata=check.metadata, severity=check.severity, description=check.description,
        blocking=check.severity == AssetCheckSeverity.ERROR, partition=context.partition_key) for check in checks]
    raise Rejected(events, Failure(
        description=f"{asset}: quality gate failed: {gates}; output kept at {location}, {stays}",
        metadata={"failed gates": MetadataValue.md("\n".join(
            f"- **{c.check_name}**: {gate_text(c)}" for c in failed)),
            "rejected output": MetadataValue.path(location), "live version": MetadataValue.text(live or "none")},
        allow_retries=False))
