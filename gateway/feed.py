"""Socket.IO feed: authenticated subscribers, one Redis relay task, gapless resume.

Each channel's notifications arrive on the Redis stream ``clip_stream_key(channel_id)``
(the outbox relay XADDs them after commit, at least once). One relay task follows, with
``XREAD BLOCK``, the streams of the channels that currently have subscribers and emits
each notification to that channel's room.

Subscribing, in this order, leaves no gap:

1. the client is registered for the channel and joins its room, in "catching up" mode:
   live notifications for it are buffered rather than sent;
2. the channel's stream is followed from its current last entry, unless already followed;
3. with ``last_clip_id``, the clips it missed are read from Postgres (oldest first) and sent;
4. the buffered live notifications are sent, and live mode starts.

A notification the relay read before step 1 was XADDed, hence committed, before step 3
read Postgres; one XADDed after reaches the room, which the client is in. Duplicates
(the at-least-once outbox, catch-up overlapping live) are dropped by a per-(client,
channel) watermark: clip ids are time-ordered, and no clip with an id at or below the
highest one a client was sent (or said it has) is sent to it again.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
import socketio
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.auth import key_matches
from records.store import Store
from records.wire import ClipNotification, clip_stream_key

log = logging.getLogger(__name__)

NAMESPACE = "/"
MAX_ID = 100  # longest channel or clip id accepted from a client
CATCH_UP_PAGE = 500
STREAM_PREFIX = clip_stream_key("")
RETRY_MAX = 2.0  # longest wait between reads while Redis is down: the backlog flows this soon after


def room_of(channel_id: str) -> str:
    return f"channel:{channel_id}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _socket_timeout(redis: aioredis.Redis) -> float | None:
    """The read timeout the client's connections use (absent from ``from_url``'s kwargs)."""
    pool = getattr(redis, "connection_pool", None)
    if pool is None:
        return 5.0
    kwargs = pool.connection_kwargs
    if "socket_timeout" in kwargs:
        return kwargs["socket_timeout"]
    for cls in pool.connection_class.__mro__:
        try:
            param = inspect.signature(cls.__init__).parameters.get("socket_timeout")
        except (TypeError, ValueError):
            continue
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return 5.0


def _stream_entries(result: Any) -> list[tuple[Any, list]]:
    """XREAD's reply as [(stream, [(id, fields), ...])], whichever protocol the client speaks."""
    if not result:
        return []
    if isinstance(result, dict):  # RESP3: {stream: [entries]} (or, unified, {stream: entries})
        out = []
        for key, value in result.items():
            if value and isinstance(value[0], list):
                value = value[0]
            out.append((key, value))
        return out
    return [(key, entries) for key, entries in result]


def _error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


@dataclass
class Subscription:
    """One client's subscription to one channel."""

    watermark: str = ""  # highest clip id this client was sent (or told us it has)
    catching_up: bool = True  # live notifications are buffered until catch-up is done
    pending: list[tuple[str, dict]] = field(default_factory=list)

    def take(self, clip_id: str) -> bool:
        """True when ``clip_id`` should go to this client now; advances the watermark."""
        if clip_id <= self.watermark:
            return False
        self.watermark = clip_id
        return True


@dataclass(eq=False)
class Follow:
    """The relay's position in one channel's stream."""

    last_id: str


