"""One partition per dataset; keys are validated before any work starts."""

from __future__ import annotations

from dagster import DagsterInstance, DynamicPartitionsDefinition

from spaceport_dagster.stages.dataset_id import validate_dataset_id

datasets_partitions = DynamicPartitionsDefinition(name="datasets")


def register_dataset(instance: DagsterInstance, dataset: str) -> str:
    """Validate `dataset` and add it as a partition (idempotent)."""
    validate_dataset_id(dataset)
    if not instance.has_dynamic_partition(datasets_partitions.name, dataset):
        instance.add_dynamic_partitions(datasets_partitions.name, [dataset])
    return dataset
