"""Pull sources: files, HTTP(S) media, HLS, and anything streamlink has a plugin for.

Resolution: if streamlink resolves the URL (Twitch, YouTube, ``hls://``, ``.m3u8``,
...), the stream of ``quality`` (default "worst", falling back to "best") is opened
and its bytes fed to PyAV through a readable wrapper (streamlink's reader is not
``readable()``), as MPEG-TS when the bytes look like it; anything else (local paths,
``file://``, plain HTTP media) is opened by PyAV directly.

A finite input (a local file, or media with a known duration) ends the source at its
end, unless ``loop`` reopens it (a new session each time). A live input is reopened on
error or end with exponential backoff (capped at ``max_backoff``, interrupted by
``stop``); each successful open is a new session. ``realtime`` paces packets to the
wall clock by their timestamps, to replay a file as if it were live.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import av
import msgspec

from .base import AnyEvent, AvSession, Backoff, Source, StopAwareReader, interrupt_on, register

__all__ = ["UrlSource", "UrlOptions"]

log = logging.getLogger(__name__)

#: Declared patterns this plugin claims without asking streamlink.
PATTERNS = [
    re.compile(r"^(/|\./|\.\./|~/)"),  # local paths
    re.compile(r"^file://", re.I),
    re.compile(r"^https?://", re.I),  # media over HTTP(S) (streamlink plugins first)
    re.compile(r"^hls(variant)?://", re.I),
    re.compile(r"\.m3u8(\?|#|$)", re.I),
]


class UrlOptions(msgspec.Struct, kw_only=True):
    quality: str = "worst"
    realtime: bool = False
    loop: bool = False
    max_backoff: float = 30.0  # seconds between reopen attempts, at most
    timeout: float = 15.0  # seconds PyAV may block opening/reading a network URL


_streamlink = None
_streamlink_lock = threading.Lock()


def streamlink_session():
    """One shared streamlink session (creating one costs ~0.3 s)."""
    global _streamlink
    with _streamlink_lock:
        if _streamlink is None:
            from streamlink import Streamlink

            _streamlink = Streamlink()
        return _streamlink


def streamlink_plugin(url: str) -> str | None:
    """Name of the streamlink plugin for ``url``, None if none (no network)."""
    if re.match(r"^(/|\./|\.\./|~/|file://)", url, re.I):
        return None
    from streamlink.exceptions import NoPluginError

    try:
        name, _cls, _url = streamlink_session().resolve_url(url, follow_redirect=False)
    except NoPluginError:
        return None
    return name


def local_path(url: str) -> Path | None:
    if url.lower().startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if re.match(r"^(/|\./|\.\./|~/)", url):
        return Path(url).expanduser()
    return None


@register
class UrlSource(Source):
    kind = "url"

    def __init__(self, url: str, options: dict | None = None) -> None:
        self.url = url
        self.options = msgspec.convert(options or {}, UrlOptions)
        self.path = local_path(url)
        self.last_error: str | None = None
        self._session: AvSession | None = None
        self._closed = threading.Event()

    @classmethod
    def matches(cls, url: str) -> bool:
        return any(p.search(url) for p in PATTERNS) or streamlink_plugin(url) is not None

    # -- sessions -------------------------------------------------------------------

    def sessions(self, stop: threading.Event) -> Iterator[AvSession]:
        backoff = Backoff(1.0, self.options.max_backoff)
        while not (stop.is_set() or self._closed.is_set()):
            try:
                session, finite = self._open(stop)
            except FileNotFoundError:
                raise
            except Exception as e:  # offline, network, no playable stream, ...
                self.last_error = f"{type(e).__name__}: {e}"
                if self.path is not None:
                    raise
                log.info(
                    "%s: open failed (%s); retrying in %.0f s",
                    self.url, self.last_error, backoff.delay,
                )
                if not backoff.wait(stop):
                    return
                continue
            self.last_error = None
            self._session = session
            try:
                yield session
            finally:
                session.close()
                self._session = None
            if session.error:
                self.last_error = session.error
            if session.packet_count:
                backoff.reset()
            if finite:
                if not self.options.loop:
                    return
                if session.packet_count:
                    continue  # replay at once
            if not backoff.wait(stop):
                return

    def _open(self, stop: threading.Event) -> tuple[AvSession, bool]:
        """Open the input once: (session, whether the input is finite)."""
        timeout = self.options.timeout
        if self.path is not None:
            if not self.path.exists():
                raise FileNotFoundError(f"no such file: {self.path}")
            container = av.open(str(self.path))
            return self._session_for(container, stop), True

        plugin = streamlink_plugin(self.url)
        if plugin is not None:
            return self._open_streamlink(stop), False

        container = av.open(self.url, timeout=(timeout, timeout))
        finite = container.duration is not None and container.format.name != "hls"
        return self._session_for(container, stop), finite

    def _open_streamlink(self, stop: threading.Event) -> AvSession:
        streams = streamlink_session().streams(self.url)
        if not streams:
            raise LookupError("no playable streams (offline?)")
        stream = (
            streams.get(self.options.quality)
            or streams.get("best")
            or next(iter(streams.values()))
        )
        fd = stream.open()
        closed = threading.Event()
        watch = AnyEvent(stop, closed)

        def interrupt() -> None:
            closed.set()
            fd.close()

        reader = StopAwareReader(fd.read, watch)
        cancel = interrupt_on(AnyEvent(stop, self._closed), interrupt)  # no data yet?
        try:
            head = reader.peek(188)
            if not head:
                raise EOFError("the stream ended before any data")
            fmt = "mpegts" if head[:1] == b"\x47" else None
            container = av.open(reader, format=fmt, timeout=(self.options.timeout, None))
        except BaseException:
            interrupt()
            raise
        finally:
            cancel()
        return self._session_for(container, stop, interrupt=interrupt, closed=closed)

    def _session_for(self, container, stop, interrupt=None, closed=None) -> AvSession:
        if not container.streams.video and not container.streams.audio:
            container.close()
            raise ValueError(f"{self.url}: no audio or video stream")
        watch = stop if closed is None else AnyEvent(stop, closed)
        return AvSession(
            container,
            AnyEvent(watch, self._closed),
            realtime=self.options.realtime,
            interrupt=interrupt,
            name=self.url,
        )

    def close(self) -> None:
        self._closed.set()
        session = self._session
        if session is not None:
            session.close()
