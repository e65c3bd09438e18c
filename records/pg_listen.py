"""Wake a polling loop at once on a Postgres NOTIFY, so it need not wait for its next poll."""
from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger(__name__)


async def listen(dsn: str, channel: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """LISTEN on ``channel`` and set ``wake`` on each notification until ``stop``. A lost
    connection is retried quietly: the caller's poll loop still does the work meanwhile."""
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.add_listener(channel, lambda *_: wake.set())
                while not stop.is_set() and not conn.is_closed():
                    await asyncio.sleep(1.0)
            finally:
                await conn.close(timeout=2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("listening on %s: %s", channel, exc)
            await asyncio.sleep(2.0)
