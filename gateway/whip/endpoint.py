"""WHIP ingest (WebRTC-HTTP Ingestion Protocol, RFC 9725): the HTTP resource and its sessions.

    POST   /whip/{channel_id}               Authorization: Bearer <stream key>
                                            Content-Type: application/sdp, body: the offer
           -> 201, body: the SDP answer, Location: /whip/{channel_id}/{session_id}, ETag
    DELETE /whip/{channel_id}/{session_id}  (same bearer) -> 200, the session ends
    PATCH  /whip/{channel_id}/{session_id}  -> 405: no trickle ICE, no ICE restart
    OPTIONS /whip/{channel_id}              -> 204, Accept-Post: application/sdp

OBS 30+: Settings -> Stream -> Service "WHIP", Server ``http://HOST:8000/whip/CHANNEL_ID``,
Bearer Token = the channel's stream key.  FFmpeg 8+: ``-f whip -authorization KEY
http://HOST:8000/whip/CHANNEL_ID``.

Each accepted offer goes to the channel's ``WhipHost`` (its stream actor in livecut), which
answers it and runs the peer connection (aiortc: receive only, ICE controlled, DTLS client)
and the re-encode to FLV there (``stream_actor.whip``): the media never passes through this
process. The endpoint keeps the session's URL, key and host, and forgets the session when
the host reports it ended (or the host is gone).

Not supported: trickle ICE and ICE restarts (PATCH -> 405), a UDP port range (aioice binds
an ephemeral port per interface and aiortc has no setting for it), CORS.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from gateway.errors import error_response
from records.redact import redact_key
from stream_actor.whip import ffmpeg_compat
from stream_actor.whip.options import WhipOptions
from stream_actor.whip.sdp import BadOffer, check_offer, is_ffmpeg_offer
from stream_actor.whip.sessions import Answer

__all__ = ["OpenChannelHost", "WhipHost", "WhipIngest", "WhipOptions", "WhipRefused"]

log = logging.getLogger(__name__)

SDP = "application/sdp"
END_TIMEOUT = 30.0  # a host's end() closes the peer connection, the pipeline and the sink


class WhipHost(Protocol):
    """Where one channel's sessions run (``stream_actor.whip.WhipSessions``, or a stream
    actor reached over Ray)."""

    async def start(self, offer: str, kinds: list[str], ffmpeg: bool, options: WhipOptions) -> Answer: ...

    async def end(self, session_id: str, reason: str) -> None: ...

    async def wait(self, session_id: str) -> str:  # why it ended, once it has
        ...

    def release(self) -> None:  # the channel is free for its next publisher
        ...


OpenChannelHost = Callable[[str, str], Awaitable["WhipHost | None"]]
"""``(channel_id, stream key) -> host``; None refuses (401), or raise ``WhipRefused``."""


@dataclass(eq=False)
class _Session:
    id: str
    channel_id: str
    key: str
    host: WhipHost
    watcher: asyncio.Task | None = field(default=None, repr=False)


class WhipRefused(Exception):
    """Raise from ``open_sink`` to refuse a publish with a specific answer, e.g.
    ``WhipRefused(404, "not_found", "no such channel")`` or ``WhipRefused(409, "conflict",
    "the channel is already live")``.  Returning None answers 401."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def _unauthorized(message: str) -> JSONResponse:
    return error_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class WhipIngest:
    """The WHIP endpoint.  ``router`` goes into the gateway app; ``close()`` ends every
    session (and closes its sink)."""

    def __init__(self, open_host: OpenChannelHost, options: WhipOptions | None = None) -> None:
        self.open_host = open_host
        self.options = options or WhipOptions()
        if self.options.ffmpeg_compat:
            ffmpeg_compat.check_hooks()  # fail at start, not at the first FFmpeg publisher
        self.sessions: dict[str, _Session] = {}
        self._busy: set[str] = set()  # channels with a session, or a POST in progress
        self._closed = False
        self.router = APIRouter()
        self.router.add_api_route("/whip/{channel_id}", self._post, methods=["POST"], include_in_schema=False)
        self.router.add_api_route("/whip/{channel_id}", self._options, methods=["OPTIONS"], include_in_schema=False)
        self.router.add_api_route("/whip/{channel_id}/{session_id}", self._delete, methods=["DELETE"],
                                  include_in_schema=False)
        self.router.add_api_route("/whip/{channel_id}/{session_id}", self._patch, methods=["PATCH"],
                                  include_in_schema=False)

    async def close(self) -> None:
        """Refuse new sessions and end the live ones (their sinks closed)."""
        self._closed = True
        live = list(self.sessions.values())
        if live:
            await asyncio.gather(*(self._end(s, "server stopping") for s in live), return_exceptions=True)

    async def _end(self, session: _Session, reason: str) -> None:
        try:
            async with asyncio.timeout(END_TIMEOUT):
                await session.host.end(session.id, reason)
        except Exception as e:
            log.warning("whip %s: ending session %s: %s", session.channel_id, session.id[:6], type(e).__name__)
        self._forget(session)

    def _forget(self, session: _Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            self._busy.discard(session.channel_id)
            session.host.release()
            if session.watcher is not None and session.watcher is not asyncio.current_task():
                session.watcher.cancel()

    async def _watch(self, session: _Session) -> None:
        try:
            reason = await session.host.wait(session.id)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the host is gone (its actor died): so is the session
            reason = f"its host is gone ({type(e).__name__})"
        log.info("whip %s: session %s ended: %s", session.channel_id, session.id[:6], reason)
        self._forget(session)

    # ------------------------------------------------------------ routes

    async def _options(self, channel_id: str) -> Response:
        return Response(status_code=204, headers={"Accept-Post": SDP, "Allow": "POST, OPTIONS"})

    async def _patch(self, channel_id: str, session_id: str) -> Response:
        return error_response(405, "method_not_allowed", "trickle ICE and ICE restarts are not supported",
                      {"Allow": "DELETE"})

    async def _delete(self, channel_id: str, session_id: str, request: Request) -> Response:
        session = self.sessions.get(session_id)
        if session is None or session.channel_id != channel_id:
            return error_response(404, "not_found", "no such WHIP session")
        key = _bearer(request)
        if key is None or not hmac.compare_digest(key.encode(), session.key.encode()):
            return _unauthorized("missing or wrong bearer token")
        await self._end(session, "deleted by the publisher")
        return Response(status_code=200)

    async def _post(self, channel_id: str, request: Request) -> Response:
        if self._closed:
            return error_response(503, "unavailable", "the WHIP ingest is shutting down")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != SDP:
            return error_response(415, "unsupported_media_type", "the body must be an SDP offer (Content-Type: application/sdp)")
        key = _bearer(request)
        if key is None:
            return _unauthorized("missing bearer token (the channel's stream key)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.options.max_offer_bytes:
                return error_response(413, "payload_too_large", "the SDP offer is too large")
        try:
            offer = body.decode("utf-8")
            kinds = check_offer(offer)
        except UnicodeDecodeError:
            return error_response(400, "invalid_request", "the SDP offer is not UTF-8")
        except BadOffer as e:
            return error_response(400, "invalid_request", str(e))
        if channel_id in self._busy:
            return error_response(409, "conflict", "the channel already has a WHIP session")
        if len(self._busy) >= self.options.max_sessions:
            return error_response(503, "unavailable", "too many WHIP sessions")

        self._busy.add(channel_id)  # before any await: two racing POSTs cannot both pass
        host: WhipHost | None = None
        session: _Session | None = None
        try:
            try:
                host = await self.open_host(channel_id, key)
            except WhipRefused as e:
                return error_response(e.status, e.code, e.message, e.headers)
            except Exception:
                log.exception("whip: finding the session host of channel %s failed", channel_id)
                return error_response(503, "unavailable", "the channel cannot take a publish now")
            if host is None:
                log.info("whip: refused a publish to %s with key %s", channel_id, redact_key(key))
                return _unauthorized("unknown channel or wrong stream key")
            try:
                answer = await host.start(offer, kinds, is_ffmpeg_offer(offer), self.options)
            except Exception as e:
                log.warning("whip %s: the session host failed: %s", channel_id, e)
                return error_response(503, "unavailable", "the channel cannot take a publish now")
            if answer.status == 400:
                return error_response(400, "invalid_request", answer.message)
            if answer.status != 201:
                return error_response(503, "unavailable", answer.message)
            session = _Session(answer.session_id, channel_id, key, host)
            self.sessions[session.id] = session
            if self._closed:
                await self._end(session, "server stopping")
                return error_response(503, "unavailable", "the WHIP ingest is shutting down")
            session.watcher = asyncio.get_running_loop().create_task(self._watch(session))
            log.info("whip %s/%s: session started (%s, key %s)%s", channel_id, session.id[:6],
                     "+".join(sorted(kinds)), redact_key(key), " [FFmpeg compat]" if is_ffmpeg_offer(offer) else "")
            location = request.url.path.rstrip("/") + "/" + session.id
            return Response(answer.sdp, status_code=201, media_type=SDP,
                            headers={"Location": location, "ETag": f'"{session.id}"'})
        finally:
            if session is None:  # not started: the channel is free again
                self._busy.discard(channel_id)
                if host is not None:
                    with contextlib.suppress(Exception):
                        host.release()
