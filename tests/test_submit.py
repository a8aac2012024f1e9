"""`spaceport submit` to the local inbox and to moto's S3: files verified, resumable, marker last."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import boto3
import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from spaceport_dagster.cli import main as cli_main
from spaceport_dagster.sensors.inbox import inbox_sensor
from spaceport_dagster.sensors.s3_uploads import s3_uploads_sensor
from spaceport_dagster.submit import MIB, expected_etag, submit

from .conftest import dataset_images


@pytest.fixture
def survey(tmp_path: Path) -> Path:
    """Three real photos (copies: a link out of the upload is left behind, as ingest refuses it), a big synthetic
    file for multipart, and things to leave behind."""
    folder = tmp_path / "Lund Survey"
    folder.mkdir()
    for src in sorted(dataset_images("lund").iterdir())[:3]:
        shutil.copy(src, folder / src.name)
    (folder / "raw").mkdir()
    (folder / "raw" / "big.tif").write_bytes(os.urandom(11 * MIB + 12345))
    (folder / ".DS_Store").write_bytes(b"finder")
    (folder / "_READY").write_bytes(b"")
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_submit_to_the_inbox_then_resubmit_skips_and_writes_a_new_marker(
        survey: Path, spaceport_home: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["submit", str(survey), "--email", "pilot@example.org", "--preset", "standard"]) == 0
    out = capsys.readouterr().out
    dest = spaceport_home / "inbox" / "lund-survey"
    assert "as 'lund-survey'" in out and "uploaded 4, already there 0" in out
    uploaded = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    photos = sorted(p.name for p in survey.iterdir() if p.suffix.upper() == ".JPG")
    assert uploaded == sorted([*photos, "dataset.json", "raw/big.tif"])
    for rel in [*photos, "raw/big.tif"]:
        assert _sha(dest / rel) == _sha(survey / rel)
    marker = json.loads((dest / "dataset.json").read_text())
    assert marker["email"] == ["pilot@example.org"] and marker["preset"] == "standard" and marker["files"] == 4

    instance = DagsterInstance.ephemeral()
    first = inbox_sensor(build_sensor_context(instance=instance))
    assert isinstance(first, SensorResult)
    [request] = first.run_requests
    assert request.partition_key == "lund-survey" and request.tags["spaceport/notify"] == "pilot@example.org"

    # a second submit changes nothing on disk but the marker, which starts exactly one new run
    report = submit(survey, "lund-survey", email=["pilot@example.org"])
    assert (report.uploaded, report.skipped) == (0, 4)
    again = inbox_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
    assert [r.partition_key for r in again.run_requests] == ["lund-survey"]
    assert again.run_requests[0].run_key != request.run_key


def test_submit_to_s3_multipart_checksums_and_resume(survey: Path, bucket: str, spaceport_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = f"s3://{bucket}/acme/uploads"
    big = survey / "raw" / "big.tif"
    part_size = 5 * MIB

    # an interrupted first attempt: it dies after the first part of the big file
    def crash(item: str, report) -> None:
        if "part 1/" in item:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        submit(survey, "lund", target=uploads, part_size=part_size, multipart_threshold=part_size, progress=crash,
               jobs=1)
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="acme/uploads/lund/").get("Contents", [])}
    assert "acme/uploads/lund/dataset.json" not in keys  # no marker for half an upload
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1

    report = submit(survey, "lund", email=["ops@example.org"], target=uploads, part_size=part_size,
                    multipart_threshold=part_size)
    assert report.parts_skipped == 1 and report.parts_sent == 2  # 11 MiB in 5 MiB parts: part 1 resumed
    assert report.skipped == 3 and report.uploaded == 1  # the photos were already there
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    head = s3.head_object(Bucket=bucket, Key="acme/uploads/lund/raw/big.tif")
    assert head["ETag"].strip('"') == expected_etag(big, part_size, part_size) and head["ETag"].endswith('-3"')
    body = s3.get_object(Bucket=bucket, Key="acme/uploads/lund/raw/big.tif")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == _sha(big)
    assert head["Metadata"]["sha256"] == _sha(big)  # the whole file's digest, kept with the object
    photo = sorted(p for p in survey.iterdir() if p.is_file() and not p.name.startswith((".", "_")))[0]
    photo_head = s3.head_object(Bucket=bucket, Key=f"acme/uploads/lund/{photo.name}")
    assert photo_head["Metadata"]["sha256"] == _sha(photo)
    assert json.loads(s3.get_object(Bucket=bucket, Key="acme/uploads/lund/dataset.json")["Body"].read())["email"] == [
        "ops@example.org"]

    # a third submit uploads nothing, and the S3 sensor sees one ready dataset with its address
    assert submit(survey, "lund", target=uploads, part_size=part_size, multipart_threshold=part_size).uploaded == 0
    monkeypatch.setenv("SPACEPORT_UPLOADS", uploads)
    result = s3_uploads_sensor(build_sensor_context(instance=DagsterInstance.ephemeral()))
    [request] = result.run_requests
    assert request.partition_key == "lund"
    assert request.run_config["ops"]["image_set"]["config"]["source"] == f"{uploads}/lund/"


def test_a_stale_interrupted_upload_of_other_content_is_discarded(tmp_path: Path, bucket: str) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "big.bin").write_bytes(b"a" * (6 * MIB))
    s3 = boto3.client("s3")
    stale = s3.create_multipart_upload(Bucket=bucket, Key="up/s/big.bin")
    s3.upload_part(Bucket=bucket, Key="up/s/big.bin", UploadId=stale["UploadId"], PartNumber=1, Body=b"b" * (5 * MIB))
    report = submit(folder, "s", target=f"s3://{bucket}/up", part_size=5 * MIB, multipart_threshold=5 * MIB)
    assert (report.parts_skipped, report.parts_sent) == (0, 2)
    body = s3.get_object(Bucket=bucket, Key="up/s/big.bin")["Body"].read()
    assert body == b"a" * (6 * MIB)


def test_submit_to_a_missing_bucket_says_how_to_resume(survey: Path, aws_env: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["submit", str(survey), "--dataset", "x", "--to", "s3://no-such-bucket-zz/uploads"]) == 1
    err = capsys.readouterr().err
    assert "NoSuchBucket" in err and "run the same command again to resume" in err


def test_submit_refuses_bad_input(tmp_path: Path, spaceport_home: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["submit", str(empty), "--dataset", "ok"]) == 2
    assert "holds no files" in capsys.readouterr().err
    assert cli_main(["submit", str(empty), "--dataset", "Not OK"]) == 2
    assert "invalid dataset id" in capsys.readouterr().err
    (empty / "a.jpg").write_bytes(b"x")
    assert cli_main(["submit", str(empty), "--dataset", "ok", "--email", "nobody"]) == 2
    assert "--email: not an email address: 'nobody'" in capsys.readouterr().err
    assert not (spaceport_home / "inbox" / "ok").exists()
