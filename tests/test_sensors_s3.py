"""The S3 upload sensor against moto's S3 server and a temporary Dagster instance."""

from __future__ import annotations

import json

import boto3
import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from spaceport_dagster.sensors.s3_uploads import s3_uploads_sensor

from .dagster_helpers import tick_sensor

PREFIX = "survey-co/uploads"


@pytest.fixture
def instance() -> DagsterInstance:
    """In-memory instance: sensor evaluation needs partitions, not persisted runs (and it starts in 0.1 s)."""
    return DagsterInstance.ephemeral()


@pytest.fixture
def uploads(bucket: str, spaceport_home, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPACEPORT_UPLOADS", f"s3://{bucket}/{PREFIX}")
    monkeypatch.delenv("SPACEPORT_PRESET", raising=False)
    return bucket


def put(bucket: str, key: str, body: bytes | str = b"") -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def upload(bucket: str, dataset: str, images: int = 3, marker: str | None = "_READY", options: dict | None = None,
           prefix: str = PREFIX) -> None:
    for i in range(images):
        put(bucket, f"{prefix}/{dataset}/DJI_{i:04d}.JPG", b"\xff\xd8" + bytes([i]) * 64)
    if options is not None:
        put(bucket, f"{prefix}/{dataset}/dataset.json", json.dumps(options))
    elif marker:
        put(bucket, f"{prefix}/{dataset}/{marker}")


def tick(instance: DagsterInstance, cursor: str | None = None) -> SensorResult:
    return tick_sensor(s3_uploads_sensor, instance, cursor)


def datasets(result: SensorResult) -> list[str]:
    return sorted(r.partition_key for r in result.run_requests or [])


def test_ready_dataset_gets_partition_and_one_run_not_ready_waits(uploads: str, instance: DagsterInstance) -> None:
    upload(uploads, "field-a")
    upload(uploads, "field-b", marker=None)
    result = tick(instance)
    assert datasets(result) == ["field-a"]
    request = result.run_requests[0]
    assert request.job_name in (None, "spaceport_main")
    assert request.run_key.startswith("s3:field-a/_READY@")
    assert request.run_config["ops"]["image_set"]["config"]["source"] == f"s3://{uploads}/{PREFIX}/field-a/"
    assert request.run_config["ops"]["splat_model"]["config"]["preset"] == "standard"
    assert request.tags["spaceport/upload"] == f"s3://{uploads}/{PREFIX}/field-a/_READY"
    assert "spaceport/notify" not in request.tags
    [partitions] = result.dynamic_partitions_requests
    assert partitions.partitions_def_name == "datasets" and list(partitions.partition_keys) == ["field-a"]
    assert instance.get_dynamic_partitions("datasets") == ["field-a"]

    # field-b becomes ready later: only it runs, and the existing partition is not requested again
    put(uploads, f"{PREFIX}/field-b/_READY")
    again = tick(instance, result.cursor)
    assert datasets(again) == ["field-b"]
    assert list(again.dynamic_partitions_requests[0].partition_keys) == ["field-b"]


def test_two_datasets_in_one_tick_with_options(uploads: str, instance: DagsterInstance) -> None:
    upload(uploads, "coast-1", options={"email": "pilot@example.org", "preset": "quality"})
    upload(uploads, "coast-2", options={"email": ["a@example.org", "b@example.org"]})
    instance.add_dynamic_partitions("datasets", ["coast-2"])  # already known: no second add request
    result = tick(instance)
    assert datasets(result) == ["coast-1", "coast-2"]
    by_dataset = {r.partition_key: r for r in result.run_requests}
    first = by_dataset["coast-1"]
    assert first.run_key.startswith("s3:coast-1/dataset.json@")
    assert first.tags["spaceport/notify"] == "pilot@example.org"
    assert first.tags["spaceport/preset"] == "quality"
    assert first.run_config["ops"]["splat_model"]["config"]["preset"] == "quality"
    assert first.run_config["ops"]["sparse_reconstruction"]["config"]["preset"] == "quality"
    assert by_dataset["coast-2"].tags["spaceport/notify"] == "a@example.org,b@example.org"
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["coast-1"]]


def test_run_keys_are_idempotent_and_only_a_new_marker_starts_a_new_version(
        uploads: str, instance: DagsterInstance) -> None:
    upload(uploads, "quarry")
    first = tick(instance)
    assert datasets(first) == ["quarry"]
    key = first.run_requests[0].run_key

    # the same tick re-evaluated (cursor lost): the same run key, so the daemon launches nothing twice
    assert [r.run_key for r in tick(instance, None).run_requests] == [key]
    # with the cursor: nothing new
    assert not tick(instance, first.cursor).run_requests

    # photos arriving after the marker do not start anything
    put(uploads, f"{PREFIX}/quarry/DJI_9999.JPG", b"late photo")
    late = tick(instance, first.cursor)
    assert not late.run_requests

    # an explicit new marker does, under a new run key
    put(uploads, f"{PREFIX}/quarry/_READY", b"v2")
    second = tick(instance, late.cursor)
    assert datasets(second) == ["quarry"]
    assert second.run_requests[0].run_key != key


