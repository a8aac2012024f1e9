"""Does dagster-aws's PipesCloudWatchLogReader fit SageMaker's log streams? Measured against a moto server.

Run: python benchmarks/cloudwatch_log_reader_fit.py (needs moto[server]); the findings are summed up in
spaceport_dagster/resources/sagemaker/logs.py, which forwards the logs instead.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time

import boto3
from dagster_aws.pipes import PipesCloudWatchLogReader
from moto.server import ThreadedMotoServer

GROUP, JOB = "/aws/sagemaker/ProcessingJobs", "spaceport-sfm-demo-abc123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def put_line(client, stream: str, text: str) -> None:
    client.put_log_events(logGroupName=GROUP, logStreamName=stream,
                          logEvents=[{"timestamp": int(time.time() * 1000), "message": text}])


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("logs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    calls = [0]
    client.meta.events.register("before-call.logs.GetLogEvents", lambda **_: calls.__setitem__(0, calls[0] + 1))
    client.create_log_group(logGroupName=GROUP)

    # 1. Before the instance starts, the job has no stream yet.
    reader = PipesCloudWatchLogReader(client=client, log_group=GROUP, log_stream=JOB + "/")
    try:
        reader.start({}, threading.Event())
        print("1. start before the stream exists: started")
    except Exception as exc:
        print(f"1. start before the stream exists: {type(exc).__name__}: {exc}")

    # 2. SageMaker names the stream <job>/algo-1-<epoch seconds>: only its prefix is known in advance.
    stream = f"{JOB}/algo-1-{int(time.time())}"
    client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    put_line(client, stream, "line one")
    print("2. target_is_readable with the prefix:", reader.target_is_readable({}))
    errors: list[Exception] = []
    closed = threading.Event()

    def tail_prefix() -> None:
        try:
            reader._start({}, closed)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=tail_prefix)
    thread.start()
    thread.join(5)
    closed.set()
    print("   tailing the prefix as the stream name:", [f"{type(e).__name__}: {str(e)[:100]}" for e in errors])

    # 3. With the exact name: where the lines go, and how often CloudWatch is called while no line comes.
    out, closed = io.StringIO(), threading.Event()
    reader = PipesCloudWatchLogReader(client=client, log_group=GROUP, log_stream=stream, target_stream=out)
    reader.start({}, closed)
    time.sleep(0.5)
    calls[0] = 0
    time.sleep(2.0)
    idle_calls = calls[0]
    closed.set()
    put_line(client, stream, "wake")
    reader.thread.join(10)
    print(f"3. exact name: lines go to the target file stream, not the run's event log: {out.getvalue()!r}")
    print(f"   GetLogEvents calls in 2 s with no new line: {idle_calls}")
    server.stop()


if __name__ == "__main__":
    main()
