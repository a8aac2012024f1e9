"""image_set: the dataset's uploads, decoded and validated, with EXIF camera facts."""

from dagster import AssetExecutionContext, MaterializeResult
from pydantic import Field

from spaceport_dagster.resources.compute import StageLauncher
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.resources.uploads import default_source

from .stage_asset import run_stage_asset
from .stage_config import StageConfig, pipeline_asset


class ImageSetConfig(StageConfig):
    source: str = Field(default="", description="folder or s3:// prefix of the uploads; default: the dataset's inbox")


@pipeline_asset(
    group_name="reconstruction",
    kinds={"python", "image"},
    gates={"enough_usable_images": "at least 5 decodable, distinct photos"},
    warnings={
        "recommended_image_count": "20 or more photos recommended",
        "no_refused_files": "files refused as unreadable, unsupported or duplicate (excluded, never fatal alone)",
    },
)
def image_set(
    context: AssetExecutionContext, config: ImageSetConfig, storage: StorageResource, compute: StageLauncher
) -> MaterializeResult:
    """Every uploaded file decoded (JPEG/MPO, PNG, TIFF); unreadable, corrupt and duplicate files refused with a
    reason in `manifest.json`; EXIF make/model, focal length, GPS and capture time recorded per photo."""
    source = config.source or default_source(context.partition_key)
    return run_stage_asset(context, storage, compute, stage="ingest", sources={"source": source},
                           config=config.stage_config())
