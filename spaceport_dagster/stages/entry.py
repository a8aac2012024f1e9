"""The command-line entry point every stage shares.

Under Dagster Pipes (local subprocess or a SageMaker job) the stage reads its inputs, output folder and
config from the Pipes extras and reports metadata, checks and logs through Pipes. Run by hand it takes
`--input NAME=PATH`, `--output PATH` and `--config JSON` and prints the report as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    decode_param,
    open_dagster_pipes,
)

from .artifact_check import ArtifactDamaged, verify_inputs
from .lifeline import start_lifeline
from .report import StageReport, plain_value

StageFn = Callable[[dict[str, str], Path, dict[str, Any], logging.Logger], StageReport]


FAILURE_FILE = "_FAILURE"  # the stage's own failure message, read by the launcher (SageMaker's failure file too)
# A file for the stage's console output (pycolmap's hundreds of log lines): set by the local launcher, so the
# output lands in that file and the run's log instead of the terminal of `spaceport run`.
STAGE_LOG_ENV = "SPACEPORT_STAGE_LOG"


def redirect_console(path: str) -> None:
    """Point this process's stdout and stderr (file descriptors 1 and 2, so C++ libraries too) at `path`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def pipes_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Plain dicts and lists become JSON metadata; typed values ({raw_value, type}) pass through."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dict) and "raw_value" in value and "type" in value:
            out[key] = value
        elif isinstance(value, dict | list | tuple):
            out[key] = {"raw_value": value, "type": "json"}
        else:
            out[key] = value
    return out


def write_failure(output: Path, exc: BaseException, extra_path: str | None = None) -> None:
    message = str(exc) if isinstance(exc, ArtifactDamaged) else f"{type(exc).__name__}: {exc}"  # says it all
    for target in filter(None, [output / FAILURE_FILE, Path(extra_path) if extra_path else None]):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(message[:1000])
        except OSError:
            pass


CONTAINER_ROOT_ENV = "SPACEPORT_CONTAINER_ROOT"  # set only by the test emulator: where "/opt/ml" really is


def container_path(path: str) -> str:
    """A SageMaker container path (`/opt/ml/...`), rebased under SPACEPORT_CONTAINER_ROOT when that is set."""
    root = os.environ.get(CONTAINER_ROOT_ENV)
    if root and (path == "/opt/ml" or path.startswith("/opt/ml/")):
        return str(Path(root)) + path
    return path


def _pipes_io() -> dict[str, Any]:
    """S3 context loader and message writer when the launcher injected through S3 (SageMaker jobs)."""
    try:
        params = decode_param(os.environ[DAGSTER_PIPES_CONTEXT_ENV_VAR])
    except Exception:  # not ours to judge here; open_dagster_pipes reports a bad value
        return {}
    if not (isinstance(params, dict) and "bucket" in params):
        return {}
    from .s3uri import s3_client

    client = s3_client()
    interval = float(os.environ.get("SPACEPORT_PIPES_INTERVAL", "10"))
    return {"context_loader": PipesS3ContextLoader(client), "message_writer": PipesS3MessageWriter(client, interval=interval)}


def _cli(stage: str, fn: StageFn, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m spaceport_dagster.stages.{stage}")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--output", required=True)
    parser.add_argument("--config", default="{}", help="JSON object of stage options")
    args = parser.parse_args(argv)
    inputs = dict(item.split("=", 1) for item in args.input)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = fn(inputs, Path(args.output), json.loads(args.config), logging.getLogger(stage))
    out = {
        "metadata": {k: plain_value(v) for k, v in report.metadata.items()},
        "checks": [
            {"name": c.name, "passed": c.passed, "blocking": c.blocking, "description": c.description}
            for c in report.checks
        ],
    }
    print(json.dumps(out, indent=2, default=str))
    return 1 if report.failed_gates() else 0


def main(stage: str, fn: StageFn, argv: list[str] | None = None) -> int:
    if DAGSTER_PIPES_CONTEXT_ENV_VAR not in os.environ:
        return _cli(stage, fn, sys.argv[1:] if argv is None else argv)
    if os.environ.get(STAGE_LOG_ENV):
        redirect_console(os.environ[STAGE_LOG_ENV])
    with open_dagster_pipes(**_pipes_io()) as pipes:
        extras = pipes.extras
        output = Path(container_path(extras["output"]))
        inputs = {name: container_path(path) for name, path in dict(extras.get("inputs", {})).items()}
        failure_file = extras.get("failure_file")
        start_lifeline()
        try:
            verify_inputs(dict(extras.get("input_artifacts") or {}), inputs)  # before any use (SageMaker's copies)
            report = fn(inputs, output, dict(extras.get("config", {})), pipes.log)
        except Exception as exc:
            # The traceback goes to the run's log (debug level); the console shows the one-line cause.
            pipes.log.debug(f"{stage} traceback:\n{traceback.format_exc()}")
            pipes.log.error(f"{stage} failed: {type(exc).__name__}: {exc}")
            write_failure(output, exc, container_path(failure_file) if failure_file else None)
            return 1
        pipes.report_asset_materialization(metadata=pipes_metadata(report.metadata))
        for check in report.checks:
            pipes.report_asset_check(
                check_name=check.name,
                passed=check.passed,
                severity=check.severity,
                metadata=pipes_metadata({"description": check.description, **check.metadata}),
            )
    return 0
