"""Each run reads the upstream versions its own steps published, not whatever is current when a later step
starts, and says which in the downstream materialisation's metadata.

The pipeline here is three assets run through the real asset code (`run_stage_asset`), the real local launcher
and the real artifact store: `words` publishes a word, `meddle` starts a second real run of the same dataset
that publishes a newer `words` (as a concurrent rerun would, between two steps of the first run), and `echo`
reads `words`.
"""

from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

from spaceport_dagster.assets.run_versions import INPUT_VERSIONS_KEY, VERSION_KEY
from spaceport_dagster.assets.stage_asset import run_stage_asset
from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource

from .conftest import dagster_home, resources_for_test_stages

DATASET = "site-1"
PARTITIONS = StaticPartitionsDefinition([DATASET])


@asset(partitions_def=PARTITIONS)
def words(context: AssetExecutionContext, storage: StorageResource, compute: StageLauncher) -> MaterializeResult:
    return run_stage_asset(context, storage, compute, stage="relay", config={"word": context.run.tags["word"]})


@asset(partitions_def=PARTITIONS, deps=[words])
def meddle(context: AssetExecutionContext, storage: StorageResource, compute: StageLauncher) -> None:
    """Between this run's `words` and `echo`: another run of the dataset publishes a newer `words`."""
    other = materialize([words], partition_key=DATASET, instance=context.instance,
                        resources={"storage": storage, "compute": compute}, tags={"word": "second"})
    assert other.success
    context.log.info(f"run {other.run_id} published a newer words")


@asset(partitions_def=PARTITIONS, deps=[meddle, words])
def echo(context: AssetExecutionContext, storage: StorageResource, compute: StageLauncher) -> MaterializeResult:
    return run_stage_asset(context, storage, compute, stage="relay", artifacts={"upstream": "words"})


def _materialization(instance: DagsterInstance, run_id: str, asset: str) -> dict[str, Any]:
    [record] = [r for r in instance.fetch_materializations(AssetKey(asset), limit=20).records if r.run_id == run_id]
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


def test_a_later_step_reads_the_version_its_own_run_published(tmp_path: Path) -> None:
    home = dagster_home(tmp_path / "home")
    resources = resources_for_test_stages(home)
    store = LocalArtifactStore(home / "artifacts")
    with DagsterInstance.local_temp(str(home)) as instance:
        first = materialize([words, meddle, echo], partition_key=DATASET, instance=instance, resources=resources,
                            tags={"word": "first"})
        assert first.success
        mine = _materialization(instance, first.run_id, "words")
        assert mine["wrote"] == "first"
        [other_run] = [r for r in instance.get_runs() if r.run_id != first.run_id]
        theirs = _materialization(instance, other_run.run_id, "words")
        assert theirs["wrote"] == "second"
        # the newer version is the published one now ...
        assert store.manifest(DATASET, "words")["version"] == theirs[VERSION_KEY] != mine[VERSION_KEY]
        assert store.manifest(DATASET, "words")["run_id"] == other_run.run_id
        # ... but this run's echo read the version this run's words step published, and says so
        echoed = _materialization(instance, first.run_id, "echo")
        assert echoed["read"] == "first"
        assert echoed[INPUT_VERSIONS_KEY] == {"words": {"version": mine[VERSION_KEY], "from": f"run {first.run_id}"}}
        assert ".words." not in echoed["artifacts"]  # no link to a version folder that retention removes
        logs = [e.user_message for e in instance.all_logs(first.run_id)]
        assert f"echo reads words version {mine[VERSION_KEY]} (published by run {first.run_id})" in logs
        # the superseded version is still readable (retention), so a reader that resolved it keeps it
        assert (home / "artifacts" / DATASET / f".words.{mine[VERSION_KEY]}" / "word.txt").read_text() == "first"

        # A run of echo alone (`spaceport rerun --from echo`) made no words: it reads the published version.
        again = materialize([words, meddle, echo], selection=[echo], partition_key=DATASET, instance=instance,
                            resources=resources)
        assert again.success
        rerun = _materialization(instance, again.run_id, "echo")
        assert rerun["read"] == "second"
        assert rerun[INPUT_VERSIONS_KEY] == {"words": {"version": theirs[VERSION_KEY], "from": "published version"}}
