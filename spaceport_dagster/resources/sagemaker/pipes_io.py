"""Pipes over S3 for SageMaker jobs: the context and the message chunks live under the job's scratch prefix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.pipes.client import PipesParams
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from dagster_pipes import PipesBlobStoreMessageWriter


class ScopedS3MessageReader(PipesS3MessageReader):
    """PipesS3MessageReader writing under a given key prefix instead of a random top-level one."""

    def __init__(self, *, bucket: str, client: Any, key_prefix: str, interval: float = 10):
        super().__init__(bucket=bucket, client=client, interval=interval)
        self.key_prefix = key_prefix.rstrip("/")

    @contextmanager
    def get_params(self) -> Iterator[PipesParams]:
        yield {"bucket": self.bucket, "key_prefix": self.key_prefix,
               PipesBlobStoreMessageWriter.INCLUDE_STDIO_IN_MESSAGES_KEY: False}


def pipes_io(bucket: str, client: Any, scratch_key: str, interval: float) -> tuple[PipesS3ContextInjector, ScopedS3MessageReader]:
    injector = PipesS3ContextInjector(bucket=bucket, client=client, key_prefix=scratch_key + "pipes/context-")
    reader = ScopedS3MessageReader(bucket=bucket, client=client, key_prefix=scratch_key + "pipes/messages", interval=interval)
    return injector, reader
