"""The RTSP source plugin against a real RTSP server (GStreamer's gst-rtsp-server, see
``tests/rtsp_server.py``): URL claims, packets over TCP and UDP, basic auth, a camera that
drops and comes back, a camera that goes silent, stop, and credentials kept out of logs.

The session start latency and the reconnect time measured here are printed (``-s``) and
attached to the test report (``record_property``).
"""
from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from rtsp_server import RtspServer, require_gst_rtsp_server

from bench.stack import free_port
from stream_actor.sources import NoSource, RtspSource, UrlSource, source_for
from records.redact import redact_text, redact_url

PRIVATE = {"allow_private": True}  # the test camera is on loopback (the operator's --allow-private-urls)

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
USER, SECRET = "viewer", "s3cr3t-Pa55"


@pytest.fixture(scope="module")
def camera_media(tmp_path_factory, ffmpeg) -> Path:
    """20 s of what a camera encodes: H.264 (baseline-ish, 1 s GOP) + AAC, 320x240@15."""
    path = tmp_path_factory.mktemp("rtsp") / "camera.mp4"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "15",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def gst_rtsp_server():
    require_gst_rtsp_server()  # a required peer: fails loudly when missing, never skips


@pytest.fixture
def camera(camera_media, gst_rtsp_server, tmp_path):
    """A real RTSP server with basic auth, serving the camera media at /cam."""
    server = RtspServer(camera_media, free_port(), user=USER, password=SECRET, log_path=tmp_path / "rtsp.log")
    server.start()
    yield server
    server.stop()


@dataclass
class Recorded:
    started: float  # monotonic time the connection attempt that made the session began
    start_latency: float = 0.0
    first_packet: float | None = None
    ended: float | None = None
    error: str | None = None
    packets: list[tuple] = field(default_factory=list)  # (wall, type, pts s, dts s, key)


class Reader:
    """Iterates ``source.sessions()`` in a thread, recording each session's packets."""

    def __init__(self, source: RtspSource) -> None:
        self.source = source
        self.stop = threading.Event()
        self.sessions: list[Recorded] = []
        self.done = threading.Event()
        self.changed = threading.Condition()
        self.began = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for session in self.source.sessions(self.stop):
                rec = Recorded(started=session.opened_at - session.start_latency, start_latency=session.start_latency)
                with self.changed:
                    self.sessions.append(rec)
                for p in session.packets():
                    tb = p.time_base
                    row = (
                        time.monotonic(), p.stream.type,
                        None if p.pts is None else float(p.pts * tb),
                        None if p.dts is None else float(p.dts * tb),
                        p.is_keyframe,
                    )  # fmt: skip
                    with self.changed:
                        if rec.first_packet is None:
                            rec.first_packet = row[0]
                        rec.packets.append(row)
                        self.changed.notify_all()
                with self.changed:
                    rec.ended, rec.error = time.monotonic(), session.error
                    self.changed.notify_all()
        finally:
            self.done.set()
            with self.changed:
                self.changed.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.1))
            return True

    def wait_packets(self, index: int, count: int, timeout: float) -> Recorded:
        ok = self.wait(lambda: len(self.sessions) > index and len(self.sessions[index].packets) >= count, timeout)
        assert ok, f"session {index} did not yield {count} packets in {timeout}s: {self.summary()}"
        return self.sessions[index]

    def summary(self) -> str:
        return (
            f"{[(len(s.packets), s.error) for s in self.sessions]}, "
            f"last_error={self.source.last_error!r}, failures={self.source.failures}"
        )

    def close(self, timeout: float = 5.0) -> float:
        """Set stop; return how long sessions() took to return."""
        t = time.monotonic()
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "sessions() did not return after stop"
        return time.monotonic() - t


def _check_timestamps(rec: Recorded, wall_seconds: float) -> None:
    """Video and audio, each with non-decreasing dts, starting together, in real time."""
    kinds = {row[1] for row in rec.packets}
    assert kinds == {"video", "audio"}, kinds
    for kind in ("video", "audio"):
        rows = [r for r in rec.packets if r[1] == kind]
        times = [r[3] if r[3] is not None else r[2] for r in rows]
        assert all(t is not None for t in times), kind
        assert all(b >= a - 1e-6 for a, b in zip(times, times[1:])), f"{kind} timestamps go back"
        assert abs(times[0]) < 1.0, f"{kind} starts at {times[0]}"
        span = times[-1] - times[0]
        # paced like a live camera: the media time covered is about the wall time read
        assert wall_seconds - 1.0 <= span <= wall_seconds + 1.0, (kind, span, wall_seconds)
    video = [r for r in rec.packets if r[1] == "video"]
    assert video[0][4], "the first video packet is a keyframe"
    video_span = video[-1][2] - video[0][2]
    assert sum(r[4] for r in video) >= max(1, int(video_span)), "a keyframe every second (1 s GOP)"
    first = {kind: next(r[3] if r[3] is not None else r[2] for r in rec.packets if r[1] == kind) for kind in ("video", "audio")}
    assert abs(first["video"] - first["audio"]) < 0.5, first


