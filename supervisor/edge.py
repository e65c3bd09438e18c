"""The push edge: routes each RTMP or WHIP publish, by stream key, to its channel's stream actor.

RTMP: the edge relays the publish's FLV bytes to the actor's FLV ingest. WHIP: the edge
hands the offer to the actor, which runs the peer connection and the re-encode itself
(``stream_actor.whip``), so the media's CPU is spent in the process that holds the channel's
stream slot. Rules for both protocols: one publisher per channel at a time, none while the
channel is paused (it has no actor then).
"""
from __future__ import annotations

import asyncio
import logging

import ray

from gateway.rtmp.forward import open_tcp_sink
from gateway.rtmp.server import PublishSink
from records.redact import redact_key
from gateway.whip import WhipRefused
from stream_actor.whip.options import WhipOptions
from stream_actor.whip.sessions import Answer
from records.store import Store
from supervisor.supervisor import NAMESPACE, stream_actor_name

log = logging.getLogger(__name__)

ACTOR_WAIT = 20.0  # a channel registered a moment ago may still be starting its actor
WHIP_START_TIMEOUT = 30.0  # the actor answers the offer: ICE gathering, the sink opened
WHIP_END_TIMEOUT = 20.0


class PublishRouter:
    def __init__(self, store: Store, supervisor: ray.actor.ActorHandle, app: str = "live"):
        self.store = store
        self.supervisor = supervisor
        self.app = app
        self.publishing: set[str] = set()  # channel ids with a publish in progress

    async def __call__(self, app: str, stream_key: str) -> PublishSink | None:
        if app != self.app:
            log.info("refused publish to unknown app %r", app)
            return None
        channel = await self.store.channel_by_stream_key(stream_key)
        if channel is None or channel["source"] != "rtmp":
            log.info("refused publish with unknown stream key %s", redact_key(stream_key))
            return None
        channel_id = channel["id"]
        if channel["paused_at"] is not None:
            log.info("refused publish to paused channel %s", channel_id)
            return None
        if channel_id in self.publishing:
            log.info("refused a second publisher on live channel %s", channel_id)
            return None
        return await self._open(channel_id)

    async def open_for_whip(self, channel_id: str, stream_key: str) -> ActorWhipHost | None:
        """WHIP names the channel in its URL and proves ownership with the key (None: 401)."""
        channel = await self.store.channel_by_stream_key(stream_key)
        if channel is None or channel["id"] != channel_id or channel["source"] != "rtmp":
            return None
        if channel["paused_at"] is not None:
            raise WhipRefused(409, "conflict", "the channel is paused; resume it first")
        if channel_id in self.publishing:
            raise WhipRefused(409, "conflict", "the channel already has a publisher")
        self.publishing.add(channel_id)  # before any await: two racing publishes cannot both pass
        try:
            actor = await self._ready_actor(channel_id, lambda a: a.whip_ready.remote())
        except BaseException:
            self.publishing.discard(channel_id)
            raise
        if actor is None:
            self.publishing.discard(channel_id)
            raise WhipRefused(503, "unavailable", "the channel's stream actor is not ready; retry shortly")
        return ActorWhipHost(actor, lambda: self.publishing.discard(channel_id))

    async def _open(self, channel_id: str) -> PublishSink | None:
        self.publishing.add(channel_id)  # before any await: two racing publishes cannot both pass
        try:
            ticket = await self._ingest_ticket(channel_id)
            if ticket is None:
                log.warning("channel %s has no ready stream actor; publish refused", channel_id)
                self.publishing.discard(channel_id)
                return None
            host, port, token = ticket
            sink = await open_tcp_sink(host, port, token)
            return _ReleasingSink(sink, lambda: self.publishing.discard(channel_id))
        except BaseException:
            self.publishing.discard(channel_id)
            raise

    async def _ingest_ticket(self, channel_id: str) -> tuple[str, int, str] | None:
        """(host, port, one-time token) of the channel's FLV listener, from its stream actor."""
        tickets: list[tuple[str, int, str]] = []

        async def ticket(actor) -> bool:
            if got := await actor.ingest_endpoint.remote():
                tickets.append(tuple(got))
            return bool(got)

        return tickets[-1] if await self._ready_actor(channel_id, ticket) else None

    async def _ready_actor(self, channel_id: str, ready) -> ray.actor.ActorHandle | None:
        """The channel's stream actor once ``await ready(actor)`` is true, or None after
        ``ACTOR_WAIT``; pokes the supervisor once if the actor is missing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACTOR_WAIT
        poked = False
        while loop.time() < deadline:
            try:
                actor = await asyncio.to_thread(ray.get_actor, stream_actor_name(channel_id), NAMESPACE)
                if await asyncio.wait_for(ready(actor), 5):
                    return actor
            except (ValueError, asyncio.TimeoutError, ray.exceptions.RayError):
                if not poked:
                    self.supervisor.reconcile.remote()
                    poked = True
            await asyncio.sleep(0.25)
        return None


class ActorWhipHost:
    """A channel's WHIP sessions, run by its stream actor (``gateway.whip.WhipHost`` over Ray)."""

    def __init__(self, actor: ray.actor.ActorHandle, release) -> None:
        self.actor = actor
        self._release = release

    async def start(self, offer: str, kinds: list[str], ffmpeg: bool, options: WhipOptions) -> Answer:
        return await asyncio.wait_for(self.actor.whip_start.remote(offer, kinds, ffmpeg, options),
                                      WHIP_START_TIMEOUT)

    async def end(self, session_id: str, reason: str) -> None:
        await asyncio.wait_for(self.actor.whip_end.remote(session_id, reason), WHIP_END_TIMEOUT)

    async def wait(self, session_id: str) -> str:
        return await self.actor.whip_wait.remote(session_id)

    def release(self) -> None:
        self._release()


class _ReleasingSink:
    """Forwards to the actor; frees the channel for the next publisher when the publish ends."""

    def __init__(self, sink: PublishSink, release):
        self.sink = sink
        self.release = release

    async def write(self, data: bytes) -> None:
        await self.sink.write(data)

    async def close(self) -> None:
        try:
            await self.sink.close()
        finally:
            self.release()
