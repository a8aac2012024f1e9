"""`spaceport backfill`: a real asset backfill on a temporary instance, driven by the real backfill daemon
code until its runs are queued (a queued run coordinator keeps the heavy assets from executing)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql

from spaceport_dagster.backfill import BackfillLaunchError, backfill_id_from_response, launch_backfill
from spaceport_dagster.cli import main as cli_main

from .dagster_helpers import queued_instance_for_test, spaceport_workspace


@pytest.fixture
def queued_instance(spaceport_home: Path) -> Iterator[DagsterInstance]:
    with queued_instance_for_test(spaceport_home) as instance:
        instance.add_dynamic_partitions("datasets", ["banana", "brighton-beach", "lund"])
        yield instance


def drive(instance: DagsterInstance) -> None:
    """What the daemon does on its next tick: turn the requested backfill into runs."""
    with spaceport_workspace(instance) as context:
        for error in execute_backfill_iteration(context, logging.getLogger("backfill-test")):
            assert error is None, error


def test_preset_rerun_over_all_datasets_queues_one_run_per_dataset(queued_instance: DagsterInstance) -> None:
    launch = launch_backfill(queued_instance, "splat_model,sogs_bundle", preset="quality")
    assert launch.datasets == ["banana", "brighton-beach", "lund"]
    stored = queued_instance.get_backfill(launch.backfill_id)
    assert stored.status == BulkActionStatus.REQUESTED
    assert stored.is_asset_backfill
    assert set(stored.asset_selection) == {AssetKey("splat_model"), AssetKey("sogs_bundle")}
    target = stored.asset_backfill_data.target_subset
    for key in ("splat_model", "sogs_bundle"):
        assert set(target.get_partitions_subset(AssetKey(key)).get_partition_keys()) == set(launch.datasets)
    assert queued_instance.event_log_storage.get_concurrency_info("gpu").slot_count == 1

    drive(queued_instance)
    runs = queued_instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": launch.backfill_id}))
    assert sorted(r.tags["dagster/partition"] for r in runs) == launch.datasets  # one run per dataset
    for run in runs:
        assert run.status == DagsterRunStatus.QUEUED
        assert run.asset_selection == {AssetKey("splat_model"), AssetKey("sogs_bundle")}
        assert run.tags["spaceport/preset"] == "quality"
        # the pipeline preset picks each selected stage's own preset
        assert run.run_config["ops"] == {"splat_model": {"config": {"preset": "quality"}},
                                         "sogs_bundle": {"config": {"preset": "standard"}}}


BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { id title description } }
  runsFeedOrError(limit: 10, view: BACKFILLS) {
    ... on RunsFeedConnection { results { __typename id ... on PartitionBackfill { title } } }
  }
}"""


def test_backfill_cli_over_named_datasets(queued_instance: DagsterInstance, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["backfill", "--assets", "image_set", "--datasets", "lund,banana"]) == 0
    out = capsys.readouterr().out
    [backfill] = queued_instance.get_backfills()
    assert backfill.backfill_id in out
    assert backfill.title == "image_set over 2 dataset(s)"
    assert f'backfill {backfill.backfill_id} "image_set over 2 dataset(s)": image_set over 2 dataset(s)' in out
    assert (f'follow it in the UI under Runs > Backfills, titled "image_set over 2 dataset(s)" '
            f"(its page: /runs/b/{backfill.backfill_id})") in out
    subset = backfill.asset_backfill_data.target_subset.get_partitions_subset(AssetKey("image_set"))
    assert set(subset.get_partition_keys()) == {"lund", "banana"}
    assert backfill.run_config is None or backfill.run_config == {}


def test_the_backfill_title_reaches_the_ui(queued_instance: DagsterInstance, capsys: pytest.CaptureFixture) -> None:
    """The UI reads backfills through its GraphQL API: the backfill's page and the Runs > Backfills list both get
    the title and description given on the command line (asked here in process, as the webserver answers)."""
    assert cli_main(["backfill", "--assets", "splat_model,sogs_bundle", "--preset", "quality",
                     "--title", "retrain after the trainer fix"]) == 0
    [backfill] = queued_instance.get_backfills()
    assert 'titled "retrain after the trainer fix"' in capsys.readouterr().out
    with spaceport_workspace(queued_instance) as context:
        result = execute_dagster_graphql(context.create_request_context(), BACKFILL_QUERY,
                                         {"id": backfill.backfill_id})
    assert not result.errors, result.errors
    page = result.data["partitionBackfillOrError"]
    assert page == {"id": backfill.backfill_id, "title": "retrain after the trainer fix",
                    "description": "spaceport backfill: splat_model, sogs_bundle for banana, brighton-beach, lund "
                                   "with the quality preset"}
    listed = result.data["runsFeedOrError"]["results"]
    assert {"__typename": "PartitionBackfill", "id": backfill.backfill_id,
            "title": "retrain after the trainer fix"} in listed


BAD_INPUT = [
    (["--assets", "splat_modle"], "unknown asset(s) splat_modle; choose from"),
    (["--assets", "splat_model", "--datasets", "nowhere"], "unknown dataset(s) nowhere"),
    (["--assets", "splat_model", "--datasets", "Bad Name"], "invalid dataset id 'Bad Name'"),
    (["--assets", "splat_model", "--preset", "ultra"], "unknown preset 'ultra'"),
    (["--assets", "splat"], "error: unknown asset(s) splat; choose from image_set, sparse_reconstruction,"),
    (["--assets", ","], "error: no assets named; choose from image_set,"),
]


def test_backfill_cli_refuses_bad_input(queued_instance: DagsterInstance, capsys: pytest.CaptureFixture) -> None:
    for args, message in BAD_INPUT:
        assert cli_main(["backfill", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "['" not in err and err.count("\n") == 1, err  # no Python list
    assert not queued_instance.get_backfills()


def test_dagster_refusing_the_backfill_is_one_clear_line(queued_instance: DagsterInstance,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Dagster's own checks run inside the mutation: a title it does not accept comes back as its reason, on
    one line, and no backfill is stored."""
    assert cli_main(["backfill", "--assets", "image_set", "--title", 'retrain "everything"']) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: Dagster refused the backfill (PythonError): "), err
    assert "is not a valid title in Dagster" in err
    assert not queued_instance.get_backfills()


def test_graphql_errors_become_one_line() -> None:
    response = {"data": None, "errors": [{"message": "Variable '$params' got invalid value\nExpected type String"}]}
    with pytest.raises(BackfillLaunchError, match=r"^Dagster rejected the backfill request: Expected type String$"):
        backfill_id_from_response(response)
    ok = {"data": {"launchPartitionBackfill": {"__typename": "LaunchBackfillSuccess", "backfillId": "abcd1234"}}}
    assert backfill_id_from_response(ok) == "abcd1234"
