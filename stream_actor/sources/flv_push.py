"""RTMP push, as relayed by the RTMP edge: one raw FLV byte stream per publish.

The edge (a separate process running the RTMP server on port 1935) opens a TCP
connection to ``FlvPushSource.endpoint`` for each publish and writes the FLV stream
(header, tags) to it; closing the connection ends the publish. Each connection is one
session. One connection at a time: a second concurrent connection is closed at once,
except when the current publisher has already hung up (its connection is half-closed
and only buffered data is left), in which case the new one waits as the next session.

Probing is kept small (``probesize``/``analyzeduration``) and reads return what the
socket has (no waiting for a full 32 KiB buffer), so a session starts within
milliseconds of the first tags instead of PyAV's default ~3 s.
"""
from __future__ import annotations

import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Iterator

import av
import msgspec

from .base import AnyEvent, AvSession, Source, StopAwareReader, register

__all__ = ["FlvPushSource", "FlvOptions"]

log = logging.getLogger(__name__)

_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)


class FlvOptions(msgspec.Struct, kw_only=True):
    probesize: int = 512 * 1024  # upper bound; probing ends when all streams are known
    analyzeduration: float = 0.5  # seconds of stream, upper bound
    idle_timeout: float = 30.0  # no byte for this long: the publish is over
    advertise_host: str = ""  # host in ``endpoint`` (default: the bound host)


@register
class FlvPushSource(Source):
    kind = "rtmp"

    def __init__(self, host: str = "0.0.0.0", options: dict | None = None) -> None:
        self.options = msgspec.convert(options or {}, FlvOptions)
        self.host = host
        self._listener = socket.create_server((host, 0), backlog=8)
        self._listener.settimeout(0.25)
        self._pending: queue.Queue[tuple[socket.socket, float]] = queue.Queue()
        self._active: socket.socket | None = None
        self._session: AvSession | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.refused = 0  # concurrent connections closed at once
        self.last_error: str | None = None
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"flv-accept-{self.endpoint[1]}", daemon=True
        )
        self._acceptor.start()

    @classmethod
    def matches(cls, url: str) -> bool:
        """The publish URLs the edge relays (``rtmp://host[:port]/app/key``)."""
        return url.lower().startswith(("rtmp://", "rtmps://"))

    @classmethod
    def create(cls, url: str | None, options: dict) -> FlvPushSource:
        return cls(options.get("host", "0.0.0.0"), options)

    @property
    def endpoint(self) -> tuple[str, int]:
        """Where the edge should connect and write the FLV stream: ``advertise_host``
        if set, else the bound host as is (a wildcard such as "0.0.0.0" is for the
        caller to replace with this node's address; locally it reaches loopback)."""
        port = self._listener.getsockname()[1]
        return self.options.advertise_host or self.host, port

    # -- accepting ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.1)
                continue
            with self._lock:
                busy = self._active is not None and not _peer_hung_up(self._active)
                busy = busy or not self._pending.empty()
                if not busy:
                    self._pending.put((conn, time.monotonic()))
            if busy:
                self.refused += 1
                log.warning("refusing a second concurrent FLV connection from %s", peer)
                _drop(conn)

    # -- sessions -------------------------------------------------------------------

    def sessions(self, stop: threading.Event) -> Iterator[AvSession]:
        while not (stop.is_set() or self._closed.is_set()):
            try:
                conn, accepted_at = self._pending.get(timeout=0.25)
            except queue.Empty:
                continue
            with self._lock:
                self._active = conn
            session = self._open(conn, stop, accepted_at)
            if session is None:
                self._release(conn)
                continue
            try:
                yield session
            finally:
                session.close()

    def _open(
        self, conn: socket.socket, stop: threading.Event, accepted_at: float
    ) -> AvSession | None:
        opts = self.options
        conn.settimeout(0.25)
        either = AnyEvent(stop, self._closed)
        idle = {"since": time.monotonic()}

        def read(n: int) -> bytes:
            while not either.is_set():
                try:
                    data = conn.recv(n)
                except TimeoutError:
                    if time.monotonic() - idle["since"] > opts.idle_timeout:
                        log.info("FLV publisher idle for %.0f s: session over", opts.idle_timeout)
                        return b""
                    continue
                idle["since"] = time.monotonic()
                return data
            return b""

        reader = StopAwareReader(read, either)
        try:
            container = av.open(
                reader,
                format="flv",
                options={
                    "probesize": str(max(32, opts.probesize)),
                    "analyzeduration": str(max(1, int(opts.analyzeduration * 1e6))),
                    "fpsprobesize": "0",
                },
            )
        except (av.error.FFmpegError, OSError) as e:
            self.last_error = f"not an FLV stream: {e}"
            log.warning("FLV connection dropped: %s", self.last_error)
            return None
        if not container.streams.video and not container.streams.audio:
            container.close()
            self.last_error = "FLV stream without audio or video"
            return None
        self.last_error = None
        session = AvSession(
            container,
            either,
            interrupt=lambda: _shutdown(conn),
            on_end=lambda s: self._release(conn),
            name=f"flv:{self.endpoint[1]}",
        )
        session.start_latency = session.opened_at - accepted_at
        self._session = session
        return session

    def _release(self, conn: socket.socket) -> None:
        _drop(conn)
        with self._lock:
            if self._active is conn:
                self._active = None

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        session = self._session
        if session is not None:
            session.close()
        while True:
            try:
                _drop(self._pending.get_nowait()[0])
            except queue.Empty:
                break


def _peer_hung_up(conn: socket.socket) -> bool:
    """Whether the peer closed its side (data may still be buffered for us)."""
    try:
        poller = select.poll()
        poller.register(conn, _POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _drop(conn: socket.socket) -> None:
    _shutdown(conn)
    try:
        conn.close()
    except OSError:
        pass
