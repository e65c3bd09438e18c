"""The one URL policy (``records.url_policy``) and the source plugins that use it: loopback in
every spelling, names resolving to loopback, redirects to loopback (HTTP 302, RTSP 301/302) and
DNS rebinding are refused by the HTTP and RTSP plugins and by VOD probing, before anything
connects to the refused address: a listening socket on loopback sees no connection.

The redirect and rebinding cases need a first hop the policy allows while the target is
loopback: the policy's operator allow-list (``allow_networks``) makes ``127.0.0.2`` count as
allowed while ``127.0.0.1`` stays loopback (Linux routes all of 127/8 to lo), and its
``resolver`` seam gives test names their addresses. Nothing of our own is mocked.
"""
from __future__ import annotations

import http.server
import ipaddress
import socket
import subprocess
import threading
import time

import pytest

from records.url_policy import UnsafeUrl, UrlPolicy, literal_address, public_address
from stream_actor.sources import RtspSource, UrlSource
from vod.errors import VodFailure
from vod.probe import probe
from vod.sources import Location

ALLOWED = "127.0.0.2"  # allowed by the allow-list below: the "public" first hop
POLICY_NETS = (f"{ALLOWED}/32",)
FORMS = ["127.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "loopback.test"]


def dns(table: dict[str, list[str]], calls: list | None = None):
    """A resolver (``getaddrinfo``'s shape) over ``table``; a list of lists answers each call
    with the next entry (the last one repeats): a rebinding name."""

    def resolve(host, port, **kwargs):
        if calls is not None:
            calls.append(host)
        answers = table.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        if answers and isinstance(answers[0], list):
            seen = sum(1 for h in calls or () if h == host)
            answers = answers[min(seen, len(answers)) - 1]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers]

    return resolve


