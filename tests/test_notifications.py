"""Notifications: the message builder on partial input, and the run status sensors on real runs, sending
through SES on moto's server (which records what it was asked to send) or to the local JSON records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from spaceport_dagster.assets.image_set import image_set
from spaceport_dagster.notify.message import CheckFailure, RunSummary, StageSummary, build_notification
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.resources.notifications import NotifierResource
from spaceport_dagster.resources.selection import resources_from_env
from spaceport_dagster.sensors.run_status import notify_on_failure, notify_on_success
from spaceport_dagster.stage_order import ASSET_ORDER

from .conftest import dataset_images

SENDER = "spaceport@example.org"


def test_builder_copes_with_nothing_and_with_odd_values() -> None:
    empty = build_notification(RunSummary(run_id="r0", succeeded=False))
    assert empty.kind == "failure"
    assert empty.subject == "Spaceport: (no dataset) stopped at unknown step (an error)"
    assert "the run failed without an error message" in empty.text
    odd = RunSummary(run_id="r1", succeeded=True, dataset="odd", stages=[
        StageSummary("splat_model", "ok", None, {"psnr": "n/a", "gaussians": None, "uri": 42}),
        StageSummary("sogs_bundle", "ok", 1.0, {"bundle_bytes": float("nan"), "uri": "/a/odd/sogs_bundle/"}),
        StageSummary("mystery", "ok", 2.0, {"psnr": {"nested": [1]}}),
    ])
    note = build_notification(odd, to=["x@example.org"])
    assert note.subject == "Spaceport: odd is ready"
    assert note.figures == {}
    assert note.artifacts == {"sogs_bundle": "/a/odd/sogs_bundle/"}
    assert note.stage_seconds == {"sogs_bundle": 1.0, "mystery": 2.0}


def test_notifier_reads_its_channel_and_sender_when_it_sends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACEPORT_NOTIFY_FROM", raising=False)
    monkeypatch.setenv("SPACEPORT_NOTIFY", "local")
    notifier = NotifierResource(folder=str(tmp_path))  # as definitions.py makes it, before the settings change
    note = build_notification(RunSummary(run_id="r3", succeeded=True, dataset="cliff"), to=["x@example.org"])
    monkeypatch.setenv("SPACEPORT_NOTIFY", "pigeon")
    with pytest.raises(ValueError, match="notifier channel 'pigeon' is unknown"):
        notifier.send(note)
    monkeypatch.setenv("SPACEPORT_NOTIFY", "ses")  # no sender set: recorded, not sent
    record = notifier.send(note)
    assert record["channel"] == "ses" and record["delivered"] is False
    assert record["error"].startswith("SES sender not configured (SPACEPORT_NOTIFY_FROM)")
    assert NotifierResource(folder=str(tmp_path), channel="local").send(note)["channel"] == "local"  # set wins


def test_builder_names_the_blocking_check_not_the_generic_error() -> None:
    summary = RunSummary(run_id="r2", succeeded=False, dataset="cliff", failed_step="sparse_reconstruction",
                         failure_message="DagsterAssetCheckFailedError: 1 blocking asset check failed",
                         stages=[StageSummary("sparse_reconstruction", "failed", 30.0, {"num_points": 31},
                                              [CheckFailure("sparse_reconstruction", "min_points", "31 points < 1000"),
                                               CheckFailure("sparse_reconstruction", "reprojection", "2.1 px", False)])])
    note = build_notification(summary)
    assert note.subject == "Spaceport: cliff stopped at sparse_reconstruction (check min_points)"
    assert note.failure["message"] == "31 points < 1000"
    assert [c["check"] for c in note.failure["checks"]] == ["min_points"]
    assert "quality gate sparse_reconstruction.min_points failed: 31 points < 1000" in note.text
    assert note.figures == {"3D points": "31"}


# Stand-ins with the pipeline's asset keys and the metadata the real stages report, so a success
# notification can be checked without minutes of SfM and training.
def _stage(name: str, deps: list[str], metadata: dict):
    @asset(name=name, deps=deps, partitions_def=image_set.partitions_def)
    def _asset(context) -> MaterializeResult:
        uri = f"s3://artifacts/{context.partition_key}/{name}/"
        return MaterializeResult(metadata={**metadata, "uri": MetadataValue.path(uri), "published": True})

    return _asset


STAND_INS = [
    _stage("image_set", [], {"usable_images": 48, "refused_files": 1}),
    _stage("sparse_reconstruction", ["image_set"], {"registered_images": 46, "total_images": 48, "points": 18234}),
    _stage("colmap_export", ["sparse_reconstruction"], {"images": 46}),
    _stage("splat_model", ["colmap_export"], {"gaussians": 250000, "psnr": 24.37, "ssim": 0.81}),
    _stage("sogs_bundle", ["splat_model"], {"bundle_bytes": 3_250_000, "ratio": 17.2}),
]


def _finish_context(instance: DagsterInstance, run_id: str, notifier: NotifierResource):
    run = instance.get_run_by_id(run_id)
    kinds = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE)
    event = next(r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event
                 and r.dagster_event.event_type in kinds)
    return build_run_status_sensor_context(sensor_name="notify", dagster_event=event, dagster_instance=instance,
                                           dagster_run=run, resources={"notifier": notifier})


def _ses_messages(region: str = "us-east-1") -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][region].sent_messages


def test_success_email_through_ses_has_key_figures_and_uris(aws_env: str, instance: DagsterInstance,
                                                            spaceport_home: Path) -> None:
    register_dataset(instance, "harbour")
    result = materialize(STAND_INS, instance=instance, partition_key="harbour",
                         tags={"spaceport/notify": "pilot@example.org", "spaceport/preset": "standard"})
    ses = boto3.client("ses")
    ses.verify_email_identity(EmailAddress=SENDER)
    sent_before = len(_ses_messages())
    attempts_before = sum(p["DeliveryAttempts"] for p in ses.get_send_statistics()["SendDataPoints"])
    notifier = NotifierResource(channel="ses", sender=SENDER)
    notify_on_success(_finish_context(instance, result.run_id, notifier))

    messages = _ses_messages()[sent_before:]
    assert len(messages) == 1
    assert sum(p["DeliveryAttempts"] for p in ses.get_send_statistics()["SendDataPoints"]) == attempts_before + 1
    message = messages[0]
    assert message.destinations["ToAddresses"] == ["pilot@example.org"]
    assert message.source == SENDER
    assert message.subject == "Spaceport: harbour is ready (test-view PSNR 24.37 dB, bundle size 3.2 MB)"
    for line in ("registered images: 46 of 48", "3D points: 18,234", "Gaussians: 250,000", "usable photos: 48",
                 "sogs_bundle: s3://artifacts/harbour/sogs_bundle/", "splat_model: s3://artifacts/harbour/splat_model/",
                 f"Run {result.run_id} (preset standard)"):
        assert line in message.body
    for stage in ASSET_ORDER:
        assert f"  {stage:<22} ok" in message.body

    [record_path] = (spaceport_home / "notifications").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["delivered"] is True and record["ses_message_id"] == message.id
    assert set(record["stage_seconds"]) == set(ASSET_ORDER)
    assert all(v >= 0 for v in record["stage_seconds"].values())
    # the notification is also a line in the run's own log
    engine_lines = [r.dagster_event.message for r in instance.all_logs(result.run_id)
                    if r.dagster_event and r.dagster_event.event_type == DagsterEventType.ENGINE_EVENT]
    assert any(m.startswith("notification (success) for harbour") for m in engine_lines)


def test_blocked_quality_gate_on_real_photos_is_reported_locally(instance: DagsterInstance, spaceport_home: Path,
                                                                tmp_path: Path) -> None:
    """Two real photos: image_set's blocking `enough_usable_images` gate stops the run; no address is
    known, so the local channel records the message (and SES would not be asked)."""
    photos = tmp_path / "two-photos"
    photos.mkdir()
    for src in sorted(dataset_images("banana").iterdir())[:2]:
        shutil.copy(src, photos / src.name)  # copies: ingest never follows a link out of the upload
    register_dataset(instance, "two-photos")
    result = materialize([image_set], instance=instance, partition_key="two-photos", raise_on_error=False,
                         resources=resources_from_env(),
                         run_config={"ops": {"image_set": {"config": {"source": str(photos)}}}})
    assert not result.success
    notify_on_failure(_finish_context(instance, result.run_id, NotifierResource()))

    [record_path] = (spaceport_home / "notifications").glob("*-two-photos-failure-*.json")
    record = json.loads(record_path.read_text())
    assert record["channel"] == "local" and record["delivered"] is False and record["to"] == []
    assert record["failure"]["step"] == "image_set"
    assert record["failure"]["check"] == "enough_usable_images"
    assert record["subject"] == "Spaceport: two-photos stopped at image_set (check enough_usable_images)"
    assert "quality gate image_set.enough_usable_images failed:" in record["text"]
    assert record["figures"].get("usable photos") == "2"
    assert "image_set" not in record["artifacts"]  # a rejected output is not offered as a result


def test_runs_outside_the_pipeline_are_ignored(instance: DagsterInstance, spaceport_home: Path) -> None:
    @asset
    def unrelated() -> int:
        return 1

    result = materialize([unrelated], instance=instance)
    notify_on_success(_finish_context(instance, result.run_id, NotifierResource()))
    assert not (spaceport_home / "notifications").exists()
