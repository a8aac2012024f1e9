"""Test helpers: a sensor evaluated as the daemon would, and a queued-run instance with the real workspace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import DagsterInstance, SensorDefinition, SensorResult, build_sensor_context, instance_for_test
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget

REPO = Path(__file__).resolve().parents[1]


def tick_sensor(sensor: SensorDefinition, instance: DagsterInstance, cursor: str | None = None) -> SensorResult:
    """One sensor evaluation; applies the partition requests as the daemon would."""
    result = sensor(build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, SensorResult), result
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


@contextmanager
def queued_instance_for_test(home: Path) -> Iterator[DagsterInstance]:
    """A persistent instance under `home` whose runs wait in the queue (nothing heavy executes)."""
    overrides = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
                 "telemetry": {"enabled": False}}
    with instance_for_test(overrides=overrides, temp_dir=str(home)) as instance:
        yield instance


def spaceport_workspace(instance: DagsterInstance) -> WorkspaceProcessContext:
    """The project's code location (`spaceport_dagster.definitions:defs`), as the daemon loads it."""
    target = ModuleTarget(module_name="spaceport_dagster.definitions", attribute="defs",
                          working_directory=str(REPO), location_name="spaceport")
    return WorkspaceProcessContext(instance, target)
