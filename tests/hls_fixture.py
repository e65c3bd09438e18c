"""A scripted HLS server for tests: playlists you control, segments made once with ffmpeg.

``make_segments`` encodes a test pattern + tone into MPEG-TS segments with the ffmpeg
CLI (x264 without B-frames, 1 s GOP, AAC) and returns them with the video pts range of
each. ``HlsServer`` serves, on loopback:

* ``/<name>.m3u8``: a live media playlist (``Playlist``) whose window, media sequence,
  ``#EXT-X-DISCONTINUITY`` tags and ``#EXT-X-ENDLIST`` the test sets; it can be frozen
  (a reload stall: the same text again), replaced by any text (an older window: segments
  listed twice), or answer 404 (not live yet);
* ``/master.m3u8``: a multivariant playlist over some of the media playlists;
* ``/seg/<file>``: the segments, with 404 for the names in ``missing``.

It records when each segment appeared in its playlist and every request. ``Collector``
consumes a source on a thread the way the stream actor does (``StreamClock`` per
session) and keeps what came out, for assertions on sessions and stream times.

``python -m tests.hls_fixture`` measures the latency from a segment appearing in the
playlist to its first packet out of the URL plugin, for 1 s and 2 s segments.
"""
from __future__ import annotations

import argparse
import http.server
import math
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from stream_actor.clock import StreamClock

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]


@dataclass
class Segment:
    name: str  # file name, served at /seg/<name>
    duration: float
    data: bytes
    start: float  # first video pts (s)
    end: float  # last video pts + one frame (s)
    size: tuple[int, int]


