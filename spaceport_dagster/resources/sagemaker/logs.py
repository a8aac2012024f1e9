"""Forward a job's CloudWatch log streams (`<group>/<job name>/algo-1-...`) to the Dagster run log.

Why not dagster-aws's `PipesCloudWatchLogReader` (0.29.27), measured against a moto server by
benchmarks/cloudwatch_log_reader_fit.py: it tails one stream by its exact name, and SageMaker names the stream
`<job>/algo-1-<epoch seconds>` when the instance starts, so only the prefix is known in advance (tailing the
prefix fails with ResourceNotFoundException); it refuses to start before the stream exists (the job's first
minutes); it writes the lines to a file stream (stdout), not to the run's event log that the UI, the CLI and
the tests read; and it polls GetLogEvents with no pause while no line comes (about 300 calls in 2 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

LOG_GROUPS = {"processing": "/aws/sagemaker/ProcessingJobs", "training": "/aws/sagemaker/TrainingJobs"}


class CloudWatchForwarder:
    """Call `poll()` now and then; every new line of every stream of the job goes to `emit` once."""

    def __init__(self, client: Any, job_kind: str, job_name: str, emit: Callable[[str], None],
                 warn: Callable[[str], None], max_lines: int = 20_000):
        self.client = client
        self.group = LOG_GROUPS[job_kind]
        self.job_name = job_name
        self.emit = emit
        self.warn = warn
        self.max_lines = max_lines
        self.lines = 0
        self._tokens: dict[str, str] = {}
        self._warned = False

    def poll(self) -> int:
        """Forward what is new; returns the number of lines forwarded. Log trouble never fails the job."""
        try:
            return self._poll()
        except (ClientError, BotoCoreError) as exc:
            if not self._warned:
                self.warn(f"cannot read CloudWatch logs of {self.job_name} ({self.group}): {exc}")
                self._warned = True
            return 0

    def _streams(self) -> list[str]:
        try:
            response = self.client.describe_log_streams(logGroupName=self.group, logStreamNamePrefix=self.job_name + "/")
        except self.client.exceptions.ResourceNotFoundException:
            return []
        return sorted(s["logStreamName"] for s in response.get("logStreams", []))

    def _poll(self) -> int:
        count = 0
        for stream in self._streams():
            short = stream[len(self.job_name) + 1:]
            while True:
                params: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream, "startFromHead": True}
                if stream in self._tokens:
                    params["nextToken"] = self._tokens[stream]
                response = self.client.get_log_events(**params)
                events = response.get("events", [])
                for event in events:
                    for line in event.get("message", "").splitlines():
                        if line.strip() and self.lines < self.max_lines:
                            self.emit(f"[{short}] {line}")
                            self.lines += 1
                            count += 1
                token = response.get("nextForwardToken")
                if not events or not token or token == self._tokens.get(stream):
                    if token:
                        self._tokens[stream] = token
                    break
                self._tokens[stream] = token
        return count
