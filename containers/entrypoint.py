"""Container entry point of every Spaceport stage image (ENTRYPOINT ["python3", "/opt/spaceport/entrypoint.py"]).

SageMaker starts it with the job's environment: SPACEPORT_STAGE names the stage module, DAGSTER_PIPES_CONTEXT /
DAGSTER_PIPES_MESSAGES point at the Pipes context and message prefix on S3 (the stage reads its inputs, output
folder and config from the Pipes extras: `/opt/ml/processing/input/<name>` and `/opt/ml/processing/output/artifact`
for Processing jobs, `/opt/ml/input/data/<channel>` and `/opt/ml/model` for Training jobs; a resumable stage's
checkpoints in `/opt/ml/checkpoints`, SageMaker's checkpoint channel, never in the model). A Training job passes
the argument `train`, which is ignored.

The stage runs as `python -m spaceport_dagster.stages.<stage>`; its output is streamed to stdout (CloudWatch).
If it exits non-zero without writing `/opt/ml/output/failure` (a Training job's FailureReason), the last lines
of its output are written there, so a crash before the stage's own handler still has a reason; the text is
copied to `/opt/ml/output/message` (a Processing job's ExitMessage).

SPACEPORT_CONTAINER_ROOT (tests only) rebases `/opt/ml` onto a folder, for the local SageMaker emulator.
Standard library only: it must run before anything else in the image is known to work.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

FAILURE_LIMIT = 1000  # bytes of failure text kept; SageMaker truncates FailureReason to about 1 KB


def opt_ml() -> Path:
    return Path(os.environ.get("SPACEPORT_CONTAINER_ROOT", "/") + "/opt/ml").resolve()


def stage_name(argv: list[str]) -> str:
    args = [a for a in argv if a not in ("train", "serve")]
    stage = os.environ.get("SPACEPORT_STAGE") or (args[0] if args else "")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", stage):
        raise SystemExit(f"SPACEPORT_STAGE must name a stage module (e.g. sfm), got {stage!r}")
    return stage


def run(argv: list[str]) -> int:
    failure = opt_ml() / "output" / "failure"
    failure.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage = stage_name(argv)
    except SystemExit as exc:
        failure.write_text(str(exc))
        return 2
    tail: collections.deque[str] = collections.deque(maxlen=20)
    print(f"spaceport: running stage {stage} (python -m spaceport_dagster.stages.{stage}), /opt/ml at {opt_ml()}",
          flush=True)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", f"spaceport_dagster.stages.{stage}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
    )
    # StopProcessingJob / StopTrainingJob send SIGTERM to the container: pass it on to the stage.
    signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        tail.append(line.rstrip())
    code = proc.wait()
    print(f"spaceport: stage {stage} exited with code {code}", flush=True)
    if code != 0:
        if not (failure.is_file() and failure.read_text().strip()):
            text = "\n".join(tail).strip() or "no output"
            failure.write_text(f"stage {stage} exited with code {code}: {text}"[-FAILURE_LIMIT:])
        # Processing jobs surface /opt/ml/output/message as ExitMessage (Training jobs read the failure file).
        (failure.parent / "message").write_text(failure.read_text()[:FAILURE_LIMIT])
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
