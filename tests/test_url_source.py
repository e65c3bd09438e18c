"""The URL source plugin: which URLs it claims and how it resolves them, URL safety and
redaction, quality selection, offline → live → offline with a real ffmpeg HLS writer,
and what real HLS does (stalls, missing and repeated segments, discontinuities, a
variant change) against a scripted HLS server. Stream times are checked the way the
actor computes them (``StreamClock.packet_time`` per session)."""
from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time

import pytest
import requests

from hls_fixture import FFMPEG, Collector, DirServer, HlsServer, make_segments, segment_latencies
from stream_actor.sources import FlvPushSource, UrlSource
from records.guarded_http import guard_session
from records.url_policy import UnsafeUrl, UrlPolicy, public_address
from stream_actor.sources.base import Backoff
from records.redact import redact_text, redact_url

pytestmark = pytest.mark.usefixtures("ffmpeg")  # a required peer: fails loudly when missing

PRIVATE = {"allow_private": True}  # the tests serve from loopback


@pytest.fixture(scope="module")
def segs(tmp_path_factory) -> dict[str, list]:
    """Segments made once: "a" 320x240 and "b" 480x270 (1 s each), "low" 160x120."""
    out = tmp_path_factory.mktemp("segments")
    return {
        "a": make_segments(out, "a", seconds=24),
        "b": make_segments(out, "b", seconds=6, size="480x270", tone=660),
        "low": make_segments(out, "low", seconds=6, size="160x120"),
    }


@pytest.fixture
def server():
    srv = HlsServer()
    yield srv
    srv.close()


def monotonic_per_kind(collector: Collector) -> None:
    """Per stream kind, stream time never goes back, across all sessions."""
    for kind in ("video", "audio"):
        times = [p.t for s in collector.sessions for p in s.packets if p.kind == kind]
        assert times, kind
        backwards = [(a, b) for a, b in zip(times, times[1:]) if b < a - 1e-6]
        assert not backwards, (kind, backwards[:5])


def delivered(collector: Collector, segments, session: int | None = None) -> list[str]:
    """Names of the segments whose first video frame came out (of all sessions, or of
    one), in order, with repeats."""
    names = []
    if session is None:
        out = collector.video_out()
    else:
        out = [p for p in collector.sessions[session].packets if p.kind == "video"]
    for p in out:
        for s in segments:
            if abs(p.raw - s.start) < 1e-3:
                names.append(s.name)
    return names


# -- which URLs the plugin claims, and how it resolves them (no network) ------------------

CLAIMS = [
    # url, FlvPushSource claims, UrlSource claims, resolver
    ("rtmp://ingest.example.com/live/abc123", True, False, None),
    ("rtmps://ingest.example.com/live/abc123", True, False, None),
    ("/data/videos/match.mp4", False, True, "file"),
    ("./clip.flv", False, True, "file"),
    ("file:///tmp/match.mp4", False, True, "file"),
    ("https://cdn.example.com/v/match.mp4", False, True, "ffmpeg"),
    ("http://127.0.0.1:8080/live/index.m3u8?token=x", False, True, "streamlink:hls"),
    ("https://cdn.example.com/live/index.M3U8", False, True, "streamlink:hls"),
    ("cdn.example.com/live/index.m3u8", False, True, "streamlink:hls"),
    ("hls://cdn.example.com/live/index", False, True, "streamlink:hls"),
    ("hlsvariant://cdn.example.com/live/index", False, True, "streamlink:hls"),
    ("https://cdn.example.com/live/manifest.mpd", False, True, "streamlink:dash"),
    ("https://www.twitch.tv/somechannel", False, True, "streamlink:twitch"),
    ("https://twitch.tv/NAME", False, True, "streamlink:twitch"),
    ("twitch.tv/somechannel", False, True, "streamlink:twitch"),  # no scheme, as in streamlink
    ("https://www.youtube.com/@somechannel/live", False, True, "streamlink:youtube"),
    ("https://www.youtube.com/watch?v=aqz-KE-bpKQ", False, True, "streamlink:youtube"),
    ("https://youtu.be/aqz-KE-bpKQ", False, True, "streamlink:youtube"),
    ("https://kick.com/somechannel", False, True, "streamlink:kick"),
    ("ftp://files.example.com/match.mp4", False, False, None),
    ("srt://ingest.example.com:9000", False, False, None),
    ("just some words", False, False, None),
]


