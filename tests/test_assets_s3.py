"""The image_set asset end to end with S3 uploads and an S3 artifact root on a real moto server."""

from __future__ import annotations

import json

import boto3
from dagster import AssetKey, DagsterInstance, materialize

from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.artifact_store import open_store
from spaceport_dagster.resources.compute import LocalStageLauncher
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.run_events import flat_metadata

from .conftest import dataset_images


def test_image_set_from_s3_uploads_to_s3_artifacts(bucket: str, aws_env: str, instance: DagsterInstance) -> None:
    s3 = boto3.client("s3")
    names = ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg", "06.jpg"]
    for name in names:
        s3.upload_file(str(dataset_images("lund") / name), bucket, f"uploads/lund-mini/{name}")
    s3.put_object(Bucket=bucket, Key="uploads/lund-mini/broken.jpg", Body=b"\xff\xd8\xff\xe0 not really")
    register_dataset(instance, "lund-mini")
    result = materialize(
        PIPELINE_ASSETS,
        selection=[AssetKey("image_set")],
        instance=instance,
        partition_key="lund-mini",
        resources={"storage": StorageResource(root=f"s3://{bucket}/artifacts", endpoint_url=aws_env),
                   "compute": LocalStageLauncher()},
        run_config={"ops": {"image_set": {"config": {"source": f"s3://{bucket}/uploads/lund-mini/"}}}},
    )
    assert result.success
    metadata = flat_metadata(result.asset_materializations_for_node("image_set")[0].metadata)
    assert metadata["usable_images"] == 6
    assert metadata["refused_files"] == 1
    assert metadata["uri"] == f"s3://{bucket}/artifacts/lund-mini/image_set/"
    store = open_store(f"s3://{bucket}/artifacts", aws_env)
    manifest = json.loads((store.fetch("lund-mini", "image_set") / "manifest.json").read_text())
    assert [r["name"] for r in manifest["images"]] == names
    assert manifest["refused"][0]["source"] == "broken.jpg"
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"enough_usable_images": True, "recommended_image_count": False, "no_refused_files": False}
    # uploads untouched
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="uploads/")["Contents"]}
    assert len(keys) == 7


def test_invalid_partition_key_is_refused_before_work(instance: DagsterInstance) -> None:
    import pytest

    from spaceport_dagster.stages.dataset_id import InvalidDatasetId

    with pytest.raises(InvalidDatasetId, match="Bad_Name"):
        register_dataset(instance, "Bad_Name")
