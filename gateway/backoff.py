"""Exponential backoff with jitter, shared by the supervisor, the outbox and the handlers."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """``initial * factor**(attempt-1)``, capped at ``maximum``, with symmetric ``jitter``."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        r = random.random() if rand is None else rand
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return max(0.0, min(self.maximum, base * (1 + self.jitter * (2 * r - 1))))
