"""Socket.IO feed: authenticated subscribers, one Redis relay task, gapless resume.

Each channel's notifications arrive on the Redis stream ``clip_stream_key(channel_id)``, and a
VOD job's (its ``clip`` events and its ``vod`` job events) on ``vod_stream_key(vod_id)``; the
``export`` events of a clip's exports go to its channel's or job's
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
channel) watermark: a channel's clip ids are in commit order (Postgres gives them at commit,
``records.store.Store.commit_clip``), and no clip with an id at or below the highest one a
client was sent (or said it has) is sent to it again. The relay's position in a stream moves
past an entry only once it was emitted.
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

from gateway.auth import Authenticator, admit
from gateway.errors import ApiError
from gateway.signing import UrlSigner
from records.backoff import Backoff
from records.store import Store
from records.vod_store import VodStore
from records.wire import ClipNotification, ExportView, VodJob, clip_stream_key, vod_stream_key

log = logging.getLogger(__name__)

NAMESPACE = "/"
FEED_KEY_HINT = "missing or wrong API key (auth={token: KEY})"
MAX_ID = 100  # longest channel or clip id accepted from a client
CATCH_UP_PAGE = 500
RETRY_MAX = 2.0  # longest wait between reads while Redis is down: the backlog flows this soon after


def room_of(channel_id: str) -> str:
    return f"channel:{channel_id}"


def vod_room(vod_id: str) -> str:
    return f"vod:{vod_id}"


def stream_of(topic: str) -> str:
    """The Redis stream behind a room: a channel's clips, or a VOD job's clips and job events."""
    kind, _, ident = topic.partition(":")
    return vod_stream_key(ident) if kind == "vod" else clip_stream_key(ident)


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


NOTES = {"clip": ClipNotification, "vod": VodJob, "export": ExportView}  # what each kind of notification carries

_VOD_RANK = {"queued": 0, "running": 1, "done": 2, "failed": 2, "cancelled": 2}


def vod_progress(job: dict) -> tuple:
    """A job only moves forward: queued, running (progress and clips grow), then final."""
    return (_VOD_RANK.get(job.get("status"), 0), job.get("progress") or 0.0, job.get("clips") or 0)


@dataclass
class Subscription:
    """One client's subscription to one channel."""

    watermark: str = ""  # highest clip id this client was sent (or told us it has)
    catching_up: bool = True  # live notifications are buffered until catch-up is done
    pending: list[tuple[str, dict]] = field(default_factory=list)
    vod_state: tuple = ()  # the newest VOD job state this client was sent (see vod_progress)

    def take_vod(self, payload: dict) -> bool:
        """True when this job state is not older than the last one sent; a subscribe's
        snapshot can be read before, and sent after, a newer state the relay delivered."""
        state = vod_progress(payload)
        if state < self.vod_state:
            return False
        self.vod_state = state
        return True

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
    def __init__(
        self, auth: Authenticator, store: Store, redis: aioredis.Redis, *, signer: UrlSigner,
        limiter=None, block_ms: int = 5000,
    ):
        self.auth = auth  # connecting needs a key with read scope
        self.signer = signer  # clip media URLs are signed at each emit, never stored signed
        self.limiter = limiter  # gateway.rate_limit.RateLimiter: Socket.IO connects per key/address
        self.store = store
        self.redis = redis
        # XREAD BLOCK must end before the client's own socket timeout (5 s by default in
        # redis-py 8), or every quiet read would fail as a timeout
        socket_timeout = _socket_timeout(redis)
        if socket_timeout:
            block_ms = min(block_ms, max(50, int(socket_timeout * 1000 * 0.6)))
        self.block_ms = block_ms
        self.sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)
        self.subs: dict[str, dict[str, Subscription]] = {}  # room (channel:ID, vod:ID) -> sid -> subscription
        self.follows: dict[str, Follow] = {}  # room -> relay position in its stream
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
        client = (environ.get("asgi.scope") or {}).get("client") or ("unknown",)
        try:
            await admit(self.auth, self.limiter, token, client[0], "read", "connect")
        except ApiError as exc:  # the client sees message CODE and data {"code", "message"}
            message = FEED_KEY_HINT if exc.code == "unauthorized" else exc.message
            raise socketio.exceptions.ConnectionRefusedError(exc.code, {"code": exc.code, "message": message}) from None

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        for topic in [t for t, subs in self.subs.items() if sid in subs]:
            self._drop(sid, topic)

    @staticmethod
    def _topic_of(data: dict) -> tuple[str | None, str | None]:
        """(room, error message) of a subscribe/unsubscribe body: a channel or a VOD job."""
        channel_id, vod_id = data.get("channel_id"), data.get("vod_id")
        if (channel_id is None) == (vod_id is None):
            return None, "give exactly one of channel_id and vod_id"
        ident = channel_id if channel_id is not None else vod_id
        if not isinstance(ident, str) or not ident or len(ident) > MAX_ID:
            return None, f"{'channel_id' if channel_id is not None else 'vod_id'} must be a non-empty string"
        return (room_of(ident) if channel_id is not None else vod_room(ident)), None

    async def _on_subscribe(self, sid: str, data: Any = None) -> dict:
        usage = "subscribe takes {channel_id: str | vod_id: str, last_clip_id?: str}"
        if not isinstance(data, dict):
            return _error("invalid_request", usage)
        last_clip_id = data.get("last_clip_id")
        unknown = set(data) - {"channel_id", "vod_id", "last_clip_id"}
        if unknown:
            return _error("invalid_request", f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
        topic, problem = self._topic_of(data)
        if topic is None:
            return _error("invalid_request", f"{problem}; {usage}")
        if last_clip_id is not None and (not isinstance(last_clip_id, str) or len(last_clip_id) > MAX_ID):
            return _error("invalid_request", "last_clip_id must be a string")
        kind, _, ident = topic.partition(":")
        try:
            if kind == "vod":
                found = await VodStore(self.store.pool).get(ident)
            else:
                found = await self.store.get_channel(ident)
        except Exception:
            log.exception("subscribe: lookup failed")
            return _error("unavailable", "the database is unavailable; retry shortly")
        if found is None:
            return _error("not_found", f"no {'VOD job' if kind == 'vod' else 'channel'} {ident!r}")
        if not self.sio.manager.is_connected(sid, NAMESPACE):
            return _error("disconnected", "the client disconnected")

        # 1. register (catching up) and join the room
        existing = self.subs.get(topic, {}).get(sid)
        sub = Subscription(watermark=max(last_clip_id or "", existing.watermark if existing else ""))
        self.subs.setdefault(topic, {})[sid] = sub
        await self.sio.enter_room(sid, topic, namespace=NAMESPACE)
        try:
            # 2. follow the stream from its current end (unless already followed)
            await self._follow(topic)
            # 3. the clips missed while away, from Postgres
            if last_clip_id:
                after = last_clip_id
                while True:
                    if kind == "vod":
                        missed = await self.store.clips_after(None, after, CATCH_UP_PAGE, vod_id=ident)
                    else:
                        missed = await self.store.clips_after(ident, after, CATCH_UP_PAGE)
                    for clip in missed:
                        if self.subs.get(topic, {}).get(sid) is not sub:
                            return _error("unsubscribed", "unsubscribed while catching up")
                        if sub.take(clip.id):
                            note = self.signer.signed_clip(clip)
                            await self.sio.emit("clip", note, to=sid)
                    if len(missed) < CATCH_UP_PAGE:
                        break
                    after = missed[-1].id
            # 4. what arrived live meanwhile, then live mode
            while sub.pending and self.subs.get(topic, {}).get(sid) is sub:
                batch, sub.pending = sorted(sub.pending, key=lambda p: p[0]), []
                for clip_id, payload in batch:
                    if sub.take(clip_id):
                        await self.sio.emit("clip", payload, to=sid)
            sub.catching_up = False
            if kind == "vod":  # the job as it is now; later changes come as they happen
                from records.vod_store import vod_view

                row = await VodStore(self.store.pool).get(ident)
                snapshot = msgspec.to_builtins(vod_view(row)) if row is not None else None
                if snapshot is not None and sub.take_vod(snapshot):
                    await self.sio.emit("vod", snapshot, to=sid)
        except (RedisError, OSError) as exc:
            log.warning("subscribe %s: redis unavailable: %s", topic, exc)
            await self._drop_if_current(sid, topic, sub)
            return _error("unavailable", "the notification stream is unavailable; retry shortly")
        except Exception:
            log.exception("subscribe %s failed", topic)
            await self._drop_if_current(sid, topic, sub)
            return _error("internal", "subscribe failed")
        return {"ok": True}

    async def _on_unsubscribe(self, sid: str, data: Any = None) -> dict:
        topic, problem = self._topic_of(data) if isinstance(data, dict) else (None, "")
        if topic is None:
            return _error("invalid_request", "unsubscribe takes {channel_id: str} or {vod_id: str}")
        if sid not in self.subs.get(topic, {}):
            return _error("not_found", f"not subscribed to {topic.partition(':')[2]!r}")
        self._drop(sid, topic)
        await self.sio.leave_room(sid, topic, namespace=NAMESPACE)
        return {"ok": True}

    async def _drop_if_current(self, sid: str, topic: str, sub: Subscription) -> None:
        if self.subs.get(topic, {}).get(sid) is sub:
            self._drop(sid, topic)
            await self.sio.leave_room(sid, topic, namespace=NAMESPACE)

    def _drop(self, sid: str, topic: str) -> None:
        subs = self.subs.get(topic)
        if subs is None:
            return
        subs.pop(sid, None)
        if not subs:  # the room is empty: stop following its stream
            del self.subs[topic]
            self.follows.pop(topic, None)

    # -- the relay ----------------------------------------------------------------------
    async def _follow(self, topic: str) -> None:
        if topic in self.follows:
            return
        last = await self.redis.xrevrange(stream_of(topic), count=1)
        start = _text(last[0][0]) if last else "0-0"
        # re-check after the await: someone may have started following meanwhile, or every
        # subscriber may have gone
        if topic not in self.follows and self.subs.get(topic):
            self.follows[topic] = Follow(start)
            self._changed.set()

    async def _relay(self) -> None:
        backoff = Backoff(0.2, RETRY_MAX)
        while True:
            try:
                await self._relay_once()
                if not self.redis_ok:
                    log.info("feed relay: redis is back")
                self.redis_ok = True
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except RedisTimeoutError:
                # a quiet XREAD outlived the client's socket timeout: not an outage, read again
                log.debug("feed relay: read timed out; reading again")
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    log.warning("feed relay: redis unavailable (%s); retrying with backoff", exc)
                self.redis_ok = False
                await asyncio.sleep(backoff.next())
            except Exception:
                log.exception("feed relay failed; restarting")
                await asyncio.sleep(backoff.next())

    async def _relay_once(self) -> None:
        self._changed.clear()
        if not self.follows:
            await self._changed.wait()
            return
        follows = dict(self.follows)
        topics = {stream_of(t): t for t in follows}
        streams = {key: follows[t].last_id for key, t in topics.items()}
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
            topic = topics[_text(key)]
            for entry_id, fields in entries:
                follow = self.follows.get(topic)
                if follow is not follows.get(topic):
                    break  # unfollowed (or re-followed from elsewhere) while we read
                await self._deliver(topic, fields)
                # only now: an entry whose emit failed is read (and emitted) again
                follow.last_id = _text(entry_id)
                self.relayed += 1

    async def _deliver(self, topic: str, fields: dict) -> None:
        raw = fields.get(b"data", fields.get("data"))
        kind = _text(fields.get(b"kind", fields.get("kind", b"clip")))
        try:
            note = msgspec.json.decode(raw, type=NOTES.get(kind, ClipNotification))
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            log.warning("feed relay: skipping a malformed notification on %s: %s", topic, exc)
            return
        payload = msgspec.to_builtins(note)
        if kind == "export":  # a clip export's state: every subscriber, its download link signed
            if payload["download_url"]:
                payload["download_url"] = self.signer.sign(payload["download_url"])
            await self._emit("export", payload, room=topic)
            return
        if kind == "vod":  # the job's state: every subscriber, never one older than it was sent
            subs = self.subs.get(topic, {})
            for sid, _eio_sid in list(self.sio.manager.get_participants(NAMESPACE, topic)):
                sub = subs.get(sid)
                if sub is not None and sub.take_vod(payload):
                    await self._emit("vod", payload, to=sid)
            return
        payload = self.signer.sign_notification(payload)  # fresh signatures, also for a replay
        subs = self.subs.get(topic, {})
        skip, takers = [], []
        for sid, _eio_sid in self.sio.manager.get_participants(NAMESPACE, topic):
            sub = subs.get(sid)
            if sub is None:
                skip.append(sid)
            elif sub.catching_up:
                sub.pending.append((note.id, payload))
                skip.append(sid)
            elif note.id <= sub.watermark:
                skip.append(sid)
            else:
                takers.append(sub)
        await self._emit("clip", payload, room=topic, skip_sid=skip)
        for sub in takers:  # after the emit: a failed one is retried for them
            sub.take(note.id)

    async def _emit(self, event: str, payload: dict, **to) -> None:
        """Every emit of the relay (the one place a failure to send surfaces)."""
        await self.sio.emit(event, payload, namespace=NAMESPACE, **to)
