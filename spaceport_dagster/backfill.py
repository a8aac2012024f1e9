"""`spaceport backfill`: re-run assets over many datasets as one real Dagster backfill.

The backfill is the same object the UI's "Materialize -> backfill" creates (an asset backfill over the
`datasets` partitions), stored in the instance; the Dagster daemon (`spaceport ui` / `dagster dev`, or
`dagster-daemon run`) launches one run per dataset from it, and the UI shows its progress. Training runs sit
in the `gpu` pool, so however many datasets are selected, one trains at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterInstance

from spaceport_dagster.dagster_private import PartitionBackfill, make_new_backfill_id  # no public API: see there
from spaceport_dagster.partitions import datasets_partitions
from spaceport_dagster.sensors.markers import pipeline_run_config
from spaceport_dagster.stages.dataset_id import validate_dataset_id

GPU_POOL = "gpu"
GPU_SLOTS = 1  # the seed deployment's GPU quota: one instance
TAG_BACKFILL = "spaceport/backfill"


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
    """Store an asset backfill of `assets` over `datasets` (default: every known dataset)."""
    from spaceport_dagster.definitions import defs
    from spaceport_dagster.presets import PIPELINE_PRESETS

    known_assets = pipeline_asset_names()
    selected = _split(assets)
    unknown = [a for a in selected if a not in known_assets]
    if not selected or unknown:
        raise ValueError(f"unknown asset(s) {unknown or selected}; choose from {', '.join(known_assets)}")
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
    backfill_id = make_new_backfill_id()
    title = title or f"{'+'.join(ordered)} over {len(chosen)} dataset(s)" + (f", preset {preset}" if preset else "")
    description = (f"spaceport backfill: {', '.join(ordered)} for {', '.join(chosen)}"
                   + (f" with the {preset} preset" if preset else " with each stage's configured preset"))
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=defs.resolve_asset_graph(),
        partition_names=chosen,
        asset_selection=[AssetKey(a) for a in ordered],
        backfill_timestamp=time.time(),
        tags=tags,
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,  # the UI shows it on the backfill's page and in Runs > Backfills
        description=description,
        run_config=run_config,
    )
    ensure_gpu_pool(instance)
    instance.add_backfill(backfill)
    return BackfillLaunch(backfill_id, ordered, chosen, preset, run_config, title, description)
