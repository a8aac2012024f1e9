"""Pipes over S3 for SageMaker jobs: the context and the message chunks live under the job's scratch prefix.

dagster-aws's S3 injector and reader put 30 random letters (and a stdio flag) into the parameters; a SageMaker
Processing job caps each environment value at 256 characters, so these use fixed, short keys under the
per-job scratch prefix instead (already unique: it carries the job name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.pipes.client import PipesParams
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from dagster_pipes import PipesContextData


class ScopedS3ContextInjector(PipesS3ContextInjector):
    """Writes the context to `<key_prefix>context.json` and deletes it when the session closes."""

    @contextmanager
    def inject_context(self, context: PipesContextData) -> Iterator[PipesParams]:
        key = f"{self.key_prefix or ''}context.json"
        self.client.put_object(Body=json.dumps(context).encode("utf-8"), Bucket=self.bucket, Key=key)
        try:
            yield {"bucket": self.bucket, "key": key}
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=key)


class ScopedS3MessageReader(PipesS3MessageReader):
    """Reads message chunks `<key_prefix>/<n>.json` (stdout/stderr travel through CloudWatch, not messages)."""

    def __init__(self, *, bucket: str, client: Any, key_prefix: str, interval: float = 10):
        super().__init__(bucket=bucket, client=client, interval=interval)
        self.key_prefix = key_prefix.rstrip("/")

    @contextmanager
    def get_params(self) -> Iterator[PipesParams]:
        yield {"bucket": self.bucket, "key_prefix": self.key_prefix}


def pipes_io(bucket: str, client: Any, scratch_key: str, interval: float) -> tuple[ScopedS3ContextInjector, ScopedS3MessageReader]:
    injector = ScopedS3ContextInjector(bucket=bucket, client=client, key_prefix=scratch_key + "pipes/")
    reader = ScopedS3MessageReader(bucket=bucket, client=client, key_prefix=scratch_key + "pipes/msg", interval=interval)
    return injector, reader
