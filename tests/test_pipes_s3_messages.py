"""Issue 17, the SageMaker channel: Pipes message chunks on S3 (the moto server), read by ScopedS3MessageReader.

An S3 object appears whole, so a chunk is never seen cut; what can go wrong is a chunk that never arrives (an
upload the stage's writer thread gave up on), a line in a chunk that does not parse, and a backlog of chunks
when the job ends (dagster-aws's reader read one chunk a second and stopped 10 s after the job).
"""

import json
import time
from collections.abc import Callable
from typing import Any

import boto3
from dagster import AssetExecutionContext, PipesEnvContextInjector, asset, materialize, open_pipes_session

from spaceport_dagster.resources.sagemaker.pipes_io import ScopedS3MessageReader


def line(method: str, params: dict[str, Any] | None = None) -> str:
    return json.dumps({"__dagster_pipes_version": "0.1", "method": method, "params": params})


def log(text: str) -> str:
    return line("log", {"message": text, "level": "INFO"})


OPENED = line("opened", {})
CLOSED = line("closed", {})


def materialization(value: int) -> str:
    return line("report_asset_materialization", {"asset_key": "talk", "data_version": None,
                                                 "metadata": {"value": {"raw_value": value, "type": "int"}}})


def read_session(bucket: str, write: Callable[[Any, str], None], interval: float = 0.1,
                 grace_s: float = 0.5) -> tuple[ScopedS3MessageReader, dict[str, Any]]:
    """One Pipes session whose stage side is `write(s3, key_prefix)`: returns the reader and what Dagster got."""
    s3 = boto3.client("s3")
    reader = ScopedS3MessageReader(bucket=bucket, client=s3, key_prefix="job-1/pipes/msg", interval=interval,
                                   grace_s=grace_s)
    seen: dict[str, Any] = {}

    @asset
    def talk(context: AssetExecutionContext):
        with open_pipes_session(context=context, context_injector=PipesEnvContextInjector(),
                                message_reader=reader) as session:
            write(s3, "job-1/pipes/msg")
        results = list(session.get_results())
        seen["materializations"] = [r.metadata["value"].value for r in results if "value" in (r.metadata or {})]
        yield from results

    result = materialize([talk], raise_on_error=False)
    seen["success"] = result.success
    return reader, seen


def put(s3: Any, bucket: str, prefix: str, index: int, lines: list[str]) -> None:
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{index}.json", Body="\n".join(lines).encode())


def test_a_backlog_of_chunks_at_the_end_of_the_job_is_read_whole(bucket: str) -> None:
    def write(s3: Any, prefix: str) -> None:  # 40 chunks land at once: the reader polls every 10 s
        put(s3, bucket, prefix, 1, [OPENED, log("chunk 1")])
        for index in range(2, 40):
            put(s3, bucket, prefix, index, [log(f"chunk {index} line {n}") for n in range(3)])
        put(s3, bucket, prefix, 40, [materialization(40), CLOSED])

    started = time.monotonic()
    reader, seen = read_session(bucket, write, interval=10)
    assert reader.problems == []
    assert seen["success"] and seen["materializations"] == [40]
    assert reader.next_chunk == 41
    assert time.monotonic() - started < 10  # read at once when the session closed, not one chunk a poll


def test_chunks_written_during_the_job_are_read_as_they_come(bucket: str) -> None:
    def write(s3: Any, prefix: str) -> None:
        put(s3, bucket, prefix, 1, [OPENED])
        for index in range(2, 6):
            time.sleep(0.15)
            put(s3, bucket, prefix, index, [log(f"chunk {index}")])
        time.sleep(0.15)
        put(s3, bucket, prefix, 6, [materialization(6), CLOSED])

    reader, seen = read_session(bucket, write)
    assert reader.problems == []
    assert seen["success"] and seen["materializations"] == [6]


def test_a_chunk_that_never_arrives_is_named_with_the_later_ones_that_did(bucket: str) -> None:
    def write(s3: Any, prefix: str) -> None:
        put(s3, bucket, prefix, 1, [OPENED])
        put(s3, bucket, prefix, 2, [log("two")])
        put(s3, bucket, prefix, 4, [materialization(4), CLOSED])  # 3's upload was lost

    reader, seen = read_session(bucket, write)
    assert reader.problems == ["the stage's closing message never arrived (2 messages read; read chunks 1 to 2; "
                               "chunk 3 never arrived, but chunk(s) 4 did)"]
    assert reader.next_chunk == 3
    assert seen["materializations"] == []  # chunk 4 is not read past the gap: order is part of the protocol


def test_a_job_whose_chunks_stop_is_reported_after_the_grace_period(bucket: str) -> None:
    def write(s3: Any, prefix: str) -> None:
        put(s3, bucket, prefix, 1, [OPENED, log("one")])

    started = time.monotonic()
    reader, _seen = read_session(bucket, write, grace_s=0.5)
    assert time.monotonic() - started >= 0.5
    assert reader.problems == ["the stage's closing message never arrived (2 messages read; read chunks 1 to 1; "
                               "chunk 2 never arrived)"]


def test_a_line_that_does_not_parse_is_a_problem_and_the_rest_is_still_read(bucket: str) -> None:
    cut = log("x" * 3000)[:2298]

    def write(s3: Any, prefix: str) -> None:
        put(s3, bucket, prefix, 1, [OPENED, cut, log("after")])
        put(s3, bucket, prefix, 2, [materialization(2), CLOSED])

    reader, seen = read_session(bucket, write)
    assert len(reader.problems) == 1
    assert reader.problems[0].startswith("message chunk 1, line 2: not a whole JSON message (Unterminated string")
    assert seen["materializations"] == [2]
