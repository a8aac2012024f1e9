"""sogs_bundle: the trained splat compressed to PlayCanvas SOG v2, the bundle the web viewer streams."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from spaceport_dagster.partitions import datasets_partitions
from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource

from .stage_asset import run_stage_asset
from .stage_config import StageConfig, check_specs


@asset(
    partitions_def=datasets_partitions,
    deps=["splat_model", "colmap_export"],
    group_name="splat",
    kinds={"pytorch", "webp"},
    check_specs=check_specs(
        "sogs_bundle",
        gates={
            "bundle_decodes": "the .sog decodes with our reader",
            "count_matches": "decoded splat count equals the PLY's",
            "roundtrip_within_bounds": "per-attribute round-trip error within the format's quantisation bounds",
            "size_ratio": "bundle at least 10x smaller than the PLY",
            "psnr_drop": "test-view PSNR of the decoded splat within 1 dB of the uncompressed one (plain renders "
                         "against the photos; fails when it cannot be measured)",
        },
    ),
)
def sogs_bundle(
    context: AssetExecutionContext, config: StageConfig, storage: StorageResource, compute: StageLauncher
) -> MaterializeResult:
    """Morton-ordered, quantised and palettised splat in lossless WebP images, zipped as `<dataset>.sog`."""
    options = {"bundle_name": context.partition_key, **config.stage_config()}
    return run_stage_asset(context, storage, compute, stage="sog", artifacts={"splat": "splat_model", "export": "colmap_export"},
                           config=options)
