"""Dataset ids: the partition key, an S3 key part and a SageMaker job-name part, so the rule is strict."""

from __future__ import annotations

import re

DATASET_ID_RULE = "[a-z0-9][a-z0-9-]{0,62}"
_PATTERN = re.compile(rf"^{DATASET_ID_RULE}$")


class InvalidDatasetId(ValueError):
    pass


def validate_dataset_id(value: str) -> str:
    """Return `value` unchanged when it is a valid dataset id, else raise with the rule spelled out."""
    if not isinstance(value, str) or not _PATTERN.match(value):
        raise InvalidDatasetId(
            f"invalid dataset id {value!r}: it must match {DATASET_ID_RULE} "
            "(1-63 characters: lowercase letters, digits and '-', starting with a letter or digit)"
        )
    return value


def suggest_dataset_id(name: str) -> str:
    """A valid id derived from a folder name: lowercased, other characters turned into '-'."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)[:63].strip("-")
    return validate_dataset_id(slug or "dataset")