def make_segments(
    out: Path,
    tag: str,
    *,
    seconds: float,
    segment: float = 1.0,
    size: str = "320x240",
    fps: int = 15,
    tone: int = 440,
) -> list[Segment]:
    """Encode ``seconds`` of media into HLS segments of ``segment`` seconds."""
    out.mkdir(parents=True, exist_ok=True)
    playlist = out / f"{tag}.m3u8"
    subprocess.run(
        [*FFMPEG,
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000",
         "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
         "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
         "-c:a", "aac", "-b:a", "64k",
         "-f", "hls", "-hls_time", str(segment), "-hls_list_size", "0",
         "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(out / f"{tag}_%03d.ts"), str(playlist)],
        check=True,
    )
    segments = []
    duration = 0.0
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            path = out / line
            start, end, dims = _video_span(path)
            segments.append(Segment(line, duration, path.read_bytes(), start, end, dims))
    return segments


def _video_span(path: Path) -> tuple[float, float, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = [
            float(p.pts * p.time_base)
            for p in container.demux(stream)
            if p.pts is not None
        ]
        frame = 1 / float(stream.average_rate or 15)
        return min(stamps), max(stamps) + frame, (stream.codec_context.width, stream.codec_context.height)


class Playlist:
    """A live media playlist: ``add`` appends a segment; the last ``window`` are listed."""

    def __init__(self, window: int = 6, query: str = "") -> None:
        self.window = window
        self.query = query  # appended to segment URIs (a token, for redaction tests)
        self.entries: list[tuple[int, Segment, bool]] = []  # (media sequence, segment, discontinuity)
        self.endlist = False
        self.frozen: str | None = None  # served instead of the live text (stall, stale copy)
        self.available = True  # False: 404
        self.appeared: dict[int, float] = {}  # media sequence -> monotonic time it was listed
        self.lock = threading.Lock()

    def add(self, segment: Segment, discontinuity: bool = False) -> int:
        with self.lock:
            num = self.entries[-1][0] + 1 if self.entries else 0
            self.entries.append((num, segment, discontinuity))
            self.appeared[num] = time.monotonic()
            return num

    def text(self) -> str:
        with self.lock:
            if self.frozen is not None:
                return self.frozen
            listed = self.entries[-self.window:]
            target = max((math.ceil(s.duration) for _, s, _ in listed), default=1)
            lines = [
                "#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
                f"#EXT-X-MEDIA-SEQUENCE:{listed[0][0] if listed else 0}",
            ]
            for _, segment, discontinuity in listed:
                if discontinuity:
                    lines.append("#EXT-X-DISCONTINUITY")
                lines += [f"#EXTINF:{segment.duration:.6f},", f"seg/{segment.name}{self.query}"]
            if self.endlist:
                lines.append("#EXT-X-ENDLIST")
            return "\n".join(lines) + "\n"

    def freeze(self) -> None:
        """Serve the current text on every reload (the playlist stops advancing)."""
        text = self.text()
        with self.lock:
            self.frozen = text

    def thaw(self) -> None:
        with self.lock:
            self.frozen = None

    def segment_of(self, pts: float, segments: list[Segment]) -> Segment | None:
        for segment in segments:
            if segment.start - 1e-3 <= pts < segment.end - 1e-3:
                return segment
        return None


class _Quiet(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients hang up early: normal here
        pass


class HlsServer:
    """Serves ``playlists`` (name -> Playlist) and their segments on 127.0.0.1."""

    def __init__(self) -> None:
        self.playlists: dict[str, Playlist] = {}
        self.variants: list[tuple[str, int, str]] = []  # (playlist, bandwidth, WxH) for the master
        self.missing: set[str] = set()  # segment files answered with 404
        self.aliases: dict[str, str] = {}  # other paths serving a playlist ("/live" -> "live")
        self.files: dict[str, tuple[bytes, str]] = {}  # other paths: (body, content type)
        self.requests: list[tuple[float, str, int]] = []
        self.segments: dict[str, bytes] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                status, body, ctype = server.answer(self.path.split("?", 1)[0])
                server.requests.append((time.monotonic(), self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            do_HEAD = do_GET

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, name="hls-server", daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str = "live") -> str:
        return f"{self.base}/{name}.m3u8"

    def playlist(self, name: str = "live", window: int = 6, query: str = "") -> Playlist:
        return self.playlists.setdefault(name, Playlist(window, query))

    def add(self, name: str, segment: Segment, discontinuity: bool = False) -> int:
        self.segments[segment.name] = segment.data
        return self.playlist(name).add(segment, discontinuity)

    def answer(self, path: str) -> tuple[int, bytes, str]:
        m3u8 = "application/vnd.apple.mpegurl"
        if path in self.files:
            body, ctype = self.files[path]
            return 200, body, ctype
        if path in self.aliases:
            path = f"/{self.aliases[path]}.m3u8"
            m3u8 = "application/octet-stream"  # a careless server: only the body says HLS
        if path == "/master.m3u8" and self.variants:
            lines = ["#EXTM3U"]
            for name, bandwidth, size in self.variants:
                lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={size}", f"{name}.m3u8"]
            return 200, ("\n".join(lines) + "\n").encode(), m3u8
        if path.endswith(".m3u8"):
            playlist = self.playlists.get(path[1:-5])
            if playlist is None or not playlist.available or not (playlist.entries or playlist.frozen):
                return 404, b"not found", "text/plain"
            return 200, playlist.text().encode(), m3u8
        if path.startswith("/seg/"):
            name = path[5:]
            if name in self.missing or name not in self.segments:
                return 404, b"not found", "text/plain"
            return 200, self.segments[name], "video/mp2t"
        return 404, b"not found", "text/plain"

    def hits(self, fragment: str) -> list[tuple[float, int]]:
        return [(t, status) for t, path, status in self.requests if fragment in path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class DirServer:
    """Serves a directory (an ffmpeg HLS output) on 127.0.0.1 and logs the requests."""

    def __init__(self, directory: Path) -> None:
        self.requests: list[tuple[float, str, int]] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def log_message(self, *args):
                pass

            def send_response(self, code, message=None):
                server.requests.append((time.monotonic(), self.path, code))
                super().send_response(code, message)

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, name="dir-server", daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def hits(self, fragment: str) -> list[tuple[float, int]]:
        return [(t, status) for t, path, status in self.requests if fragment in path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def feed(server: HlsServer, name: str, segments: list[Segment], *, pace: float | None = None,
         stop: threading.Event | None = None, discontinuity_first: bool = False) -> threading.Thread:
    """Append ``segments`` to playlist ``name`` in real time (each after its duration,
    or ``pace`` seconds), like a live encoder, on a thread."""

    def run() -> None:
        for i, segment in enumerate(segments):
            if stop is not None and stop.wait(pace if pace is not None else segment.duration):
                return
            if stop is None:
                time.sleep(pace if pace is not None else segment.duration)
            server.add(name, segment, discontinuity=discontinuity_first and i == 0)

    thread = threading.Thread(target=run, name="hls-feed", daemon=True)
    thread.start()
    return thread


# -- consuming a source like the stream actor ----------------------------------------


@dataclass
class Out:
    kind: str  # "video" | "audio"
    raw: float  # the packet's raw timestamp (s)
    t: float  # its stream time (StreamClock.packet_time)
    wall: float  # monotonic time it came out of the plugin
    keyframe: bool


@dataclass
class SessionLog:
    started: float
    size: tuple[int, int] | None
    packets: list[Out] = field(default_factory=list)
    ended: float | None = None
    discontinuity: bool = False

    def raws(self, kind: str = "video") -> list[float]:
        return [p.raw for p in self.packets if p.kind == kind]

    def times(self, kind: str | None = None) -> list[float]:
        return [p.t for p in self.packets if kind is None or p.kind == kind]


class Collector(threading.Thread):
    """Iterates ``source.sessions(stop)`` on a thread, as the actor's ingest thread does:
    ``StreamClock.begin_session()`` per session and ``packet_time`` per packet."""

    def __init__(self, source) -> None:
        super().__init__(name="collector", daemon=True)
        self.source = source
        self.stop_event = threading.Event()
        self.clock = StreamClock()
        self.sessions: list[SessionLog] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        try:
            for session in self.source.sessions(self.stop_event):
                self.clock.begin_session()
                video = session.video
                log = SessionLog(
                    time.monotonic(),
                    (video.codec_context.width, video.codec_context.height) if video is not None else None,
                )
                with self.changed:
                    self.sessions.append(log)
                    self.changed.notify_all()
                for packet in session.packets():
                    t = self.clock.packet_time(packet)
                    if t is None:
                        continue
                    raw = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
                    with self.changed:
                        log.packets.append(Out(packet.stream.type, raw, t, time.monotonic(), packet.is_keyframe))
                        self.changed.notify_all()
                with self.changed:
                    log.ended = time.monotonic()
                    log.discontinuity = getattr(session, "discontinuity", False)
                    self.changed.notify_all()
        except BaseException as e:  # noqa: BLE001 - the test asserts on it
            self.error = e
        finally:
            with self.changed:
                self.done.set()
                self.changed.notify_all()

    @property
    def status(self) -> str:
        """What the actor would show: live inside a session, waiting between them."""
        with self.changed:
            return "live" if self.sessions and self.sessions[-1].ended is None else "waiting"

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0 or self.done.is_set():
                    return bool(predicate(self))
                self.changed.wait(min(left, 0.2))
            return True

    def video_out(self) -> list[Out]:
        with self.changed:
            return [p for s in self.sessions for p in s.packets if p.kind == "video"]

    def finish(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.source.close()
        self.join(timeout)
        assert not self.is_alive(), "the source did not stop"


# -- latency measurement -------------------------------------------------------------


def measure_latency(segment: float, count: int, workdir: Path, seed: int = 1) -> tuple[list[float], list[float]]:
    """Seconds from each segment appearing in the playlist to its first video packet
    out of the URL plugin, and from the plugin's request for the segment to that packet
    (fetch + demux). Segments appear at a random point of their slot, as an encoder's do,
    so the phase against the playlist reloads varies (the first three, read at session
    start, are left out)."""
    import random

    from stream_actor.sources import UrlSource

    rng = random.Random(seed)
    segments = make_segments(workdir, f"lat{int(segment * 10)}", seconds=segment * (count + 4), segment=segment)
    server = HlsServer()
    playlist = server.playlist("live")
    for s in segments[:3]:
        server.add("live", s)
    collector = Collector(UrlSource(server.url(), {"allow_private": True}))
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 20), collector.error
        first_live = len(playlist.entries)
        slot = time.monotonic()
        for s in segments[3:]:
            slot += s.duration
            time.sleep(max(0.0, slot + rng.uniform(0.0, 0.9) * s.duration - time.monotonic()))
            server.add("live", s)
        time.sleep(segment * 2 + 1)
        out = collector.video_out()
    finally:
        collector.finish()
        server.close()
    entries = playlist.entries[first_live:]
    total = segment_latencies(out, playlist, entries)
    fetched = {path.rsplit("/", 1)[-1].split("?")[0]: t for t, path, _ in reversed(server.requests)}
    after_fetch = []
    for num, s, _ in entries:
        first = next((p for p in out if s.start - 1e-3 <= p.raw < s.end - 1e-3), None)
        if first is not None and s.name in fetched:
            after_fetch.append(first.wall - fetched[s.name])
    return total, after_fetch


def segment_latencies(out: list[Out], playlist: Playlist, entries) -> list[float]:
    """For each (num, segment, _) entry: seconds from its appearance in ``playlist`` to
    its first video packet in ``out`` (entries whose packets never came are left out)."""
    latencies = []
    for num, s, _ in entries:
        first = next((p for p in out if s.start - 1e-3 <= p.raw < s.end - 1e-3), None)
        if first is not None:
            latencies.append(first.wall - playlist.appeared[num])
    return latencies


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="segments measured per duration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for duration in (1.0, 2.0):
            total, after_fetch = measure_latency(duration, args.count, Path(tmp))
            for what, lat in (("appeared -> first packet", total), ("requested -> first packet", after_fetch)):
                lat = sorted(lat)
                p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
                print(
                    f"{duration:.0f} s segments, {what}: n={len(lat)} min {lat[0]:.3f} "
                    f"p50 {statistics.median(lat):.3f} p95 {p95:.3f} max {lat[-1]:.3f} "
                    f"mean {statistics.fmean(lat):.3f} s"
                )


if __name__ == "__main__":
    main()