def test_a_full_sweep_forgets_markers_that_are_gone(uploads: str, instance: DagsterInstance) -> None:
    upload(uploads, "temp-1")
    upload(uploads, "keep-1")
    first = tick(instance)
    assert set(json.loads(first.cursor)["done"]) == {"temp-1/_READY", "keep-1/_READY"}
    boto3.client("s3").delete_object(Bucket=uploads, Key=f"{PREFIX}/temp-1/_READY")
    second = tick(instance, first.cursor)
    assert set(json.loads(second.cursor)["done"]) == {"keep-1/_READY"}
    assert not second.run_requests


def test_objects_written_right_after_a_tick_are_not_lost(uploads: str, instance: DagsterInstance) -> None:
    upload(uploads, "site-1")
    first = tick(instance)
    upload(uploads, "site-0")  # same second as the tick, and sorts before the keys already swept
    upload(uploads, "site-2")
    second = tick(instance, first.cursor)
    assert datasets(second) == ["site-0", "site-2"]


def test_bad_names_and_keys_outside_the_prefix_are_skipped(uploads: str, instance: DagsterInstance,
                                                           capfd: pytest.CaptureFixture) -> None:
    upload(uploads, "Bad_Name")
    upload(uploads, "-leading-dash")
    put(uploads, f"{PREFIX}/_READY")  # not inside a dataset folder
    put(uploads, f"{PREFIX}/nested/deeper/_READY")  # marker below the dataset folder
    put(uploads, f"{PREFIX}/../escape/_READY")  # a key that walks out of the prefix
    upload(uploads, "archived", prefix="survey-co/uploads-old")  # sibling prefix sharing the letters
    upload(uploads, "elsewhere", prefix="other")
    upload(uploads, "good-one")
    capfd.readouterr()
    result = tick(instance)
    assert datasets(result) == ["good-one"]
    assert instance.get_dynamic_partitions("datasets") == ["good-one"]
    text = capfd.readouterr().err  # the sensor's log goes to the console (and the tick's captured log)
    assert "Bad_Name/_READY" in text and "invalid dataset id" in text
    assert "not inside a dataset folder" in text
    assert "nested below the dataset folder" in text
    assert "outside the uploads prefix" in text
    # refused markers are reported once, not on every tick
    assert not tick(instance, result.cursor).run_requests
    assert "Bad_Name" not in capfd.readouterr().err


def test_invalid_dataset_json_is_reported_and_a_corrected_marker_runs(uploads: str, instance: DagsterInstance,
                                                                     capfd: pytest.CaptureFixture) -> None:
    upload(uploads, "broken", options=None, marker=None)
    put(uploads, f"{PREFIX}/broken/dataset.json", "{not json")
    put(uploads, f"{PREFIX}/typo/dataset.json", json.dumps({"preset": "ultra"}))
    first = tick(instance)
    assert not first.run_requests
    err = capfd.readouterr().err
    assert "not valid JSON" in err and "'ultra' is unknown" in err
    put(uploads, f"{PREFIX}/broken/dataset.json", json.dumps({"email": "ops@example.org"}))
    assert datasets(tick(instance, first.cursor)) == ["broken"]


def test_many_datasets_over_several_ticks_with_a_cap(uploads: str, instance: DagsterInstance,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"survey-{i:02d}" for i in range(23)]
    for name in names:
        upload(uploads, name, images=2)
    monkeypatch.setenv("SPACEPORT_SENSOR_MAX_RUNS", "5")
    monkeypatch.setenv("SPACEPORT_SENSOR_SCAN", "12")  # keys listed per tick: 4 datasets' worth
    cursor, seen, ticks = None, [], 0
    while ticks < 40:
        ticks += 1
        result = tick(instance, cursor)
        cursor = result.cursor
        assert len(result.run_requests or []) <= 5
        seen += datasets(result)
        if sorted(seen) == names and json.loads(cursor)["after"] == "":
            break
    assert sorted(seen) == names  # every dataset exactly once
    assert len(seen) == len(set(seen))
    assert ticks >= 6  # 69 keys at 12 per tick
    assert sorted(instance.get_dynamic_partitions("datasets")) == names
    assert not tick(instance, cursor).run_requests  # a full sweep later: nothing new


def test_the_run_cap_resumes_where_it_stopped(uploads: str, instance: DagsterInstance,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(7):
        upload(uploads, f"lot-{i}", images=1)
    monkeypatch.setenv("SPACEPORT_SENSOR_MAX_RUNS", "3")
    first = tick(instance)
    second = tick(instance, first.cursor)
    third = tick(instance, second.cursor)
    assert [datasets(r) for r in (first, second, third)] == [
        ["lot-0", "lot-1", "lot-2"], ["lot-3", "lot-4", "lot-5"], ["lot-6"]]


def test_a_missing_bucket_never_crashes_the_sensor(aws_env: str, spaceport_home, instance: DagsterInstance,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACEPORT_UPLOADS", "s3://no-such-bucket-here/uploads")
    result = s3_uploads_sensor(build_sensor_context(instance=instance, cursor="garbage"))
    assert isinstance(result, SkipReason)
    assert "NoSuchBucket" in result.skip_message


def test_the_s3_sensor_stands_aside_for_a_local_inbox(spaceport_home, instance: DagsterInstance) -> None:
    result = s3_uploads_sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SkipReason) and "inbox sensor" in result.skip_message