def _udp_sockets() -> set:
    return {tuple(c.laddr) for c in psutil.Process().net_connections(kind="udp")}


# -- which plugin claims which URL ----------------------------------------------------

CLAIMS = [
    # url, claimed by RtspSource
    ("rtsp://192.168.1.20/cam", True),
    ("rtsp://admin:hunter2@10.0.0.7:554/Streaming/Channels/101", True),
    ("RTSP://CAM.EXAMPLE.COM/live", True),
    ("rtsps://cam.example.com:322/stream1?channel=1", True),
    ("rtsp://[fe80::1]:8554/cam", True),
    ("rtsp://", False),
    ("rtsp:/cam.example.com/live", False),
    ("rtspx://cam.example.com/live", False),
    ("rtmp://ingest.example.com/live/key", False),
    ("http://cam.example.com/video.mjpg", False),
    ("https://cdn.example.com/live/index.m3u8", False),
    ("http://example.com/?next=rtsp://cam/x", False),
    ("/data/cams/rtsp_dump.mp4", False),
    ("srt://cam.example.com:9000", False),
]


@pytest.mark.parametrize("url,claimed", CLAIMS)
def test_plugin_claims(url, claimed):
    assert RtspSource.matches(url) is claimed
    if claimed:
        assert isinstance(source_for("url", url), RtspSource)  # ahead of the generic plugin
        assert RtspSource.priority > UrlSource.priority
    else:
        try:
            assert not isinstance(source_for("url", url), RtspSource)
        except NoSource:
            pass


def test_options():
    src = source_for("url", "rtsp://cam.example.com/x")
    assert src.options.transport == "tcp" and src.port == 554
    src = source_for("url", "rtsps://cam.example.com/x", {"transport": "udp"})
    assert src.options.transport == "udp" and src.port == 322
    with pytest.raises(ValueError, match="unknown field `quality`"):  # the HTTP plugin's option, not this one's
        source_for("url", "rtsp://cam.example.com/x", {"quality": "best"})
    with pytest.raises(ValueError, match="max_backoff"):
        source_for("url", "rtsp://cam.example.com/x", {"max_backoff": 0})
    assert source_for("url", "rtsp://cam:8554/x").port == 8554
    with pytest.raises(ValueError, match="transport"):
        source_for("url", "rtsp://cam.example.com/x", {"transport": "carrier-pigeon"})
    with pytest.raises(ValueError):
        source_for("url", "rtsp://cam.example.com/x", {"timeout": 0})


REDACTIONS = [
    ("rtsp://user:pass@host/x", "rtsp://user:***@host/x"),
    ("rtsp://admin:p@ss@10.0.0.7:554/ch1", "rtsp://admin:***@10.0.0.7:554/ch1"),  # "@" in the password
    ("rtsp://admin:pa/ss@10.0.0.7/ch1", "rtsp://admin:***@10.0.0.7/ch1"),  # "/" in the password
    ("rtsps://:only-a-password@cam/x", "rtsps://:***@cam/x"),
    ("rtsp://user@host/x", "rtsp://user@host/x"),  # a user name alone stays
    ("rtsp://host:554/x", "rtsp://host:554/x"),
    ("https://cdn/x.m3u8?token=abc&q=720p", "https://cdn/x.m3u8?token=***&q=720p"),
    ("https://b.s3/x.ts?X-Amz-Signature=ab12&X-Amz-Credential=AK%2F1&v=1",
     "https://b.s3/x.ts?X-Amz-Signature=***&X-Amz-Credential=***&v=1"),
    ("http://h/live?api_key=k1;password=p1#access_token=t1", "http://h/live?api_key=***;password=***#access_token=***"),
    ("http://h/v?codec=h264&channel=2", "http://h/v?codec=h264&channel=2"),
    ("not a url", "not a url"),
]  # fmt: skip


@pytest.mark.parametrize("url,expected", REDACTIONS)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_text():
    message = "[Errno 111] Connection refused: 'rtsp://u:hunter2@127.0.0.1:1/cam' (then http://a:b@c/d?sig=zz)."
    out = redact_text(message)
    assert "hunter2" not in out and ":b@" not in out and "zz" not in out
    assert out == "[Errno 111] Connection refused: 'rtsp://u:***@127.0.0.1:1/cam' (then http://a:***@c/d?sig=***)."


# -- a real camera ---------------------------------------------------------------------


