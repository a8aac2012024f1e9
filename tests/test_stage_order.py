"""stage_order.ASSET_ORDER is the one stage list: it is the asset graph's dependency order, and every table
written per stage names exactly these stages."""

from __future__ import annotations

import re
from pathlib import Path

from dagster import AssetKey

from spaceport_dagster.assets.headline import HEADLINES
from spaceport_dagster.console import KEY_FIGURES
from spaceport_dagster.definitions import PIPELINE_ASSETS, defs
from spaceport_dagster.presets import PIPELINE_PRESETS, STAGE_TIMEOUT_MINUTES
from spaceport_dagster.stage_order import ASSET_ORDER

ROOT = Path(__file__).resolve().parents[1]


def test_order_is_the_asset_graphs_dependency_order() -> None:
    assert [a.key.to_user_string() for a in PIPELINE_ASSETS] == list(ASSET_ORDER)
    graph = defs.resolve_asset_graph()
    parents = {name: {key.to_user_string() for key in graph.get(AssetKey(name)).parent_keys} for name in ASSET_ORDER}
    assert parents[ASSET_ORDER[0]] == set()
    for position, name in enumerate(ASSET_ORDER[1:], start=1):
        # each stage reads the one before it (so no other order fits the graph) and nothing after it
        assert ASSET_ORDER[position - 1] in parents[name] and parents[name] <= set(ASSET_ORDER[:position]), name


def test_per_stage_tables_name_exactly_the_stages() -> None:
    assert list(KEY_FIGURES) == list(ASSET_ORDER)
    assert list(HEADLINES) == list(ASSET_ORDER)
    for preset, limits in STAGE_TIMEOUT_MINUTES.items():
        assert list(limits) == list(ASSET_ORDER), preset
    assert set(PIPELINE_PRESETS) == set(STAGE_TIMEOUT_MINUTES)
    for preset, stages in PIPELINE_PRESETS.items():
        assert set(stages) <= set(ASSET_ORDER), preset


def test_docs_draw_the_same_graph() -> None:
    readme = (ROOT / "README.md").read_text()
    assert " -> ".join(ASSET_ORDER) in readme
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    drawn = re.search(r"^image_set[ ─>a-z_]+$", architecture, re.M)
    assert drawn and re.split(r"\s*─+>\s*", drawn.group(0).strip()) == list(ASSET_ORDER)
    table = re.findall(r"^\| `([a-z_]+)` \|", architecture, re.M)
    assert table == list(ASSET_ORDER)


def test_every_stage_runs_from_its_stage_module() -> None:
    """Each stage package's command line (`python -m spaceport_dagster.stages.<name>`) runs `stage.run`: one
    name for the entry module, so a reader finds every stage's start in the same place."""
    packages = sorted(p.parent for p in (ROOT / "spaceport_dagster" / "stages").glob("*/__main__.py"))
    assert [p.name for p in packages] == ["export", "ingest", "merge", "sfm", "sog", "train"]
    for package in packages:
        main = (package / "__main__.py").read_text()
        assert "from .stage import run" in main, package.name
        assert re.search(r"^def run\(", (package / "stage.py").read_text(), re.MULTILINE), package.name
