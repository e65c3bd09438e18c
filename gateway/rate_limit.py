"""Request rate limits, counted in Redis with the ``limits`` library (a moving one-minute window).

Three buckets, each "requests per minute per caller": ``api`` (the REST API), ``media``
(clip video and thumbnails, tus upload chunks) and ``connect`` (Socket.IO connections). A
caller is a key id once a key is known, else the client's address. Counting in Redis lets
every gateway behind one address share the budget. Over the limit: 429 ``rate_limited``
with ``Retry-After``. When Redis does not answer, requests pass (with a warning): the API
stays up on Postgres alone rather than failing on its rate limiter.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Annotated

import msgspec
import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from gateway.errors import ApiError

log = logging.getLogger(__name__)

PerMinute = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
KEY_PREFIX = "livecut:ratelimit"
WARN_EVERY = 60.0  # seconds between two "Redis unavailable" warnings


class RateLimits(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    api: PerMinute = 100  # REST requests per minute per key (or per address without one)
    media: PerMinute = 1200  # media and upload requests (a video element makes several Range requests)
    connect: PerMinute = 120  # Socket.IO connections


def rate_limited(retry_after: int) -> ApiError:
    return ApiError(
        429, "rate_limited", f"too many requests; retry in {retry_after} s", {"Retry-After": str(retry_after)}
    )


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, limits: RateLimits):
        self.limits = msgspec.convert(msgspec.to_builtins(limits), RateLimits)  # checks the bounds
        # the app's own Redis connection pool: no second client configuration to keep in step
        self.storage = RedisStorage(
            "async+redis://", implementation="redispy", key_prefix=KEY_PREFIX,
            connection_pool=redis.connection_pool,
        )
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.items = {name: RateLimitItemPerMinute(getattr(self.limits, name)) for name in ("api", "media", "connect")}
        self._warned_at = -math.inf

    async def retry_after(self, bucket: str, who: str) -> int | None:
        """None when this request may go ahead (and is counted), else seconds to wait."""
        item = self.items[bucket]
        try:
            if await self.strategy.hit(item, bucket, who):
                return None
            stats = await self.strategy.get_window_stats(item, bucket, who)
        except (RedisError, OSError, StorageError) as exc:
            now = time.monotonic()
            if now - self._warned_at > WARN_EVERY:
                self._warned_at = now
                log.warning("rate limits not enforced: redis unavailable (%s)", exc)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, bucket: str, who: str) -> None:
        """Count one request of ``who`` in ``bucket``; raise 429 past the limit."""
        wait = await self.retry_after(bucket, who)
        if wait is not None:
            raise rate_limited(wait)
