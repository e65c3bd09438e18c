"""RTSP cameras (``rtsp://``, ``rtsps://``): a pull source that keeps reconnecting.

A channel registers with ``{"source": "url", "url": "rtsp://user:pass@cam/stream1"}``; this
plugin claims rtsp/rtsps URLs ahead of the generic URL plugin (``priority``). Options, in
the channel's ``settings.source``:

* ``transport``: ``"tcp"`` (default: RTP interleaved in the RTSP connection, works through
  NAT and firewalls, no loss) or ``"udp"`` (RTP over UDP: lower overhead on a LAN);
* ``timeout`` (5 s): FFmpeg's socket I/O timeout (the rtsp demuxer's ``timeout`` option,
  in microseconds in FFmpeg 8; checked): a camera that stops sending for this long ends
  the session, so a dead camera is noticed; PyAV's own timeouts bound the open and each
  read as a second guard;
* ``min_backoff``/``max_backoff`` (0.5 s / 10 s): the waits between failed connection
  attempts, doubling, interrupted by ``stop``;
* ``analyzeduration`` (0 s), ``probesize`` (512 KiB): probing at session start. RTSP
  inputs have no header, so FFmpeg reads for the whole ``analyzeduration`` (0.25 s of it
  made 0.25 s of a 0.3 s session start). The SDP normally carries the codec configuration
  (H.264 ``sprop-parameter-sets``, the AAC config), so none is needed; when it leaves the
  video's parameters out, FFmpeg reads on until the in-band SPS arrives with the next
  keyframe, whatever ``analyzeduration`` says (tested: a session then starts at the next
  keyframe).

Each successful connection is a new session (the actor's ``StreamClock`` continues stream
time across them). A session ends when the camera hangs up, stops sending (``timeout``)
or sends BYE; the source then reconnects at once, and backs off while that fails. A
session that ended before its first packet counts as a failure.

Safety (``records.url_policy``, the one URL policy): unless the operator allows private
URLs (``allow_private``), a URL whose host is, or resolves to, a loopback, private,
link-local or multicast address is refused with ``UnsafeUrl`` before any connection
(``127.1``, ``2130706433`` and ``[::ffff:127.0.0.1]`` are the addresses they denote), with
the same text whatever listens there. FFmpeg never connects to the camera itself: it talks
to an ``RtspGate`` on loopback, which connects to the checked address, refuses to pass a
redirect on (the plugin checks the new URL and opens it through a new gate, up to
``MAX_REDIRECTS``), and pins a UDP ``Transport`` to the camera's address.

Stopping: ``stop``/``close()`` must wake a read blocked on a silent camera, and FFmpeg's
rtsp demuxer only checks an interrupt callback PyAV ties to its timeouts. The gate holds
both ends of the relayed connection and shuts them down to interrupt: the blocked read
returns at once, over TCP and UDP alike (the UDP reader polls the RTSP connection too).

Credentials in the URL are never logged: every URL and error message goes through
``redact_url``/``redact_text``, and the loggers of the source modules get the redacting
filter (PyAV's error messages quote the full URL, and ``AvSession`` logs them).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import urljoin, urlsplit

import av
import msgspec

from records.url_policy import UnsafeUrl, UrlPolicy

from .base import AnyEvent, AvSession, Backoff, Source, interrupt_on, register
from records.redact import install_log_redaction, redact_text, redact_url
from .rtsp_gate import RtspGate

__all__ = ["RtspSource", "RtspOptions", "PATTERN"]

log = logging.getLogger(__name__)

# Messages of these loggers can carry a source URL (PyAV errors quote it): redact them.
install_log_redaction(
    __name__,
    "stream_actor.sources.base",
    "stream_actor.sources.url",
    "stream_actor.sources.flv_push",
    "stream_actor.actor",
)

#: The URLs this plugin claims: rtsp:// and rtsps:// with a host (any case).
PATTERN = re.compile(r"^rtsps?://[^/?#\s]+", re.I)
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}
MAX_REDIRECTS = 5  # redirects followed (each checked) before giving up


class RtspOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    transport: Literal["tcp", "udp"] = "tcp"
    # seconds without a byte from the camera: the session is over
    timeout: Annotated[float, msgspec.Meta(gt=0.0, le=120.0)] = 5.0
    # first wait after a failed attempt; doubles up to max_backoff
    min_backoff: Annotated[float, msgspec.Meta(ge=0.05, le=60.0)] = 0.5
    max_backoff: Annotated[float, msgspec.Meta(ge=0.05, le=600.0)] = 10.0
    # seconds probed at session start (0: the SDP's description)
    analyzeduration: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.0
    probesize: Annotated[int, msgspec.Meta(ge=32, le=32 * 1024 * 1024)] = 512 * 1024
    #: The operator's --allow-private-urls (never a channel's).
    allow_private: bool = False


@register
class RtspSource(Source):
    kind = "url"
    priority = 10  # ahead of the generic URL plugin (0) for rtsp/rtsps
    options_type = RtspOptions

    def __init__(self, url: str, options: dict | None = None, *, policy: UrlPolicy | None = None) -> None:
        try:
            self.options = msgspec.convert(options or {}, RtspOptions)
        except msgspec.ValidationError as e:
            raise ValueError(f"invalid rtsp source options: {e}") from None
        if self.options.timeout <= 0 or self.options.min_backoff <= 0:
            raise ValueError("rtsp source options timeout and min_backoff must be > 0")
        self.url = url
        self.safe_url = redact_url(url)
        self.last_error: str | None = None
        self.sessions_started = 0
        self.failures = 0  # consecutive failed attempts
        self._closed = threading.Event()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        self.port = port or DEFAULT_PORTS.get(scheme, 554)
        #: where this source may connect: the operator's allow_private, or one given (tests)
        self.policy = policy or UrlPolicy(allow_private=self.options.allow_private)

    @classmethod
    def matches(cls, url: str) -> bool:
        return bool(PATTERN.match(url))

    # -- sessions -------------------------------------------------------------------

    def sessions(self, stop: threading.Event) -> Iterator[AvSession]:
        self.policy.check(self.url, ("rtsp",))  # UnsafeUrl before any connection: no retry
        either = AnyEvent(stop, self._closed)
        backoff = Backoff(self.options.min_backoff, max(self.options.min_backoff, self.options.max_backoff))
        while not either.is_set():
            try:
                session = self._open(either)
            except UnsafeUrl as e:  # the same text whatever listens there: no port scanning
                self.last_error = str(e)
                raise
            except Exception as e:  # refused, unreachable, 401, 404, timeout, no stream, ...
                if either.is_set():
                    return
                self.failures += 1
                self.last_error = redact_text(f"{type(e).__name__}: {e}")
                log.info(
                    "%s: cannot connect (%s); retrying in %.1f s",
                    self.safe_url, self.last_error, backoff.delay,
                )
                if not backoff.wait(either):
                    return
                continue
            self.sessions_started += 1
            self.failures = 0
            self.last_error = None
            yield from self._serve(session)
            if either.is_set():
                return
            if session.error:
                self.last_error = redact_text(session.error)
            log.info(
                "%s: session %d ended after %d packets (%s); reconnecting",
                self.safe_url, self.sessions_started, session.packet_count, self.last_error or "end of stream",
            )
            if session.packet_count:
                backoff.reset()
                continue  # the camera dropped: try again at once
            self.failures += 1
            if not backoff.wait(either):
                return

    def _open(self, stop: AnyEvent) -> AvSession:
        """Connect once: DESCRIBE, SETUP, PLAY, probe. Raises when that fails."""
        started = time.monotonic()
        container, gate = self._connect(stop, self.options.analyzeduration)
        session = AvSession(
            container,
            stop,
            interrupt=gate.shutdown,
            on_end=lambda _s: gate.close(),
            name=self.safe_url,
        )
        session.start_latency = session.opened_at - started
        video, audio = session.video, session.audio
        log.info(
            "%s: connected over %s in %.3f s (video %s, audio %s)",
            self.safe_url, self.options.transport, session.start_latency,
            f"{video.codec_context.name} {video.codec_context.width}x{video.codec_context.height}" if video else "none",
            f"{audio.codec_context.name} {audio.codec_context.sample_rate} Hz" if audio else "none",
        )
        return session

    def _connect(self, stop: AnyEvent, probe: float) -> tuple[av.container.InputContainer, RtspGate]:
        opts = self.options
        options = {
            "rtsp_transport": opts.transport,
            "timeout": str(max(1, int(opts.timeout * 1_000_000))),  # microseconds (FFmpeg 8)
            "analyzeduration": str(max(1, int(probe * 1_000_000))),  # 0 would mean FFmpeg's 5 s
            "probesize": str(max(32, opts.probesize)),
            "fpsprobesize": "0",
        }
        # PyAV's timeouts (seconds): opening = connect + DESCRIBE/SETUP/PLAY + probing.
        open_timeout = 2 * opts.timeout + probe
        read_timeout = opts.timeout + 1.0
        url = self.url
        for _hop in range(MAX_REDIRECTS + 1):
            self.policy.check(url, ("rtsp",))  # a redirect's target too, before connecting to it
            gate = RtspGate(url, self.policy, opts.timeout)
            cancel = interrupt_on(stop, gate.shutdown)
            try:
                container = av.open(gate.url, options=options, timeout=(open_timeout, read_timeout))
            except BaseException:
                gate.close()
                if isinstance(gate.error, UnsafeUrl):
                    raise gate.error from None
                if gate.redirect is not None and not stop.is_set():
                    url = urljoin(url, gate.redirect)  # FFmpeg would follow it unchecked: we do, checked
                    log.info("%s: the camera redirects to %s", self.safe_url, redact_url(url))
                    continue
                if gate.error is not None:
                    raise OSError(f"cannot connect: {gate.error}") from None
                raise
            finally:
                cancel()
            if stop.is_set() or (not container.streams.video and not container.streams.audio):
                container.close()
                gate.close()
                if stop.is_set():
                    raise InterruptedError("stopped")
                raise ValueError("the camera serves no audio or video stream")
            return container, gate
        raise OSError(f"more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        self._closed.set()
        session = self._session
        if session is not None:
            session.close()
