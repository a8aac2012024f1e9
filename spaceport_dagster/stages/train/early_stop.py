"""Early-stop bookkeeping on the validation PSNR (training views kept out of training; never a test view): the
best score so far and the evaluations since it.

One object serves a fresh run and a resumed one: a resumed run replays the evaluations stored in its checkpoint
first, so it stops where the uninterrupted run would have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class EarlyStop:
    min_step: int  # evaluations before this step neither set the best nor count against it
    min_delta: float  # dB a new best must gain
    patience: int  # evaluations without a new best before stopping; 0 = never stop
    best: float = -math.inf
    since_best: int = 0

    def observe(self, step: int, psnr: float) -> bool:
        """Count one evaluation; True when it is a new best."""
        if step < max(1, self.min_step):
            return False
        if psnr > self.best + self.min_delta:
            self.best, self.since_best = psnr, 0
            return True
        self.since_best += 1
        return False

    def replay(self, evals: Iterable[dict[str, Any]]) -> None:
        """Observe the evaluations of the run so far (from a checkpoint); a restored-best record is a copy."""
        for record in evals:
            if not record.get("restored_best") and "val_psnr" in record:
                self.observe(record["step"], record["val_psnr"])

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience
