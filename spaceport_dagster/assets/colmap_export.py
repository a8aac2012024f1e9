"""colmap_export: undistorted PINHOLE images and the COLMAP model every 3DGS trainer reads."""

from dagster import AssetExecutionContext, MaterializeResult

from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource

from .stage_asset import run_stage_asset
from .stage_config import StageConfig, pipeline_asset


@pipeline_asset(
    deps=["image_set", "sparse_reconstruction"],
    group_name="reconstruction",
    kinds={"python", "colmap"},
    gates={
        "every_image_has_correspondences": "every exported image has 2D-3D correspondences (the old "
        "pipeline exported none and training died with n_samples=1)",
        "export_reads_back": "the export loads back in pycolmap",
    },
)
def colmap_export(
    context: AssetExecutionContext, config: StageConfig, storage: StorageResource, compute: StageLauncher
) -> MaterializeResult:
    """`images/` + `sparse/0/` in COLMAP binary, undistorted to PINHOLE."""
    return run_stage_asset(context, storage, compute, stage="export",
                           artifacts={"sparse": "sparse_reconstruction", "image_set": "image_set"},
                           config=config.stage_config())
