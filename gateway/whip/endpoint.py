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

Each accepted offer gets an aiortc peer connection (we answer, receive only, ICE
controlled, DTLS client) and a ``media.MediaPipeline`` that re-encodes what arrives into
the FLV stream the channel's ``PublishSink`` expects; see ``media`` for the media path.  A
session ends on DELETE, on ICE/DTLS failure or close, when the publisher's tracks end, when
no media arrives for ``idle_timeout`` (or none within ``connect_timeout`` of the POST), on a
sink or encoder error, and on ``WhipIngest.close()``.  Its sink is closed exactly once.

The workarounds FFmpeg's WHIP muxer needs are in ``ffmpeg_compat``.

Not supported: trickle ICE and ICE restarts (PATCH -> 405), a UDP port range (aioice binds
an ephemeral port per interface and aiortc has no setting for it), CORS.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from gateway.errors import error_response
from gateway.rtmp.server import PublishSink
from records.redact import redact_key

from . import ffmpeg_compat
from .options import WhipOptions
from .sdp import BadOffer, check_offer, is_ffmpeg_offer
from .session import WhipSession

__all__ = ["OpenChannelSink", "WhipIngest", "WhipOptions", "WhipRefused"]

log = logging.getLogger(__name__)

OpenChannelSink = Callable[[str, str], Awaitable["PublishSink | None"]]
"""``(channel_id, stream key) -> sink``; None refuses (401), or raise ``WhipRefused``."""

SDP = "application/sdp"


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

    def __init__(self, open_sink: OpenChannelSink, options: WhipOptions | None = None) -> None:
        self.open_sink = open_sink
        self.options = options or WhipOptions()
        if self.options.ffmpeg_compat:
            ffmpeg_compat.check_hooks()
        self.sessions: dict[str, WhipSession] = {}
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
        ending = [s.end("server stopping") for s in list(self.sessions.values())]
        if ending:
            await asyncio.gather(*ending, return_exceptions=True)

    def _forget(self, session: WhipSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            self._busy.discard(session.channel_id)

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
        await session.end("deleted by the publisher")
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
        session: WhipSession | None = None
        sink: PublishSink | None = None
        try:
            try:
                sink = await self.open_sink(channel_id, key)
            except WhipRefused as e:
                return error_response(e.status, e.code, e.message, e.headers)
            except Exception:
                log.exception("whip: opening the sink of channel %s failed", channel_id)
                return error_response(503, "unavailable", "the channel cannot take a publish now")
            if sink is None:
                log.info("whip: refused a publish to %s with key %s", channel_id, redact_key(key))
                return _unauthorized("unknown channel or wrong stream key")
            session = WhipSession(self.options, channel_id, key, sink, is_ffmpeg_offer(offer), self._forget)
            try:
                answer = await session.negotiate(offer, kinds)
            except BadOffer as e:
                return error_response(400, "invalid_request", str(e))
            if self._closed:
                return error_response(503, "unavailable", "the WHIP ingest is shutting down")
            if session.ending:
                return error_response(503, "unavailable", f"the session failed at once: {session.reason}")
            self.sessions[session.id] = session
            log.info("whip %s: session started (%s, key %s)%s", session.label,
                     "+".join(sorted(kinds)), redact_key(key), " [FFmpeg compat]" if session.ffmpeg else "")
            location = request.url.path.rstrip("/") + "/" + session.id
            return Response(answer, status_code=201, media_type=SDP,
                            headers={"Location": location, "ETag": f'"{session.id}"'})
        finally:
            if session is None or self.sessions.get(session.id) is not session:
                # Not started: undo everything (the session's end closes pc, pipeline, sink).
                if session is not None:
                    await session.end("refused")
                elif sink is not None:
                    with contextlib.suppress(Exception):
                        await sink.close()
                self._busy.discard(channel_id)
