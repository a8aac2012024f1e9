"""The launcher's end of a stage's lifeline (stages/lifeline.py): a wall-clock timeout, a heartbeat watch,
and killing a stage's whole process group when it hangs or when the run is interrupted.

Every watch in this process is registered, so an interrupted `spaceport run` (Ctrl-C, SIGTERM) can stop the
stages it started before it reports the run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import TracebackType

from spaceport_dagster.stages.lifeline import GROUP_FILE, HEARTBEAT_FILE

_ACTIVE: set[StageWatch] = set()
_LOCK = threading.Lock()
_STOPPED: list[str] = []  # set by stop_all: no further stage starts in this process


class StageStopped(RuntimeError):
    """A stage asked to start after its run was interrupted."""


class StageWatch:
    def __init__(self, control: Path, stage: str, timeout_s: float, heartbeat_s: float, poll_s: float = 0.5):
        self.control, self.stage = control, stage
        self.timeout_s, self.heartbeat_s, self.poll_s = timeout_s, heartbeat_s, poll_s
        self.reason: str | None = None  # why the watch killed the stage, when it did
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"spaceport-watch-{stage}", daemon=True)

    def __enter__(self) -> StageWatch:
        self.started = time.monotonic()
        (self.control / HEARTBEAT_FILE).touch()  # a stage that freezes before its first beat is caught too
        with _LOCK:
            if _STOPPED:
                raise StageStopped(f"stage {self.stage} not started: {_STOPPED[0]}")
            _ACTIVE.add(self)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        with _LOCK:
            _ACTIVE.discard(self)

    def pid(self) -> int | None:
        try:
            return int((self.control / GROUP_FILE).read_text())
        except (OSError, ValueError):
            return None

    def kill(self, reason: str, sig: int = signal.SIGKILL) -> bool:
        """Kill the stage's process group; False when the stage has not started (or already ended)."""
        pid = self.pid()
        if pid is None:
            return False
        self.reason = self.reason or reason
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _heartbeat_age(self) -> float | None:
        try:
            return time.time() - (self.control / HEARTBEAT_FILE).stat().st_mtime
        except OSError:
            return None

    def _watch(self) -> None:
        while not self._done.wait(self.poll_s):
            elapsed = time.monotonic() - self.started
            if self.timeout_s and elapsed > self.timeout_s:
                self.kill(f"stage {self.stage} timed out after {_duration(self.timeout_s)} and was killed "
                          "(raise timeout_minutes in the asset's config if it needs longer)")
                return
            age = self._heartbeat_age()
            if self.heartbeat_s and age is not None and age > self.heartbeat_s:
                self.kill(f"stage {self.stage} stopped responding (no heartbeat for {_duration(age)}) and was killed")
                return


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def stop_all(reason: str) -> int:
    """Kill every stage this process is running (an interrupted run); how many were killed."""
    with _LOCK:
        _STOPPED.append(reason)
        watches = list(_ACTIVE)
    return sum(watch.kill(reason) for watch in watches)
