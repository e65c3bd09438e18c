"""Faults on the real stack: a stream actor's process killed or frozen comes back by itself."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.e2e


def _new_rtmp_channel(stack, name: str) -> dict:
    response = stack.api("POST", "/api/channels", json={"name": name, "source": "rtmp"})
    assert response.status_code == 201, response.text
    channel = response.json()
    return stack.wait_channel(channel["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)


def _publish(ffmpeg: str, channel: dict, seconds: int) -> subprocess.Popen:
    url = f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_sigkilled_stream_actor_is_back_within_10s_and_takes_the_next_publish(livecut_stack, ffmpeg):
    stack = livecut_stack
    channel = _new_rtmp_channel(stack, "kill me")
    push = _publish(ffmpeg, channel, 60)
    try:
        live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=30)
        old_pid = live["health"]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        killed = time.monotonic()
        back = stack.wait_channel(
            channel["id"], lambda c: c["health"]["pid"] not in (0, old_pid), timeout=30
        )
        assert time.monotonic() - killed < 10, back
        assert push.wait(30) != 0  # the publisher lost its connection, as OBS would...
    finally:
        push.kill()
    again = _publish(ffmpeg, channel, 6)  # ...and its reconnect finds the channel ready
    try:
        resumed = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=30)
        assert resumed["health"]["pid"] == back["health"]["pid"]
        assert again.wait(60) == 0
    finally:
        again.kill()
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204


def test_frozen_stream_actor_is_restarted_and_the_reason_recorded(livecut_stack):
    stack = livecut_stack
    channel = _new_rtmp_channel(stack, "freeze me")
    old_pid = channel["health"]["pid"]
    os.kill(old_pid, signal.SIGSTOP)  # alive to the OS, silent to the supervisor
    try:
        back = stack.wait_channel(channel["id"], lambda c: c["health"]["pid"] not in (0, old_pid), timeout=60)
    finally:
        try:
            os.kill(old_pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    events = stack.api("GET", f"/api/channels/{channel['id']}/events").json()["items"]
    restarts = [e for e in events if e["kind"] == "actor_restarted"]
    assert restarts and "heartbeat" in restarts[0]["detail"], events
    assert back["health"]["pid"] != old_pid
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204


def test_a_clip_being_cut_when_its_actor_dies_is_reported_lost(livecut_stack, ffmpeg, espeak, tmp_path):
    from bench.broadcast import make_broadcast

    stack = livecut_stack
    truth = make_broadcast(tmp_path / "b.mp4", duration=30.0)  # one loud moment at 20 s
    channel = _new_rtmp_channel(stack, "die mid-clip")
    push = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(tmp_path / "b.mp4"), "-c", "copy", "-f", "flv",
         f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + truth.duration + 30
        pending = []
        while not pending and time.monotonic() < deadline:  # detected, post-roll not yet buffered
            events = stack.api("GET", f"/api/channels/{channel['id']}/events").json()["items"]
            pending = [e for e in events if e["kind"] == "moment_pending"]
            time.sleep(0.2)
        assert pending, events
        pid = stack.api("GET", f"/api/channels/{channel['id']}").json()["health"]["pid"]
        os.kill(pid, signal.SIGKILL)
    finally:
        push.kill()
    lost = []
    deadline = time.monotonic() + 30
    while not lost and time.monotonic() < deadline:
        events = stack.api("GET", f"/api/channels/{channel['id']}/events").json()["items"]
        lost = [e for e in events if e["kind"] == "clip_lost"]
        time.sleep(0.5)
    assert lost and "restarted" in lost[0]["detail"], events
    assert abs(lost[0]["stream_time"] - truth.moments[0].t) < 3
    assert stack.api("GET", "/api/clips", params={"channel_id": channel["id"]}).json()["items"] == []
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204
