"""The WHIP sessions one process hosts: in livecut, the channel's stream actor.

The gateway keeps WHIP's HTTP side (auth, admission, the session URL); the peer connection,
the decode and the libx264/AAC re-encode run here, in the process that holds the channel's
stream slot, so Ray's admission accounts for their CPU. Each session's FLV output goes to a
sink from ``open_sink`` (the actor's own FLV ingest, through a one-time ticket).

Calls come over Ray, so results are plain values: ``start`` answers with an ``Answer``
(never raises for a bad offer), ``wait`` returns why a session ended.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from gateway.rtmp.server import PublishSink

from . import ffmpeg_compat
from .options import WhipOptions
from .sdp import BadOffer
from .session import WhipSession

__all__ = ["Answer", "WhipSessions"]

log = logging.getLogger(__name__)


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """What ``start`` made of an offer: 201 with the session id and the SDP answer; 400 when
    the offer cannot be answered; 503 when the session failed at once."""

    status: int
    session_id: str = ""
    sdp: str = ""
    message: str = ""


class WhipSessions:
    def __init__(self, open_sink: Callable[[], Awaitable[PublishSink]], label: str) -> None:
        self.open_sink = open_sink
        self.label = label
        self.sessions: dict[str, WhipSession] = {}
        self._ended: dict[str, asyncio.Future[str]] = {}

    async def start(self, offer: str, kinds: list[str], ffmpeg: bool, options: WhipOptions) -> Answer:
        if ffmpeg and options.ffmpeg_compat:
            ffmpeg_compat.check_hooks()
        sink = await self.open_sink()
        session = WhipSession(options, self.label, sink, ffmpeg, self._forget)
        self._ended[session.id] = asyncio.get_running_loop().create_future()
        self.sessions[session.id] = session
        try:
            sdp = await session.negotiate(offer, kinds)
        except BadOffer as e:
            await session.end("refused")
            return Answer(status=400, message=str(e))
        except BaseException:
            await asyncio.shield(session.end("refused"))
            raise
        if session.ending:
            return Answer(status=503, message=f"the session failed at once: {session.reason}")
        return Answer(status=201, session_id=session.id, sdp=sdp)

    def _forget(self, session: WhipSession) -> None:
        self.sessions.pop(session.id, None)
        ended = self._ended.pop(session.id, None)
        if ended is not None and not ended.done():
            ended.set_result(session.reason)

    async def end(self, session_id: str, reason: str) -> None:
        """End a session (its sink closed when this returns); unknown ids are ignored."""
        if (session := self.sessions.get(session_id)) is not None:
            await session.end(reason)

    async def wait(self, session_id: str) -> str:
        """Why the session ended, once it has (at once for an unknown id)."""
        ended = self._ended.get(session_id)
        if ended is None:
            return "no such session"
        return await asyncio.shield(ended)

    async def close(self, reason: str) -> None:
        ending = [s.end(reason) for s in list(self.sessions.values())]
        if ending:
            await asyncio.gather(*ending, return_exceptions=True)
