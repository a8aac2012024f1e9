"""The local inbox sensor (the embedded default) on a temporary SPACEPORT_HOME."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance, DefaultSensorStatus, SensorResult

from spaceport_dagster.sensors.inbox import inbox_sensor

from .dagster_helpers import tick_sensor


@pytest.fixture
def instance() -> DagsterInstance:
    return DagsterInstance.ephemeral()


@pytest.fixture
def inbox(spaceport_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SPACEPORT_PRESET", raising=False)
    folder = spaceport_home / "inbox"
    folder.mkdir()
    return folder


def survey(inbox: Path, dataset: str, marker: str | None = "_READY", options: dict | None = None) -> Path:
    folder = inbox / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (folder / f"IMG_{i}.jpg").write_bytes(b"\xff\xd8" + bytes([i]) * 32)
    if options is not None:
        (folder / "dataset.json").write_text(json.dumps(options))
    elif marker:
        (folder / marker).write_bytes(b"")
    return folder


def tick(instance: DagsterInstance, cursor: str | None = None) -> SensorResult:
    return tick_sensor(inbox_sensor, instance, cursor)


def test_inbox_sensor_is_the_running_default_without_s3_uploads() -> None:
    assert inbox_sensor.default_status == DefaultSensorStatus.RUNNING
    assert inbox_sensor.job_name == "spaceport_main"


def test_ready_folders_start_one_run_each(inbox: Path, instance: DagsterInstance) -> None:
    survey(inbox, "garden")
    survey(inbox, "roof", options={"email": "owner@example.org", "preset": "standard"})
    survey(inbox, "half-done", marker=None)
    (inbox / "stray.txt").write_text("not a dataset")
    result = tick(instance)
    requests = {r.partition_key: r for r in result.run_requests}
    assert sorted(requests) == ["garden", "roof"]
    assert requests["garden"].run_config["ops"]["image_set"]["config"]["source"] == str(inbox / "garden")
    assert requests["garden"].run_config["ops"]["splat_model"]["config"]["preset"] == "preview"
    assert requests["roof"].tags["spaceport/notify"] == "owner@example.org"
    assert requests["roof"].run_key.startswith("inbox:roof/dataset.json@")
    assert sorted(instance.get_dynamic_partitions("datasets")) == ["garden", "roof"]
    assert not tick(instance, result.cursor).run_requests


def test_new_marker_version_reruns_and_late_photos_do_not(inbox: Path, instance: DagsterInstance) -> None:
    folder = survey(inbox, "field")
    first = tick(instance)
    (folder / "IMG_late.jpg").write_bytes(b"late")
    assert not tick(instance, first.cursor).run_requests
    marker = folder / "_READY"
    marker.write_bytes(b"again")
    os.utime(marker, ns=(marker.stat().st_atime_ns, marker.stat().st_mtime_ns + 1_000_000))
    second = tick(instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["field"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_bad_names_markers_at_the_root_and_links_outside_are_skipped(
        inbox: Path, instance: DagsterInstance, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    survey(inbox, "Holiday Photos")
    (inbox / "_READY").write_bytes(b"")
    outside = survey(tmp_path / "elsewhere", "secret")
    (inbox / "linked").symlink_to(outside, target_is_directory=True)
    survey(inbox, "ok")
    capfd.readouterr()
    result = tick(instance)
    assert [r.partition_key for r in result.run_requests] == ["ok"]
    err = capfd.readouterr().err
    assert "Holiday Photos/_READY" in err and "invalid dataset id" in err
    assert "not inside a dataset folder" in err
    assert "outside the inbox" in err


def test_cap_and_scan_budget_spread_work_over_ticks(inbox: Path, instance: DagsterInstance,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"plot-{i}" for i in range(9)]
    for name in names:
        survey(inbox, name)
    monkeypatch.setenv("SPACEPORT_SENSOR_MAX_RUNS", "2")
    monkeypatch.setenv("SPACEPORT_SENSOR_SCAN", "6")
    cursor, seen = None, []
    for _ in range(12):
        result = tick(instance, cursor)
        cursor = result.cursor
        seen += [r.partition_key for r in result.run_requests or []]
    assert sorted(seen) == names
