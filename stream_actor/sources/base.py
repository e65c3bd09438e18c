"""The source plugin interface, the registry, and what the plugins share.

A ``Source`` is one way of getting a broadcast in (in the style of streamlink's
plugins: each kind one small module that declares which URLs it handles). It yields
``SourceSession``s: one per connected input (one publish, one successful open of a
URL). A session exposes its first video and audio stream and a blocking iterator of
demuxed packets that ends at the end of the input; EOF, EIO and disconnects are a
normal end. Between sessions the source waits (accepting, polling with backoff) and
``sessions()`` returns once ``stop`` is set.

Threading: iterate ``sessions()`` and ``packets()`` in one thread. ``stop.set()``,
``SourceSession.close()`` and ``Source.close()`` may be called from any thread to
interrupt a blocked read; the iterating thread then sees the end of the packets.

Plugins register with ``@register``; callers look them up with ``source_for``.

Options: each plugin declares ``options_type``, a msgspec Struct with
``forbid_unknown_fields`` and bounded values; a channel's ``settings.source`` must convert to
the options type of the plugin its kind and URL pick (``check_source_options``, run by the
API). Names in ``OPERATOR_OPTIONS`` come from ``livecut up`` flags only: a channel that sets
one is refused, and a plugin whose options do not declare one never gets it.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import ClassVar, Protocol, runtime_checkable

import av
import msgspec

from records.backoff import Backoff  # re-exported: the source plugins retry with it

__all__ = [
    "Source",
    "SourceSession",
    "AvSession",
    "Backoff",
    "register",
    "registry",
    "source_for",
    "plugin_for",
    "check_source_options",
    "NoOptions",
    "OPERATOR_OPTIONS",
    "NoSource",
    "AnyEvent",
    "StopAwareReader",
    "interrupt_on",
]

log = logging.getLogger(__name__)


@runtime_checkable
class SourceSession(Protocol):
    video: av.VideoStream | None
    audio: av.AudioStream | None

    def packets(self) -> Iterator[av.Packet]: ...

    def close(self) -> None: ...


class NoOptions(msgspec.Struct, forbid_unknown_fields=True):
    """The options of a plugin that takes none: any key is an error."""


#: Source options set from ``livecut up`` flags, never by a channel.
OPERATOR_OPTIONS = frozenset({"allow_private"})


class Source(ABC):
    kind: ClassVar[str]  # "rtmp" (push) or "url"
    #: Higher is tried first when several plugins of a kind match a URL.
    priority: ClassVar[int] = 0
    #: What ``settings.source`` may hold for this plugin (forbid_unknown_fields, bounded).
    options_type: ClassVar[type[msgspec.Struct]] = NoOptions

    #: Why the last attempt to get a session failed (for health/status); None if fine.
    last_error: str | None = None
    #: The session being consumed now, so ``close()`` from another thread can interrupt it.
    _session: SourceSession | None = None

    @classmethod
    @abstractmethod
    def matches(cls, url: str) -> bool:
        """Whether this plugin handles ``url`` (declared patterns; no network)."""

    @classmethod
    def create(cls, url: str | None, options: dict) -> Source:
        """Build the source for ``url`` with channel ``options`` (an ``options_type``: unknown
        keys and out-of-range values raise ``msgspec.ValidationError``, a ``ValueError``)."""
        return cls(url, options)  # type: ignore[call-arg]

    @abstractmethod
    def sessions(self, stop: threading.Event) -> Iterator[SourceSession]:
        """Yield each new session; wait (with backoff) between them; return when
        ``stop`` is set (or the input is finite and over)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release sockets and interrupt the current session."""

    def _serve(self, session: SourceSession) -> Iterator[SourceSession]:
        """Yield one session as the current one; close it however the consumer leaves."""
        self._session = session
        try:
            yield session
        finally:
            session.close()
            self._session = None


_registry: list[type[Source]] = []


def register(cls: type[Source]) -> type[Source]:
    """Class decorator: make a plugin known to ``source_for``."""
    if cls not in _registry:
        _registry.append(cls)
        _registry.sort(key=lambda c: -c.priority)
    return cls


def registry() -> list[type[Source]]:
    return list(_registry)


class NoSource(LookupError):
    pass


def plugin_for(kind: str, url: str | None) -> type[Source]:
    """The plugin class of ``kind`` for ``url`` (push kinds take no URL); no network."""
    plugins = [c for c in _registry if c.kind == kind]
    if not plugins:
        known = sorted({c.kind for c in _registry})
        raise NoSource(f"no source plugin of kind {kind!r} (known: {known})")
    if url is not None:
        plugins = [c for c in plugins if c.matches(url)]
        if not plugins:
            raise NoSource(f"no {kind} source plugin handles {url!r}")
    return plugins[0]


def source_for(kind: str, url: str | None, options: dict | None = None) -> Source:
    """The source of ``kind`` for ``url`` (push kinds take no URL). ``options``: the
    channel's ``settings.source`` plus the operator's ``OPERATOR_OPTIONS``; a plugin gets
    only the operator options its ``options_type`` declares."""
    plugin = plugin_for(kind, url)
    declared = plugin.options_type.__struct_fields__
    options = {k: v for k, v in (options or {}).items() if k not in OPERATOR_OPTIONS or k in declared}
    return plugin.create(url, options)


def check_source_options(options: dict, kind: str | None, url: str | None) -> msgspec.Struct | None:
    """A channel's ``settings.source`` as the options of the plugin ``kind`` and ``url`` pick.

    Raises ``msgspec.ValidationError`` naming the field (``$.source.<name>``): an operator
    option, an unknown key or an out-of-range value. ``kind`` None (a VOD job: no source
    plugin reads them) takes no options at all.
    """
    if operator := sorted(OPERATOR_OPTIONS & set(options)):
        name = operator[0]
        raise msgspec.ValidationError(f"source.{name} is an operator setting (a livecut up flag) - at `$.source.{name}`")
    if kind is None:
        if options:
            raise msgspec.ValidationError("no source plugin reads these options here (a VOD job takes none) - at `$.source`")
        return None
    try:
        plugin_options = plugin_for(kind, url).options_type
    except NoSource:
        if not options:
            return None
        raise msgspec.ValidationError("no source plugin handles this url, so it takes no options - at `$.source`") from None
    try:
        return msgspec.convert(options, plugin_options)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).rpartition(" - at `$")
        if not message:  # no path in the message
            message, path = str(exc), "`"
        raise msgspec.ValidationError(f"{message} - at `$.source{path}") from None


class AnyEvent:
    """``is_set``/``wait`` over several events (the caller's stop, our own close)."""

    def __init__(self, *events) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


def interrupt_on(stop, interrupt: Callable[[], None], poll: float = 0.2) -> Callable[[], None]:
    """Call ``interrupt`` (once, from a helper thread) when ``stop`` gets set, until
    the returned cancel function is called. For blocking calls with no stop check."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll):
            if stop.is_set():
                try:
                    interrupt()
                except Exception:
                    log.debug("interrupt failed", exc_info=True)
                return

    threading.Thread(target=watch, name="interrupt-on-stop", daemon=True).start()
    return done.set


class AvSession:
    """A session over an opened PyAV input container (shared by the plugins).

    ``packets()`` yields the packets of the first video and audio stream, skipping
    empty/flush packets, until EOF, an I/O error, ``stop``, or ``close()``. With
    ``realtime`` it paces them to the wall clock by their timestamps (re-anchoring at
    resets and jumps). ``interrupt`` is called (from any thread) by ``close()`` to
    unblock a pending read; the container is closed by the iterating thread.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stop: threading.Event,
        *,
        realtime: bool = False,
        interrupt: Callable[[], None] | None = None,
        on_end: Callable[[AvSession], None] | None = None,
        name: str = "",
    ) -> None:
        self.container = container
        self.video = container.streams.video[0] if container.streams.video else None
        self.audio = container.streams.audio[0] if container.streams.audio else None
        self.name = name
        self.realtime = realtime
        self.error: str | None = None  # why the packets ended, if not a clean EOF
        self.packet_count = 0
        self.opened_at = time.monotonic()
        self.first_packet_at: float | None = None
        self.start_latency = 0.0  # seconds from connect to opened (set by the plugin)
        self._stop = stop
        self._closed = threading.Event()
        self._interrupt = interrupt
        self._on_end = on_end
        self._lock = threading.Lock()
        self._iterating = False
        self._ended = False
        self._iter_thread: int | None = None
        self._gen: Iterator[av.Packet] | None = None
        if interrupt is not None:  # unblock a pending read as soon as stop is set
            threading.Thread(target=self._watch, name=f"watch:{name}", daemon=True).start()

    def _watch(self) -> None:
        while not self._closed.wait(0.2):
            if self._stop.is_set():
                self.close()
                return

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def packets(self) -> Iterator[av.Packet]:
        with self._lock:
            if self._iterating or self._ended:
                raise RuntimeError("packets() can be iterated once")
            self._iterating = True
            self._iter_thread = threading.get_ident()
            self._gen = self._packets()
        return self._gen

    def _packets(self) -> Iterator[av.Packet]:
        streams = [s for s in (self.video, self.audio) if s is not None]
        anchor: tuple[float, float] | None = None  # (timestamp, wall clock)
        try:
            if not streams or self._closed.is_set():
                return
            for packet in self.container.demux(streams):
                if self._closed.is_set() or self._stop.is_set():
                    return
                if packet.size == 0 or (packet.pts is None and packet.dts is None):
                    continue
                if self.realtime:
                    anchor = self._pace(packet, anchor)
                    if anchor is None:
                        return
                if self.first_packet_at is None:
                    self.first_packet_at = time.monotonic()
                self.packet_count += 1
                yield packet
        except (av.error.FFmpegError, OSError) as e:
            interrupted = self._closed.is_set() or self._stop.is_set()
            if not (interrupted or isinstance(e, av.error.EOFError)):
                self.error = f"{type(e).__name__}: {e}"
                log.info("%s: input ended: %s", self.name, self.error)
        finally:
            self._finish()

    def _pace(self, packet: av.Packet, anchor):
        ts = packet.dts if packet.dts is not None else packet.pts
        ts = float(ts * packet.time_base)
        now = time.monotonic()
        if anchor is None or not (anchor[0] - 0.5 <= ts <= anchor[0] + (now - anchor[1]) + 5.0):
            return (ts, now)  # start, or a reset/jump: re-anchor
        delay = anchor[1] + (ts - anchor[0]) - now
        if delay > 0 and (self._closed.wait(delay) or self._stop.is_set()):
            return None
        return anchor

    def close(self) -> None:
        """End the session; safe from any thread, idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._interrupt is not None:
            try:
                self._interrupt()
            except Exception:
                log.debug("interrupt failed", exc_info=True)
        with self._lock:
            iterating, gen = self._iterating, self._gen
        if not iterating:
            self._finish()
        elif self._iter_thread == threading.get_ident() and gen is not None:
            try:  # the iterating thread itself, between packets: end the generator
                gen.close()
            except ValueError:  # it is running (close() called from inside the loop)
                pass
            self._finish()

    def _finish(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._closed.set()
        try:
            self.container.close()
        except Exception:
            log.debug("closing container failed", exc_info=True)
        if self._interrupt is not None:
            try:
                self._interrupt()
            except Exception:
                pass
        if self._on_end is not None:
            self._on_end(self)


class StopAwareReader(io.RawIOBase):
    """A readable binary file over a ``read(n) -> bytes`` callable, for PyAV.

    Returns EOF once ``stop`` is set or ``read`` raises; PyAV gets what is available
    instead of blocking for a full buffer (which would add latency at low bitrates).
    """

    def __init__(self, read: Callable[[int], bytes], stop: threading.Event) -> None:
        super().__init__()
        self._read = read
        self._stop = stop
        self._pending = b""

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        """Up to ``n`` first bytes, kept for the following reads."""
        while len(self._pending) < n and not self._stop.is_set():
            chunk = self._safe_read(n - len(self._pending))
            if not chunk:
                break
            self._pending += chunk
        return self._pending[:n]

    def readinto(self, b) -> int:
        if self._pending:
            n = min(len(b), len(self._pending))
            b[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._stop.is_set():
            return 0
        data = self._safe_read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def _safe_read(self, n: int) -> bytes:
        try:
            return self._read(n) or b""
        except (OSError, ValueError) as e:  # closed from another thread, reset, ...
            log.debug("read ended: %s", e)
            return b""
