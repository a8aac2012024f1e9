"""The one thing every asset does: run its stage through the compute resource and publish the result.

Publishing happens only when every blocking check passed; otherwise the output is kept beside the artifact
as `<asset>.rejected/<run_id>/` for inspection and the last good artifact stays where it was.

The upstream artifacts are read at the versions this run published (run_versions.py), and the materialisation
says which (`input versions`) and which version it published itself (`version`).
"""

from __future__ import annotations

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    PathMetadataValue,
)

from spaceport_dagster.presets import HEARTBEAT_TIMEOUT_MINUTES, PRESET_TAG, stage_timeout_minutes
from spaceport_dagster.resources.artifact_store import ArtifactMissing, ArtifactStore
from spaceport_dagster.resources.compute import StageLauncher, StageRequest
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.stages.dataset_id import validate_dataset_id
from spaceport_dagster.stages.ui_metadata import links_markdown

from .headline import arrange, ran_on_tag
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
            context.log.error(f"{asset} failed {len(failed)} quality gate(s); output kept at {location}, "
                              f"the published artifact (if any) is unchanged")
        else:
            location = store.publish(staging, info={"run_id": context.run_id})
            context.log.info(f"{asset} published at {location}")
    reported_metadata = dict(reported[0].metadata or {}) if reported else {}
    metadata: dict[str, Any] = arrange(asset, published_paths(reported_metadata, staging.local_dir, location))
    metadata["published"] = not failed
    metadata["uri"] = MetadataValue.path(location)
    if not failed:
        metadata[VERSION_KEY] = MetadataValue.text(staging.version)
    if inputs:
        metadata[INPUT_VERSIONS_KEY] = MetadataValue.json({name: v.as_metadata() for name, v in inputs.items()})
    links = {f"input {name} ({upstream})": store.version_uri(dataset, upstream)
             for name, upstream in (artifacts or {}).items()}
    links.update({("source" if name == "source" else f"source {name}"): uri for name, uri in (sources or {}).items()})
    links["this artifact" if not failed else "rejected output"] = location
    metadata["artifacts"] = MetadataValue.md(links_markdown(links))
    ran_on = ran_on_tag({k: getattr(v, "value", v) for k, v in reported_metadata.items()})
    return MaterializeResult(metadata=metadata, check_results=checks, tags={RAN_ON_TAG: ran_on})
