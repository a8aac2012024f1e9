"""A stage that writes to the console as pycolmap does: glog lines from C++ on stderr, and a print on stdout."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pycolmap

from spaceport_dagster.stages.entry import main
from spaceport_dagster.stages.report import StageReport


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    pycolmap.logging.logtostderr = True
    for index in range(int(config.get("lines", 50))):
        pycolmap.logging.info(f"noisy glog line {index}")
    print("noisy print on stdout", flush=True)
    log.info("noisy stage done")
    (output / "done.txt").write_text("ok")
    return StageReport(metadata={"lines": int(config.get("lines", 50))})


if __name__ == "__main__":
    raise SystemExit(main("noisy", run))
