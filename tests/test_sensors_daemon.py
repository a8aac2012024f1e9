"""The inbox sensor ticked by the real sensor daemon code: partition added, one valid run queued per ready
dataset, and a tick re-evaluated from a lost cursor launches nothing twice (run keys)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import SensorInstigatorData
from dagster._core.test_utils import freeze_time
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._time import get_current_datetime

from .dagster_helpers import queued_instance_for_test, spaceport_workspace


@pytest.fixture
def queued_instance(spaceport_home: Path) -> Iterator[DagsterInstance]:
    with queued_instance_for_test(spaceport_home) as instance:
        yield instance


def _tick(context: WorkspaceProcessContext) -> None:
    for error in execute_sensor_iteration(context, logging.getLogger("sensor-test"), None, None):
        assert error is None, error


def test_daemon_tick_adds_partition_and_queues_one_run(queued_instance: DagsterInstance, spaceport_home: Path) -> None:
    folder = spaceport_home / "inbox" / "meadow"
    folder.mkdir(parents=True)
    (folder / "IMG_1.jpg").write_bytes(b"\xff\xd8photo")
    (folder / "dataset.json").write_text('{"email": "farmer@example.org"}')
    start = get_current_datetime()
    with spaceport_workspace(queued_instance) as context:
        with freeze_time(start):
            _tick(context)
        assert queued_instance.get_dynamic_partitions("datasets") == ["meadow"]
        [run] = queued_instance.get_runs()
        assert run.job_name == "spaceport_main" and run.status == DagsterRunStatus.QUEUED
        assert run.tags["dagster/partition"] == "meadow"
        assert run.tags["spaceport/notify"] == "farmer@example.org"
        assert run.run_config["ops"]["image_set"]["config"]["source"] == str(folder)

        # lose the cursor and tick again a minute later: same run key, so no second run
        [state] = [s for s in queued_instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                   if s.name == "inbox_uploads"]
        data = state.instigator_data
        assert isinstance(data, SensorInstigatorData) and data.cursor
        queued_instance.update_instigator_state(state.with_data(SensorInstigatorData(
            last_tick_timestamp=data.last_tick_timestamp, last_run_key=data.last_run_key, min_interval=data.min_interval,
            cursor=None, last_tick_start_timestamp=data.last_tick_start_timestamp,
            last_sensor_start_timestamp=data.last_sensor_start_timestamp, sensor_type=data.sensor_type)))
        with freeze_time(start + datetime.timedelta(seconds=65)):
            _tick(context)
        assert len(queued_instance.get_runs()) == 1
        ticks = queued_instance.get_ticks(state.instigator_origin_id, state.selector_id)
        assert len(ticks) == 2  # the second tick did evaluate, and requested the same run key again
        assert ticks[0].tick_data.run_keys == ticks[1].tick_data.run_keys == [run.tags["dagster/run_key"]]
