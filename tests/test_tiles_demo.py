"""The demo survey trained as K=2 and K=4 tiles at preview settings, merged, against one preview training:
the merged splat's plain test-view PSNR within 0.5 dB, no Gaussian outside its tile's core cell, no test view
in any tile. The survey is the demo's flight at 400x300 (the preview trains at 160 px anyway) and every
training runs the same shortened preview schedule, to keep this within a few minutes on 2 cores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from spaceport_dagster.demo.variants import survey_for
from spaceport_dagster.stages.colmap_io import read_model
from spaceport_dagster.stages.evaluation import split_indices
from spaceport_dagster.stages.ply import read_ply
from spaceport_dagster.stages.tiles.partition import TileOptions, partition

pytestmark = pytest.mark.slow
LOG = logging.getLogger("test_tiles_demo")
# the preview preset on a shorter schedule and fewer seed points, the same for the single training and every tile
PREVIEW = {"preset": "preview", "steps": 150, "refine_stop_iter": 120, "max_init_points": 8000, "eval_every": 150,
           "checkpoint_every": 0, "previews": 0}


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spaceport_dagster.demo.survey import generate_survey
    from spaceport_dagster.stages.export.stage import run as export
    from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
    from spaceport_dagster.stages.sfm.stage import run as sfm

    root = tmp_path_factory.mktemp("demo")
    generate_survey(root / "survey", survey_for(28, 400, 300))
    ingest(str(root / "survey" / "images"), root / "image_set", IngestConfig(), LOG)
    sfm({"image_set": str(root / "image_set")}, root / "sparse", {"preset": "fast"}, LOG)
    export({"sparse": str(root / "sparse"), "image_set": str(root / "image_set")}, root / "export", {}, LOG)
    return root / "export"


@pytest.fixture(scope="module")
def single(demo_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from spaceport_dagster.stages.train.stage import run as train

    out = tmp_path_factory.mktemp("single")
    report = train({"export": str(demo_export)}, out, dict(PREVIEW), LOG)
    return {**report.metadata, "check_names": [c.name for c in report.checks]}


@pytest.mark.parametrize("k", [2, 4])
def test_merged_tiles_score_within_half_a_db_of_one_training(k: int, demo_export: Path, single: dict,
                                                            tmp_path: Path) -> None:
    from spaceport_dagster.stages.merge.stage import run as merge
    from spaceport_dagster.stages.train.stage import run as train

    model = read_model(demo_export / "sparse" / "0")
    names = sorted(im.name for im in model.images.values())
    test = {names[i] for i in split_indices(len(names), 8)[1]}
    tiles = partition(model, k, TileOptions(max_long_side=160))
    inputs = {"export": str(demo_export)}
    for tile in tiles:
        assert not test & set(tile.photos)  # no tile trains on a test view
        report = train({"export": str(demo_export)}, tmp_path / tile.key, {**PREVIEW, "tile": tile.as_dict()}, LOG)
        assert report.metadata["train_views"] == len(tile.photos)
        inputs[tile.key] = str(tmp_path / tile.key)
    report = merge(inputs, tmp_path / "merged", dict(PREVIEW), LOG)
    # the gates of a single training, on the merged splat (their thresholds are the preset's, met or not by this
    # short schedule: the single training's own outcome is the reference)
    assert {c.name for c in report.checks} == set(single["check_names"])
    assert report.metadata["gaussians"] == len(read_ply(tmp_path / "merged" / "point_cloud.ply"))
    merged_psnr, single_psnr = report.metadata["psnr"], single["psnr"]
    assert merged_psnr >= single_psnr - 0.5, f"K={k}: merged {merged_psnr:.2f} dB, single {single_psnr:.2f} dB"
    # every merged Gaussian lies in exactly one core cell, and is one its tile trained there
    merged = read_ply(tmp_path / "merged" / "point_cloud.ply")
    owners = np.stack([t.core.contains(merged.means) for t in tiles])
    assert (owners.sum(axis=0) == 1).all()
    for tile, mine in zip(tiles, owners, strict=True):
        trained = read_ply(tmp_path / tile.key / "point_cloud.ply").means
        assert {tuple(r) for r in merged.means[mine].tolist()} <= {tuple(r) for r in trained.tolist()}
    figures = json.loads((tmp_path / "merged" / "tiles.json").read_text())["tiles"]
    assert sum(f["kept"] for f in figures) == len(merged)
    held = {c["name"] for c in json.loads((tmp_path / "merged" / "cameras.json").read_text())["cameras"]
            if c.get("heldout")}
    assert held == test