def test_tcp_session_yields_video_and_audio_in_real_time(camera, record_property):
    sdp = camera.describe()  # what a camera announces: H.264 with its parameter sets, AAC
    assert "H264/90000" in sdp and "sprop-parameter-sets" in sdp and "mpeg4-generic/48000" in sdp.lower(), sdp
    before = _udp_sockets()
    connect_from_ready = time.monotonic() - camera.ready_at
    reader = Reader(source_for("url", camera.url(), PRIVATE))
    try:
        rec = reader.wait_packets(0, 1, timeout=10)
        assert not (_udp_sockets() - before), "TCP transport uses no UDP socket"
        time.sleep(3.0)
        rec = reader.sessions[0]
        _check_timestamps(rec, rec.packets[-1][0] - rec.first_packet)
        assert rec.ended is None and len(reader.sessions) == 1
        latency = rec.first_packet - rec.started
    finally:
        stop_time = reader.close()
    assert stop_time < 1.0, stop_time
    record_property("rtsp_tcp_session_start_s", round(latency, 3))
    print(f"\nRTSP/TCP session start: {latency * 1000:.0f} ms from connect to first packet "
          f"(open {rec.start_latency * 1000:.0f} ms; server ready {connect_from_ready * 1000:.0f} ms before)")
    assert latency < 1.5


def test_udp_session_yields_video_and_audio(camera, record_property):
    before = _udp_sockets()
    reader = Reader(source_for("url", camera.url(), {**PRIVATE, "transport": "udp"}))
    try:
        rec = reader.wait_packets(0, 1, timeout=10)
        rtp_ports = _udp_sockets() - before
        assert len(rtp_ports) >= 2, f"RTP/RTCP over UDP: {rtp_ports}"  # RTP + RTCP per stream
        time.sleep(2.5)
        rec = reader.sessions[0]
        _check_timestamps(rec, rec.packets[-1][0] - rec.first_packet)
        latency = rec.first_packet - rec.started
    finally:
        reader.close()
    record_property("rtsp_udp_session_start_s", round(latency, 3))
    print(f"\nRTSP/UDP session start: {latency * 1000:.0f} ms from connect to first packet")


def test_sdp_without_parameter_sets(camera_media, gst_rtsp_server, tmp_path, record_property):
    """Some cameras leave sprop-parameter-sets out of the SDP: with no probing configured,
    FFmpeg still reads on to the in-band SPS, and the session starts at a keyframe."""
    server = RtspServer(camera_media, free_port(), audio=False, sprop=False, log_path=tmp_path / "rtsp.log")
    with server:
        sdp = server.describe()
        assert "H264/90000" in sdp and "sprop-parameter-sets" not in sdp, sdp
        reader = Reader(source_for("url", server.url(), PRIVATE))
        try:
            rec = reader.wait_packets(0, 30, timeout=10)
            latency = rec.first_packet - rec.started
        finally:
            reader.close()
    assert {r[1] for r in rec.packets} == {"video"}
    assert rec.packets[0][4], "the first packet is a keyframe"
    assert latency < 2.0  # at most a GOP (1 s) plus the connection
    record_property("rtsp_no_sprop_session_start_s", round(latency, 3))
    print(f"\nRTSP without sprop-parameter-sets: session start {latency * 1000:.0f} ms")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_server_drops_then_comes_back(camera, transport, record_property, caplog):
    caplog.set_level(logging.INFO, logger="stream_actor")
    source = source_for("url", camera.url(), {**PRIVATE, "transport": transport, "min_backoff": 0.25, "max_backoff": 2.0})
    reader = Reader(source)
    try:
        reader.wait_packets(0, 30, timeout=10)
        killed = time.monotonic()
        camera.stop(kill=True)  # the camera loses power: its sockets close at once
        assert reader.wait(lambda: reader.sessions[0].ended is not None, timeout=3), reader.summary()
        ended_after = reader.sessions[0].ended - killed
        # it keeps trying, backing off, while the server is down
        assert reader.wait(lambda: source.failures >= 3, timeout=5), reader.summary()
        assert "Connection refused" in (source.last_error or ""), source.last_error
        camera.start()
        rec = reader.wait_packets(1, 1, timeout=10)
        reconnect = rec.first_packet - camera.ready_at
        rec = reader.wait_packets(1, 120, timeout=10)
        _check_timestamps(rec, rec.packets[-1][0] - rec.first_packet)  # a fresh timeline
        assert source.sessions_started == 2 and source.failures == 0
    finally:
        reader.close()
    record_property(f"rtsp_{transport}_drop_noticed_s", round(ended_after, 3))
    record_property(f"rtsp_{transport}_reconnect_s", round(reconnect, 3))
    print(f"\nRTSP/{transport}: drop noticed in {ended_after * 1000:.0f} ms; "
          f"first packet {reconnect * 1000:.0f} ms after the server was back (backoff 0.25 s → 2 s)")
    assert ended_after < 1.0
    assert reconnect < 2.0 + 1.5  # at most one backoff wait plus a connect
    assert "retrying in" in caplog.text


