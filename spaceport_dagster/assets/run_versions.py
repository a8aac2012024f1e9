"""Which version of an upstream artifact a step reads: the one its own run published.

A run's upstream step records the version it published in its materialisation (`version`). A later step of
the same run (or of a retry or re-execution of it, which resumes after the steps its parent already ran) reads
that version, found in the instance's event log, and not whatever is current when it starts: another run of the
dataset may have published a newer one in between. The version stays readable for the store's retention period
after it is superseded (resources/artifact_store.py). An upstream artifact the run did not make (`spaceport
rerun --from`, a UI run of one asset) is read at its current published version. Either way the version read is
in the downstream materialisation's metadata (`input versions`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRun

from spaceport_dagster.run_events import plain

VERSION_KEY = "artifact version"  # the version this materialisation published
INPUT_VERSIONS_KEY = "input versions"
MAX_LINEAGE = 50  # retries of retries: far beyond run_retries.max_retries


@dataclass(frozen=True)
class InputVersion:
    asset: str
    version: str
    run_id: str | None  # the run (this one or an ancestor) whose step published it; None: read as published now

    def as_metadata(self) -> dict[str, str]:
        return {"version": self.version, "from": f"run {self.run_id}" if self.run_id else "published version"}


def run_lineage(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    """This run's id, then its parent's, up to the root (a retry resumes where its parent stopped)."""
    ids = [run.run_id]
    parent = run.parent_run_id
    while parent and parent not in ids and len(ids) < MAX_LINEAGE:
        ids.append(parent)
        parent_run = instance.get_run_by_id(parent)
        parent = parent_run.parent_run_id if parent_run is not None else None
    return ids


def version_published_by_run(instance: DagsterInstance, run: DagsterRun, asset: str, dataset: str,
                             search_limit: int = 200) -> InputVersion | None:
    """The version of `asset` (partition `dataset`) that this run or its nearest ancestor published, if any."""
    lineage = run_lineage(instance, run)
    rank = {run_id: i for i, run_id in enumerate(lineage)}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[dataset]), limit=search_limit).records
    found: list[tuple[int, InputVersion]] = []
    for record in records:
        materialization = record.asset_materialization
        if record.run_id not in rank or materialization is None:
            continue
        metadata = materialization.metadata
        version = plain(metadata.get(VERSION_KEY))
        if plain(metadata.get("published")) is True and isinstance(version, str):
            found.append((rank[record.run_id], InputVersion(asset, version, record.run_id)))
    return min(found, key=lambda item: item[0])[1] if found else None  # records come newest first
