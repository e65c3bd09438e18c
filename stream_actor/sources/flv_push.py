"""RTMP push, as relayed by the RTMP edge: one raw FLV byte stream per publish.

The edge (the RTMP/WHIP server in ``livecut up``) asks the stream actor for an ingest
ticket (``ingest_ticket``: host, port and a fresh one-time token), opens a TCP connection
there, sends the token, then writes the FLV stream (header, tags); closing the connection
ends the publish. Each connection is one session.

The port is internal: it is bound to this node's cluster address (loopback without Ray),
never to a wildcard, and nothing is read as media before the connection has presented a
live token (within ``TOKEN_TIMEOUT``). Connections still owing their token are held apart
from the publish slot, at most ``MAX_UNAUTHENTICATED`` at a time (the oldest is dropped
for a newer one), so a stranger who connects and stalls cannot lock the edge out.

One authenticated connection at a time: a second concurrent one is closed at once, except
when the current publisher has already hung up (its connection is half-closed and only
buffered data is left), in which case the new one waits as the next session.

Probing is kept small (``probesize``/``analyzeduration``) and reads return what the
socket has (no waiting for a full 32 KiB buffer), so a session starts within
milliseconds of the first tags instead of PyAV's default ~3 s.
"""
from __future__ import annotations

import logging
import queue
import select
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

import av
import msgspec

from .base import AnyEvent, AvSession, Source, StopAwareReader, register
from .one_time_tokens import TOKEN_LENGTH, OneTimeTokens

__all__ = ["FlvPushSource", "FlvOptions", "cluster_address"]

log = logging.getLogger(__name__)

_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)

TOKEN_TIMEOUT = 2.0  # the edge sends its token right after connecting
TOKEN_TTL = 30.0  # an issued token not used by then is forgotten
MAX_UNAUTHENTICATED = 16  # connections still owing their token, at once


class FlvOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A channel's ``settings.source`` for RTMP/WHIP channels. Where the port is bound and
    advertised is not a channel's business: see ``cluster_address``."""

    # upper bound in bytes; probing ends when all streams are known
    probesize: Annotated[int, msgspec.Meta(ge=32, le=16 * 1024 * 1024)] = 512 * 1024
    # seconds of stream, upper bound
    analyzeduration: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.5
    # no byte for this long: the publish is over
    idle_timeout: Annotated[float, msgspec.Meta(ge=1.0, le=600.0)] = 30.0


def cluster_address() -> str:
    """This node's address in the Ray cluster (what the edge on another node can reach), or
    loopback when Ray is not up in this process."""
    import ray

    if ray.is_initialized():
        return ray.util.get_node_ip_address()
    return "127.0.0.1"


@dataclass(slots=True, eq=False)
class _Unauthenticated:
    conn: socket.socket
    peer: str
    accepted_at: float
    token: bytearray = field(default_factory=bytearray)


@register
class FlvPushSource(Source):
    kind = "rtmp"
    options_type: ClassVar[type[msgspec.Struct]] = FlvOptions

    def __init__(self, options: dict | None = None, *, bind_host: str | None = None) -> None:
        """``bind_host``: the operator's (or a test's) choice; default ``cluster_address()``."""
        self.options = msgspec.convert(options or {}, FlvOptions)
        self.host = bind_host or cluster_address()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, 0), family=family, backlog=16)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()  # the listener, and connections owing a token
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._tokens = OneTimeTokens(ttl=TOKEN_TTL)
        self._pending: queue.Queue[tuple[socket.socket, float]] = queue.Queue()
        self._active: socket.socket | None = None
        self._session: AvSession | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.refused = 0  # authenticated connections closed because one is already publishing
        self.unauthenticated = 0  # connections dropped without a valid token
        self.last_error: str | None = None
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"flv-accept-{self.endpoint[1]}", daemon=True
        )
        self._acceptor.start()
        log.info("FLV ingest listening on %s:%d (token required)", *self.endpoint)

    @classmethod
    def matches(cls, url: str) -> bool:
        """The publish URLs the edge relays (``rtmp://host[:port]/app/key``)."""
        return url.lower().startswith(("rtmp://", "rtmps://"))

    @classmethod
    def create(cls, url: str | None, options: dict) -> FlvPushSource:
        return cls(options)

    @property
    def endpoint(self) -> tuple[str, int]:
        """The bound address and port (a concrete address, never a wildcard)."""
        host, port = self._listener.getsockname()[:2]
        return host, port

    def ingest_ticket(self) -> tuple[str, int, str]:
        """Where the edge connects, and the one-time token it must send before the FLV."""
        host, port = self.endpoint
        return host, port, self._tokens.issue()

    # -- accepting ------------------------------------------------------------------

    def _accept_loop(self) -> None:
        waiting: dict[socket.socket, _Unauthenticated] = {}  # oldest first
        with self._selector as selector:
            try:
                while not self._closed.is_set():
                    now = time.monotonic()
                    for w in [w for w in waiting.values() if now - w.accepted_at >= TOKEN_TIMEOUT]:
                        self._reject(selector, waiting, w, "no token in time")
                    try:
                        ready = selector.select(0.1 if waiting else 0.25)
                    except OSError:
                        if self._closed.is_set():
                            return
                        time.sleep(0.1)
                        continue
                    for key, _ in ready:
                        if key.fileobj is self._listener:
                            self._accept(selector, waiting)
                        else:
                            self._read_token(selector, waiting, key.data)
            finally:
                for w in waiting.values():
                    _drop(w.conn)

    def _accept(self, selector: selectors.BaseSelector, waiting: dict[socket.socket, _Unauthenticated]) -> None:
        try:
            conn, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            if not self._closed.is_set():
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
            return
        if len(waiting) >= MAX_UNAUTHENTICATED:
            # Drop the oldest: the edge sends its token at once, so it is never the oldest
            # for long, and a stranger cannot fill the slots to keep it out.
            self._reject(selector, waiting, next(iter(waiting.values())), "too many connections without a token")
        conn.setblocking(False)
        w = _Unauthenticated(conn, f"{peer[0]}:{peer[1]}", time.monotonic())
        waiting[conn] = w
        selector.register(conn, selectors.EVENT_READ, w)

    def _read_token(
        self, selector: selectors.BaseSelector, waiting: dict[socket.socket, _Unauthenticated], w: _Unauthenticated
    ) -> None:
        try:
            data = w.conn.recv(TOKEN_LENGTH - len(w.token))  # never past the token: the rest is FLV
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._reject(selector, waiting, w, "closed before its token")
            return
        w.token += data
        if len(w.token) < TOKEN_LENGTH:
            return
        selector.unregister(w.conn)
        del waiting[w.conn]
        if not self._tokens.redeem(bytes(w.token)):
            self.unauthenticated += 1
            log.warning("FLV ingest: dropped a connection from %s (wrong token)", w.peer)
            _drop(w.conn)
            return
        w.conn.setblocking(True)
        with self._lock:
            busy = self._active is not None and not _peer_hung_up(self._active)
            busy = busy or not self._pending.empty()
            if not busy:
                self._pending.put((w.conn, w.accepted_at))
        if busy:
            self.refused += 1
            log.warning("refusing a second concurrent FLV connection from %s", w.peer)
            _drop(w.conn)

    def _reject(
        self, selector: selectors.BaseSelector, waiting: dict[socket.socket, _Unauthenticated],
        w: _Unauthenticated, why: str,
    ) -> None:
        selector.unregister(w.conn)
        del waiting[w.conn]
        self.unauthenticated += 1
        log.warning("FLV ingest: dropped a connection from %s (%s)", w.peer, why)
        _drop(w.conn)

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
