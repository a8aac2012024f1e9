"""Hostile uploads and injection, the rest of the catalogue (issue 27), each as a user meets it: what is done,
what the user sees, and what is left on disk and on S3 (moto in server mode). The Ctrl-C case is in
test_faults.py, beside the other interrupts; the upright gate without GPS in test_gravity.py (synthetic) and
here (real photos, slow)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
from dagster import DagsterInstance, materialize
from PIL import Image

from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.cli import main as cli_main
from spaceport_dagster.emails import InvalidEmail, validate_address, validate_addresses
from spaceport_dagster.notify.message import RunSummary, build_notification
from spaceport_dagster.resources.artifact_store import S3ArtifactStore
from spaceport_dagster.resources.notifications import NotifierResource
from spaceport_dagster.resources.sagemaker.launcher import SageMakerStageLauncher
from spaceport_dagster.resources.selection import resources_from_env
from spaceport_dagster.sensors.inbox import inbox_sensor
from spaceport_dagster.sensors.markers import InvalidOptions, parse_options
from spaceport_dagster.sensors.run_status import notify_on_success
from spaceport_dagster.sensors.s3_uploads import s3_uploads_sensor
from spaceport_dagster.stages.upload_files import upload_files
from spaceport_dagster.submit import submit

from .conftest import dataset_images
from .dagster_helpers import tick_sensor

CRLF_ADDRESSES = ["pilot@example.org\nBcc: victim@evil.example", "pilot@example.org\r\nBcc: victim@evil.example"]
INVALID_ADDRESSES = ["@", "pilot@", "a@b@example.org", "pilot @example.org", "pilot@exa mple.org",
                     "Pilot <pilot@example.org>", "pilot@example", "a@example.org, b@example.org",
                     "pilot@example.org;b@example.org", "pilot@[127.0.0.1]", '"a,b"@example.org', "pilot@localhost"]
NESTED = b"[" * 200_000  # 200 KB of nested arrays: json.loads raises RecursionError on it


def _photos(folder: Path, count: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(dataset_images("lund").iterdir())[:count]:
        shutil.copy(src, folder / src.name)  # copies: a link out of the upload is refused
    return folder


def _hostile_links(folder: Path) -> dict[str, str]:
    """The links of item 1 beside the photos; the reason each is refused with."""
    (folder / "a.jpg").symlink_to("b.jpg")
    (folder / "b.jpg").symlink_to("a.jpg")
    (folder / "loop").symlink_to(".")
    (folder / "up").symlink_to("..")
    (folder / "dangling.jpg").symlink_to("gone.jpg")
    loop = "symbolic link loop (not followed)"
    upward = "symbolic link to the upload folder or a folder above it (a loop; not followed)"
    return {"a.jpg": loop, "b.jpg": loop, "loop": upward, "up": upward, "dangling.jpg": "broken symbolic link"}


def _manifest(home: Path, dataset: str) -> dict:
    return json.loads((home / "artifacts" / dataset / "image_set" / "manifest.json").read_text())


def _s3_keys(bucket: str, prefix: str = "") -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


# ---------------------------------------------------------------- 1. symlink loops

def test_symlink_loops_are_refused_by_name_and_the_photos_ingest(tmp_path: Path, spaceport_home: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    upload = _photos(tmp_path / "looped")
    links = _hostile_links(upload)
    photos = sorted(p.name for p in upload.iterdir() if not p.is_symlink())

    # `spaceport run` on the folder: the run succeeds, each link is refused by name with its reason
    assert cli_main(["run", str(upload), "--dataset", "looped", "--until", "image_set"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "usable_images=10" in out.out
    manifest = _manifest(spaceport_home, "looped")
    assert sorted(r["source"] for r in manifest["images"]) == photos
    assert {r["source"]: r["reason"] for r in manifest["refused"]} == links

    # the same upload in the inbox: the sensor starts its run, whose ingest refuses the same links
    inbox = spaceport_home / "inbox" / "looped-inbox"
    _photos(inbox)
    _hostile_links(inbox)
    (inbox / "_READY").write_bytes(b"")
    instance = DagsterInstance.get()
    [request] = tick_sensor(inbox_sensor, instance).run_requests
    result = materialize([image_set], instance=instance, partition_key="looped-inbox", resources=resources_from_env(),
                         run_config={"ops": {"image_set": request.run_config["ops"]["image_set"]}})
    assert result.success
    manifest = _manifest(spaceport_home, "looped-inbox")
    assert len(manifest["images"]) == 10 and {r["source"]: r["reason"] for r in manifest["refused"]} == links
    assert all((inbox / name).is_symlink() for name in links)  # the upload is left as it was


# ---------------------------------------------------------------- 4 + 5. e-mail addresses

@pytest.mark.parametrize("bad", CRLF_ADDRESSES + INVALID_ADDRESSES)
def test_one_real_address_per_value(bad: str) -> None:
    with pytest.raises(InvalidEmail, match="not an email address"):
        validate_address(bad, "--email")
    assert validate_addresses([" pilot@example.org", "ops@sub.example.co.uk", "", "pilot@example.org"]) == [
        "pilot@example.org", "ops@sub.example.co.uk"]
    with pytest.raises(InvalidEmail, match="a list of addresses is expected"):
        validate_addresses("pilot@example.org")  # a string is never split into characters or on commas


def test_bad_addresses_are_refused_by_submit_markers_and_notify(tmp_path: Path, spaceport_home: Path, bucket: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capfd: pytest.CaptureFixture) -> None:
    survey = _photos(tmp_path / "field", 3)
    uploads = f"s3://{bucket}/up"

    # `spaceport submit --email`: one error line naming the value and why, exit 2, nothing written anywhere
    for bad in CRLF_ADDRESSES + INVALID_ADDRESSES:
        for target in ([], ["--to", uploads]):
            assert cli_main(["submit", str(survey), "--dataset", "field", "--email", "ok@example.org", "--email", bad,
                             *target]) == 2
            err = capfd.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("error: --email: not an email address: ")
            assert repr(bad.strip()) in err[0]
    assert not (spaceport_home / "inbox" / "field").exists()
    assert _s3_keys(bucket) == []

    # an inbox marker written by hand with a line break: refused with its reason and the upload named, no run;
    # the good upload beside it starts its run in the same tick
    inbox = spaceport_home / "inbox"
    for name, email in (("crlf", CRLF_ADDRESSES[1]), ("spaces", "pilot @example.org"), ("good", "pilot@example.org")):
        _photos(inbox / name, 1)
        (inbox / name / "dataset.json").write_text(json.dumps({"email": email}))
    instance = DagsterInstance.ephemeral()
    capfd.readouterr()
    result = tick_sensor(inbox_sensor, instance)
    assert [(r.partition_key, r.tags["spaceport/notify"]) for r in result.run_requests] == [
        ("good", "pilot@example.org")]
    err = capfd.readouterr().err
    assert f"skipped {inbox}/crlf/dataset.json: dataset.json 'email': not an email address:" in err
    assert "contains a line break" in err and f"{inbox}/spaces/dataset.json" in err

    # the same on S3
    monkeypatch.setenv("SPACEPORT_UPLOADS", uploads)
    s3 = boto3.client("s3")
    for name, email in (("crlf", [CRLF_ADDRESSES[0]]), ("good", ["a@example.org", "b@example.org"])):
        s3.put_object(Bucket=bucket, Key=f"up/{name}/p.jpg", Body=b"\xff\xd8")
        s3.put_object(Bucket=bucket, Key=f"up/{name}/dataset.json", Body=json.dumps({"email": email}).encode())
    result = tick_sensor(s3_uploads_sensor, DagsterInstance.ephemeral())
    assert [(r.partition_key, r.tags["spaceport/notify"]) for r in result.run_requests] == [
        ("good", "a@example.org,b@example.org")]
    assert f"skipped s3://{bucket}/up/crlf/dataset.json: dataset.json 'email'" in capfd.readouterr().err

    # the notify path: a run tag set by hand (UI launch, backfill) is checked again; SES gets a list
    monkeypatch.setenv("SPACEPORT_UPLOADS", str(inbox))
    ses = boto3.client("ses")
    ses.verify_email_identity(EmailAddress="spaceport@example.org")
    notifier = NotifierResource(channel="ses", sender="spaceport@example.org")
    note = build_notification(RunSummary(run_id="r1", succeeded=True, dataset="good"), to=[CRLF_ADDRESSES[0]])
    record = notifier.send(note)
    assert record["delivered"] is False and "not sent" in record["error"] and "line break" in record["error"]
    good = notifier.send(build_notification(RunSummary(run_id="r2", succeeded=True, dataset="good"),
                                            to=["pilot@example.org"]))
    assert good["delivered"] is True


def test_a_notify_tag_with_a_line_break_reaches_no_one(aws_env: str, spaceport_home: Path,
                                                       capfd: pytest.CaptureFixture) -> None:
    from .test_notifications import STAND_INS, _finish_context, _ses_messages

    instance = DagsterInstance.get()
    instance.add_dynamic_partitions("datasets", ["harbour"])
    tag = "pilot@example.org\nBcc: victim@evil.example,ops@example.org"
    result = materialize(STAND_INS, instance=instance, partition_key="harbour", tags={"spaceport/notify": tag})
    boto3.client("ses").verify_email_identity(EmailAddress="spaceport@example.org")
    before = len(_ses_messages())
    notify_on_success(_finish_context(instance, result.run_id, NotifierResource(channel="ses",
                                                                                 sender="spaceport@example.org")))
    [message] = _ses_messages()[before:]
    assert message.destinations["ToAddresses"] == ["ops@example.org"]  # the good one only, as a list
    assert "evil" not in json.dumps(message.destinations) and "contains a line break" in capfd.readouterr().err


# ---------------------------------------------------------------- 6. a marker that blocked every tick

@pytest.mark.parametrize("body", [NESTED, b'{"email": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
                                  b'{"title": "' + b"x" * 70_000 + b'"}'])
def test_a_huge_or_deep_marker_is_refused_and_the_tick_goes_on(body: bytes, spaceport_home: Path, bucket: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(InvalidOptions):
        parse_options(body)
    inbox = spaceport_home / "inbox"
    for name in ("aaa-first", "hostile", "zzz-last"):
        _photos(inbox / name, 1)
        (inbox / name / "dataset.json").write_bytes(body if name == "hostile" else b'{"preset": "preview"}')
    capfd.readouterr()
    result = tick_sensor(inbox_sensor, DagsterInstance.ephemeral())
    assert sorted(r.partition_key for r in result.run_requests) == ["aaa-first", "zzz-last"]
    err = capfd.readouterr().err
    assert f"skipped {inbox}/hostile/dataset.json: dataset.json " in err
    assert "RecursionError" not in err and "could not scan uploads" not in err
    assert (inbox / "hostile" / "dataset.json").read_bytes() == body  # nothing is removed

    monkeypatch.setenv("SPACEPORT_UPLOADS", f"s3://{bucket}/up")
    s3 = boto3.client("s3")
    for name in ("aaa-first", "hostile", "zzz-last"):
        s3.put_object(Bucket=bucket, Key=f"up/{name}/p.jpg", Body=b"\xff\xd8")
        s3.put_object(Bucket=bucket, Key=f"up/{name}/dataset.json", Body=body if name == "hostile" else b"{}")
    result = tick_sensor(s3_uploads_sensor, DagsterInstance.ephemeral())
    assert sorted(r.partition_key for r in result.run_requests) == ["aaa-first", "zzz-last"]
    err = capfd.readouterr().err
    assert f"skipped s3://{bucket}/up/hostile/dataset.json: dataset.json " in err
    assert "RecursionError" not in err and "could not scan uploads" not in err
    assert "up/hostile/dataset.json" in _s3_keys(bucket, "up/hostile/")


# ---------------------------------------------------------------- 7. one definition of "the files of an upload"

def test_submit_and_the_sagemaker_copy_never_follow_links_out(tmp_path: Path, spaceport_home: Path, bucket: str,
                                                              capsys: pytest.CaptureFixture) -> None:
    survey = _photos(tmp_path / "linked", 6)  # ingest's gate wants 5 usable photos
    secret = tmp_path / "secret.txt"
    secret.write_text("not for upload")
    (survey / "passwd").symlink_to("/etc/passwd")
    (survey / "secret.jpg").symlink_to(secret)
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "far.jpg").write_bytes(b"far")
    (survey / "folder").symlink_to(tmp_path / "outdir")
    (survey / "inside.jpg").symlink_to(sorted(survey.glob("*.jpg"))[0])  # a link inside: stands for that file
    os.mkfifo(survey / "pipe.jpg")
    photos = sorted(p.name for p in survey.iterdir() if p.is_file() and not p.is_symlink())
    expected_files = sorted([*photos, "inside.jpg"])
    behind = {"folder": "symbolic link to a folder (not followed)", "pipe.jpg": "not a regular file",
              "passwd": "symbolic link to a file outside the upload (not read)",
              "secret.jpg": "symbolic link to a file outside the upload (not read)"}
    listing = upload_files(survey)
    assert [f.name for f in listing.files] == expected_files and dict(listing.refused) == behind

    # submit to the inbox: the links out stay behind, each named on the console
    assert cli_main(["submit", str(survey), "--dataset", "linked"]) == 0
    out = capsys.readouterr()
    assert "submitted 7 file(s)" in out.out
    warned = sorted(line for line in out.err.splitlines() if line.startswith("warning: left behind"))
    assert warned == sorted(f"warning: left behind {n}: {why}" for n, why in behind.items())
    dest = spaceport_home / "inbox" / "linked"
    assert sorted(p.name for p in dest.iterdir()) == sorted([*expected_files, "dataset.json"])
    assert not any(p.is_symlink() for p in dest.iterdir())
    assert all(b"root:" not in p.read_bytes() and b"not for upload" not in p.read_bytes() for p in dest.iterdir())

    # submit to S3: the same files
    report = submit(survey, "linked", target=f"s3://{bucket}/up")
    assert report.files == 7 and dict(report.left_behind) == behind
    assert _s3_keys(bucket, "up/") == sorted([*(f"up/linked/{n}" for n in expected_files), "up/linked/dataset.json"])

    # the SageMaker launcher's copy of a local source: the same files again
    store = S3ArtifactStore(f"s3://{bucket}/art")
    uri = SageMakerStageLauncher._upload_source(store, survey, "art/_sagemaker/job/sources/source/")
    assert uri == f"s3://{bucket}/art/_sagemaker/job/sources/source/"
    assert _s3_keys(bucket, "art/") == [f"art/_sagemaker/job/sources/source/{n}" for n in expected_files]
    passwd = Path("/etc/passwd").read_bytes()
    for key in _s3_keys(bucket):
        assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() not in (passwd, b"not for upload")

    # and ingest reads exactly these, refusing the same entries with the same reasons
    assert cli_main(["run", str(survey), "--dataset", "linked-run", "--until", "image_set"]) == 0
    manifest = _manifest(spaceport_home, "linked-run")
    refused = {r["source"]: r["reason"] for r in manifest["refused"]}
    assert sorted(r["source"] for r in manifest["images"]) == photos
    assert refused == {**behind, "inside.jpg": f"exact duplicate of {photos[0]}"}


# ---------------------------------------------------------------- 2. no GPS, real photos

def _without_exif(kind: str, folder: Path, count: int = 10) -> Path:
    """The first `count` brighton_beach photos without EXIF (so without GPS): 16-bit grey PNG (Pillow writes 16
    bits per sample for one channel only) or RGBA PNG, the form that reproduced the refusal."""
    folder.mkdir(parents=True)
    for src in sorted(dataset_images("brighton_beach").iterdir())[:count]:
        with Image.open(src) as image:
            rgb = image.convert("RGB")
        if kind == "rgba":
            rgb.convert("RGBA").save(folder / f"{src.stem}.png")
        else:
            Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(folder / f"{src.stem}.png")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["png16", "rgba"])
def test_a_survey_without_gps_is_never_refused_by_the_upright_gate(kind: str, tmp_path: Path, spaceport_home: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """Issue 27: refused in 2 of 4 runs ("median view direction 0.3 deg from straight down, camera plane tilted
    10.5-10.7 deg"); here three SfM runs of the same photos all publish, warned or passed."""
    upload = _without_exif(kind, tmp_path / kind)
    with Image.open(next(upload.iterdir())) as image:
        assert image.mode == ("RGBA" if kind == "rgba" else "I;16") and not image.getexif()
    for i in range(3):  # SfM again on the same photos: its run-to-run noise must not flip the gate
        args = (["run", str(upload), "--dataset", kind, "--until", "sparse_reconstruction"] if i == 0 else
                ["rerun", kind, "--from", "sparse_reconstruction", "--until", "sparse_reconstruction"])
        assert cli_main(args) == 0
        out = capsys.readouterr()
        assert "quality gate failed" not in out.err and "Traceback" not in out.out + out.err
        report = json.loads((spaceport_home / "artifacts" / kind / "sparse_reconstruction" / "report.json")
                            .read_text())
        assert report["georegistration"]["frame"] == "local_upright"
        [upright] = [c for c in report["checks"] if c["name"] == "upright"]
        assert upright["passed"] or (not upright["blocking"] and "A warning" in upright["description"]
                                     and "warning: sparse_reconstruction: upright:" in out.out)
