"""Pull sources: files, HTTP(S) media, HLS, and anything streamlink has a plugin for.

Resolution (``UrlSource.resolver`` says which, without network access):

* URLs a streamlink plugin claims (Twitch, YouTube, Kick, ... and streamlink's generic
  ``hls://``, ``*.m3u8``, ``dash://``, ``*.mpd``) are resolved by that plugin, with one
  streamlink session per source. The stream named by ``quality`` (streamlink syntax: a
  comma-separated list tried in order, e.g. ``"720p,best"``; default ``"worst"``, since
  detectors decode keyframes only) is opened, or, if none of the names exists, the
  stream closest in quality to the first name. Its bytes go to PyAV.
* Other http(s) URLs are media files or streams opened by PyAV directly, after a
  preflight GET through the same guarded HTTP session that follows redirects and
  sniffs the body: an HLS playlist without ``.m3u8`` in its name goes to streamlink.
* Local paths and ``file://`` are opened by PyAV (operator permission needed).

Safety (``records.url_policy``, the one URL policy): unless the option ``allow_private``
is set (the operator's ``--allow-private-urls``), local files, non-HTTP schemes and hosts
resolving to loopback, private, link-local or multicast addresses are refused. Every
connection goes to an address the policy checked: streamlink's requests (redirects
included) through the mounted ``GuardedAdapter``, FFmpeg's direct opens through the
guarded egress proxy (FFmpeg's ``http_proxy``: its redirects and reconnects are checked
too), with a demuxer allow-list so FFmpeg's own HLS/DASH demuxers never fetch segment
URLs. Streamlink plugins that open websockets (outside the guarded HTTP session) are
refused. A refusal raises ``UnsafeUrl`` from ``sessions()``: the actor reports an error
with the message. Logs and ``last_error``
show URLs redacted (no credentials or query strings); streamlink's own log records
are forwarded through a redacting handler.

Live behaviour (the HLS rules come from streamlink; see tests/test_url_source.py):

* offline (404, no playable stream, an empty or ended playlist): ``sessions()`` polls
  with exponential backoff (1 s doubling to ``max_backoff``, 30 s; ``stop`` interrupts
  the wait). A live input yields a session per successful open; its end (EOF,
  ``#EXT-X-ENDLIST``, or no new segment for 3 target durations, at least 5 s:
  streamlink's queue deadline) ends the session and the polling starts again.
* a reopened live playlist continues after the last segment already delivered (by
  URI) instead of streamlink's live edge, so a reconnect repeats nothing; a playlist
  with ``#EXT-X-ENDLIST`` after the source has seen it live is the ended broadcast:
  nothing is replayed and the source waits for the next broadcast. A playlist that
  has ``#EXT-X-ENDLIST`` from the first look is a VOD: played once (``loop``: again).
* ``#EXT-X-DISCONTINUITY`` (and output resumed after streamlink filtered segments,
  e.g. Twitch ads) ends the session exactly at the segment boundary and the next
  session starts at once on the same connection, with freshly probed streams: a
  timestamp reset or a variant/codec change never reaches a running demuxer, and
  stream time stays monotonic (``StreamClock`` places each session after the last).
  The ended session has ``discontinuity = True``.
* within a session streamlink handles playlist reload stalls (reloading faster while
  the playlist is unchanged), segments that fail (three attempts, then skipped: a
  timestamp gap), segments listed again (media sequence numbers already queued are
  skipped) and Twitch's ad filtering.

A finite input (a local file, media with a known duration, a VOD playlist) ends the
source at its end unless ``loop``. ``realtime`` paces packets to the wall clock.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlparse

import av
import msgspec

from records.guarded_http import egress_proxy, ffmpeg_options, guard_session
from records.redact import redact_text, redact_url
from records.url_policy import ALLOW_HINT, UnsafeUrl, UrlPolicy

from .base import AnyEvent, AvSession, Backoff, Source, StopAwareReader, interrupt_on, register

__all__ = ["UrlSource", "UrlOptions", "Offline", "UnsafeUrl"]

log = logging.getLogger(__name__)

#: Declared patterns this plugin claims without asking streamlink.
PATTERNS = [
    re.compile(r"^(/|\./|\.\./|~/)"),  # local paths
    re.compile(r"^file://", re.I),
    re.compile(r"^https?://", re.I),  # media over HTTP(S) (streamlink plugins first)
    re.compile(r"^hls(variant)?://", re.I),
    re.compile(r"\.m3u8(\?|#|$)", re.I),
]

#: Demuxers FFmpeg may use on a direct network open (no playlist demuxers: HLS and DASH
#: go through streamlink, whose requests are checked).
DIRECT_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,flv,mpegts,mpeg,mp3,aac,ogg,wav,avi,asf"


class UrlOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # streamlink syntax: "720p,best" tries 720p, then best
    quality: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_+,. -]+$")] = "worst"
    realtime: bool = False
    loop: bool = False
    #: The operator's --allow-private-urls: local files, loopback and private hosts (never a channel's).
    allow_private: bool = False
    max_backoff: Annotated[float, msgspec.Meta(ge=1.0, le=600.0)] = 30.0  # seconds between reopen attempts, at most
    timeout: Annotated[float, msgspec.Meta(gt=0.0, le=120.0)] = 15.0  # seconds a network open/read may block
    # stream probing of a live input, at most (session start latency)
    probe_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.5


class Offline(Exception):
    """Nothing to play right now: not live yet, ended, no playable stream."""


# -- plugin matching (no network) ------------------------------------------------------

_streamlink = None
_streamlink_lock = threading.Lock()


def streamlink_session():
    """One shared streamlink session for plugin matching (creating one costs ~0.3 s)."""
    global _streamlink
    with _streamlink_lock:
        if _streamlink is None:
            from streamlink import Streamlink

            _streamlink = Streamlink()
        return _streamlink


def streamlink_plugin(url: str) -> str | None:
    """Name of the streamlink plugin for ``url``, None if none (no network)."""
    if re.match(r"^(/|\./|\.\./|~/|file:)", url, re.I):
        return None
    from streamlink.exceptions import NoPluginError

    try:
        name, _cls, _url = streamlink_session().resolve_url(url, follow_redirect=False)
    except NoPluginError:
        return None
    return name


def _uses_websockets(session, url: str) -> bool:
    """Whether the plugin for ``url`` opens websockets (streamlink's ``WebsocketClient``,
    a connection made outside the HTTP session the guard is mounted on)."""
    import sys

    from streamlink.plugin.api.websocket import WebsocketClient

    try:
        _name, plugin, _url = session.resolve_url(url, follow_redirect=False)
    except Exception:  # noqa: BLE001 - no plugin: streams() says so
        return False
    module = sys.modules.get(plugin.__module__)
    return any(
        isinstance(value, type) and issubclass(value, WebsocketClient) for value in vars(module or plugin).values()
    )


def local_path(url: str) -> Path | None:
    if url.lower().startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if re.match(r"^(/|\./|\.\./|~/)", url):
        return Path(url).expanduser()
    return None


# -- streamlink's log records, redacted -------------------------------------------------

_log_lock = threading.Lock()
_log_installed = False


class _RedactingForwarder(logging.Handler):
    """Re-logs streamlink's records under ``stream_actor.sources.streamlink`` with the
    URLs in them redacted (playlist and segment URLs carry tokens)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = redact_text(record.getMessage())
            target = logging.getLogger("stream_actor.sources.streamlink")
            if target.isEnabledFor(record.levelno):
                target.log(record.levelno, "%s: %s", record.name, message)
        except Exception:  # noqa: BLE001 - logging must never break a stream
            pass


