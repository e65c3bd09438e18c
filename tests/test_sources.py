"""Source plugins: the registry, RTMP push relayed as FLV over TCP, local files."""
from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from flv_pusher import FlvPusher

from stream_actor.sources import FlvPushSource, NoSource, UrlSource, registry, source_for

pytestmark = pytest.mark.usefixtures("ffmpeg")  # a required peer: fails loudly when missing

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """4 s of H.264 (B-frames, 2 s GOP) + AAC in MP4."""
    path = tmp_path_factory.mktemp("media") / "src.mp4"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", str(path)],
        check=True,
    )
    return path


# Which URLs each plugin claims, URL safety and live HLS: tests/test_url_source.py.

PRIVATE = {"allow_private": True}  # local files need the operator's --allow-private-urls


def test_registry_lookup(media):
    assert {FlvPushSource, UrlSource} <= set(registry())
    src = source_for("url", str(media), {"realtime": True})
    assert isinstance(src, UrlSource) and src.options.realtime
    with pytest.raises(ValueError, match="unknown field `unrelated_setting`"):  # each plugin's options are typed
        source_for("url", str(media), {"realtime": True, "unrelated_setting": 1})
    push = source_for("rtmp", None, {"idle_timeout": 5, "allow_private": False})
    try:
        assert isinstance(push, FlvPushSource) and push.options.idle_timeout == 5
        assert push.endpoint[0] == "127.0.0.1" and push.endpoint[1] > 0  # loopback without Ray
    finally:
        push.close()
    with pytest.raises(NoSource):
        source_for("url", "ftp://files.example.com/a.mp4", {})
    with pytest.raises(NoSource):
        source_for("carrier-pigeon", None, {})


# -- RTMP push (FLV over TCP) ---------------------------------------------------------


def push_flv(media: Path, src: FlvPushSource, seconds: float) -> FlvPusher:
    """As the edge does: a fresh ticket, the token, then the FLV."""
    return FlvPusher(media, *src.ingest_ticket(), seconds)


def test_flv_push_sessions(media):
    src = FlvPushSource()
    stop = threading.Event()
    pusher = push_flv(media, src, 1.5)
    seen = []
    try:
        for session in src.sessions(stop):
            assert session.video is not None and session.audio is not None
            assert session.video.codec_context.name == "h264"
            assert session.audio.codec_context.name == "aac"
            assert session.video.codec_context.width == 320
            if not seen:
                # a second, concurrent connection (with a good token) is closed at once
                intruder = socket.create_connection(src.endpoint, timeout=3)
                intruder.sendall(src.ingest_ticket()[2].encode())
                intruder.settimeout(3)
                t0 = time.monotonic()
                try:
                    assert intruder.recv(1) == b""
                except ConnectionResetError:
                    pass
                assert time.monotonic() - t0 < 1.0
                intruder.close()
            kinds = {"video": 0, "audio": 0}
            for packet in session.packets():
                kinds[packet.stream.type] += 1
            seen.append((session.start_latency, kinds))
            pusher.wait(timeout=10)
            if len(seen) == 1:  # the publisher reconnects: a new session
                pusher = push_flv(media, src, 1.0)
            else:
                stop.set()
    finally:
        pusher.kill()
        src.close()
    assert len(seen) == 2 and src.refused == 1
    for latency, kinds in seen:
        assert latency < 0.5  # small probing: no ~3 s default probe
        assert kinds["video"] >= 10 and kinds["audio"] >= 30


def test_flv_push_stop_interrupts_silent_connection():
    src = FlvPushSource()
    stop = threading.Event()
    silent = socket.create_connection(src.endpoint)  # connects, sends its token, then nothing
    silent.sendall(src.ingest_ticket()[2].encode())
    done = threading.Event()

    def consume():
        for _ in src.sessions(stop):
            pass
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.3)
    stop.set()
    try:
        assert done.wait(3.0), "sessions() did not return after stop"
    finally:
        silent.close()
        src.close()


# -- URL: file ------------------------------------------------------------------------


def test_url_file_realtime(media):
    src = UrlSource(str(media), {"realtime": True, **PRIVATE})
    stop = threading.Event()
    sessions = 0
    stamps = []
    t0 = time.monotonic()
    for session in src.sessions(stop):
        sessions += 1
        assert session.video is not None and session.audio is not None
        for packet in session.packets():
            ts = packet.dts if packet.dts is not None else packet.pts
            stamps.append((time.monotonic() - t0, float(ts * packet.time_base)))
    elapsed = time.monotonic() - t0
    assert sessions == 1  # a file without loop ends the source
    media_span = stamps[-1][1] - stamps[0][1]
    assert 3.5 < media_span < 4.2
    assert media_span - 0.3 < elapsed < media_span + 1.0  # ~1x speed
    # halfway through the media, about half the wall time has passed
    mid = min(stamps, key=lambda s: abs(s[1] - stamps[0][1] - media_span / 2))
    assert abs(mid[0] - media_span / 2) < 0.5


def test_url_file_loop(media):
    src = UrlSource(f"file://{media}", {"loop": True, **PRIVATE})
    stop = threading.Event()
    counts = []
    for session in src.sessions(stop):
        counts.append(sum(1 for _ in session.packets()))
        if len(counts) == 2:
            stop.set()
    assert len(counts) == 2 and counts[0] == counts[1] > 50


def test_url_missing_file_raises(tmp_path):
    src = UrlSource(str(tmp_path / "nope.mp4"), PRIVATE)
    with pytest.raises(FileNotFoundError):
        next(src.sessions(threading.Event()))
