"""A stage that passes a word along: writes `config["word"]` (or the word its `upstream` input holds) to
`word.txt` and reports which word it read, so a test can see which upstream version a step was given."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spaceport_dagster.stages.entry import main
from spaceport_dagster.stages.report import StageReport


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    read = Path(inputs["upstream"], "word.txt").read_text() if "upstream" in inputs else None
    word = config.get("word") or read or ""
    (output / "word.txt").write_text(word)
    log.info(f"relay read {read!r}, wrote {word!r}")
    return StageReport(metadata={"read": read or "", "wrote": word})


if __name__ == "__main__":
    raise SystemExit(main("relay", run))
