"""The one Definitions object of the project (loaded by `dagster dev` through workspace.yaml)."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from spaceport_dagster.assets.colmap_export import colmap_export
from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.assets.sogs_bundle import sogs_bundle
from spaceport_dagster.assets.sparse_reconstruction import sparse_reconstruction
from spaceport_dagster.assets.splat_model import splat_model
from spaceport_dagster.partitions import datasets_partitions
from spaceport_dagster.resources.notifications import NotifierResource
from spaceport_dagster.resources.selection import resources_from_env
from spaceport_dagster.sensors.inbox import inbox_sensor
from spaceport_dagster.sensors.run_status import notify_on_failure, notify_on_success
from spaceport_dagster.sensors.s3_uploads import s3_uploads_sensor
from spaceport_dagster.stage_order import ASSET_ORDER

_BY_NAME = {a.key.to_user_string(): a for a in (image_set, sparse_reconstruction, colmap_export, splat_model, sogs_bundle)}
PIPELINE_ASSETS = [_BY_NAME[name] for name in ASSET_ORDER]  # in pipeline order (stage_order.py)

main_job = define_asset_job(
    "spaceport_main",
    selection=AssetSelection.assets(*PIPELINE_ASSETS),
    partitions_def=datasets_partitions,
    description="Photos to a web-ready splat: every asset of one dataset partition.",
)

defs = Definitions(
    assets=PIPELINE_ASSETS,
    jobs=[main_job],
    sensors=[inbox_sensor, s3_uploads_sensor, notify_on_success, notify_on_failure],
    resources={**resources_from_env(), "notifier": NotifierResource()},  # settings read when used
)
