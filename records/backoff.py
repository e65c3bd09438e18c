"""Exponential backoff: the one implementation every retry loop in livecut uses."""
from __future__ import annotations

import threading


class Backoff:
    """Delays from ``first``, doubling up to ``cap``. ``next()`` gives the delay to wait now;
    ``wait(stop)`` waits it, interruptibly, and returns False if stopped; ``reset()`` after a
    success."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap = first, cap
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def nth(self, n: int) -> float:
        """The delay ``next()`` gives the ``n``-th time after a reset (0-based), without
        changing state: for retry schedules kept in a database row (an attempt count)."""
        return self.first if n <= 0 else min(self.first * 2.0 ** min(n, 64), self.cap)

    def wait(self, stop: threading.Event) -> bool:
        return not stop.wait(self.next())
