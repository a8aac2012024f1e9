"""SageMaker job names: `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`, readable, unique per attempt."""

from __future__ import annotations

import hashlib
import re

JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
MAX_LEN = 63


def job_name(dataset: str, stage: str, run_id: str, attempt: int) -> str:
    """`sp-<dataset>-<stage>-<run id, 8 hex>-a<attempt>`; a long dataset id is cut and tagged with its hash."""
    run = re.sub(r"[^a-zA-Z0-9]", "", run_id)[:8] or "norun"
    tail = f"-{re.sub(r'[^a-zA-Z0-9]', '', stage)}-{run}-a{attempt}"
    data = re.sub(r"[^a-zA-Z0-9-]", "-", dataset).strip("-") or "dataset"
    room = MAX_LEN - len("sp-") - len(tail)
    if len(data) > room:
        digest = hashlib.sha1(dataset.encode()).hexdigest()[:6]
        data = data[: room - len(digest) - 1].rstrip("-") + "-" + digest
    name = f"sp-{data}{tail}"
    if not JOB_NAME_PATTERN.fullmatch(name):
        raise ValueError(f"cannot make a valid SageMaker job name from {dataset!r}/{stage!r}: {name!r}")
    return name