def test_silent_camera_is_noticed_by_the_socket_timeout(camera):
    source = source_for("url", camera.url(), {**PRIVATE, "timeout": 1.0, "min_backoff": 5.0})
    reader = Reader(source)
    try:
        reader.wait_packets(0, 10, timeout=10)
        camera.pause()  # SIGSTOP: the connection stays open, no byte comes
        paused = time.monotonic()
        assert reader.wait(lambda: reader.sessions[0].ended is not None, timeout=8), reader.summary()
        noticed = reader.sessions[0].ended - paused
        assert "TimeoutError" in (reader.sessions[0].error or ""), reader.sessions[0].error
        last_packet = reader.sessions[0].packets[-1][0]
        # ``timeout`` is FFmpeg's rtsp socket timeout in microseconds: 1 s after the last byte
        assert 0.8 <= reader.sessions[0].ended - last_packet <= 4.0, reader.sessions[0].ended - last_packet
        assert noticed < 6.0
    finally:
        stop_time = reader.close()  # stops during the 5 s backoff: at once
        camera.resume()
    assert stop_time < 1.0, stop_time


def test_stop_interrupts_a_read_blocked_on_a_silent_camera(camera):
    """With a long socket timeout, ``stop`` still ends the session at once: the plugin
    shuts the RTSP connection down under FFmpeg's blocked read."""
    for transport in ("tcp", "udp"):
        source = source_for("url", camera.url(), {**PRIVATE, "transport": transport, "timeout": 30.0})
        reader = Reader(source)
        try:
            reader.wait_packets(0, 10, timeout=10)
            camera.pause()
            time.sleep(1.5)  # the reader drains what was in flight, then blocks
            stop_time = reader.close()
        finally:
            camera.resume()
        assert stop_time < 1.5, (transport, stop_time)
        assert reader.sessions[0].ended is not None


def test_stop_interrupts_backoff_and_close_ends_a_session(camera):
    camera.stop()
    source = source_for("url", camera.url(), {**PRIVATE, "min_backoff": 20.0})
    reader = Reader(source)
    assert reader.wait(lambda: source.failures >= 1, timeout=5)
    assert reader.close() < 1.0  # not the 20 s backoff
    camera.start()
    source = source_for("url", camera.url(), PRIVATE)
    reader = Reader(source)
    try:
        reader.wait_packets(0, 5, timeout=10)
        t = time.monotonic()
        source.close()  # from another thread
        assert reader.wait(lambda: reader.done.is_set(), timeout=3), reader.summary()
        assert time.monotonic() - t < 2.0
    finally:
        reader.close()


def test_credentials_never_logged(camera, caplog):
    caplog.set_level(logging.DEBUG)
    # a wrong password: the server answers 401, the source keeps trying
    wrong = source_for("url", camera.url(password="not-the-" + SECRET), {**PRIVATE, "min_backoff": 0.2, "max_backoff": 0.5})
    reader = Reader(wrong)
    try:
        assert reader.wait(lambda: wrong.failures >= 2, timeout=10), reader.summary()
        assert not reader.sessions
        assert "401" in (wrong.last_error or "") or "Unauthorized" in (wrong.last_error or ""), wrong.last_error
    finally:
        reader.close()
    # the right one: a session; then the camera goes silent (a timeout error quoting the URL)
    # and dies (refused connections, each quoting the URL)
    right = source_for("url", camera.url(), {**PRIVATE, "timeout": 1.0, "min_backoff": 0.2, "max_backoff": 0.5})
    reader = Reader(right)
    try:
        reader.wait_packets(0, 10, timeout=10)
        camera.pause()
        assert reader.wait(lambda: reader.sessions[0].ended is not None, timeout=8), reader.summary()
        camera.stop(kill=True)
        assert reader.wait(lambda: right.failures >= 2, timeout=10), reader.summary()
    finally:
        reader.close()
    text = caplog.text + "".join(str(r.exc_text or "") for r in caplog.records)
    assert SECRET not in text
    assert SECRET not in (right.last_error or "") and SECRET not in (wrong.last_error or "")
    assert f"{USER}:***@" in text  # the URLs were logged, redacted
    # AvSession (base.py) logs PyAV's error, which quotes the URL: redacted by the filter
    base = [r.getMessage() for r in caplog.records if r.name == "stream_actor.sources.base"]
    assert any("TimeoutError" in m and f"{USER}:***@" in m for m in base), base
    assert "Connection refused" in text and ("401" in text or "Unauthorized" in text)
