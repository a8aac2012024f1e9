"""splat_model: a 3D Gaussian splat trained on the COLMAP export (gsplat on CUDA, pure PyTorch otherwise)."""

from dagster import AssetExecutionContext, MaterializeResult

from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource

from .stage_asset import run_stage_asset
from .stage_config import TrainConfig, pipeline_asset
from .tiled_training import TilingOptions, run_tiled_asset


@pipeline_asset(
    deps=["colmap_export"],
    group_name="splat",
    kinds={"pytorch"},  # where it ran (CPU, CUDA, SageMaker) varies per run: the `ran on` entry and tag say
    pool="gpu",
    gates={
        "min_gaussians": "at least 1000 Gaussians: fewer cannot describe a surveyed site",
        "finite_parameters": "every parameter is finite",
        "ply_readable": "the PLY reads back with the standard 3DGS properties",
        "beats_mean_colour_baseline": "the published PLY, rendered plainly (black background, no colour "
                                      "model) on the test views, at least 3 dB above a flat image of the "
                                      "photos' mean colour",
        "coverage": "the splat covers the test views (mean alpha at least 0.9); blocks where the scene fills "
                    "the photos (nadir surveys), warns elsewhere",
    },
    warnings={"absolute_psnr_floor": "test-view PSNR at least 20 dB (few-view scenes score lower)"},
)
def splat_model(
    context: AssetExecutionContext, config: TrainConfig, storage: StorageResource, compute: StageLauncher
) -> MaterializeResult:
    """Gaussians initialised from the SfM points, trained with every 8th image held out as a test view; writes
    the standard INRIA PLY, test-view previews, metrics and a training curve. The headline figures are the PLY
    rendered as a viewer shows it. A large survey trains as spatial tiles, merged into the same outputs
    (tiled_training.py)."""
    tiling = TilingOptions(config.tiles, config.tile_budget_megapixels, parallel=config.tile_parallel)
    tiled = run_tiled_asset(context, storage, compute, config.stage_config(), tiling)
    if tiled is not None:
        return tiled
    return run_stage_asset(context, storage, compute, stage="train", artifacts={"export": "colmap_export"},
                           config=config.stage_config(), resumable=True)
