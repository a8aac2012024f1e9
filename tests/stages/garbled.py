"""A stage whose message stream is damaged: a message cut short (`garble`), or a process that vanishes in the
middle of a message without closing Pipes (`vanish`). Without either it reports like any stage."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_param

from spaceport_dagster.stages.entry import main
from spaceport_dagster.stages.report import CheckOutcome, StageReport

CUT = json.dumps({"__dagster_pipes_version": "0.1", "method": "log",
                  "params": {"message": "y" * 4000, "level": "INFO"}})[:2298]


def _append_to_message_file(data: str) -> None:
    path = decode_param(os.environ[DAGSTER_PIPES_MESSAGES_ENV_VAR])["path"]
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(data)


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    log.info("garbled stage starts")  # message 2, after "opened"
    if config.get("garble"):
        _append_to_message_file(CUT + "\n")  # message 3
    if config.get("vanish"):
        _append_to_message_file(CUT)
        os._exit(0)
    output.mkdir(parents=True, exist_ok=True)
    (output / "result.txt").write_text("garbled\n")
    return StageReport({"lines": 1}, [CheckOutcome("check_0", True, "always passes")])


if __name__ == "__main__":
    sys.exit(main("garbled", run))
