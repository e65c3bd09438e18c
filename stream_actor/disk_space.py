"""The free-space low-water mark of a stream actor's data dir.

Below ``min_free`` bytes free, the actor refuses new clips (the moment is logged as lost, with
the reason), shows the status ``degraded`` with that reason, and shrinks its ring buffer to a
clip's pre-roll; clips already committed are never touched. Above it again, all is back to
normal. ``DiskWatch.check`` is one ``statvfs`` (cheap, run off the event loop), at most every
``interval`` seconds.
"""
from __future__ import annotations

import asyncio
import os
import time

__all__ = ["DiskWatch", "low_space_reason"]

MiB = 1024 * 1024
CHECK_INTERVAL = 2.0


def low_space_reason(free: int, min_free: int) -> str:
    """Why the disk counts as low ("" when it does not)."""
    if free >= min_free:
        return ""
    return f"disk low: {free // MiB} MiB free < {min_free // MiB} MiB (--min-free-bytes)"


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system. Blocking."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskWatch:
    def __init__(self, path: str, min_free: int, interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self.min_free = min_free
        self.interval = interval
        self.reason = ""  # set while the disk is low
        self.free: int | None = None
        self._checked = float("-inf")

    async def check(self) -> bool | None:
        """Measure (unless measured less than ``interval`` ago): True when the disk just went
        low, False when it just recovered, None when nothing changed."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return None
        self._checked = now
        self.free = await asyncio.to_thread(free_bytes, self.path)
        was_low, self.reason = bool(self.reason), low_space_reason(self.free, self.min_free)
        if bool(self.reason) == was_low:
            return None
        return not was_low