@pytest.mark.parametrize("url,flv,pull,resolver", CLAIMS)
def test_plugin_claims(url, flv, pull, resolver):
    assert FlvPushSource.matches(url) is flv
    assert UrlSource.matches(url) is pull
    if pull:
        assert UrlSource.resolver(url) == resolver


# -- safety -------------------------------------------------------------------------------

URL_CHECKS = [
    # url, allowed without --allow-private-urls, allowed with it
    ("https://www.twitch.tv/somechannel", True, True),
    ("twitch.tv/somechannel", True, True),
    ("https://cdn.example.com/live/index.m3u8?token=abc", True, True),
    ("hls://cdn.example.com/live/index", True, True),
    ("hls://https://cdn.example.com/live/index", True, True),
    ("file:///etc/passwd", False, True),
    ("/etc/passwd", False, True),
    ("./media.mp4", False, True),
    ("http://127.0.0.1:8080/x.m3u8", False, True),
    ("http://localhost/x.m3u8", False, True),
    ("http://foo.localhost/x.m3u8", False, True),
    ("http://[::1]/x.m3u8", False, True),
    ("http://[::ffff:10.0.0.1]/x.m3u8", False, True),
    ("http://10.1.2.3/x.m3u8", False, True),
    ("http://192.168.1.10/x.mp4", False, True),
    ("http://169.254.169.254/latest/meta-data", False, True),
    ("http://224.0.0.1/x.ts", False, True),
    ("http://0.0.0.0/x.ts", False, True),
    ("hls://127.0.0.1/live", False, True),
    ("hls://file:///tmp/x.m3u8", False, True),
    ("https://cdn.example.com/a.m3u8 proxies={'https':'http://10.0.0.1:3128'}", False, False),
    ("https://cdn.example.com/a.m3u8\n", False, False),
    ("ftp://files.example.com/a.mp4", False, False),
    ("gopher://example.com/", False, False),
]


@pytest.mark.parametrize("url,public_ok,private_ok", URL_CHECKS)
def test_check_url(url, public_ok, private_ok):
    for allow, ok in ((False, public_ok), (True, private_ok)):
        if ok:
            UrlPolicy(allow_private=allow).check(url, ("http",))
        else:
            with pytest.raises(UnsafeUrl) as info:
                UrlPolicy(allow_private=allow).check(url, ("http",))
            assert str(info.value)


