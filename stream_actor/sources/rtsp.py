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

Stopping: ``stop``/``close()`` must wake a read blocked on a silent camera, and FFmpeg's
rtsp demuxer only checks an interrupt callback PyAV ties to its timeouts. So the plugin
finds the TCP connection FFmpeg opened to the camera (a new connection of this process to
the camera's port, seen in ``/proc`` via psutil), keeps a duplicate of its descriptor, and
shuts it down to interrupt: the blocked read returns at once, over TCP and UDP alike (the
UDP reader polls the RTSP connection too). Without that handle, the timeouts still bound
every wait.

Credentials in the URL are never logged: every URL and error message goes through
``redact_url``/``redact_text``, and the loggers of the source modules get the redacting
filter (PyAV's error messages quote the full URL, and ``AvSession`` logs them).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Literal
from urllib.parse import urlsplit

import av
import msgspec

from .base import AnyEvent, AvSession, Backoff, Source, interrupt_on, register
from .redact import install_log_redaction, redact_text, redact_url

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


class RtspOptions(msgspec.Struct, kw_only=True):
    transport: Literal["tcp", "udp"] = "tcp"
    timeout: float = 5.0  # seconds without a byte from the camera: the session is over
    min_backoff: float = 0.5  # first wait after a failed attempt; doubles up to max_backoff
    max_backoff: float = 10.0
    analyzeduration: float = 0.0  # seconds probed at session start (0: the SDP's description)
    probesize: int = 512 * 1024


@register
class RtspSource(Source):
    kind = "url"
    priority = 10  # ahead of the generic URL plugin (0) for rtsp/rtsps

    def __init__(self, url: str, options: dict | None = None) -> None:
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

    @classmethod
    def matches(cls, url: str) -> bool:
        return bool(PATTERN.match(url))

    # -- sessions -------------------------------------------------------------------

    def sessions(self, stop: threading.Event) -> Iterator[AvSession]:
        either = AnyEvent(stop, self._closed)
        backoff = Backoff(self.options.min_backoff, max(self.options.min_backoff, self.options.max_backoff))
        while not either.is_set():
            try:
                session = self._open(either)
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
        container, handle = self._connect(stop, self.options.analyzeduration)
        session = AvSession(
            container,
            stop,
            interrupt=handle.shutdown,
            on_end=lambda _s: handle.release(),
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

    def _connect(self, stop: AnyEvent, probe: float) -> tuple[av.container.InputContainer, _ConnectionHandle]:
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
        handle = _ConnectionHandle(self.port)
        with handle.opening():
            cancel = interrupt_on(stop, handle.shutdown)
            try:
                container = av.open(self.url, options=options, timeout=(open_timeout, read_timeout))
            except BaseException:
                handle.release()
                raise
            finally:
                cancel()
            handle.capture()
        if stop.is_set() or (not container.streams.video and not container.streams.audio):
            container.close()
            handle.release()
            if stop.is_set():
                raise InterruptedError("stopped")
            raise ValueError("the camera serves no audio or video stream")
        return container, handle

    def close(self) -> None:
        self._closed.set()
        session = self._session
        if session is not None:
            session.close()


# -- waking a blocked read -------------------------------------------------------------

_port_locks: dict[int, threading.Lock] = {}
_port_locks_guard = threading.Lock()


def _port_lock(port: int) -> threading.Lock:
    with _port_locks_guard:
        return _port_locks.setdefault(port, threading.Lock())


class _ConnectionHandle:
    """The RTSP (TCP) connection FFmpeg opens to the camera, held by a duplicated
    descriptor so another thread can shut it down (waking a blocked read) without ever
    touching a descriptor number FFmpeg may have closed and the process reused.

    Found as a connection of this process to the camera's port that did not exist before
    the open; opens to the same port are serialised within the process so two of them
    cannot take each other's connection. Best effort: without psutil or /proc, nothing is
    captured and the timeouts alone bound the waits.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._before: dict[tuple, int] | None = None
        self._opening = False  # connections are looked for only while the open runs
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._shut = False

    @contextlib.contextmanager
    def opening(self) -> Iterator[_ConnectionHandle]:
        """Around the open: note the connections that exist before it."""
        with _port_lock(self.port):
            self._before = self._connections()
            self._opening = True
            try:
                yield self
            finally:
                with self._lock:
                    self._opening = False

    def _connections(self) -> dict[tuple, int]:
        try:
            import psutil

            conns = psutil.Process().net_connections(kind="tcp")
        except Exception:
            return {}
        return {
            (tuple(c.laddr), tuple(c.raddr)): c.fd
            for c in conns
            if c.raddr and c.raddr[1] == self.port and c.fd is not None and c.fd >= 0
        }

    def capture(self) -> None:
        """Hold the connections opened since ``opening()`` began (idempotent). Only
        inside ``opening()``: later, a new connection to the port may be another's."""
        with self._lock:
            if not self._opening or self._before is None or self._socks or self._shut:
                return
            for (laddr, raddr), fd in self._connections().items():
                if (laddr, raddr) in self._before:
                    continue
                try:
                    sock = socket.socket(fileno=os.dup(fd))
                except OSError:
                    continue
                try:  # the number may have been reused since the listing: check it
                    same = sock.getsockname()[:2] == laddr[:2] and sock.getpeername()[:2] == raddr[:2]
                except OSError:
                    same = False
                if same:
                    self._socks.append(sock)
                else:
                    sock.close()

    def shutdown(self) -> None:
        """Wake whatever reads the connection: it sees the connection end."""
        self.capture()
        with self._lock:
            self._shut = True
            for sock in self._socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release(self) -> None:
        with self._lock:
            self._shut = True
            socks, self._socks = self._socks, []
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass
