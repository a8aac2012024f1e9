"""Run OpenSfM's own command line (extract_metadata ... reconstruct) and convert its result.

OpenSfM is not a Python dependency of this package: it is found as an executable (SPACEPORT_OPENSFM, `opensfm`
on PATH, or a known install location such as the one in containers/opensfm/). Without it, `reconstruct` fails at
once with `OpenSfmUnavailable`, whose message says how to get it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .convert import ConversionResult, convert
from .options import STEPS, OpenSfmOptions, options_from, write_config

__all__ = ["OpenSfmOptions", "OpenSfmUnavailable", "OpenSfmFailed", "find_opensfm", "reconstruct", "convert"]

ENV_VAR = "SPACEPORT_OPENSFM"
# bin/opensfm in the OpenDroneMap image (containers/opensfm/) and in OpenSfM's own Dockerfile checkout.
KNOWN_LOCATIONS = (
    Path("/code/SuperBuild/install/bin/opensfm/bin/opensfm"),
    Path("/source/OpenSfM/bin/opensfm"),
)
INSTALL_HINT = (
    "Get OpenSfM in one of these ways: (1) run the SfM stage in the OpenSfM container, containers/opensfm/Dockerfile "
    "(built FROM a published OpenDroneMap image that ships OpenSfM; it sets SPACEPORT_OPENSFM); (2) build it from "
    "source (git clone --recursive https://github.com/mapillary/OpenSfM, then pip install -r requirements.txt and "
    "python setup.py build, see its docs/building) and set SPACEPORT_OPENSFM=<checkout>/bin/opensfm or put bin/ on "
    "PATH; or (3) use engine: colmap, the default, which needs nothing more."
)


class OpenSfmUnavailable(RuntimeError):
    """No OpenSfM executable was found; the message says how to get one."""


class OpenSfmFailed(RuntimeError):
    """An OpenSfM command exited with an error or timed out."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_opensfm(environ: dict[str, str] | None = None) -> Path:
    """The OpenSfM command-line executable (bin/opensfm), or OpenSfmUnavailable."""
    environ = dict(os.environ if environ is None else environ)
    configured = environ.get(ENV_VAR)
    if configured:
        path = Path(configured)
        if not _executable(path):
            raise OpenSfmUnavailable(f"{ENV_VAR}={configured} is not an executable file. {INSTALL_HINT}")
        return path
    on_path = shutil.which("opensfm", path=environ.get("PATH", ""))
    if on_path:
        return Path(on_path)
    for path in KNOWN_LOCATIONS:
        if _executable(path):
            return path
    raise OpenSfmUnavailable(f"OpenSfM is not installed here (no {ENV_VAR}, no `opensfm` on PATH). {INSTALL_HINT}")


def _link_images(image_dir: Path, work_dir: Path) -> None:
    """OpenSfM reads <dataset>/images; point it at the image set without copying."""
    target = work_dir / "images"
    if target.is_symlink() or target.exists():
        if target.resolve() == image_dir.resolve():
            return
        raise FileExistsError(f"{target} exists and is not a link to {image_dir}; use an empty work_dir")
    target.symlink_to(image_dir.resolve(), target_is_directory=True)


def run_step(binary: Path, step: str, work_dir: Path, log: logging.Logger, timeout_s: float | None = None) -> float:
    """Run `opensfm <step> <work_dir>`, output to logs/<step>.log; returns seconds."""
    logs = work_dir / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / f"{step}.log"
    started = time.perf_counter()
    with log_path.open("w") as out:
        try:
            proc = subprocess.run(
                [str(binary), step, str(work_dir)], stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise OpenSfmFailed(f"opensfm {step} did not finish within {timeout_s} s (log: {log_path})") from None
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        with log_path.open(errors="replace") as f:
            tail = "".join(deque(f, maxlen=20))
        raise OpenSfmFailed(f"opensfm {step} exited with status {proc.returncode} after {seconds:.1f} s; "
                            f"last lines of {log_path}:\n{tail}")
    log.info(f"opensfm {step}: {seconds:.1f} s")
    return seconds


def reconstruct(image_dir: Path, work_dir: Path, options: OpenSfmOptions | Mapping[str, Any] | None,
                log: logging.Logger) -> ConversionResult:
    """Reconstruct `image_dir` with OpenSfM in `work_dir` (an OpenSfM dataset folder) and convert the result.

    `options`: OpenSfmOptions, or a plain mapping of its fields (see `options_from`). The returned
    `ConversionResult.step_seconds` holds the wall time of each OpenSfM command and of the conversion.
    """
    options = options_from(options)
    binary = find_opensfm()
    image_dir, work_dir = Path(image_dir), Path(work_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} not found")
    work_dir.mkdir(parents=True, exist_ok=True)
    _link_images(image_dir, work_dir)
    config = write_config(options, work_dir / "config.yaml")
    log.info(f"OpenSfM {binary} on {image_dir}; config {config}")
    seconds = {step: run_step(binary, step, work_dir, log, options.step_timeout_s) for step in STEPS}
    result = convert(
        work_dir, image_dir,
        max_reprojection_error_px=options.max_reprojection_error_px,
        min_track_length=options.min_track_length,
        log=log,
    )
    result.step_seconds = {**seconds, **result.step_seconds}
    return result
