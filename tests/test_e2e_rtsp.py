"""End to end for an RTSP camera: a real RTSP server (GStreamer's gst-rtsp-server, with basic
auth) serves a generated broadcast in real time; a url channel reads it with the RTSP plugin
inside the real ``livecut up``. The planted moment gives exactly one clip. Then the camera
dies mid-broadcast (SIGKILL) and comes back on the same port with the rest of the broadcast:
the channel goes from ``live`` to ``waiting`` and back to ``live``, stream time continues,
the calm rest gives no clip, and the camera's password appears in no log.
"""
from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from rtsp_server import RtspServer, require_gst_rtsp_server

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber, free_port

pytestmark = pytest.mark.e2e

USER, SECRET = "cam", "e2e-Secr3t-pw"
RESUME_AT = 34.0  # the camera comes back with the broadcast from here (a keyframe: 2 s GOP)


@pytest.fixture
def camera(tmp_path, ffmpeg, espeak):
    require_gst_rtsp_server()  # a required peer: fails loudly when missing
    truth = make_broadcast(tmp_path / "broadcast.mp4", duration=45.0)
    assert truth.moments and all(m.t < RESUME_AT - 8 for m in truth.moments), truth.moments
    rest = tmp_path / "rest.mp4"  # what the camera sends once it is back: the calm rest
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-ss", str(RESUME_AT),
         "-i", str(tmp_path / "broadcast.mp4"), "-c", "copy", str(rest)],
        check=True,
    )  # fmt: skip
    server = RtspServer(
        tmp_path / "broadcast.mp4", free_port(), user=USER, password=SECRET, log_path=tmp_path / "rtsp.log"
    )
    yield truth, server, rest
    server.stop()


def test_rtsp_camera_clips_each_moment_and_survives_a_drop(livecut_stack, camera):
    stack = livecut_stack
    truth, server, rest = camera
    started = time.time()
    server.start()
    response = stack.api("POST", "/api/channels", json={"name": "rtsp camera", "source": "url", "url": server.url()})
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["ingest"] is None
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    try:
        # The server starts its broadcast when the actor connects (PLAY): stream time 0.
        stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=90)
        clips = subscriber.wait_for(len(truth.moments), timeout=truth.moments[-1].t + 25)
        assert len(clips) == len(truth.moments), clips
        for moment, clip in zip(truth.moments, clips):
            assert clip["stream_start"] <= moment.t <= clip["stream_end"], (moment, clip)
        before = stack.api("GET", f"/api/channels/{channel['id']}").json()
        assert before["status"] == "live", before

        # The camera dies mid-broadcast: the session ends, the channel waits for it.
        server.stop(kill=True)
        killed = time.monotonic()
        waiting = stack.wait_channel(channel["id"], lambda c: c["status"] != "live", timeout=15)
        assert waiting["status"] == "waiting", waiting
        noticed = time.monotonic() - killed
        time.sleep(1.0)  # down for a moment; the plugin keeps trying with backoff

        # Back on the same port with the rest of the broadcast: live again.
        server.start(file=rest)
        live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=20)
        reconnect = time.monotonic() - server.ready_at
        print(
            f"\nRTSP e2e: drop seen by the API {noticed:.1f} s after the kill; live again "
            f"{reconnect:.1f} s after the server was back (API polled every 0.5 s)"
        )
        assert reconnect < 10.0  # at most one backoff step (0.5 s → 10 s cap) plus a connect

        # The rest is calm: no clip; stream time went on from before the drop.
        extra = subscriber.wait_for(len(truth.moments) + 1, timeout=(truth.duration - RESUME_AT) + 3)
        assert len(extra) == len(truth.moments), [(c["stream_start"], c["signals"]) for c in extra]
        after = stack.api("GET", f"/api/channels/{channel['id']}").json()
        assert after["health"]["stream_time"] > before["health"]["stream_time"] + 5, (before["health"], after["health"])
        assert live["health"] is not None
    except BaseException:
        print(stack.log_tail(200))
        raise
    finally:
        subscriber.close()
        stack.api("DELETE", f"/api/channels/{channel['id']}")
    assert SECRET not in stack.log_path.read_text(errors="replace"), "the camera password reached livecut's log"
    leaked = [str(p) for p in _ray_logs_since(started) if SECRET.encode() in p.read_bytes()]
    assert not leaked, f"the camera password reached Ray's logs: {leaked}"


def _ray_logs_since(since: float) -> list[Path]:
    """The log files of local Ray sessions written since ``since`` (wall clock)."""
    out = []
    for path in Path(tempfile.gettempdir(), "ray").glob("session_*/logs/**/*"):
        try:
            if path.is_file() and path.stat().st_mtime >= since and path.stat().st_size < 64 << 20:
                out.append(path)
        except OSError:
            pass
    return out
