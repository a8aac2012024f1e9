"""`spaceport rerun`: a dataset materialised again from one stage on, reading the published artifacts before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from spaceport_dagster.cli import main
from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.runner import select_stages
from spaceport_dagster.stage_order import ASSET_ORDER
from spaceport_dagster.stages.train.synthetic import write_synthetic_export


def test_stage_selection_runs_in_pipeline_order():
    assert select_stages() == list(ASSET_ORDER)
    assert select_stages("splat_model") == ["splat_model", "sogs_bundle"]
    assert select_stages("splat_model", "splat_model") == ["splat_model"]
    assert select_stages(until="colmap_export") == list(ASSET_ORDER[:3])
    with pytest.raises(ValueError, match="sogs_bundle comes after splat_model"):
        select_stages("sogs_bundle", "splat_model")
    with pytest.raises(ValueError, match="unknown asset 'splats'"):
        select_stages("splats")


def test_rerun_refuses_when_an_input_was_never_published(spaceport_home: Path, capsys: pytest.CaptureFixture):
    from dagster import DagsterInstance

    from spaceport_dagster.partitions import register_dataset

    with DagsterInstance.get() as instance:
        register_dataset(instance, "tiny")  # a known dataset whose run stopped before colmap_export
    assert main(["rerun", "tiny", "--from", "sogs_bundle"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'tiny' has no published colmap_export, splat_model, which sogs_bundle reads" in err
    assert main(["rerun", "tiny", "--from", "splats"]) == 2
    assert "unknown asset 'splats'" in capsys.readouterr().err
    assert not (spaceport_home / "artifacts" / "tiny").exists()


def test_rerun_trains_from_the_published_export(spaceport_home: Path, capsys: pytest.CaptureFixture):
    store = LocalArtifactStore(spaceport_home / "artifacts")
    with store.staging("tiny", "colmap_export") as staging:
        write_synthetic_export(staging.local_dir, n_views=12)
        store.publish(staging)
    assert main(["rerun", "tiny", "--from", "splat_model", "--until", "splat_model"]) == 0
    out = capsys.readouterr().out
    assert "again from splat_model" in out
    summary = out.split("key figures", 1)[1]
    assert [line.split()[:2] for line in summary.strip().splitlines()[:1]] == [["splat_model", "ok"]]
    assert store.exists("tiny", "splat_model")
    assert not store.exists("tiny", "image_set") and not store.exists("tiny", "sogs_bundle")  # not run
