"""The loop both batch schedulers (VOD jobs, exports) run: a pass over what Postgres says is
to be done, every few seconds or as soon as something wakes it."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_passes(step: Callable[[], Awaitable[None]], wake: asyncio.Event, stop: asyncio.Event,
                     interval: float, name: str) -> None:  # fmt: skip
    """``step()`` until ``stop``: then every ``interval`` seconds, or at once when ``wake`` is
    set. A failing pass is logged and the next one tries again: the work waits in Postgres
    (while it is down, say), and nothing is lost."""
    while not stop.is_set():
        try:
            await step()
        except Exception as exc:
            log.warning("%s: %s", name, exc)
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), interval)
        except asyncio.TimeoutError:
            pass
