"""`spaceport backfill`: re-run assets over many datasets as one real Dagster backfill.

The backfill is started the way the UI's "Materialize -> backfill" starts one: the GraphQL mutation
`launchPartitionBackfill` (an asset backfill over the `datasets` partitions, with the preset's run config, tags,
title and description), run in-process by Dagster's own `dagster-graphql` command against workspace.yaml and
the instance's DAGSTER_HOME, so no webserver is needed. The Dagster daemon (`spaceport ui` / `dagster dev`, or
`dagster-daemon run`) launches one run per dataset from it, and the UI shows its progress. Training runs sit
in the `gpu` pool, so however many datasets are selected, one trains at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance

from spaceport_dagster.home import workspace_file
from spaceport_dagster.partitions import datasets_partitions
from spaceport_dagster.sensors.markers import pipeline_run_config
from spaceport_dagster.stages.dataset_id import validate_dataset_id

GPU_POOL = "gpu"
GPU_SLOTS = 1  # the seed deployment's GPU quota: one instance
TAG_BACKFILL = "spaceport/backfill"
LAUNCH_BACKFILL_MUTATION = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""


class BackfillLaunchError(RuntimeError):
    """Dagster refused the backfill, or `dagster-graphql` could not run the mutation."""


@dataclass
class BackfillLaunch:
    backfill_id: str
    assets: list[str]
    datasets: list[str]
    preset: str | None
    run_config: dict[str, Any] | None
    title: str = ""
    description: str = ""


def pipeline_asset_names() -> list[str]:
    from spaceport_dagster.definitions import PIPELINE_ASSETS

    return [a.key.to_user_string() for a in PIPELINE_ASSETS]


def _split(values: list[str] | str | None) -> list[str]:
    items = values if isinstance(values, list) else [values or ""]
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def ensure_gpu_pool(instance: DagsterInstance) -> int:
    """Give the `gpu` pool its one slot unless an operator already set a limit; returns the limit."""
    storage = instance.event_log_storage
    if GPU_POOL not in storage.get_concurrency_keys():
        storage.set_concurrency_slots(GPU_POOL, GPU_SLOTS)
    return storage.get_concurrency_info(GPU_POOL).slot_count


def launch_backfill(instance: DagsterInstance, assets: list[str] | str, datasets: list[str] | str | None = None,
                    preset: str | None = None, title: str | None = None) -> BackfillLaunch:
    """Launch an asset backfill of `assets` over `datasets` (default: every known dataset) on `instance`."""
    from spaceport_dagster.presets import PIPELINE_PRESETS

    known_assets = pipeline_asset_names()
    selected = _split(assets)
    unknown = [a for a in selected if a not in known_assets]
    if not selected:
        raise ValueError(f"no assets named; choose from {', '.join(known_assets)}")
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(unknown)}; choose from {', '.join(known_assets)}")
    if preset is not None and preset not in PIPELINE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PIPELINE_PRESETS)}")
    existing = instance.get_dynamic_partitions(datasets_partitions.name)
    chosen = _split(datasets) or list(existing)
    if not chosen:
        raise ValueError("no datasets yet: submit one (`spaceport submit`) or run one (`spaceport run`) first")
    missing = [validate_dataset_id(d) for d in chosen if d not in existing]
    if missing:
        raise ValueError(f"unknown dataset(s) {', '.join(missing)}; known: {', '.join(existing) or 'none'}")
    ordered = [a for a in known_assets if a in selected]
    run_config = pipeline_run_config("", preset, ordered) if preset else None
    tags = {TAG_BACKFILL: "cli", **({"spaceport/preset": preset} if preset else {})}
    title = title or f"{'+'.join(ordered)} over {len(chosen)} dataset(s)" + (f", preset {preset}" if preset else "")
    description = (f"spaceport backfill: {', '.join(ordered)} for {', '.join(chosen)}"
                   + (f" with the {preset} preset" if preset else " with each stage's configured preset"))
    params: dict[str, Any] = {
        "assetSelection": [{"path": AssetKey.from_user_string(a).path} for a in ordered],
        "partitionNames": chosen,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
        "title": title,  # the UI shows it on the backfill's page and in Runs > Backfills
        "description": description,
        **({"runConfigData": run_config} if run_config else {}),
    }
    ensure_gpu_pool(instance)
    backfill_id = run_launch_mutation(instance, params)
    return BackfillLaunch(backfill_id, ordered, chosen, preset, run_config, title, description)


def run_launch_mutation(instance: DagsterInstance, params: dict[str, Any]) -> str:
    """Run `launchPartitionBackfill` through the `dagster-graphql` CLI on `instance`'s home; the backfill id."""
    home = instance.root_directory
    if instance.is_ephemeral or not home:
        raise BackfillLaunchError("a backfill needs a persistent Dagster instance (set DAGSTER_HOME)")
    with tempfile.TemporaryDirectory(prefix="spaceport-backfill-") as tmp:
        response_path = Path(tmp) / "response.json"
        command = [*dagster_graphql_command(), "-w", str(workspace_file()),
                   "-t", LAUNCH_BACKFILL_MUTATION, "-v", json.dumps({"params": params}), "-o", str(response_path)]
        done = subprocess.run(command, env={**os.environ, "DAGSTER_HOME": home}, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0 or not response_path.exists():
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise BackfillLaunchError(f"dagster-graphql could not launch the backfill: {last}")
        response = json.loads(response_path.read_text())
    return backfill_id_from_response(response)


# `dagster-graphql` through this interpreter: no script on PATH or beside it needed (an installed wheel, a venv
# used without activating it). dagster_graphql has no __main__; its console script calls cli.main like this.
DAGSTER_GRAPHQL = ("import sys; from dagster_graphql.cli import main; sys.argv[0] = 'dagster-graphql'; "
                   "sys.exit(main())")


def dagster_graphql_command() -> list[str]:
    try:
        import dagster_graphql.cli  # noqa: F401
    except ImportError:
        raise BackfillLaunchError("dagster-graphql is not installed (pip install dagster-graphql)") from None
    return [sys.executable, "-c", DAGSTER_GRAPHQL]


def backfill_id_from_response(response: dict[str, Any]) -> str:
    """The new backfill's id from the mutation's JSON response, or a one-line error naming Dagster's reason."""
    if response.get("errors"):
        raise BackfillLaunchError("Dagster rejected the backfill request: "
                                  + "; ".join(_one_line(e.get("message", str(e))) for e in response["errors"]))
    result = (response.get("data") or {}).get("launchPartitionBackfill") or {}
    if result.get("__typename") == "LaunchBackfillSuccess":
        return result["backfillId"]
    reason = _one_line(result.get("message") or f"unexpected response {json.dumps(response)[:200]}")
    raise BackfillLaunchError(f"Dagster refused the backfill ({result.get('__typename', 'no result')}): {reason}")


def _one_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