_PATH_WITH_QUERY = re.compile(r"(?<![\w:/])/[^\s\"']*[?#][^\s\"']*")


class _RequestLineFilter(logging.Filter):
    """urllib3 logs request lines at DEBUG as ``host "GET /path?query HTTP/1.1"``: the
    query (a token) is masked like a URL's."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if "?" in message or "#" in message or "://" in message:
            message = redact_text(message)
            message = _PATH_WITH_QUERY.sub(
                lambda m: redact_url("http://h" + m.group(0))[len("http://h"):], message
            )
            record.msg, record.args = message, ()
        return True


def install_log_redaction() -> None:
    """Streamlink's records go through a redacting forwarder (its loggers do not
    propagate past ``streamlink``); urllib3's request lines get their queries masked."""
    global _log_installed
    with _log_lock:
        if _log_installed:
            return
        logger = logging.getLogger("streamlink")
        logger.addHandler(_RedactingForwarder())
        logger.propagate = False
        request_lines = _RequestLineFilter()
        for name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry"):
            logging.getLogger(name).addFilter(request_lines)
        _log_installed = True


# -- one opened streamlink stream ----------------------------------------------------


class _Feed:
    """The bytes of one opened streamlink stream, split into parts at discontinuities.

    The HLS writer thread calls ``mark()`` before it writes the first byte of a
    discontinuous segment; ``written`` counts the bytes it wrote. ``read()`` never
    returns bytes across the next mark: at a mark it returns b"" (the part's EOF), and
    ``next_part()`` moves past it. Marks are set before the bytes after them exist, so
    whatever a blocking read returned can be split at a mark seen after it returned.
    """

    def __init__(self, fd) -> None:
        self.fd = fd
        self.written = 0
        self.pos = 0
        self.marks: collections.deque[int] = collections.deque()
        self.marked_num: int | None = None
        self.closed = threading.Event()
        self.eof = False
        self.vod = False  # a playlist with #EXT-X-ENDLIST from the first look
        self.end_reason: str | None = None  # why nothing (more) comes, if known
        self.parts = 0
        self._pending = b""

    def mark(self) -> None:
        if self.written and (not self.marks or self.marks[-1] != self.written):
            self.marks.append(self.written)

    @property
    def at_boundary(self) -> bool:
        return bool(self.marks) and self.marks[0] == self.pos

    def read(self, n: int) -> bytes:
        if self.closed.is_set() or self.at_boundary:
            return b""
        if not self._pending:
            data = self.fd.read(n)
            if not data:
                self.eof = True
                return b""
            self._pending = data
        take = min(n, len(self._pending))
        if self.marks:
            take = min(take, self.marks[0] - self.pos)
        data, self._pending = self._pending[:take], self._pending[take:]
        self.pos += len(data)
        return data

    def next_part(self) -> bool:
        """Move past the mark this part ended at; False if it did not end at one."""
        if self.closed.is_set() or not self.at_boundary:
            return False
        self.marks.popleft()
        return True

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        buffer = getattr(self.fd, "buffer", None)
        if buffer is not None:  # wakes a blocked read at once
            try:
                buffer.close()
            except Exception:  # noqa: BLE001
                pass
        # joining streamlink's threads can take a segment timeout: not on this thread
        threading.Thread(target=self._close_fd, name="streamlink-close", daemon=True).start()

    def _close_fd(self) -> None:
        try:
            self.fd.close()
        except Exception:  # noqa: BLE001
            log.debug("closing the stream failed", exc_info=True)


