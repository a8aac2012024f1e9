"""Pipes over S3 for SageMaker jobs: the context and the message chunks live under the job's scratch prefix.

dagster-aws's S3 injector and reader put 30 random letters (and a stdio flag) into the parameters; a SageMaker
Processing job caps each environment value at 256 characters, so these use fixed, short keys under the
per-job scratch prefix instead (already unique: it carries the job name).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Event, Thread
from typing import Any

from botocore.exceptions import ClientError
from dagster import PipesMessageHandler, PipesMessageReader
from dagster_aws.pipes import PipesS3ContextInjector
from dagster_pipes import PipesContextData, PipesParams

from ..pipes_messages import MessageIntake


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


class ScopedS3MessageReader(PipesMessageReader):
    """Reads the message chunks `<key_prefix>/<n>.json` (n = 1, 2, ...) that `PipesS3MessageWriter` uploads.

    Unlike dagster-aws's `PipesS3MessageReader` (through `PipesThreadedMessageReader._messages_thread`), it
    reads every chunk that is there at each poll instead of one a poll (that reader gives up 10 s after the job,
    so a backlog of more than about ten chunks lost the rest, "closed" included), it keeps every line that does
    not parse as a problem instead of skipping it, and after the job it says which chunk never arrived and
    whether later ones did. An S3 object is written whole, so a chunk is never seen cut; the writer numbers
    chunks from one thread, so a gap means a lost upload, not a late one. One reader per session; after it,
    `problems` lists what could not be read. Stdout/stderr travel through CloudWatch, not messages.
    """

    def __init__(self, *, bucket: str, client: Any, key_prefix: str, interval: float = 10, grace_s: float | None = None):
        self.bucket = bucket
        self.client = client
        self.key_prefix = key_prefix.rstrip("/")
        self.interval = interval
        self.grace_s = interval if grace_s is None else grace_s  # after the job: how long "closed" may be late
        self.next_chunk = 1
        self.problems: list[str] = []
        self._last_error = ""

    @contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[PipesParams]:
        intake = MessageIntake(handler)
        session_over = Event()
        thread = Thread(target=self._poll, args=(intake, session_over), daemon=True, name="spaceport-pipes-s3")
        thread.start()
        try:
            yield {"bucket": self.bucket, "key_prefix": self.key_prefix}
        finally:
            session_over.set()
            thread.join()
            intake.finish(self._missing())
            self.problems = intake.problems

    def _poll(self, intake: MessageIntake, session_over: Event) -> None:
        try:
            while not intake.handler.received_closed_message:
                last_pass = session_over.is_set()
                self._drain(intake)
                if last_pass:
                    deadline = time.monotonic() + self.grace_s
                    while not intake.handler.received_closed_message and time.monotonic() < deadline:
                        time.sleep(min(self.interval, 1.0))
                        self._drain(intake)
                    return
                session_over.wait(self.interval)
        except Exception as exc:
            intake.reader_failed("Pipes S3 message reader", exc)

    def _drain(self, intake: MessageIntake) -> None:
        while (chunk := self._chunk(self.next_chunk)) is not None:
            for number, line in enumerate(chunk.split(b"\n"), 1):
                intake.take(line, f"message chunk {self.next_chunk}, line {number}")
            self.next_chunk += 1

    def _chunk(self, index: int) -> bytes | None:
        """The chunk's bytes; None while it is not there (or S3 failed: the next poll tries again)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=f"{self.key_prefix}/{index}.json")["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("NoSuchKey", "404"):
                self._last_error = f"reading chunk {index} failed: {code}: {exc}"
            return None

    def _missing(self) -> str:
        """Which chunk the reader stopped at, and whether later ones are there (a lost upload)."""
        try:
            keys = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.key_prefix}/").get("Contents", [])
        except ClientError as exc:
            return f"chunk {self.next_chunk} was not found; listing the chunks failed: {exc}"
        later = sorted(n for key in keys if (n := _chunk_number(key["Key"])) is not None and n > self.next_chunk)
        text = f"read chunks 1 to {self.next_chunk - 1}; chunk {self.next_chunk} never arrived"
        if later:
            text += f", but chunk(s) {', '.join(map(str, later[:5]))}{' ...' if len(later) > 5 else ''} did"
        return text + (f"; {self._last_error}" if self._last_error else "")

    def no_messages_debug_text(self) -> str:
        return f"Attempted to read message chunks from s3://{self.bucket}/{self.key_prefix}/."


def _chunk_number(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    stem = name.removesuffix(".json")
    return int(stem) if name.endswith(".json") and stem.isdigit() else None


def pipes_io(bucket: str, client: Any, scratch_key: str, interval: float) -> tuple[ScopedS3ContextInjector, ScopedS3MessageReader]:
    injector = ScopedS3ContextInjector(bucket=bucket, client=client, key_prefix=scratch_key + "pipes/")
    reader = ScopedS3MessageReader(bucket=bucket, client=client, key_prefix=scratch_key + "pipes/msg", interval=interval)
    return injector, reader
