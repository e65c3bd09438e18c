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
    ready = stack.wait_channel(channel["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)
    return {**ready, "ingest": channel["ingest"]}  # the stream key is shown on create only


def _publish(ffmpeg: str, channel: dict, seconds: int) -> subprocess.Popen:
    url = f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def one_moment(tmp_path_factory, ffmpeg, espeak):
    """A 40 s broadcast with one loud moment at 15 s (pushes last past its clip's cut)."""
    from bench.broadcast import Moment, make_broadcast

    path = tmp_path_factory.mktemp("faults-media") / "one_moment.mp4"
    truth = make_broadcast(path, duration=40.0, moments=[Moment(15.0, "loud")])
    return path, truth.moments[0].t


def _push_file(ffmpeg: str, channel: dict, path) -> subprocess.Popen:
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(path), "-c", "copy", "-f", "flv",
         f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _covers(clip: dict, t: float) -> bool:
    return clip["stream_start"] <= t <= clip["stream_end"]


def test_sigkilled_stream_actor_is_back_within_10s_and_no_clip_is_lost_or_doubled(livecut_stack, ffmpeg, one_moment):
    """Kill -9 during a live push: a new actor within 10 s, the publisher's reconnect resumes
    the stream (stream time goes on), and the subscriber gets the clip of the moment pushed
    before the kill and of the one pushed after, each once, also across its own reconnect."""
    from bench.stack import ClipSubscriber

    stack = livecut_stack
    media, moment_t = one_moment
    channel = _new_rtmp_channel(stack, "kill me")
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    push = _push_file(ffmpeg, channel, media)
    try:
        first = subscriber.wait_for(1, timeout=60)
        assert len(first) == 1 and _covers(first[0], moment_t), first
        live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=10)
        old_pid = live["health"]["pid"]
        old_time = live["health"]["stream_time"]
        os.kill(old_pid, signal.SIGKILL)  # the publisher is still pushing
        killed = time.monotonic()
        back = stack.wait_channel(channel["id"], lambda c: c["health"]["pid"] not in (0, old_pid), timeout=30)
        assert time.monotonic() - killed < 10, back
        assert push.wait(30) != 0  # the publisher lost its connection, as OBS would...
    finally:
        push.kill()
    again = _push_file(ffmpeg, channel, media)  # ...and its reconnect finds the channel ready
    try:
        resumed = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=30)
        assert resumed["health"]["pid"] == back["health"]["pid"]
        clips = subscriber.wait_for(2, timeout=60)
        assert again.wait(60) == 0
    finally:
        again.kill()
        subscriber.close()
    assert len(clips) == 2, clips
    second = clips[1]
    assert second["id"] != first[0]["id"]
    # stream time went on across the restart: the second moment lies after everything before
    assert second["stream_start"] > old_time, (old_time, second)
    assert 13.5 <= second["stream_end"] - second["stream_start"] <= 22.0, second  # 10 + 5 s, edges snapped to sentences
    # a subscriber reconnecting with the first clip's id gets the second once, and not the first
    late = ClipSubscriber(stack.base_url, stack.api_key, channel["id"], last_clip_id=first[0]["id"])
    try:
        replay = late.wait_for(1, timeout=15)
        time.sleep(2.0)  # anything more would be a duplicate
        assert [c["id"] for c in late.clips] == [second["id"]], late.clips
    finally:
        late.close()
    assert len(replay) == 1
    rows = stack.api("GET", "/api/clips", params={"channel_id": channel["id"]}).json()["items"]
    assert sorted(r["id"] for r in rows) == sorted(c["id"] for c in clips)
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204


def test_deleting_a_channel_finishes_the_clip_in_progress(livecut_stack, ffmpeg, one_moment):
    """DELETE right after a moment is detected: the clip still gets its whole post-roll."""
    from bench.stack import ClipSubscriber

    stack = livecut_stack
    media, moment_t = one_moment
    post_roll = 10.0  # long, so the delete surely lands before the post-roll is buffered
    response = stack.api("POST", "/api/channels", json={
        "name": "delete mid-clip", "source": "rtmp", "settings": {"clip": {"post_roll": post_roll}}})
    assert response.status_code == 201, response.text
    channel = response.json()
    stack.wait_channel(channel["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    push = _push_file(ffmpeg, channel, media)
    try:
        detected = stack.wait_channel(channel["id"], lambda c: c["health"]["events"] >= 1, timeout=60)
        assert detected["health"]["clips"] == 0
        assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204
        clips = subscriber.wait_for(1, timeout=40)
    finally:
        push.kill()
        subscriber.close()
    assert len(clips) == 1, clips
    assert _covers(clips[0], moment_t)
    assert clips[0]["stream_end"] >= moment_t + post_roll - 0.5, clips[0]  # not cut short by the stop
    assert stack.api("GET", f"/api/channels/{channel['id']}").status_code == 404


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