class _Opened:
    """One successful open: its first session, how to get the next, and its kind."""

    def __init__(
        self,
        first: AvSession,
        *,
        finite: bool,
        next_session: Callable[[], AvSession | None] = lambda: None,
        close: Callable[[], None] = lambda: None,
        feed: _Feed | None = None,
    ) -> None:
        self.first = first
        self.finite = finite
        self.next_session = next_session
        self.close = close
        self.feed = feed


# -- the plugin ---------------------------------------------------------------------


@register
class UrlSource(Source):
    kind = "url"
    options_type = UrlOptions

    def __init__(self, url: str, options: dict | None = None, *, policy: UrlPolicy | None = None) -> None:
        self.url = url
        self.options = msgspec.convert(options or {}, UrlOptions)
        #: where this source may connect: the operator's allow_private, or one given (tests)
        self.policy = policy or UrlPolicy(allow_private=self.options.allow_private)
        self._ticket = f"url-{id(self):x}"  # this source's refusals at the egress proxy
        self.name = redact_url(url)  # what logs and errors show
        self.path = local_path(url)
        self.last_error: str | None = None
        self.quality_name: str | None = None  # the streamlink stream chosen last
        self.opens = 0  # open attempts (for tests and status)
        self._closed = threading.Event()
        self._streamlink = None
        self._violation: UnsafeUrl | None = None
        self._last_segment: tuple[int, str] | None = None  # (media sequence, uri) delivered last
        self._seen_live = False  # a live (no ENDLIST) playlist was opened

    @classmethod
    def matches(cls, url: str) -> bool:
        return any(p.search(url) for p in PATTERNS) or streamlink_plugin(url) is not None

    @classmethod
    def resolver(cls, url: str) -> str:
        """How ``url`` would be opened, without network access: ``"file"``,
        ``"streamlink:<plugin>"`` or ``"ffmpeg"`` (direct PyAV open)."""
        if local_path(url) is not None:
            return "file"
        plugin = streamlink_plugin(url)
        return f"streamlink:{plugin}" if plugin else "ffmpeg"

    # -- sessions -------------------------------------------------------------------

    def sessions(self, stop: threading.Event) -> Iterator[AvSession]:
        self.policy.check(self.url, ("http",))  # UnsafeUrl: no retry
        stopped = AnyEvent(stop, self._closed)
        backoff = Backoff(1.0, self.options.max_backoff)
        while not stopped.is_set():
            self.opens += 1
            try:
                opened = self._open(stop)
            except (UnsafeUrl, FileNotFoundError):
                raise
            except Exception as e:  # offline, network, no playable stream, ...
                if self._violation is not None:
                    raise self._violation from None
                if self.path is not None:
                    raise
                self.last_error = redact_text(str(e) if isinstance(e, Offline) else f"{type(e).__name__}: {e}")
                log.info("%s: not playable (%s); retrying in %.0f s", self.name, self.last_error, backoff.delay)
                if not backoff.wait(stopped):
                    return
                continue
            self.last_error = None
            packets = 0
            try:
                session: AvSession | None = opened.first
                while session is not None:
                    yield from self._serve(session)
                    packets += session.packet_count
                    if session.error:
                        self.last_error = redact_text(session.error)
                    if stopped.is_set():
                        return
                    session = opened.next_session()
            finally:
                opened.close()
            if self._violation is not None:
                raise self._violation
            if opened.feed is not None and not self.last_error:
                self.last_error = opened.feed.end_reason or "the stream ended (offline or stalled)"
            if packets:
                backoff.reset()
            if opened.finite:
                if not self.options.loop:
                    return
                if packets:
                    continue  # replay at once
            log.info("%s: input ended; reopening in %.0f s", self.name, backoff.delay)
            if not backoff.wait(stopped):
                return

    def _open(self, stop: threading.Event) -> _Opened:
        """Open the input once (raises when there is nothing to play now)."""
        if self.path is not None:
            if not self.path.exists():
                raise FileNotFoundError(f"no such file: {self.path}")
            container = av.open(str(self.path))
            return _Opened(self._session_for(container, stop), finite=True)
        if streamlink_plugin(self.url) is not None:
            return self._open_streamlink(self.url, stop)
        return self._open_direct(stop)

    # -- direct (PyAV) ------------------------------------------------------------------

    def _open_direct(self, stop: threading.Event) -> _Opened:
        url, kind = self._preflight(self.url)
        if kind == "hls":
            return self._open_streamlink(f"hls://{url}", stop)
        if kind == "dash":
            return self._open_streamlink(f"dash://{url}", stop)
        timeout = self.options.timeout
        options = {} if self.policy.allow_private else {
            **ffmpeg_options(url, self.policy, self._ticket),  # every connection through the guard
            "format_whitelist": DIRECT_FORMATS,
        }
        try:
            container = av.open(url, options=options, timeout=(timeout, timeout))
        except av.error.FFmpegError as e:  # its text quotes the URL
            refused = None if self.policy.allow_private else egress_proxy(self.policy).refusal(self._ticket)
            if refused is not None:  # a redirect (or a re-resolved name) the guard refused
                raise UnsafeUrl(refused) from None
            raise OSError(redact_text(f"{type(e).__name__}: {e.strerror or e}")) from None
        finite = container.duration is not None and container.format.name != "hls"
        return _Opened(self._session_for(container, stop), finite=finite)

    def _preflight(self, url: str) -> tuple[str, str]:
        """Follow redirects through the guarded HTTP session: (final URL, kind), kind
        "hls", "dash" or "media" by the content type and the first bytes."""
        http = self._streamlink_session().http  # guarded: each hop connects to a checked address
        response = http.request(
            "GET", url, stream=True, exception=OSError, timeout=self.options.timeout,
        )
        try:
            head = response.raw.read(64, decode_content=True) or b""
            ctype = response.headers.get("content-type", "").lower()
            final = response.url
        finally:
            response.close()
        if head.lstrip().startswith(b"#EXTM3U") or "mpegurl" in ctype:
            return final, "hls"
        if "dash+xml" in ctype or (head.lstrip().startswith(b"<?xml") and b"MPD" in head):
            return final, "dash"
        return final, "media"

    # -- streamlink ---------------------------------------------------------------------

    def _streamlink_session(self):
        if self._streamlink is None:
            from streamlink import Streamlink

            install_log_redaction()
            session = Streamlink()
            timeout = self.options.timeout
            session.set_option("webbrowser", False)  # no headless browser doing requests
            session.set_option("http-timeout", timeout)
            session.set_option("stream-segment-timeout", timeout)
            session.set_option("stream-timeout", max(timeout, 10.0))
            guard_session(session.http, self.policy, on_violation=self._refused)
            self._streamlink = session
        return self._streamlink

    def _refused(self, exc: UnsafeUrl) -> None:
        if self._violation is None:
            self._violation = exc
            log.warning("%s: %s", self.name, exc)

    def _choose(self, streams: dict) -> tuple[str, object]:
        """The stream named by ``quality`` (streamlink syntax), else the closest one."""
        wanted = [q.strip() for q in self.options.quality.split(",") if q.strip()] or ["worst"]
        for name in wanted:
            if name in streams:
                return name, streams[name]
        from streamlink.plugin.plugin import stream_weight

        weight, group = stream_weight(wanted[0])
        candidates = [
            (abs(stream_weight(n)[0] - weight), stream_weight(n)[0], n)
            for n in streams
            if n not in ("best", "worst") and stream_weight(n)[1] == group
        ]
        if candidates and group != "none":
            name = min(candidates)[2]
        else:
            name = "worst" if "worst" in streams else next(iter(streams))
        log.warning(
            "%s: quality %r not available (streams: %s); using %s",
            self.name, self.options.quality, ", ".join(streams), name,
        )
        return name, streams[name]

    def _open_streamlink(self, url: str, stop: threading.Event) -> _Opened:
        from streamlink.stream.hls import HLSStream

        session = self._streamlink_session()
        if not self.policy.allow_private and _uses_websockets(session, url):
            raise UnsafeUrl(
                "this site's streamlink plugin opens websockets, which the url guard cannot check; "
                + ALLOW_HINT
            )
        streams = session.streams(url)
        if not streams:
            raise Offline("no playable streams (the channel is offline?)")
        name, stream = self._choose(streams)
        self.quality_name = name
        if isinstance(stream, HLSStream):
            feed = self._open_hls(stream)
        else:  # DASH, muxed HLS renditions, progressive HTTP: no discontinuity marks
            feed = _Feed(stream.open())
        try:
            first = self._open_part(feed, stop)
        except BaseException:
            feed.close()
            raise

        def next_session() -> AvSession | None:
            if stop.is_set() or self._closed.is_set() or not feed.next_part():
                return None
            try:
                return self._open_part(feed, stop)
            except Exception as e:  # noqa: BLE001 - the input is over; reopen later
                if not isinstance(e, Offline):
                    log.info("%s: no session after a discontinuity: %s", self.name, redact_text(str(e)))
                return None

        return _Opened(first, finite=feed.vod, next_session=next_session, close=feed.close, feed=feed)

    def _open_hls(self, stream) -> _Feed:
        """Open an HLS stream with hooks: discontinuity marks, delivered-segment
        tracking, and where a reopened playlist starts."""
        reader = stream.__reader__(stream, name=stream.name)
        feed = _Feed(reader)
        writer, worker, buffer = reader.writer, reader.worker, reader.buffer

        buffer_write = buffer.write

        def counted_write(data) -> None:
            buffer_write(data)
            feed.written += len(data)

        buffer.write = counted_write

        writer_write = writer.write
        is_paused = getattr(reader, "is_paused", lambda: False)

        def write(segment, result, *data) -> None:
            kept = not writer.should_filter_segment(segment)
            if kept and feed.marked_num != segment.num and (segment.discontinuity or is_paused()):
                feed.marked_num = segment.num
                feed.mark()  # no-op before the first byte
            writer_write(segment, result, *data)
            if kept and not (data and data[0]):  # not the init section (EXT-X-MAP)
                self._last_segment = (segment.num, segment.uri)

        writer.write = write

        process_segments = worker.process_segments

        def first_look(playlist) -> None:
            first = worker.sequence < 0
            process_segments(playlist)
            if first:
                self._start_at(worker, playlist, feed)

        worker.process_segments = first_look
        reader.open()
        return feed

    def _start_at(self, worker, playlist, feed: _Feed) -> None:
        """On a playlist's first load: continue after what was delivered before, skip an
        ended broadcast, or play a VOD from its start."""
        segments = playlist.segments
        ended = "the broadcast has ended (its playlist has #EXT-X-ENDLIST); waiting for the next one"
        if self._last_segment is not None:
            uri = self._last_segment[1]
            for segment in segments:
                if segment.uri == uri:
                    worker.sequence = segment.num + 1
                    if playlist.is_endlist:
                        feed.end_reason = ended
                    return
        if playlist.is_endlist:
            if self._seen_live:
                worker.sequence = segments[-1].num + 1  # nothing to queue: the stream ends
                feed.end_reason = ended
            else:
                feed.vod = True
        else:
            self._seen_live = True

    def _open_part(self, feed: _Feed, stop: threading.Event) -> AvSession:
        """A PyAV container over the feed up to its next mark, as a session."""
        part_closed = threading.Event()
        reader = StopAwareReader(self._reader_for(feed), AnyEvent(stop, self._closed, part_closed))
        cancel = interrupt_on(AnyEvent(stop, self._closed), feed.close)  # no data yet?
        try:
            head = reader.peek(188)
            if not head:
                raise Offline(feed.end_reason or "no new data (the broadcast is offline or stalled)")
            fmt = "mpegts" if head[:1] == b"\x47" else None
            probe = self.options.probe_seconds
            container = av.open(
                reader,
                format=fmt,
                options={
                    "probesize": str(4 << 20),
                    "analyzeduration": str(max(1, int(probe * 1e6))),
                    "fpsprobesize": "0",
                },
                timeout=(self.options.timeout, None),
            )
        finally:
            cancel()
        feed.parts += 1

        def interrupt() -> None:
            part_closed.set()
            if not feed.at_boundary:  # ended by EOF, error or stop: release the stream
                feed.close()

        def on_end(session: AvSession) -> None:
            session.discontinuity = feed.at_boundary and not feed.closed.is_set()

        return self._session_for(container, stop, interrupt=interrupt, closed=part_closed, on_end=on_end)

    def _reader_for(self, feed: _Feed) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            if self._violation is not None:
                return b""
            return feed.read(n)

        return read

    def _session_for(self, container, stop, interrupt=None, closed=None, on_end=None) -> AvSession:
        if not container.streams.video and not container.streams.audio:
            container.close()
            raise ValueError(f"{self.name}: no audio or video stream")
        watch = stop if closed is None else AnyEvent(stop, closed)
        session = AvSession(
            container,
            AnyEvent(watch, self._closed),
            realtime=self.options.realtime,
            interrupt=interrupt,
            on_end=on_end,
            name=self.name,
        )
        session.discontinuity = False
        return session

    def close(self) -> None:
        self._closed.set()
        session = self._session
        if session is not None:
            session.close()
