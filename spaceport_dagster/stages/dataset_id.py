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


# Folder names that say what a folder holds, not which survey it is: `lund/images` is the survey `lund`.
GENERIC_FOLDER_NAMES = {"images", "image", "imgs", "img", "photos", "photo", "pictures", "jpg", "jpeg", "dcim",
                        "raw", "upload", "uploads", "input"}


def dataset_id_for_source(source: str) -> str:
    """The id `spaceport run/submit` gives a folder or S3 prefix without --dataset: its last part, or the one
    above it when the last part is a generic name such as `images`."""
    parts = [p for p in source.rstrip("/").split("/") if p not in ("", ".")]
    name = parts[-1] if parts else ""
    if name.lower() in GENERIC_FOLDER_NAMES and len(parts) > 1 and parts[-2] not in ("..", "s3:"):
        name = parts[-2]
    return suggest_dataset_id(name)
