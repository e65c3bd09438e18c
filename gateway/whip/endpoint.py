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

Interop with FFmpeg's WHIP muxer (recognised by ``s=FFmpegPublishSession`` in the offer)
needs three workarounds, all on by default (``ffmpeg_compat``), each for a defect on
FFmpeg's side that was traced on the wire:

1. FFmpeg builds on GnuTLS (PyAV's wheels, and distributions that build FFmpeg against
   GnuTLS) make their DTLS certificate with ``gnutls_sec_param_to_pk_bits(GNUTLS_PK_ECDSA,
   GNUTLS_SEC_PARAM_MEDIUM)``, i.e. an ECDSA **P-224** key, and FFmpeg offers
   ``a=setup:passive``, so it is the DTLS server and signs its ServerKeyExchange with that
   key.  In DTLS 1.2, OpenSSL (the one aiortc uses via pyOpenSSL/cryptography, 3.5+/4.x)
   only accepts a peer ECDSA key whose curve is one of its own supported groups
   (``tls12_check_peer_sigalg`` -> ``tls1_check_group_id``), and P-224 is no longer a TLS
   group at all there (RFC 8422 deprecated it; OpenSSL now builds without it): the client
   aborts with ``wrong curve`` and a fatal ``illegal_parameter`` alert.  DTLS 1.0 has no
   signature_algorithms and OpenSSL's legacy path has no curve check, and GnuTLS accepts
   DTLS 1.0, so for these offers our ClientHello offers DTLS 1.0 only, with the
   ECDHE-ECDSA CBC suites (``ffmpeg_dtls="1.0"``).  FFmpeg built on OpenSSL uses P-256 and
   refuses DTLS 1.0 (OpenSSL's default security level); set ``ffmpeg_dtls="1.2"`` for it.
2. FFmpeg answers no STUN binding requests once its handshake is done, so aiortc's ICE
   consent freshness checks (RFC 7675) fail and aioice closes the connection after ~30 s.
   For FFmpeg sessions they are switched off; the media idle timeout detects a dead peer.
3. FFmpeg consumes the first DTLS datagram it receives (the one that tells it the handshake
   started) without handing it to its TLS library, which then waits for the ClientHello
   retransmission: 1 s of OpenSSL's timer.  For FFmpeg sessions the first DTLS datagram is
   sent a second time 50 ms later.

Not supported: trickle ICE and ICE restarts (PATCH -> 405), a UDP port range (aioice binds
an ephemeral port per interface and aiortc has no setting for it), CORS.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.sdp import SessionDescription
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from gateway.rtmp.server import PublishSink, redact_key

from .media import MediaPipeline

__all__ = ["OpenChannelSink", "WhipIngest", "WhipOptions", "WhipRefused"]

log = logging.getLogger(__name__)

OpenChannelSink = Callable[[str, str], Awaitable["PublishSink | None"]]
"""``(channel_id, stream key) -> sink``; None refuses (401), or raise ``WhipRefused``."""

SDP = "application/sdp"
SINK_CLOSE_TIMEOUT = 10.0
PC_CLOSE_TIMEOUT = 10.0
FFMPEG_HELLO_REPEAT = 0.05
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


class WhipOptions(msgspec.Struct, kw_only=True, frozen=True):
    """Settings of the WHIP ingest.  Every field has a working default."""

    # --- network
    public_ip: str | None = None
    """An address to advertise, first, as a host candidate of the answer (and in its
    ``c=`` line): the public IP of a 1:1 NAT (a cloud VM's elastic/public IP).  aioice
    binds a random UDP port on every interface, and the NAT must forward that same port,
    so open the ephemeral UDP range to the host.  FFmpeg only ever tries the first
    candidate, so this is what makes it work from outside the NAT."""
    ice_servers: list[str] = []
    """STUN URLs (``stun:host:port``) for server-reflexive candidates.  None by default:
    aiortc would otherwise ask a public Google STUN server."""

    # --- media (see media.py)
    video_bitrate: int = 2_500_000
    audio_bitrate: int = 128_000
    keyframe_interval: float = 2.0
    x264_preset: str = "veryfast"
    max_width: int = 1920
    max_height: int = 1080
    """Frames larger than this are scaled down (aspect kept); others keep their size."""
    encoder_threads: int = 0
    """libx264 threads per session; 0 lets x264 decide."""
    max_queued_video_frames: int = 8
    """Decoded frames waiting for the encoder; beyond this the oldest is dropped."""
    max_queued_audio_frames: int = 50
    sink_write_timeout: float = 10.0

    # --- sessions
    max_sessions: int = 16
    max_offer_bytes: int = 64 * 1024
    connect_timeout: float = 15.0
    """From the POST to the first output (ICE, DTLS, first video frame)."""
    idle_timeout: float = 10.0
    """No media for this long ends a session (a publisher that vanished)."""

    # --- FFmpeg WHIP muxer interop (see the module docstring)
    ffmpeg_compat: bool = True
    ffmpeg_dtls: Literal["1.0", "1.2"] = "1.0"

    def __post_init__(self) -> None:
        if self.public_ip is not None:
            ipaddress.ip_address(self.public_ip)  # ValueError on garbage
        for url in self.ice_servers:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"ice_servers takes STUN URLs, not {url!r}")
        if self.video_bitrate <= 0 or self.audio_bitrate <= 0:
            raise ValueError("bitrates must be positive")
        if not 0.1 <= self.keyframe_interval <= 60:
            raise ValueError("keyframe_interval must be within 0.1..60 s")
        if self.x264_preset not in X264_PRESETS:
            raise ValueError(f"x264_preset must be one of {', '.join(X264_PRESETS)}")
        if self.max_width < 16 or self.max_height < 16:
            raise ValueError("max_width and max_height must be at least 16")
        if self.ffmpeg_dtls not in ("1.0", "1.2"):
            raise ValueError('ffmpeg_dtls must be "1.0" or "1.2"')
        if min(self.connect_timeout, self.idle_timeout, self.sink_write_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_sessions < 1 or self.max_offer_bytes < 256:
            raise ValueError("max_sessions >= 1 and max_offer_bytes >= 256")


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


class _BadOffer(Exception):
    """The offer cannot be answered: 400 invalid_request with this message."""


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _unauthorized(message: str) -> JSONResponse:
    return _error(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def is_ffmpeg_offer(offer: str) -> bool:
    """FFmpeg's WHIP muxer: ``o=FFmpeg ...`` and ``s=FFmpegPublishSession``."""
    for line in offer.splitlines()[:4]:
        if line.startswith("o=FFmpeg ") or line.strip() == "s=FFmpegPublishSession":
            return True
    return False


def check_offer(offer: str) -> list[str]:
    """The media kinds an offer sends, or ``_BadOffer`` saying why it is unusable."""
    if not offer.startswith("v=0"):
        raise _BadOffer("not an SDP offer (it must start with v=0)")
    try:
        desc = SessionDescription.parse(offer)
    except Exception as e:  # aiortc's parser raises whatever the text provokes
        raise _BadOffer(f"unparseable SDP: {type(e).__name__}") from None
    kinds = []
    for media in desc.media:
        if media.kind not in ("audio", "video") or media.port == 0:
            continue
        if media.direction not in (None, "sendonly", "sendrecv"):
            continue
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise _BadOffer(f"{media.kind} section without ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise _BadOffer(f"{media.kind} section without a DTLS fingerprint")
        kinds.append(media.kind)
    if not kinds:
        raise _BadOffer("the offer sends no audio or video")
    if kinds.count("audio") > 1 or kinds.count("video") > 1:
        raise _BadOffer("at most one audio and one video track")
    return kinds


def rewrite_answer(sdp: str, public_ip: str | None) -> str:
    """Candidates in the order WHIP clients that try only the first one need: the public
    IP first (when configured), then IPv4 host candidates, then the rest."""
    lines = sdp.split("\r\n")
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        cands = [ln for ln in section if ln.startswith("a=candidate:")]
        if not cands:
            out.extend(section)
            return

        def v6(line: str) -> bool:
            parts = line.split()
            return len(parts) > 4 and ":" in parts[4]

        ordered = sorted(cands, key=v6)
        extra = []
        if public_ip is not None:
            for line in ordered:
                parts = line.split()
                if len(parts) >= 8 and parts[2].lower() == "udp" and parts[7] == "host" and not v6(line):
                    parts[0] = "a=candidate:livecutpublic"
                    parts[4] = public_ip
                    extra.append(" ".join(parts))
                    break
        ordered = extra + ordered
        first = True
        for line in section:
            if line.startswith("a=candidate:"):
                if first:
                    out.extend(ordered)
                    first = False
            elif line.startswith("c=IN ") and extra:
                fam = "IP6" if ":" in public_ip else "IP4"
                out.append(f"c=IN {fam} {public_ip}")
            else:
                out.append(line)

    for line in lines:
        if line.startswith("m=") and section:
            flush()
            section = []
        section.append(line)
    flush()
    return "\r\n".join(out)


class _Dtls10Certificate(RTCCertificate):
    """aiortc's certificate, with a DTLS context that only speaks DTLS 1.0 (see the module
    docstring, item 1).  The key, the certificate and so the fingerprint are unchanged."""

    def _create_ssl_context(self, srtp_profiles):  # noqa: ANN001 - aiortc's signature
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_max_proto_version(0xFEFF)  # DTLS1_VERSION
        # SECLEVEL=0: DTLS 1.0 signs with ECDSA-SHA1, which OpenSSL refuses above level 0.
        ctx.set_cipher_list(b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0")
        return ctx


def _use_dtls10(pc: RTCPeerConnection) -> bool:
    certs = getattr(pc, "_RTCPeerConnection__certificates", None)
    if not certs:
        log.warning("whip: cannot switch this aiortc version to DTLS 1.0; FFmpeg/GnuTLS publishers will fail")
        return False
    cert = certs[0]
    pc._RTCPeerConnection__certificates = [_Dtls10Certificate(cert._key, cert._cert)]
    return True


async def _no_consent_checks() -> None:
    return None


class _Session:
    def __init__(self, ingest: WhipIngest, channel_id: str, key: str, sink: PublishSink, ffmpeg: bool) -> None:
        self.ingest = ingest
        self.options = ingest.options
        self.channel_id = channel_id
        self.id = secrets.token_urlsafe(16)
        self.key = key
        self.sink = sink
        self.ffmpeg = ffmpeg
        self.label = f"{channel_id}/{self.id[:6]}"
        servers = [RTCIceServer(urls=u) for u in self.options.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pipeline: MediaPipeline | None = None
        self.tracks: list[MediaStreamTrack] = []
        self.tasks: set[asyncio.Task] = set()
        self.created = time.monotonic()
        self.last_frame: float | None = None
        self.readers = 0
        self.tracks_ended = 0
        self.reason = ""
        self._ending: asyncio.Task | None = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def negotiate(self, offer: str, kinds: list[str]) -> str:
        pc = self.pc
        if self.ffmpeg and self.options.ffmpeg_compat and self.options.ffmpeg_dtls == "1.0":
            _use_dtls10(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks.append(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.debug("whip %s: connection %s", self.label, state)
            if state == "failed":
                self.end("ICE/DTLS failed")
            elif state == "closed":
                self.end("the connection closed")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except (ValueError, TypeError, KeyError, IndexError, AssertionError) as e:
            raise _BadOffer(f"cannot answer this offer: {e or type(e).__name__}") from None
        local = pc.localDescription.sdp
        has = {m.kind for m in SessionDescription.parse(local).media
               if m.kind in kinds and m.port != 0 and m.rtp.codecs and m.direction in ("recvonly", "sendrecv")}
        if not has:
            raise _BadOffer("no supported codec: video H.264 or VP8, audio Opus, PCMU or PCMA")
        if self.ffmpeg and self.options.ffmpeg_compat:
            self._ffmpeg_transport_fixes()
        self.pipeline = MediaPipeline(
            self.sink, self.options, has_video="video" in has, has_audio="audio" in has,
            label=self.label, on_failure=lambda reason: self.end(reason),
        )
        self.pipeline.start()
        for track in self.tracks:
            if track.kind in has:
                self.readers += 1
                self._spawn(self._read(track))
        self._spawn(self._watch())
        return rewrite_answer(local, self.options.public_ip)

    def _ffmpeg_transport_fixes(self) -> None:
        seen = set()
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            ice = getattr(dtls, "transport", None)
            if ice is None or id(ice) in seen:
                continue
            seen.add(id(ice))
            conn = getattr(ice, "_connection", None)
            if conn is not None and hasattr(conn, "query_consent"):
                conn.query_consent = _no_consent_checks  # item 2 of the module docstring
            send = getattr(ice, "_send", None)
            if send is not None:
                ice._send = self._repeat_first_dtls(send)  # item 3

    def _repeat_first_dtls(self, send):
        repeated = False

        async def wrapper(data: bytes) -> None:
            nonlocal repeated
            await send(data)
            if not repeated and data and 19 < data[0] < 64:
                repeated = True

                async def again() -> None:
                    await asyncio.sleep(FFMPEG_HELLO_REPEAT)
                    with contextlib.suppress(Exception):
                        await send(data)

                self._spawn(again())

        return wrapper

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.last_frame = time.monotonic()
                if self.pipeline is not None:
                    self.pipeline.push(frame)
        except MediaStreamError:
            self.tracks_ended += 1
            if self.tracks_ended >= self.readers:
                self.end("the publisher stopped sending")
        except Exception:
            log.exception("whip %s: reading the %s track failed", self.label, track.kind)
            self.end(f"{track.kind} track error")

    async def _watch(self) -> None:
        o = self.options
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            started = self.pipeline is not None and self.pipeline.stats.first_bytes_at is not None
            if not started and now - self.created > o.connect_timeout:
                self.end(f"no media within {o.connect_timeout:g} s")
                return
            if self.last_frame is not None and now - self.last_frame > o.idle_timeout:
                self.end(f"no media for {o.idle_timeout:g} s")
                return

    @property
    def ending(self) -> bool:
        return self._ending is not None

    def end(self, reason: str) -> asyncio.Task:
        """End the session (idempotent); the task completes once the sink is closed."""
        if self._ending is None:
            self.reason = reason
            self._ending = asyncio.get_running_loop().create_task(self._finish())
        return self._ending

    async def _finish(self) -> None:
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        try:
            async with asyncio.timeout(PC_CLOSE_TIMEOUT):
                await self.pc.close()
        except Exception as e:
            log.warning("whip %s: closing the peer connection: %s", self.label, type(e).__name__)
        if self.pipeline is not None:
            await self.pipeline.close()
        try:
            async with asyncio.timeout(SINK_CLOSE_TIMEOUT):
                await self.sink.close()
        except Exception as e:
            log.warning("whip %s: closing the sink: %s", self.label, type(e).__name__)
        self.ingest._forget(self)
        stats = self.pipeline.stats.summary() if self.pipeline is not None else {}
        log.info("whip %s: session ended (%s) after %.1f s; %s",
                 self.label, self.reason, time.monotonic() - self.created, stats)


class WhipIngest:
    """The WHIP endpoint.  ``router`` goes into the gateway app; ``close()`` ends every
    session (and closes its sink)."""

    def __init__(self, open_sink: OpenChannelSink, options: WhipOptions | None = None) -> None:
        self.open_sink = open_sink
        self.options = options or WhipOptions()
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
        ending = [s.end("server stopping") for s in list(self.sessions.values())]
        if ending:
            await asyncio.gather(*ending, return_exceptions=True)

    def _forget(self, session: _Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            self._busy.discard(session.channel_id)

    # ------------------------------------------------------------ routes

    async def _options(self, channel_id: str) -> Response:
        return Response(status_code=204, headers={"Accept-Post": SDP, "Allow": "POST, OPTIONS"})

    async def _patch(self, channel_id: str, session_id: str) -> Response:
        return _error(405, "method_not_allowed", "trickle ICE and ICE restarts are not supported",
                      {"Allow": "DELETE"})

    async def _delete(self, channel_id: str, session_id: str, request: Request) -> Response:
        session = self.sessions.get(session_id)
        if session is None or session.channel_id != channel_id:
            return _error(404, "not_found", "no such WHIP session")
        key = _bearer(request)
        if key is None or not hmac.compare_digest(key.encode(), session.key.encode()):
            return _unauthorized("missing or wrong bearer token")
        await session.end("deleted by the publisher")
        return Response(status_code=200)

    async def _post(self, channel_id: str, request: Request) -> Response:
        if self._closed:
            return _error(503, "unavailable", "the WHIP ingest is shutting down")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != SDP:
            return _error(415, "unsupported_media_type", "the body must be an SDP offer (Content-Type: application/sdp)")
        key = _bearer(request)
        if key is None:
            return _unauthorized("missing bearer token (the channel's stream key)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.options.max_offer_bytes:
                return _error(413, "payload_too_large", "the SDP offer is too large")
        try:
            offer = body.decode("utf-8")
            kinds = check_offer(offer)
        except UnicodeDecodeError:
            return _error(400, "invalid_request", "the SDP offer is not UTF-8")
        except _BadOffer as e:
            return _error(400, "invalid_request", str(e))
        if channel_id in self._busy:
            return _error(409, "conflict", "the channel already has a WHIP session")
        if len(self._busy) >= self.options.max_sessions:
            return _error(503, "unavailable", "too many WHIP sessions")

        self._busy.add(channel_id)  # before any await: two racing POSTs cannot both pass
        session: _Session | None = None
        sink: PublishSink | None = None
        try:
            try:
                sink = await self.open_sink(channel_id, key)
            except WhipRefused as e:
                return _error(e.status, e.code, e.message, e.headers)
            except Exception:
                log.exception("whip: opening the sink of channel %s failed", channel_id)
                return _error(503, "unavailable", "the channel cannot take a publish now")
            if sink is None:
                log.info("whip: refused a publish to %s with key %s", channel_id, redact_key(key))
                return _unauthorized("unknown channel or wrong stream key")
            session = _Session(self, channel_id, key, sink, is_ffmpeg_offer(offer))
            try:
                answer = await session.negotiate(offer, kinds)
            except _BadOffer as e:
                return _error(400, "invalid_request", str(e))
            if self._closed:
                return _error(503, "unavailable", "the WHIP ingest is shutting down")
            if session.ending:
                return _error(503, "unavailable", f"the session failed at once: {session.reason}")
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
