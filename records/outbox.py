"""Outbox relay: moves committed notifications from Postgres to a Redis stream per channel or VOD job.

At least once: a row is marked delivered only after XADD succeeded, so a Redis or Postgres
outage delays delivery but loses nothing; subscribers dedupe by clip id.
"""
from __future__ import annotations

import asyncio
import logging

import asyncpg
import msgspec
import redis.asyncio as aioredis

from records.backoff import Backoff
from records.pg_listen import listen
from records.store import OUTBOX_CHANNEL, Store
from records.wire import clip_stream_key

log = logging.getLogger(__name__)

STREAM_MAXLEN = 10_000  # per channel; Postgres keeps the full history
# Longest wait between retries while Redis or Postgres is down: the backlog must flow within
# about this long once the server is back (a retry is one cheap connection attempt).
RETRY_MAX = 2.0


class OutboxRelay:
    def __init__(self, store: Store, redis: aioredis.Redis, dsn: str, *, poll_interval: float = 1.0):
        self.store = store
        self.redis = redis
        self.dsn = dsn
        self.poll_interval = poll_interval
        self.delivered = 0
        self._wake = asyncio.Event()

    async def drain(self) -> int:
        """Deliver every pending notification, in commit order; returns how many."""
        total = 0
        while rows := await self.store.pending_notifications(limit=200):
            for row in rows:
                await self.redis.xadd(
                    row["stream"] or clip_stream_key(row["channel_id"]),  # rows from before streams were stored
                    {"data": msgspec.json.encode(row["payload"]), "kind": row["kind"]},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            await self.store.mark_delivered([r["id"] for r in rows])
            total += len(rows)
        self.delivered += total
        return total

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        backoff = Backoff(0.5, RETRY_MAX)
        try:
            while not stop.is_set():
                try:
                    await self.drain()
                    backoff.reset()
                except (OSError, asyncpg.PostgresError, aioredis.RedisError, asyncpg.InterfaceError) as exc:
                    delay = backoff.next()
                    log.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                except Exception:  # anything else: the relay must not stop (nothing else delivers)
                    delay = backoff.next()
                    log.exception("outbox relay failed; retrying in %.1fs", delay)
                    await asyncio.sleep(delay)
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            listener.cancel()

    async def _listen(self, stop: asyncio.Event) -> None:
        await listen(self.dsn, OUTBOX_CHANNEL, self._wake, stop)
