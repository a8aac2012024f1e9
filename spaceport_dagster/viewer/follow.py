"""The bundle `spaceport view` serves, kept in step with what is published.

A dataset's sogs_bundle gets a new version whenever a run publishes one; the viewer must not keep serving the one
it found at startup (whose folder retention removes a day later). Each request asks, at most every
`check_seconds`, which version is published (one manifest read, or a file's size and time) and resolves the new
one when it changed. A new
version that cannot be read yet keeps the old one served, and is tried again on the next check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class Bundle(Protocol):
    """What is followed: server.Bundle, as far as this module needs it."""

    dataset: str
    path: str
    bytes: int
    version: str


class FollowedBundle:
    def __init__(self, target: str, resolve: Callable[[str], Bundle], version: Callable[[str], str],
                 check_seconds: float = 2.0) -> None:
        """`resolve` reads the bundle (its figures, its frame); `version` only says which version is published."""
        self.target = target
        self._resolve = resolve
        self._version = version
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._bundle = resolve(target)
        self._checked = time.monotonic()

    def current(self) -> Bundle:
        """The bundle to serve now: the published one, looked up again when the last look is `check_seconds` old."""
        with self._lock:
            if time.monotonic() - self._checked >= self.check_seconds:
                self._checked = time.monotonic()
                try:
                    if self._version(self.target) != self._bundle.version:
                        fresh = self._resolve(self.target)
                        print(f"spaceport view: now serving version {fresh.version} of {fresh.dataset} "
                              f"({fresh.bytes / 1e6:.2f} MB)", flush=True)
                        self._bundle = fresh
                except Exception as exc:  # noqa: BLE001 - keep serving what works; say why once per check
                    log.warning("spaceport view: keeps version %s of %s: %s", self._bundle.version, self.target, exc)
            return self._bundle

    def read(self) -> bytes:
        """The current bundle's bytes."""
        return Path(self.current().path).read_bytes()
