"""sparse_reconstruction: cameras and a sparse point cloud from the image set (pycolmap, or OpenSfM)."""

from dagster import AssetExecutionContext, MaterializeResult

from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource

from .stage_asset import run_stage_asset
from .stage_config import SfmConfig, pipeline_asset


@pipeline_asset(
    deps=["image_set"],
    group_name="reconstruction",
    kinds={"python", "colmap"},
    gates={
        "min_points": "at least 1000 3D points: fewer give the splat too little to start from",
        "registered_fraction": "at least half of the images registered",
        "upright": "the published frame's up agrees with the survey's (nadir: views and camera plane within 5 deg)",
    },
    warnings={"reprojection_error": "mean reprojection error at most 1.5 px",
              "all_images_registered": "every image in the model (names the ones left out)",
              "gps_consistent": "every GPS fix agrees with the others (outliers named, not used)",
              "georegistration": "in metres, with GPS scale and heading known within 5 % (1 sigma); else model units"},
)
def sparse_reconstruction(
    context: AssetExecutionContext, config: SfmConfig, storage: StorageResource, compute: StageLauncher
) -> MaterializeResult:
    """SIFT features, matching (exhaustive, spatial or sequential), incremental or global mapping, and
    georegistration to local east-north-up metres when the photos carry GPS. The largest model is kept."""
    return run_stage_asset(context, storage, compute, stage="sfm", artifacts={"image_set": "image_set"},
                           config=config.stage_config())
