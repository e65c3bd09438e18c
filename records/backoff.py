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

    def wait(self, stop: threading.Event) -> bool:
        return not stop.wait(self.next())
