"""The pipeline's assets in the order they run: the one place the stage list is written out.

Dagster-free, so the CLI, the notifications and the tests read it without loading the definitions;
`definitions.py` orders the assets by it, and tests/test_stage_order.py checks that it is the asset graph's
own dependency order and that every per-stage table (presets, time limits, summary figures, headlines, the
graph line in README.md and docs/architecture.md) names exactly these stages.
"""

from __future__ import annotations

ASSET_ORDER: tuple[str, ...] = ("image_set", "sparse_reconstruction", "colmap_export", "splat_model", "sogs_bundle")
