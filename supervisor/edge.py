"""The push edge: routes each RTMP or WHIP publish, by stream key, to its channel's stream actor.

One rule for both protocols: one publisher per channel at a time.
"""
from __future__ import annotations

import asyncio
import logging

import ray

from gateway.rtmp.forward import open_tcp_sink
from gateway.rtmp.server import PublishSink
from records.redact import redact_key
from gateway.whip import WhipRefused
from records.store import Store
from supervisor.supervisor import NAMESPACE, stream_actor_name

log = logging.getLogger(__name__)

ACTOR_WAIT = 20.0  # a channel registered a moment ago may still be starting its actor


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
        if channel_id in self.publishing:
            log.info("refused a second publisher on live channel %s", channel_id)
            return None
        return await self._open(channel_id)

    async def open_for_whip(self, channel_id: str, stream_key: str) -> PublishSink | None:
        """WHIP names the channel in its URL and proves ownership with the key (None: 401)."""
        channel = await self.store.channel_by_stream_key(stream_key)
        if channel is None or channel["id"] != channel_id or channel["source"] != "rtmp":
            return None
        if channel_id in self.publishing:
            raise WhipRefused(409, "conflict", "the channel already has a publisher")
        sink = await self._open(channel_id)
        if sink is None:
            raise WhipRefused(503, "unavailable", "the channel's stream actor is not ready; retry shortly")
        return sink

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACTOR_WAIT
        poked = False
        while loop.time() < deadline:
            try:
                actor = await asyncio.to_thread(ray.get_actor, stream_actor_name(channel_id), NAMESPACE)
                ticket = await asyncio.wait_for(actor.ingest_endpoint.remote(), 5)
                if ticket:
                    return tuple(ticket)
            except (ValueError, asyncio.TimeoutError, ray.exceptions.RayError):
                if not poked:
                    self.supervisor.reconcile.remote()
                    poked = True
            await asyncio.sleep(0.25)
        return None


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