@pytest.mark.parametrize("addr,public", [
    ("93.184.216.34", True), ("2606:4700::1", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.0.1", False),
    ("100.64.0.1", False), ("169.254.169.254", False), ("0.0.0.0", False), ("224.0.0.251", False),
    ("239.255.255.250", False), ("255.255.255.255", False), ("::1", False), ("fe80::1", False),
    ("fd00::1", False), ("ff02::1", False), ("::ffff:127.0.0.1", False), ("2002:7f00:1::", False),
    ("64:ff9b::a00:1", False), ("64:ff9b::5db8:d822", True),
])
def test_public_address(addr, public):
    assert public_address(addr) is public


def fake_dns(table):
    def resolve(host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in table[host]]
    return resolve


def test_check_host_checks_every_address():
    dns = fake_dns({
        "good.test": ["93.184.216.34", "2606:4700::1"],
        "mixed.test": ["93.184.216.34", "10.0.0.7"],  # one private answer is enough to refuse
        "meta.test": ["169.254.169.254"],
    })
    assert UrlPolicy(resolver=dns).resolve("good.test", 443)
    for host in ("mixed.test", "meta.test"):
        with pytest.raises(UnsafeUrl, match="--allow-private-urls") as info:
            UrlPolicy(resolver=dns).resolve(host, 443)
        assert host in str(info.value)
    with pytest.raises(OSError, match="cannot resolve"):  # a network problem: retried, not refused
        UrlPolicy(resolver=dns).resolve("nowhere.test", 443)


@pytest.fixture
def redirector():
    """A loopback HTTP server: /to-private redirects to its own loopback address."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/to-private":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/secret")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                body = b"#EXTM3U\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


GUARDED = UrlPolicy(allow_networks=("127.0.0.2/32",), resolver=fake_dns({"public.test": ["127.0.0.2"]}))


def test_guard_refuses_redirect_to_private(redirector):
    """A host the policy allows that redirects to a loopback URL: the redirect hop is
    refused before anything connects to it (the mounted adapter connects by address)."""
    session = requests.Session()
    refused = []
    guard_session(session, GUARDED, on_violation=refused.append)
    assert session.get(f"http://public.test:{redirector}/playlist", timeout=5).ok  # the name's checked address
    with pytest.raises(UnsafeUrl, match="127.0.0.1"):
        session.get(f"http://public.test:{redirector}/to-private", timeout=5)
    assert refused
    with pytest.raises(UnsafeUrl, match="local files"):  # streamlink mounts a file:// adapter
        session.get("file:///etc/hostname")
    open_session = requests.Session()
    guard_session(open_session, UrlPolicy(allow_private=True))  # the operator allows it: untouched
    assert open_session.get(f"http://127.0.0.2:{redirector}/playlist", timeout=5).ok


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/live.m3u8",
    "file:///etc/hostname",
    "/etc/hostname",
    "hls://127.0.0.1:9/live",
])
def test_source_refuses_private_urls_with_a_clear_error(url):
    src = UrlSource(url, {})
    with pytest.raises(UnsafeUrl, match="--allow-private-urls"):
        next(src.sessions(threading.Event()))


def test_source_refuses_hls_that_redirects_to_private(redirector):
    """Through streamlink: the playlist request is redirected to loopback: refused, and
    sessions() raises (no retry loop) with the reason."""
    src = UrlSource(f"hls://http://public.test:{redirector}/to-private", {}, policy=GUARDED)
    t0 = time.monotonic()
    with pytest.raises(UnsafeUrl, match="127.0.0.1"):
        next(src.sessions(threading.Event()))
    assert time.monotonic() - t0 < 5


def test_websocket_plugins_are_refused():
    """Plugins that open websockets connect outside the guarded HTTP session: refused
    before they run, unless the operator allows private URLs."""
    src = UrlSource("https://twitcasting.tv/somechannel", {})
    with pytest.raises(UnsafeUrl, match="websockets"):
        next(src.sessions(threading.Event()))


def test_redaction():
    secret = "https://user:hunter2@cdn.example.com/live/index.m3u8?token=s3cr3t&sig=abc#frag"
    shown = redact_url(secret)
    assert "cdn.example.com" in shown and "/live/index.m3u8" in shown
    for leak in ("hunter2", "s3cr3t", "sig=abc"):
        assert leak not in shown
    text = f"Unable to open URL: {secret} (404 Client Error: Not Found for url: {secret})"
    assert "s3cr3t" not in redact_text(text) and "hunter2" not in redact_text(text)
    assert "cdn.example.com/live/index.m3u8" in redact_text(text)


def test_no_url_secrets_in_logs_or_status(server, segs, caplog):
    """Streamlink's own errors quote full URLs (tokens included): they are redacted
    before they reach the logs, and so is the status text."""
    caplog.set_level(logging.DEBUG)
    playlist = server.playlist("live", query="?sig=SEGMENTSECRET")
    for s in segs["a"][:4]:
        server.add("live", s)
    server.missing.add(segs["a"][3].name)  # streamlink logs the failed segment URL
    src = UrlSource(server.url() + "?token=PLAYLISTSECRET", PRIVATE)
    collector = Collector(src)
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 20), collector.error
        time.sleep(1)
        playlist.available = False  # reloads fail, then a reopen fails: URLs in the errors
        assert collector.wait(lambda c: src.last_error and "404" in src.last_error, 20), src.last_error
    finally:
        collector.finish()
    # what reaches the root logger's handlers (pytest also hooks streamlink's own logger,
    # which does not propagate: its records come out through the redacting forwarder)
    assert logging.getLogger("streamlink").propagate is False
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("streamlink"))
    assert "Failed to fetch segment" in logged and "Reloading failed" in logged  # streamlink's records
    assert "token=***" in logged and "sig=***" in logged
    assert '"GET /live.m3u8?token=*** HTTP/1.1"' in logged  # urllib3's DEBUG request lines
    assert "PLAYLISTSECRET" not in logged and "SEGMENTSECRET" not in logged
    assert "PLAYLISTSECRET" not in src.last_error


# -- quality ------------------------------------------------------------------------------


def test_quality_choice_by_streamlink_names():
    src = UrlSource("https://twitch.tv/x", {})
    streams = {n: n for n in ("160p", "360p", "480p", "720p60", "1080p60", "audio_only", "worst", "best")}
    assert src._choose(streams)[0] == "worst"  # the default: cheapest for the detectors
    src.options.quality = "720p60,best"
    assert src._choose(streams)[0] == "720p60"
    src.options.quality = "720p,480p"  # tried in order
    assert src._choose(streams)[0] == "480p"
    src.options.quality = "best"
    assert src._choose(streams)[0] == "best"
    src.options.quality = "1440p"  # not there: the closest
    assert src._choose(streams)[0] == "1080p60"
    src.options.quality = "300p"
    assert src._choose(streams)[0] == "360p"
    src.options.quality = "source"  # not a quality at all: the default
    assert src._choose(streams)[0] == "worst"


@pytest.mark.parametrize("quality,size", [(None, (160, 120)), ("240p", (320, 240)), ("best", (320, 240)), ("1080p,best", (320, 240))])
def test_quality_picks_the_variant(server, segs, quality, size):
    for name, key in (("low", "low"), ("high", "a")):
        for s in segs[key][:3]:
            server.add(name, s)
        server.playlist(name).endlist = True
    server.variants = [("low", 200_000, "160x120"), ("high", 800_000, "320x240")]
    options = dict(PRIVATE, **({"quality": quality} if quality else {}))
    src = UrlSource(server.base + "/master.m3u8", options)
    stop = threading.Event()
    sessions = src.sessions(stop)  # keep it: a collected generator closes its session
    session = next(sessions)
    try:
        assert (session.video.codec_context.width, session.video.codec_context.height) == size
    finally:
        stop.set()
        src.close()


# -- direct HTTP media, and HLS that does not say so in its URL ------------------------


def test_http_media_and_sniffed_hls(server, segs, tmp_path):
    """A URL no streamlink plugin claims is fetched once through the guarded HTTP session
    (redirects checked) and opened by PyAV; if the body is an HLS playlist it goes to
    streamlink instead (FFmpeg's own HLS demuxer never runs: it would fetch segment URLs
    unchecked)."""
    media = tmp_path / "clip.mp4"
    subprocess.run([*FFMPEG, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-t", "2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", str(media)], check=True)
    server.files["/media/clip"] = (media.read_bytes(), "video/mp4")
    src = UrlSource(server.base + "/media/clip", PRIVATE)
    assert UrlSource.resolver(src.url) == "ffmpeg"
    sessions = [sum(1 for _ in s.packets()) for s in src.sessions(threading.Event())]
    assert sessions == [30]  # finite: played once, then the source ends
    for s in segs["a"][:3]:
        server.add("live", s)
    server.aliases["/live"] = "live"
    src = UrlSource(server.base + "/live", PRIVATE)
    stop = threading.Event()
    sessions = src.sessions(stop)  # keep it: a collected generator closes its session
    session = next(sessions)
    try:
        assert session.container.format.name == "mpegts" and src.quality_name in ("live", "worst")
        assert next(iter(session.packets())) is not None
    finally:
        stop.set()
        src.close()


# -- offline → live → offline with a real ffmpeg live HLS writer ----------------------


def test_offline_waits_then_goes_live_and_back(tmp_path):
    """Requirement 2: no playlist yet (404): the source waits and polls with backoff; an
    encoder starts: a session; the encoder stops (the playlist stops advancing): the
    session ends and the source waits again, without replaying what it already read."""
    web = DirServer(tmp_path)
    src = UrlSource(web.url("live.m3u8"), PRIVATE)
    collector = Collector(src)
    writer = None
    try:
        collector.start()
        time.sleep(1.5)  # polls at 0 and 1 s, then waits 2 s (backoff: 1, 2, 4, ... 30 s)
        assert collector.status == "waiting" and not collector.sessions
        assert [s for _, s in web.hits("live.m3u8")] == [404, 404]
        assert src.last_error and "404" in src.last_error
        writer = subprocess.Popen(
            [*FFMPEG, "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4",
             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
             "-c:a", "aac", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
             "-hls_flags", "delete_segments+omit_endlist", str(tmp_path / "live.m3u8")],
        )
        assert collector.wait(lambda c: c.status == "live", 15), collector.error
        went_live = time.monotonic()
        writer.wait(15)
        stopped = time.monotonic()
        assert collector.wait(lambda c: c.status == "waiting", 15), collector.error
        # the end is noticed once no new segment came for 3 target durations (min 5 s)
        assert 3.0 < time.monotonic() - stopped < 10.0
        assert len(collector.sessions) == 1 and collector.sessions[0].packets
        assert went_live - collector.sessions[0].started < 1
        # the stale playlist (no ENDLIST) is opened again but not replayed
        opens = src.opens
        assert collector.wait(lambda c: src.opens > opens, 5)
        polls = len(web.hits("live.m3u8"))
        assert collector.wait(lambda c: len(web.hits("live.m3u8")) > polls, 5)
        time.sleep(1)
        assert len(collector.sessions) == 1 and collector.status == "waiting"
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        collector.finish()
        web.close()
    assert collector.error is None
    monotonic_per_kind(collector)


def test_backoff_caps_and_stop_interrupts():
    b = Backoff(1.0, 30.0)
    delays = []
    for _ in range(7):
        delays.append(b.next())
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    src = UrlSource("http://127.0.0.1:9/none.m3u8", dict(PRIVATE, max_backoff=30))  # nothing listens
    stop = threading.Event()
    done = threading.Event()

    def consume():
        for _ in src.sessions(stop):
            pass
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(1.5)  # in its second wait
    assert src.opens >= 1 and src.last_error
    t0 = time.monotonic()
    stop.set()
    assert done.wait(2.0) and time.monotonic() - t0 < 1.0


# -- what real HLS throws at a session (scripted server) --------------------------------


def test_hls_reload_stall_short_is_survived_long_ends_and_resumes(server, segs):
    """A stall shorter than streamlink's queue deadline (3 target durations, at least
    5 s) is ridden out in one session; a longer one ends the session, and the reopened
    playlist continues after the last segment delivered: nothing twice, nothing lost."""
    a = segs["a"]
    playlist = server.playlist("live", window=12)
    for s in a[:3]:
        server.add("live", s)
    collector = Collector(UrlSource(server.url(), PRIVATE))
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 15), collector.error
        i = 3
        for _ in range(2):
            time.sleep(1)
            server.add("live", a[i]); i += 1
        playlist.freeze()  # short stall: 3 s without a new playlist
        for _ in range(3):
            time.sleep(1)
            server.add("live", a[i]); i += 1
        playlist.thaw()
        time.sleep(1)
        server.add("live", a[i]); i += 1
        assert collector.wait(lambda c: abs(c.video_out()[-1].raw - a[i - 1].start) < 1.5, 5)
        assert len(collector.sessions) == 1
        playlist.freeze()  # long stall: no new playlist until the session gives up
        stalled = time.monotonic()
        while collector.status == "live" and time.monotonic() - stalled < 10:
            time.sleep(1)
            server.add("live", a[i]); i += 1
        assert 4.5 < time.monotonic() - stalled < 9
        assert collector.status == "waiting" and len(collector.sessions) == 1
        playlist.thaw()
        time.sleep(1)
        server.add("live", a[i]); i += 1
        playlist.endlist = True
        assert collector.wait(lambda c: len(c.sessions) == 2 and c.sessions[1].ended, 15), collector.error
    finally:
        collector.finish()
    assert collector.error is None
    names = delivered(collector, a)
    assert names == [s.name for s in a[: i]]  # every segment once, in order
    monotonic_per_kind(collector)


def test_hls_missing_and_repeated_segments(server, segs):
    """A segment answered with 404 is skipped after streamlink's retries (a timestamp
    gap, one session); a reload that lists old segments again (a stale CDN copy: the
    same media sequence numbers served twice) delivers nothing twice."""
    a = segs["a"]
    playlist = server.playlist("live")
    for s in a[:3]:
        server.add("live", s)
    server.missing.add(a[4].name)
    collector = Collector(UrlSource(server.url(), PRIVATE))
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 15), collector.error
        for i in range(3, 7):  # faster than real time: the test is about what is listed
            time.sleep(0.5)
            server.add("live", a[i])
        stale = playlist.text()
        time.sleep(0.5)
        server.add("live", a[7])
        time.sleep(1.2)
        with playlist.lock:  # the CDN serves an older copy for a while
            playlist.frozen = stale
        time.sleep(2.2)
        playlist.thaw()
        for i in range(8, 10):
            time.sleep(0.5)
            server.add("live", a[i])
        playlist.endlist = True
        assert collector.wait(lambda c: c.sessions[-1].ended, 15), collector.error
    finally:
        collector.finish()
    assert collector.error is None
    assert len(collector.sessions) == 1
    assert len(server.hits(a[4].name)) >= 2  # retried, then skipped
    names = delivered(collector, a)
    assert names == [s.name for s in a[:10] if s is not a[4]]
    times = collector.sessions[0].times("video")
    gaps = [b - x for x, b in zip(times, times[1:])]
    assert 0.9 < max(gaps) < 1.3  # the missing second is a gap in stream time, not a reset
    monotonic_per_kind(collector)


def test_hls_discontinuity_with_timestamp_reset_and_new_variant(server, segs):
    """#EXT-X-DISCONTINUITY into segments of another encode (timestamps restart, the size
    changes, like an ad break or a switched encoder): the session ends at the boundary,
    the next starts at once with the new size, and stream time stays monotonic. The
    ENDLIST then ends the broadcast: the source waits (and does not replay it)."""
    a, b = segs["a"], segs["b"]
    for s in a[:3]:
        server.add("live", s)
    collector = Collector(UrlSource(server.url(), PRIVATE))
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 15), collector.error
        for s in a[3:5]:
            time.sleep(1)
            server.add("live", s)
        for k, s in enumerate(b[:4]):
            time.sleep(1)
            server.add("live", s, discontinuity=k == 0)
        time.sleep(1)
        server.playlist("live").endlist = True
        assert collector.wait(lambda c: len(c.sessions) == 2 and c.sessions[1].ended, 15), collector.error
        time.sleep(2.5)  # polls the ended playlist again
    finally:
        collector.finish()
    assert collector.error is None
    first, second = collector.sessions
    assert first.size == (320, 240) and second.size == (480, 270)
    assert first.discontinuity and not second.discontinuity
    assert second.started - first.ended < 1.0  # no backoff: the next part of the same stream
    assert max(first.raws()) > min(second.raws()) + 3  # raw timestamps did restart
    assert delivered(collector, a, 0) == [s.name for s in a[:5]]
    assert delivered(collector, b, 1) == [s.name for s in b[:4]]
    # added latency, from a 1 s segment appearing in the playlist to its first packet out:
    # the reload interval (target duration, halved while unchanged) + fetch + demux
    # (python -m tests.hls_fixture measures it over more segments)
    playlist = server.playlist("live")
    entries = playlist.entries
    lat = sorted(segment_latencies(first.packets, playlist, entries[3:5])
                 + segment_latencies(second.packets, playlist, entries[6:9]))
    assert len(lat) == 5 and lat[2] < 1.3 and lat[-1] < 2.5, lat
    # the first packet after the discontinuity waits for the new part's probing too
    assert segment_latencies(second.packets, playlist, entries[5:6])[0] < 2.5
    monotonic_per_kind(collector)
    assert second.times()[0] >= max(first.times()) and second.times()[0] - max(first.times()) < 1.5
    assert len(collector.sessions) == 2  # the ended broadcast was not replayed


def test_hls_filtered_segments_split_the_session(server, segs):
    """Segments streamlink filters out (Twitch's ad segments; here by name) pause its
    output; where output resumes, the session ends and the next starts at once."""
    a, b = segs["a"], segs["b"]
    for s in a[:3]:
        server.add("live", s)
    src = UrlSource(server.url(), PRIVATE)
    src._streamlink_session().set_option("hls-segment-ignore-names", [b[0].name[:-3], b[1].name[:-3]])
    collector = Collector(src)
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 15), collector.error
        for s in (b[0], b[1], a[3], a[4]):  # an "ad break", then the show again
            time.sleep(0.5)
            server.add("live", s, discontinuity=s is b[0])  # no tag where the show resumes
        time.sleep(0.5)
        server.playlist("live").endlist = True
        assert collector.wait(lambda c: len(c.sessions) == 2 and c.sessions[1].ended, 15), collector.error
    finally:
        collector.finish()
    first, second = collector.sessions
    assert first.discontinuity and first.size == second.size == (320, 240)
    assert delivered(collector, a, 0) == [s.name for s in a[:3]]
    assert delivered(collector, a, 1) == [s.name for s in a[3:5]]
    # no ad segment reached a demuxer: the sessions hold exactly the show's frames
    assert len(first.raws()) == 45 and len(second.raws()) == 30
    monotonic_per_kind(collector)


def test_hls_variant_change_between_sessions(server, segs):
    """The chosen variant disappears (its playlist 404s, the master lists another): the
    session ends after streamlink's reload attempts and the reopen picks what is there."""
    low, a = segs["low"], segs["a"]
    for s in low[:3]:
        server.add("low", s)
    for s in a[:3]:
        server.add("high", s)
    server.variants = [("low", 200_000, "160x120"), ("high", 800_000, "320x240")]
    collector = Collector(UrlSource(server.base + "/master.m3u8", PRIVATE))
    collector.start()
    try:
        assert collector.wait(lambda c: c.sessions, 15), collector.error
        time.sleep(1)
        server.add("low", low[3])
        server.add("high", a[3])
        server.playlist("low").available = False
        server.variants = [("high", 800_000, "320x240")]
        for s in a[4:12]:
            time.sleep(1)
            server.add("high", s)
            if len(collector.sessions) == 2:
                break
        assert collector.wait(lambda c: len(c.sessions) == 2 and c.sessions[1].packets, 10), collector.error
    finally:
        collector.finish()
    first, second = collector.sessions[:2]
    assert first.size == (160, 120) and second.size == (320, 240)
    monotonic_per_kind(collector)
