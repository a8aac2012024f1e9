"""A stage's tie to the process that launched it (stage side; resources/stage_watch.py is the other end).

The launcher starts `python -m spaceport_dagster.stages.lifeline CONTROL_DIR COMMAND...`: a small supervisor
that leads a process group of its own, starts the stage in that group and waits for it. The launcher kills
the stage by killing that group (timeout, frozen heartbeat, interrupted run). The stage touches a heartbeat
file in CONTROL_DIR every few seconds (`start_lifeline`).

When the launcher dies (`kill -9` of `spaceport run`, a crashed worker) the whole group goes with it:
- Linux: the kernel sends the supervisor SIGTERM the instant its launcher dies (PR_SET_PDEATHSIG); the
  supervisor only ever waits for the stage (blocked in waitpid), so it acts on it at once whatever the stage is doing (even stuck
  in native code holding its GIL), and kills the group with SIGKILL: the stage and everything it started
  (OpenSfM and its Python, COLMAP threads, data loaders), grandchildren included. The stage itself also gets
  SIGKILL from the kernel if the supervisor dies.
  PDEATHSIG fires when the *thread* that forked the child ends, not its process. The launcher forks in
  `PipesSubprocessClient.run`, and that same thread then blocks in `Popen.wait()` until the stage ends, so it
  cannot end while the stage runs unless its whole process dies, which is the case we want.
- Everywhere (the only way off Linux): the supervisor polls its parent pid twice a second and kills the group
  when it changed (the launcher is gone and someone else adopted us).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

CONTROL_ENV = "SPACEPORT_STAGE_CONTROL"
PARENT_ENV = "SPACEPORT_STAGE_PARENT"  # the launcher's pid, set by the launcher itself
# group.pid: the supervisor's pid, which is the process group's id (what the launcher kills); stage.pid: the stage
GROUP_FILE, PID_FILE, HEARTBEAT_FILE = "group.pid", "stage.pid", "heartbeat"
HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

Prctl = Callable[..., int]


def _libc_prctl() -> Prctl | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int, expected_parent: int | None = None, prctl: Prctl | None = None) -> bool:
    """Ask the kernel to send `sig` to this process when the thread that forked it ends (Linux only).

    It survives exec. When the parent died before the request (a race PDEATHSIG cannot see), exit at once:
    `expected_parent` is the parent's pid as the parent gave it. False where there is no PDEATHSIG.
    """
    prctl = prctl or _libc_prctl()
    if prctl is None or prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(128 + sig)  # the parent is already gone: the signal will never come
    return True


def start_lifeline() -> bool:
    """Beat the heart (a thread touching CONTROL_DIR/heartbeat); False when not launched with a control folder.

    A thread, so a stage stuck holding its GIL stops beating and the launcher's heartbeat watch catches it.
    """
    control = os.environ.get(CONTROL_ENV)
    if not control:
        return False
    heartbeat = Path(control) / HEARTBEAT_FILE
    heartbeat.touch()

    def beat() -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with contextlib.suppress(OSError):
                heartbeat.touch()

    threading.Thread(target=beat, name="spaceport-heartbeat", daemon=True).start()
    return True


def supervise(control: str, command: list[str]) -> int:
    """Lead a new process group, run `command` in it, and return its exit status (-N for a signal).

    The group dies when the launcher does (see the module docstring). Its id is in CONTROL_DIR/group.pid
    before the stage starts, so the launcher can kill the group from the first instant.
    """
    launcher = int(os.environ.get(PARENT_ENV) or os.getppid())  # the launcher's own word: it may be gone
    os.setpgrp()
    group = os.getpgrp()

    def kill_group(signum: int = 0, frame: FrameType | None = None) -> None:
        os.killpg(group, signal.SIGKILL)  # this process included

    signal.signal(signal.SIGTERM, kill_group)
    signal.signal(signal.SIGHUP, kill_group)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle; it then kills the group
    prctl = _libc_prctl()
    watched_by_kernel = die_with_parent(signal.SIGTERM, launcher, prctl)
    Path(control, GROUP_FILE).write_text(str(os.getpid()))
    env = {**os.environ, CONTROL_ENV: control, PARENT_ENV: str(os.getpid())}
    supervisor = os.getpid()

    def in_child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        die_with_parent(signal.SIGKILL, supervisor, prctl)
        Path(control, PID_FILE).write_text(str(os.getpid()))

    pid = _spawn(command, env, in_child)
    while True:
        # With PDEATHSIG, block: the SIGTERM handler runs inside waitpid. Without, poll the parent.
        done, status = os.waitpid(pid, 0 if watched_by_kernel else os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if os.getppid() != launcher:  # re-parented: the launcher is gone
            kill_group()
        time.sleep(POLL_SECONDS)


def _spawn(command: list[str], env: dict[str, str], in_child: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # the child: a single thread here, so running Python before exec is safe
        try:
            in_child()
            os.execvpe(command[0], command, env)
        finally:
            os._exit(127)
    return pid


def exit_like(code: int) -> None:
    """Exit as the stage did: the same code, or killed by the same signal (the launcher reports the signal)."""
    if code >= 0:
        sys.exit(code)
    sig = -code
    with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP cannot be caught anyway
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    sys.exit(128 + sig)  # a signal that does not end a process by default (SIGCHLD, ...)


if __name__ == "__main__":  # python -m spaceport_dagster.stages.lifeline CONTROL_DIR COMMAND...
    exit_like(supervise(sys.argv[1], sys.argv[2:]))
