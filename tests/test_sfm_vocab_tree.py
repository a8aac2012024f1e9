"""Vocabulary-tree matching: the tree file is checked before any work, and a real tree drives the matcher.

COLMAP aborts the process (SIGABRT) on a missing or legacy tree only when matching starts, after the
features; the stage must refuse such a file first, with a message naming it. No general tree (COLMAP's
Flickr100K ones) is available offline, so the end-to-end test builds a small faiss tree from brighton_beach's
own SIFT descriptors with pycolmap and matches with it: this checks the plumbing and that the tree limits the
pairs, not how well a general tree retrieves on drone surveys (benchmarks/RESULTS.md: not measured).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path

import pycolmap
import pytest

from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest
from spaceport_dagster.stages.sfm.config import load_config
from spaceport_dagster.stages.sfm.reconstruct import extract
from spaceport_dagster.stages.sfm.stage import read_manifest
from spaceport_dagster.stages.sfm.stage import run as run_sfm
from spaceport_dagster.stages.sfm.vocab_tree import build_vocab_tree, check_vocab_tree

from .conftest import dataset_images

LOG = logging.getLogger("test_sfm_vocab_tree")


@pytest.fixture(scope="module")
def three_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("three")
    uploads = root / "uploads"
    uploads.mkdir()
    for name in ("DJI_0018.JPG", "DJI_0019.JPG", "DJI_0020.JPG"):
        shutil.copy2(dataset_images("brighton_beach") / name, uploads)
    ingest(str(uploads), root / "image_set", IngestConfig(min_images=1), LOG)
    return root / "image_set"


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "is a folder"),
    # a legacy flann tree starts with its number of visual words (here 262,144), not a format version
    (lambda p: (p.write_bytes(struct.pack("<i", 262_144) + bytes(64)), p)[1], "legacy flann tree"),
    (lambda p: (p.write_bytes(b""), p)[1], "first int32 None"),
])
def test_an_unusable_tree_file_is_refused_before_any_work(three_photos: Path, tmp_path: Path, make,
                                                           message: str) -> None:
    tree = make(tmp_path / "tree.bin")
    out = tmp_path / "out"
    for matcher in ("vocab_tree", "auto", "sequential"):  # set at all: checked, whichever matcher runs
        with pytest.raises(ValueError, match=message) as raised:
            run_sfm({"image_set": str(three_photos)}, out, {"matcher": matcher, "vocab_tree_path": str(tree)}, LOG)
        assert str(tree) in str(raised.value)
    assert not (out / "report.json").exists() and not (out / "sparse").exists()


def test_config_refuses_a_tree_matcher_without_a_tree_and_a_zero_retrieval_count() -> None:
    with pytest.raises(ValueError, match="needs vocab_tree_path"):
        load_config({"matcher": "vocab_tree"})
    with pytest.raises(ValueError, match="vocab_tree_num_images must be at least 1"):
        load_config({"vocab_tree_num_images": 0})


@pytest.mark.slow
def test_a_real_tree_drives_the_matcher_and_limits_the_pairs(tmp_path: Path) -> None:
    image_set = tmp_path / "image_set"
    ingest(str(dataset_images("brighton_beach")), image_set, IngestConfig(), LOG)
    config = load_config({})
    features = tmp_path / "features.db"
    extract(features, image_set / "images", read_manifest(image_set), config, LOG)
    tree = build_vocab_tree(features, tmp_path / "tree.bin", num_visual_words=1024, max_per_image=1000)
    assert check_vocab_tree(str(tree)) == tree
    assert pycolmap.VisualIndex.read(tree).num_visual_words() == 1024

    retrieved = 6
    report = run_sfm({"image_set": str(image_set)}, tmp_path / "out",
                     {"matcher": "vocab_tree", "vocab_tree_path": str(tree), "vocab_tree_num_images": retrieved,
                      "keep_database": True}, LOG)
    m = report.metadata
    assert m["matcher"] == "vocab_tree" and m["matcher_reason"] == "configured"
    assert m["registered"] == "18/18", m
    assert all(c.passed for c in report.checks if c.blocking), report.checks
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    pairs = saved["database"]["matched_pairs"]
    # each image is matched with its `retrieved` most similar images only: far fewer than every pair (153)
    assert 18 <= pairs <= 18 * retrieved and pairs < 18 * 17 // 2, pairs
    assert saved["config"]["vocab_tree_num_images"] == retrieved
