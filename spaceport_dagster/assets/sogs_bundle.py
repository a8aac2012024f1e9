"""sogs_bundle: the trained splat compressed to PlayCanvas SOG v2, the bundle the web viewer streams."""

from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource

from .stage_asset import run_stage_asset
from .stage_config import SogConfig, pipeline_asset


def with_viewer_link(dataset: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A published bundle's metadata leads with the command that opens it in the viewer. No address: the
    viewer may not run, or run on another port; the command prints where it serves."""
    if not metadata.get("published"):
        return metadata
    return {"view": MetadataValue.md(f"`spaceport view {dataset}` serves it in the browser and prints its address "
                                     "(it follows newer published versions)"), **metadata}


@pipeline_asset(
    deps=["splat_model", "colmap_export"],
    group_name="splat",
    kinds={"pytorch", "webp"},
    gates={
        "bundle_decodes": "the .sog decodes with our reader",
        "count_matches": "decoded splat count equals the PLY's",
        "roundtrip_within_bounds": "per-attribute round-trip error within the format's quantisation bounds",
        "size_ratio": "bundle at least 10x smaller than the PLY",
        "psnr_drop": "test-view PSNR of the decoded splat within 1 dB of the uncompressed one (plain renders "
                     "against the photos; fails when it cannot be measured)",
    },
)
def sogs_bundle(
    context: AssetExecutionContext, config: SogConfig, storage: StorageResource, compute: StageLauncher
) -> MaterializeResult:
    """Morton-ordered, quantised and palettised splat in lossless WebP images, zipped as `<dataset>.sog`."""
    options = {"bundle_name": context.partition_key, **config.stage_config()}
    result = run_stage_asset(context, storage, compute, stage="sog",
                             artifacts={"splat": "splat_model", "export": "colmap_export"}, config=options)
    return MaterializeResult(metadata=with_viewer_link(context.partition_key, dict(result.metadata or {})),
                             check_results=result.check_results, tags=result.tags)