class Feed:
    def __init__(self, api_key: str, store: Store, redis: aioredis.Redis, *, block_ms: int = 5000):
        self.api_key = api_key
        self.store = store
        self.redis = redis
        # XREAD BLOCK must end before the client's own socket timeout (5 s by default in
        # redis-py 8), or every quiet read would fail as a timeout
        socket_timeout = _socket_timeout(redis)
        if socket_timeout:
            block_ms = min(block_ms, max(50, int(socket_timeout * 1000 * 0.6)))
        self.block_ms = block_ms
        self.sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)
        self.subs: dict[str, dict[str, Subscription]] = {}  # channel_id -> sid -> subscription
        self.follows: dict[str, Follow] = {}  # channel_id -> relay position
        self.relayed = 0  # notifications read from Redis
        self.redis_ok = True
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("subscribe", self._on_subscribe)
        self.sio.on("unsubscribe", self._on_unsubscribe)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._relay(), name="livecut-feed-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self.subs.values())

    # -- Socket.IO handlers ----------------------------------------------------------------
    async def _on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not key_matches(token, self.api_key):
            # the client sees message "unauthorized" and data {"code": "unauthorized", ...}
            raise socketio.exceptions.ConnectionRefusedError(
                "unauthorized", {"code": "unauthorized", "message": "missing or wrong API key (auth={token: KEY})"}
            )

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        for channel_id in [c for c, subs in self.subs.items() if sid in subs]:
            self._drop(sid, channel_id)

    async def _on_subscribe(self, sid: str, data: Any = None) -> dict:
        if not isinstance(data, dict):
            return _error("invalid_request", "subscribe takes {channel_id: str, last_clip_id?: str}")
        channel_id, last_clip_id = data.get("channel_id"), data.get("last_clip_id")
        unknown = set(data) - {"channel_id", "last_clip_id"}
        if unknown:
            return _error("invalid_request", f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
        if not isinstance(channel_id, str) or not channel_id or len(channel_id) > MAX_ID:
            return _error("invalid_request", "channel_id must be a non-empty string")
        if last_clip_id is not None and (not isinstance(last_clip_id, str) or len(last_clip_id) > MAX_ID):
            return _error("invalid_request", "last_clip_id must be a string")
        try:
            channel = await self.store.get_channel(channel_id)
        except Exception:
            log.exception("subscribe: channel lookup failed")
            return _error("unavailable", "the database is unavailable; retry shortly")
        if channel is None:
            return _error("not_found", f"no channel {channel_id!r}")
        if not self.sio.manager.is_connected(sid, NAMESPACE):
            return _error("disconnected", "the client disconnected")

        # 1. register (catching up) and join the room
        existing = self.subs.get(channel_id, {}).get(sid)
        sub = Subscription(watermark=max(last_clip_id or "", existing.watermark if existing else ""))
        self.subs.setdefault(channel_id, {})[sid] = sub
        await self.sio.enter_room(sid, room_of(channel_id), namespace=NAMESPACE)
        try:
            # 2. follow the stream from its current end (unless already followed)
            await self._follow(channel_id)
            # 3. the clips missed while away, from Postgres
            if last_clip_id:
                after = last_clip_id
                while True:
                    missed = await self.store.clips_after(channel_id, after, CATCH_UP_PAGE)
                    for clip in missed:
                        if self.subs.get(channel_id, {}).get(sid) is not sub:
                            return _error("unsubscribed", "unsubscribed while catching up")
                        if sub.take(clip.id):
                            await self.sio.emit("clip", msgspec.to_builtins(clip.notification()), to=sid)
                    if len(missed) < CATCH_UP_PAGE:
                        break
                    after = missed[-1].id
            # 4. what arrived live meanwhile, then live mode
            while sub.pending and self.subs.get(channel_id, {}).get(sid) is sub:
                batch, sub.pending = sorted(sub.pending, key=lambda p: p[0]), []
                for clip_id, payload in batch:
                    if sub.take(clip_id):
                        await self.sio.emit("clip", payload, to=sid)
            sub.catching_up = False
        except (RedisError, OSError) as exc:
            log.warning("subscribe %s: redis unavailable: %s", channel_id, exc)
            await self._drop_if_current(sid, channel_id, sub)
            return _error("unavailable", "the notification stream is unavailable; retry shortly")
        except Exception:
            log.exception("subscribe %s failed", channel_id)
            await self._drop_if_current(sid, channel_id, sub)
            return _error("internal", "subscribe failed")
        return {"ok": True}

    async def _on_unsubscribe(self, sid: str, data: Any = None) -> dict:
        channel_id = data.get("channel_id") if isinstance(data, dict) else None
        if not isinstance(channel_id, str) or not channel_id:
            return _error("invalid_request", "unsubscribe takes {channel_id: str}")
        if sid not in self.subs.get(channel_id, {}):
            return _error("not_found", f"not subscribed to {channel_id!r}")
        self._drop(sid, channel_id)
        await self.sio.leave_room(sid, room_of(channel_id), namespace=NAMESPACE)
        return {"ok": True}

    async def _drop_if_current(self, sid: str, channel_id: str, sub: Subscription) -> None:
        if self.subs.get(channel_id, {}).get(sid) is sub:
            self._drop(sid, channel_id)
            await self.sio.leave_room(sid, room_of(channel_id), namespace=NAMESPACE)

    def _drop(self, sid: str, channel_id: str) -> None:
        subs = self.subs.get(channel_id)
        if subs is None:
            return
        subs.pop(sid, None)
        if not subs:  # the room is empty: stop following its stream
            del self.subs[channel_id]
            self.follows.pop(channel_id, None)

    # -- the relay ----------------------------------------------------------------------
    async def _follow(self, channel_id: str) -> None:
        if channel_id in self.follows:
            return
        key = clip_stream_key(channel_id)
        last = await self.redis.xrevrange(key, count=1)
        start = _text(last[0][0]) if last else "0-0"
        # re-check after the await: someone may have started following meanwhile, or every
        # subscriber may have gone
        if channel_id not in self.follows and self.subs.get(channel_id):
            self.follows[channel_id] = Follow(start)
            self._changed.set()

    async def _relay(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._relay_once()
                if not self.redis_ok:
                    log.info("feed relay: redis is back")
                self.redis_ok = True
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except RedisTimeoutError:
                # a quiet XREAD outlived the client's socket timeout: not an outage, read again
                log.debug("feed relay: read timed out; reading again")
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    log.warning("feed relay: redis unavailable (%s); retrying with backoff", exc)
                self.redis_ok = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
            except Exception:
                log.exception("feed relay failed; restarting")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    async def _relay_once(self) -> None:
        self._changed.clear()
        if not self.follows:
            await self._changed.wait()
            return
        follows = dict(self.follows)
        streams = {clip_stream_key(c): f.last_id for c, f in follows.items()}
        read = asyncio.ensure_future(self.redis.xread(streams, count=100, block=self.block_ms))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            if not read.done():  # a stream was added: read again with the new set
                read.cancel()
                try:
                    await read
                except (asyncio.CancelledError, Exception):
                    pass
        if read.cancelled():
            return
        for key, entries in _stream_entries(read.result()):
            channel_id = _text(key)[len(STREAM_PREFIX):]
            for entry_id, fields in entries:
                follow = self.follows.get(channel_id)
                if follow is not follows.get(channel_id):
                    break  # unfollowed (or re-followed from elsewhere) while we read
                follow.last_id = _text(entry_id)
                self.relayed += 1
                await self._deliver(channel_id, fields)

    async def _deliver(self, channel_id: str, fields: dict) -> None:
        raw = fields.get(b"data", fields.get("data"))
        try:
            note = msgspec.json.decode(raw, type=ClipNotification)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            log.warning("feed relay: skipping a malformed notification on %s: %s", channel_id, exc)
            return
        payload = msgspec.to_builtins(note)
        subs = self.subs.get(channel_id, {})
        skip = []
        for sid, _eio_sid in self.sio.manager.get_participants(NAMESPACE, room_of(channel_id)):
            sub = subs.get(sid)
            if sub is None:
                skip.append(sid)
            elif sub.catching_up:
                sub.pending.append((note.id, payload))
                skip.append(sid)
            elif not sub.take(note.id):
                skip.append(sid)
        await self.sio.emit("clip", payload, room=room_of(channel_id), skip_sid=skip, namespace=NAMESPACE)