class Listener:
    """A loopback port that counts the connections it is offered."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def loopback():
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory, ffmpeg) -> bytes:
    path = tmp_path_factory.mktemp("media") / "m.ts"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-f", "lavfi", "-i", "sine=sample_rate=16000",
         "-t", "3", "-c:v", "libx264", "-g", "10", "-c:a", "aac", "-f", "mpegts", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


class WebServer:
    """HTTP on ``host:port``: ``/media.ts``, and ``/go?to=URL`` answering 302 to URL."""

    def __init__(self, host: str, media: bytes, port: int = 0) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if self.path.startswith("/go?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/go?to="):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Content-Length", str(len(media)))
                self.end_headers()
                self.wfile.write(media)

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RtspRedirector(Listener):
    """A raw-socket RTSP server on ``host``: every request (OPTIONS, DESCRIBE) is answered
    with ``status`` and ``Location: to`` (or 404 when ``to`` is None)."""

    def __init__(self, host: str, status: int, to: str | None, port: int = 0) -> None:
        self.status, self.to = status, to
        super().__init__(host, port)

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                    while b"\r\n\r\n" in buf:
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        cseq = next((line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                                     if line.lower().startswith(b"cseq:")), b"1")
                        if self.to is None:
                            reply = b"RTSP/1.0 404 Not Found\r\nCSeq: " + cseq + b"\r\n\r\n"
                        else:
                            reply = (f"RTSP/1.0 {self.status} Moved\r\nCSeq: {cseq.decode()}\r\n"
                                     f"Location: {self.to}\r\n\r\n").encode()
                        conn.sendall(reply)
            except OSError:
                return


def same_port_pair() -> tuple[Listener, int]:
    """A loopback listener on 127.0.0.1:P where 127.0.0.2:P is free too."""
    for _ in range(20):
        listener = Listener()
        try:
            probe_sock = socket.create_server((ALLOWED, listener.port))
        except OSError:
            listener.close()
            continue
        probe_sock.close()
        return listener, listener.port
    raise RuntimeError("no port free on both addresses")


def first_session(source, stop: threading.Event | None = None):
    return next(source.sessions(stop or threading.Event()))


# -- the policy itself -------------------------------------------------------------------


@pytest.mark.parametrize("host,address", [
    ("127.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"), ("10.1", "10.0.0.1"), ("192.168.257", "192.168.1.1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("[fe80::1%25eth0]", "fe80::1"),
    ("93.184.216.34", "93.184.216.34"), ("example.com", None), ("1.2.3.4.5", None), ("256.1.1.1", None),
    ("08.1.1.1", None), ("1e1", None),
])
def test_hosts_written_as_addresses_are_read_as_the_c_library_reads_them(host, address):
    got = literal_address(host)
    assert got == (ipaddress.ip_address(address) if address is not None else None)
    if address is not None and ":" not in address and not host.startswith("["):
        try:  # the C library agrees (what FFmpeg and getaddrinfo connect to)
            assert socket.inet_ntoa(socket.inet_aton(host)) == address
        except OSError:
            pytest.fail(f"inet_aton does not read {host!r}")


@pytest.mark.parametrize("url", [
    *(f"{scheme}://{host}:{port}/x" for scheme, port in (("http", 80), ("https", 443), ("rtsp", 554), ("rtsps", 322))
      for host in ("127.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::1]",
                   "169.254.169.254", "[64:ff9b::a9fe:a9fe]", "0", "localhost")),
    "hls://http://127.1/x.m3u8", "127.1:8080/x.m3u8",
])
def test_loopback_and_private_urls_are_refused_statically(url):
    kinds = ("rtsp",) if url.startswith("rtsp") else ("http",)
    with pytest.raises(UnsafeUrl, match="--allow-private-urls"):
        UrlPolicy().check(url, kinds)
    assert UrlPolicy(allow_private=True).check(url, kinds) is not None  # the operator's choice


def test_schemes_are_per_source_kind():
    assert UrlPolicy().check("rtsp://cam.example.com/x", ("rtsp",)).port == 554
    for url, kinds in (("rtsp://cam.example.com/x", ("http",)), ("https://cdn.example.com/x", ("rtsp",)),
                       ("hls://https://cdn.example.com/x", ("rtsp",)), ("gopher://example.com/", ("http", "rtsp"))):
        with pytest.raises(UnsafeUrl, match="scheme"):
            UrlPolicy().check(url, kinds)


def test_a_name_is_refused_if_any_address_is_not_public():
    resolver = dns({"good.test": ["93.184.216.34", "2606:4700::1"], "mixed.test": ["93.184.216.34", "127.0.0.1"],
                    "meta.test": ["169.254.169.254"], "mapped.test": ["::ffff:10.0.0.1"]})
    policy = UrlPolicy(resolver=resolver)
    assert policy.resolve("good.test", 443) == ["93.184.216.34", "2606:4700::1"]
    for host in ("mixed.test", "meta.test", "mapped.test"):
        with pytest.raises(UnsafeUrl) as info:
            policy.resolve(host, 443)
        assert host in str(info.value) and "127.0.0.1" not in str(info.value)  # no DNS answers leak
    with pytest.raises(OSError, match="cannot resolve"):  # a network problem: retried, not refused
        policy.resolve("nowhere.test", 443)
    assert UrlPolicy(allow_networks=("127.0.0.0/8",), resolver=resolver).resolve("mixed.test", 443)
    assert not public_address(ipaddress.ip_address("::ffff:127.0.0.1"))


# -- the plugins refuse before connecting --------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("make", ["http", "hls", "rtsp"])
def test_sources_refuse_loopback_in_every_form_without_connecting(form, make, loopback):
    policy = UrlPolicy(resolver=dns({"loopback.test": ["127.0.0.1"]}))
    url = {
        "http": f"http://{form}:{loopback.port}/live.ts",
        "hls": f"hls://http://{form}:{loopback.port}/live.m3u8",
        "rtsp": f"rtsp://{form}:{loopback.port}/cam",
    }[make]
    source = (RtspSource if make == "rtsp" else UrlSource)(url, {}, policy=policy)
    t0 = time.monotonic()
    with pytest.raises(UnsafeUrl, match="loopback") as info:
        first_session(source)
    assert time.monotonic() - t0 < 10
    assert "--allow-private-urls" in str(info.value)
    time.sleep(0.2)
    assert loopback.connections == 0


@pytest.mark.parametrize("cls,scheme", [(RtspSource, "rtsp"), (UrlSource, "http")])
def test_the_refusal_does_not_tell_whether_a_port_is_open(cls, scheme, loopback):
    """status_reason is no port scanner: the same text for an open and a closed port."""
    closed = Listener()
    closed.close()
    texts = []
    for port in (loopback.port, closed.port):
        with pytest.raises(UnsafeUrl) as info:
            first_session(cls(f"{scheme}://127.1:{port}/x", {}))
        texts.append(str(info.value))
    assert texts[0] == texts[1]
    assert loopback.connections == 0


# -- redirects -----------------------------------------------------------------------------


@pytest.fixture
def web(media):
    server = WebServer(ALLOWED, media)
    yield server
    server.close()


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/x.ts", "http://loopback.test:{port}/x.ts",
                                    "http://2130706433:{port}/x.ts"])
def test_http_source_refuses_a_302_to_loopback(web, loopback, target):
    policy = UrlPolicy(allow_networks=POLICY_NETS, resolver=dns({"loopback.test": ["127.0.0.1"]}))
    to = target.format(port=loopback.port)
    for url in (f"http://{ALLOWED}:{web.port}/go?to={to}", f"hls://http://{ALLOWED}:{web.port}/go?to={to}"):
        with pytest.raises(UnsafeUrl, match="loopback"):
            first_session(UrlSource(url, {}, policy=policy))
    assert any(r.startswith("/go") for r in web.requests)  # the first hop was made
    assert loopback.connections == 0


def test_ffmpeg_redirects_are_checked_too(web, loopback):
    """FFmpeg follows redirects itself (VOD probing, shards, cuts): through the guard's proxy
    each hop is checked; a hop to an allowed address works, one to loopback is refused."""
    policy = UrlPolicy(allow_networks=POLICY_NETS)
    info = probe(Location(f"http://{ALLOWED}:{web.port}/go?to=http://{ALLOWED}:{web.port}/m.ts", policy))
    assert info.video == "h264" and info.duration > 2
    with pytest.raises(VodFailure) as failure:
        probe(Location(f"http://{ALLOWED}:{web.port}/go?to=http://127.0.0.1:{loopback.port}/m.ts", policy))
    assert failure.value.code == "unsafe_url" and "loopback" in str(failure.value)
    with pytest.raises(VodFailure) as failure:  # a bare location: the strict policy
        probe(f"http://{ALLOWED}:{web.port}/m.ts")
    assert failure.value.code == "unsafe_url"
    assert loopback.connections == 0


def test_http_source_plays_through_the_guard(web):
    """An allowed URL still plays (preflight through the guarded adapter, FFmpeg through the
    guard's proxy), a redirect to an allowed address included."""
    policy = UrlPolicy(allow_networks=POLICY_NETS)
    for path in ("/m.ts", f"/go?to=http://{ALLOWED}:{web.port}/m.ts"):
        source = UrlSource(f"http://{ALLOWED}:{web.port}{path}", {}, policy=policy)
        stop = threading.Event()
        session = first_session(source, stop)
        try:
            assert session.video is not None and session.audio is not None
        finally:
            stop.set()
            source.close()


@pytest.mark.parametrize("status", [301, 302])
@pytest.mark.parametrize("target", ["rtsp://127.0.0.1:{port}/cam", "rtsp://loopback.test:{port}/cam",
                                    "rtsp://[::ffff:127.0.0.1]:{port}/cam"])
def test_rtsp_source_refuses_a_redirect_to_loopback(status, target, loopback):
    """FFmpeg's rtsp demuxer follows 3xx by itself; the gate does not pass it on, and the
    plugin checks the new URL before anything connects to it."""
    redirector = RtspRedirector(ALLOWED, status, target.format(port=loopback.port))
    policy = UrlPolicy(allow_networks=POLICY_NETS, resolver=dns({"loopback.test": ["127.0.0.1"]}))
    try:
        source = RtspSource(f"rtsp://{ALLOWED}:{redirector.port}/cam", {"timeout": 3.0}, policy=policy)
        with pytest.raises(UnsafeUrl, match="loopback"):
            first_session(source)
        assert redirector.connections >= 1  # the first hop was made
        time.sleep(0.2)
        assert loopback.connections == 0
    finally:
        redirector.close()


# -- DNS rebinding: public first, loopback second -------------------------------------------


def test_rebinding_cannot_make_the_http_source_connect_to_loopback(media):
    listener, port = same_port_pair()
    web = WebServer(ALLOWED, media, port=port)
    calls: list[str] = []
    policy = UrlPolicy(allow_networks=POLICY_NETS,
                       resolver=dns({"rebind.test": [[ALLOWED], ["127.0.0.1"]]}, calls))
    try:
        source = UrlSource(f"http://rebind.test:{port}/m.ts", {}, policy=policy)
        with pytest.raises(UnsafeUrl, match="loopback"):
            first_session(source)
        assert len(calls) >= 2 and web.requests  # the first answer was used for the first hop
        assert listener.connections == 0
    finally:
        web.close()
        listener.close()


def test_rebinding_cannot_make_the_rtsp_source_connect_to_loopback():
    listener, port = same_port_pair()
    camera = RtspRedirector(ALLOWED, 404, None, port=port)  # answers 404: the source retries
    calls: list[str] = []
    policy = UrlPolicy(allow_networks=POLICY_NETS,
                       resolver=dns({"rebind.test": [[ALLOWED], ["127.0.0.1"]]}, calls))
    try:
        source = RtspSource(f"rtsp://rebind.test:{port}/cam", {"min_backoff": 0.05, "timeout": 3.0}, policy=policy)
        with pytest.raises(UnsafeUrl, match="loopback"):
            first_session(source)
        assert camera.connections >= 1 and len(calls) >= 2
        assert listener.connections == 0
    finally:
        camera.close()
        listener.close()


# -- the peer must be known ------------------------------------------------------------------


def test_proxies_that_would_hide_the_peer_are_not_used(web, loopback, monkeypatch):
    """A proxy chooses the peer itself: guarded sessions refuse explicit proxies and ignore
    the environment's; FFmpeg's guard refuses to run when ``no_proxy`` would let FFmpeg
    bypass it."""
    import requests

    from records.guarded_http import ffmpeg_options, guard_session

    policy = UrlPolicy(allow_networks=POLICY_NETS)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{loopback.port}")
    session = requests.Session()
    guard_session(session, policy)
    assert session.get(f"http://{ALLOWED}:{web.port}/m.ts", timeout=5).ok  # direct, to the checked address
    with pytest.raises(UnsafeUrl, match="proxy"):
        session.get(f"http://{ALLOWED}:{web.port}/m.ts", proxies={"http": f"http://127.0.0.1:{loopback.port}"})
    assert loopback.connections == 0
    assert "http_proxy" in ffmpeg_options(f"http://{ALLOWED}/m.ts", policy)
    monkeypatch.setenv("no_proxy", "cdn.example.com")
    with pytest.raises(UnsafeUrl, match="no_proxy"):
        ffmpeg_options(f"http://{ALLOWED}/m.ts", policy)
    assert ffmpeg_options(f"http://{ALLOWED}/m.ts", UrlPolicy(allow_private=True)) == {}


def test_rtsp_redirect_to_an_allowed_camera_is_followed(tmp_path, ffmpeg):
    """A redirect the policy allows is followed by the plugin (through a new gate): the
    session comes from the camera it names."""
    from rtsp_server import RtspServer, require_gst_rtsp_server

    from bench.stack import free_port

    require_gst_rtsp_server()
    clip = tmp_path / "cam.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=160x120:rate=15", "-t", "10", "-c:v", "libx264", "-g", "15", "-pix_fmt", "yuv420p",
         str(clip)],
        check=True,
    )  # fmt: skip
    camera = RtspServer(clip, free_port(), audio=False, log_path=tmp_path / "rtsp.log")
    camera.start()
    redirector = RtspRedirector(ALLOWED, 302, camera.url())
    policy = UrlPolicy(allow_networks=("127.0.0.0/8",))
    stop = threading.Event()
    source = RtspSource(f"rtsp://{ALLOWED}:{redirector.port}/old", {}, policy=policy)
    try:
        session = first_session(source, stop)
        assert session.video is not None and redirector.connections == 1
    finally:
        stop.set()
        source.close()
        redirector.close()
        camera.stop()
