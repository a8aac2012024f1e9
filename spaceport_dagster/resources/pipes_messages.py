"""Reading a stage's Pipes messages whole, or failing the step with the reason.

Why this exists (issue 17): Dagster's `PipesFileMessageReader` (the default of `PipesSubprocessClient`) tails the
message file with `dagster._utils.tail_file`, which yields whatever `readline()` returns. At the end of a file
that is still being written that is a cut line: the stage appends each message with one `write()` (O_APPEND,
so messages of several threads never interleave), but Linux makes a large write visible page by page, and a
reader that polls in the middle of it gets the part before a page boundary. `json.loads` then raises in the
reader thread, the thread dies, every later message (the checks, "closed") is dropped, and the step fails
with Dagster's "did not yield or return expected outputs". Source of the upstream reader:
https://github.com/dagster-io/dagster/blob/1.13.27/python_modules/dagster/dagster/_utils/__init__.py (`tail_file`)
and .../dagster/_core/pipes/utils.py (`PipesFileMessageReader._reader_thread`).

`WholeLineFileMessageReader` hands on only lines that end in a newline and keeps the rest until it is complete.
`MessageIntake` (shared with the S3 reader) parses each line strictly and, instead of dying or skipping, keeps
a description of every line it could not use and of a session that ended without the stage's "closed"
message; the launcher turns those into a step failure that names the stage.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Event, Thread

from dagster import PipesMessageHandler, PipesMessageReader
from dagster_pipes import PIPES_PROTOCOL_VERSION_FIELD, PipesDefaultMessageWriter, PipesParams

EXCERPT_CHARS = 80


def _excerpt(line: bytes) -> str:
    text = line[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    return repr(text) + (f" ... ({len(line)} bytes)" if len(line) > EXCERPT_CHARS else "")


class MessageIntake:
    """Parses message lines strictly, hands each to the handler and remembers what could not be used."""

    def __init__(self, handler: PipesMessageHandler):
        self.handler = handler
        self.problems: list[str] = []
        self.messages = 0

    def take(self, line: bytes, where: str) -> None:
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.problems.append(f"{where}: not a whole JSON message ({exc}); it begins {_excerpt(line)}")
            return
        if not (isinstance(message, dict) and PIPES_PROTOCOL_VERSION_FIELD in message and "method" in message):
            self.problems.append(f"{where}: not a Pipes message; it begins {_excerpt(line)}")
            return
        try:
            self.handler.handle_message(message)
        except Exception as exc:  # a message Dagster rejects: keep reading the others, fail the step after
            self.problems.append(f"{where}: Dagster rejected the {message.get('method')!r} message "
                                 f"({type(exc).__name__}: {exc})")
            return
        self.messages += 1

    def cut(self, rest: bytes, where: str) -> None:
        """The stream ended inside a message: what is there never got its line end."""
        self.problems.append(f"{where}: the message stream ends inside a message (no line end); it begins "
                             f"{_excerpt(rest)}")

    def reader_failed(self, origin: str, exc: BaseException) -> None:
        self.problems.append(f"the {origin} stopped: {type(exc).__name__}: {exc}")
        self.handler.report_pipes_framework_exception(origin, sys.exc_info())

    def finish(self, unread: str = "") -> None:
        """After the session: a stage that returned normally always sent "closed" last."""
        if not self.handler.received_closed_message:
            self.problems.append(f"the stage's closing message never arrived ({self.messages} messages read"
                                 f"{'; ' + unread if unread else ''})")


class WholeLineFileMessageReader(PipesMessageReader):
    """Tails a temporary message file and hands on only complete lines (see the module docstring).

    One reader per session: after the session `problems` lists what could not be read (empty when all was).
    """

    def __init__(self, poll_s: float = 0.01):
        self.poll_s = poll_s
        self.problems: list[str] = []
        self.messages = 0

    @contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[PipesParams]:
        with tempfile.TemporaryDirectory(prefix="spaceport-pipes-") as folder:
            path = Path(folder) / "messages.jsonl"
            path.touch()
            intake = MessageIntake(handler)
            session_over = Event()
            thread = Thread(target=self._tail, args=(path, intake, session_over), daemon=True,
                            name="spaceport-pipes-reader")
            thread.start()
            try:
                yield {PipesDefaultMessageWriter.FILE_PATH_KEY: str(path)}
            finally:
                session_over.set()
                thread.join()
                intake.finish()
                self.problems, self.messages = intake.problems, intake.messages

    def _tail(self, path: Path, intake: MessageIntake, session_over: Event) -> None:
        offset, number, pending = 0, 0, b""
        try:
            with open(path, "rb") as stream:
                while True:
                    last_pass = session_over.is_set()  # the stage is gone: what the file holds is all there is
                    data = stream.read()
                    if data:
                        *lines, pending = (pending + data).split(b"\n")
                        for line in lines:
                            number += 1
                            intake.take(line, f"message {number} (byte {offset} of the message file)")
                            offset += len(line) + 1
                    elif last_pass:
                        break
                    else:
                        time.sleep(self.poll_s)
            if pending:
                intake.cut(pending, f"message {number + 1} (byte {offset} of the message file)")
        except Exception as exc:
            intake.reader_failed("Pipes message file reader", exc)

    def no_messages_debug_text(self) -> str:
        return "Attempted to read messages from a temporary file (spaceport WholeLineFileMessageReader)."


def describe(problems: list[str], limit: int = 3) -> str:
    """The first few problems, for a one-line error."""
    return "; ".join(problems[:limit]) + (f" (and {len(problems) - limit} more)" if len(problems) > limit else "")

