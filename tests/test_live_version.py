"""A rejected output is a failed attempt, never the asset's current version: after a gate failure the asset page
(read through Dagster's GraphQL API, as the UI reads it) still shows the published version as the latest
materialisation, the partition as failed, and the rejected figures as an observation."""

from __future__ import annotations

from typing import Any

from dagster import AssetCheckSeverity, AssetKey, DagsterEventType, DagsterInstance
from dagster_graphql.test.utils import execute_dagster_graphql

from spaceport_dagster.assets.run_versions import VERSION_KEY
from spaceport_dagster.notify.message import RunSummary
from spaceport_dagster.run_events import REJECTED_TAG, read_run

from .dagster_helpers import spaceport_workspace
from .test_splat_asset import _train, published_export  # noqa: F401 - the fixture
from .test_train import TINY

ASSET_PAGE = """
query AssetPage($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(partitions: [$partition], limit: 1) {
        runId
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
      assetObservations(partitions: [$partition], limit: 1) {
        runId
        description
        tags { key value }
      }
      definition {
        description
        assetPartitionStatuses {
          ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
        }
      }
    }
  }
}
"""


def asset_page(instance: DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    with spaceport_workspace(instance) as workspace:
        result = execute_dagster_graphql(workspace.create_request_context(), ASSET_PAGE,
                                         {"key": {"path": [asset]}, "partition": partition})
    assert not result.errors, result.errors
    return result.data["assetOrError"]


def observation_entries(instance: DagsterInstance, run_id: str) -> list[tuple[str, object]]:
    [record] = [e for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION)]
    metadata = record.dagster_event.event_specific_data.asset_observation.metadata
    return [(k, getattr(v, "value", v)) for k, v in metadata.items()]


def text_entries(materialization: dict[str, Any]) -> dict[str, str]:
    return {e["label"]: e["text"] for e in materialization["metadataEntries"] if "text" in e}


def test_a_gate_failure_leaves_the_published_version_current(published_export, instance) -> None:  # noqa: F811
    store, resources = published_export
    good = _train(instance, resources, {**TINY, "steps": 30}, ["splat_model"])
    assert good.success
    live = store.manifest("tiny", "splat_model")["version"]
    page = asset_page(instance, "splat_model", "tiny")
    [latest] = page["assetMaterializations"]
    assert latest["runId"] == good.run_id and text_entries(latest)[VERSION_KEY] == live
    assert latest["metadataEntries"][0]["label"] == VERSION_KEY  # the version leads the page's metadata
    assert "latest materialization is the live" in page["definition"]["description"]

    bad = _train(instance, resources, {**TINY, "steps": 30, "min_gaussians": 10_000_000}, ["splat_model"])
    assert not bad.success
    assert store.manifest("tiny", "splat_model")["version"] == live  # nothing was published

    # the run recorded no materialisation; its checks say what failed, rounded
    assert not bad.asset_materializations_for_node("splat_model")
    events = instance.all_logs(bad.run_id)
    evaluations = [e.dagster_event.event_specific_data for e in events
                   if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
    failed = [c for c in evaluations if not c.passed and c.severity == AssetCheckSeverity.ERROR]
    assert [c.check_name for c in failed] == ["min_gaussians"]
    psnr_check = next(c for c in evaluations if c.check_name == "beats_mean_colour_baseline")
    value = psnr_check.metadata["value"].value
    assert value == round(value, 2)  # rounded to the threshold's precision, not 16 digits

    # the asset page: the current version is still the published one, the partition failed, the rejection is
    # an observation naming the version that stays live
    page = asset_page(instance, "splat_model", "tiny")
    [latest] = page["assetMaterializations"]
    assert latest["runId"] == good.run_id and text_entries(latest)[VERSION_KEY] == live
    statuses = page["definition"]["assetPartitionStatuses"]
    assert statuses["failedPartitions"] == ["tiny"] and statuses["materializedPartitions"] == []
    [observation] = page["assetObservations"]
    assert observation["runId"] == bad.run_id
    assert {"key": REJECTED_TAG, "value": "true"} in observation["tags"]
    assert f"version {live} stays live" in observation["description"]
    rejected = next(e for e in observation_entries(instance, bad.run_id) if e[0] == "rejected")[1]
    assert rejected.startswith("failed min_gaussians: ") and "failed min_gaussians: failed" not in rejected
    assert (store.root / "tiny" / "splat_model.rejected" / bad.run_id / "point_cloud.ply").is_file()

    # the CLI's and the notification's reader still sees the rejected figures and the failed gate
    summary = read_run(events, RunSummary(bad.run_id, succeeded=False))
    [stage] = [s for s in summary.stages if s.asset == "splat_model"]
    assert stage.status == "failed" and stage.metadata["published"] is False and stage.metadata["gaussians"] > 0
    assert [c.check for c in stage.failed_checks if c.blocking] == ["min_gaussians"]
    assert instance.get_latest_materialization_event(AssetKey("splat_model")).run_id == good.run_id
