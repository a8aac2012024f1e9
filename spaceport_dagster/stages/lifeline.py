"""A stage's tie to the process that launched it (stage side; resources/stage_watch.py is the other end).

When the launcher gives a control folder (SPACEPORT_STAGE_CONTROL), the stage becomes the leader of its own
process group, writes its pid there and touches a heartbeat file every few seconds. A thread watches the
parent: when it is gone (`kill -9` of `spaceport run`, a crashed worker), the whole group is killed, so no
stage and none of its children (COLMAP, OpenSfM, data loaders) keeps running as an orphan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

CONTROL_ENV = "SPACEPORT_STAGE_CONTROL"
PARENT_ENV = "SPACEPORT_STAGE_PARENT"  # the launcher's pid, recorded before the stage imports anything
PID_FILE, HEARTBEAT_FILE = "stage.pid", "heartbeat"
HEARTBEAT_SECONDS = 2.0


def start_lifeline() -> bool:
    """Start watching the parent and beating the heart; False when not launched with a control folder."""
    control = os.environ.get(CONTROL_ENV)
    if not control:
        return False
    folder = Path(control)
    # The launcher may already be gone (killed while the stage imported pycolmap or torch): compare with the
    # parent recorded at exec time, not with whoever adopted us since.
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    with contextlib.suppress(OSError):  # our group: the launcher kills it whole; Ctrl-C goes to the launcher only
        os.setpgrp()
    (folder / PID_FILE).write_text(str(os.getpid()))
    heartbeat = folder / HEARTBEAT_FILE
    heartbeat.touch()

    def watch() -> None:
        last_beat = time.monotonic()
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:  # re-parented: the launcher is gone
                os.killpg(os.getpgrp(), signal.SIGKILL)
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                with contextlib.suppress(OSError):
                    heartbeat.touch()
                last_beat = time.monotonic()

    threading.Thread(target=watch, name="spaceport-lifeline", daemon=True).start()
    return True


def exec_in_own_group(control: str, command: list[str]) -> None:
    """Become a process group leader, record the pid, then become `command` (same pid): the launcher can
    kill the stage's group from the first instant, before the stage has imported anything."""
    os.setpgrp()
    Path(control, PID_FILE).write_text(str(os.getpid()))
    os.environ[CONTROL_ENV] = control
    os.environ[PARENT_ENV] = str(os.getppid())
    os.execvp(command[0], command)


if __name__ == "__main__":  # python -m spaceport_dagster.stages.lifeline CONTROL_DIR COMMAND...
    import sys

    exec_in_own_group(sys.argv[1], sys.argv[2:])
