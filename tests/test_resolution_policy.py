"""The resolution policy the README documents is the one the presets carry (SfM, export and training sizes
per pipeline preset), so the table cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from spaceport_dagster.presets import PIPELINE_PRESETS, stage_presets
from spaceport_dagster.stages.export.stage import ExportConfig
from spaceport_dagster.stages.sfm.config import load_config as sfm_config
from spaceport_dagster.stages.sfm.reconstruct import MAX_UPSAMPLED_SIDE, extraction_options, sift_long_side
from spaceport_dagster.stages.train.config import load_config as train_config

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_policy() -> dict[str, dict[str, str]]:
    """README's "Resolution policy" table: row label -> {pipeline preset -> cell}."""
    section = README.read_text().split("## Resolution policy", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")]
    header, body = rows[0], rows[1:]
    presets = [re.findall(r"`(\w+)`", cell)[-1] for cell in header[1:]]  # "`fast` / `preview`" -> preview
    return {row[0]: dict(zip(presets, row[1:], strict=True)) for row in body}


def _px(cell: str) -> int:
    return int(re.match(r"(\d+) px", cell).group(1))


def test_the_readme_policy_table_matches_every_pipeline_preset() -> None:
    table = documented_policy()
    sift = next(v for k, v in table.items() if k.startswith("SfM"))
    export = next(v for k, v in table.items() if k.startswith("export"))
    train = next(v for k, v in table.items() if k.startswith("training"))
    assert set(sift) == set(export) == set(train) == set(PIPELINE_PRESETS)
    for preset in PIPELINE_PRESETS:
        stages = stage_presets(preset)
        sfm = sfm_config({"preset": stages["sparse_reconstruction"]})
        assert _px(sift[preset]) == sfm.max_image_size, preset
        assert ("first octave up-sampled" in sift[preset]) == (sfm.first_octave < 0), preset
        # the export stage has no preset: every pipeline exports at its default size
        assert _px(export[preset]) == ExportConfig().max_image_size, preset
        assert _px(train[preset]) == train_config({"preset": stages["splat_model"]}).max_long_side, preset


def test_sift_sizes_of_native_resolution_photos_follow_the_policy() -> None:
    """12 and 20 MP photos: SIFT on the preset's cap, the up-sampled octave only up to 2048 px."""
    fast, quality = sfm_config({"preset": "fast"}), sfm_config({"preset": "quality"})
    for width, height in ((4000, 3000), (5472, 3648)):
        assert sift_long_side(fast, width, height) == 1024
        assert extraction_options(fast, sift_long_side(fast, width, height)).sift.first_octave == -1
        side = sift_long_side(quality, width, height)
        assert side == min(width, 4096) and side > MAX_UPSAMPLED_SIDE
        assert extraction_options(quality, side).sift.first_octave == 0
