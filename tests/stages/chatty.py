"""A stage that talks a lot through Pipes, as the real ones do at their worst, only more.

Several threads log progress lines with markdown tables while it "works"; the report carries a noise PNG
embedded as a data URI (about 1 MB of base64), a per-image table, and checks that each embed another image.
Everything it sends is derived from the config, so a test can recompute every message and compare.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spaceport_dagster.stages.entry import main
from spaceport_dagster.stages.report import CheckOutcome, StageReport, json_value, md


def log_line(thread: int, index: int, wide_every: int, wide_rows: int) -> str:
    """One progress line: a small markdown table, every `wide_every`-th one a wide table (40 bytes a row)."""
    rows = wide_rows if index % wide_every == wide_every - 1 else 12 + (index * 7 + thread * 3) % 40
    table = "\n".join(f"| t{thread} | {index} | {row} | {row * 0.125:.3f} | {'é' * (row % 5)} |" for row in range(rows))
    return f"chatty t{thread} #{index}\n| thread | step | row | value | text |\n|---|---|---|---|---|\n{table}"


def noise_png(pixels: int, seed: int) -> str:
    """A PNG of random pixels (incompressible: about 3 bytes a pixel), as a base64 data URI."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (pixels, pixels, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_table(rows: int) -> list[dict[str, Any]]:
    return [{"image": f"IMG_{i:04d}.JPG", "keypoints": 4000 + i * 13, "registered": i % 9 != 0} for i in range(rows)]


def preview_markdown(pixels: int, seed: int) -> str:
    return f"![preview]({noise_png(pixels, seed)})"


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    threads, lines = int(config.get("threads", 4)), int(config.get("lines_per_thread", 25))
    wide_every, wide_rows = int(config.get("wide_every", 10)), int(config.get("wide_rows", 600))
    pause = float(config.get("pause_s", 0.002))
    pixels, checks = int(config.get("image_px", 600)), int(config.get("checks", 3))

    def talk(thread: int) -> None:
        for index in range(lines):
            log.info(log_line(thread, index, wide_every, wide_rows))
            time.sleep(pause)

    workers = [threading.Thread(target=talk, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    output.mkdir(parents=True, exist_ok=True)
    (output / "result.txt").write_text("chatty\n")
    preview = preview_markdown(pixels, seed=0)
    metadata = {"preview": md(preview), "preview_sha256": hashlib.sha256(preview.encode()).hexdigest(),
                "per_image": json_value(image_table(int(config.get("table_rows", 2000)))),
                "log_lines": threads * lines}
    outcomes = [CheckOutcome(f"check_{k}", True, f"check {k} of the chatty stage",
                             metadata={"evidence": md(preview_markdown(pixels // 2, seed=k + 1))})
                for k in range(checks)]
    return StageReport(metadata, outcomes)


if __name__ == "__main__":
    sys.exit(main("chatty", run))
