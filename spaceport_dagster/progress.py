"""What `spaceport run` prints while a long stage runs: every minute, how long it has run, the stage's latest
log line, and an estimate of the time left where the stage says how far it is.

A stage says how far it is in its own log lines: the training stage opens with "training N steps" and logs
"step K: ..." at each evaluation. The estimate is linear in the steps, from the time between the first and the
latest step reported (the set-up before the first step is not counted twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TOTAL = re.compile(r"\btraining (\d+) steps\b")
DONE = re.compile(r"^step (\d+):")
EVERY_SECONDS = 60.0


def duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@dataclass
class StageProgress:
    asset: str
    started: float
    total: int | None = None
    steps: list[tuple[int, float]] = field(default_factory=list)  # (step, when) as reported
    latest: str = ""
    told: float = 0.0  # when the last progress line was printed

    def hear(self, message: str, at: float) -> None:
        first = message.strip().splitlines()[0] if message.strip() else ""
        if not first:
            return
        self.latest = first
        if (total := TOTAL.search(first)) is not None:
            self.total = int(total.group(1))
        if (done := DONE.match(first)) is not None:
            self.steps.append((int(done.group(1)), at))

    def time_left(self) -> float | None:
        """Seconds left by the steps reported so far, or None when the stage has not said enough."""
        if not self.total or not self.steps:
            return None
        (first_step, first_at), (step, at) = self.steps[0], self.steps[-1]
        if step > first_step:
            per_step = (at - first_at) / (step - first_step)
        elif step > 0:
            per_step = (at - self.started) / step
        else:
            return None
        return max(0.0, (self.total - step) * per_step)

    def line(self, now: float) -> str:
        text = f"  [  running  ] {self.asset:<22} {now - self.started:6.0f}s  {self.latest[:100]}"
        left = self.time_left()
        if left is not None:
            step = self.steps[-1][0]
            text += f" ({step}/{self.total} steps, about {duration_text(left)} left)"
        return text

    def due(self, now: float) -> bool:
        """Whether a progress line is due (every EVERY_SECONDS while the stage runs, the first after a minute)."""
        return now - max(self.told, self.started) >= EVERY_SECONDS
