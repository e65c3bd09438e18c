"""The node's shared ASR server on the real stack: channels share it without hearing each
other, and a SIGKILLed server comes back without costing a clip."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from bench.stack import asr_server_processes

pytestmark = pytest.mark.e2e

# one channel per time: the same keyword, said on each channel at its own time only
KEYWORD_AT = {"early": 16.0, "middle": 24.0, "late": 32.0}


def _new_rtmp_channel(stack, name: str) -> dict:
    response = stack.api("POST", "/api/channels", json={"name": name, "source": "rtmp"})
    assert response.status_code == 201, response.text
    channel = response.json()
    stack.wait_channel(channel["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)
    return channel


def _push(ffmpeg: str, channel: dict, path) -> subprocess.Popen:
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(path), "-c", "copy", "-f", "flv",
         f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def keyword_broadcasts(tmp_path_factory, ffmpeg, espeak):
    """Per channel: a 48 s broadcast of calm talk with "Oh my god, no way!" said at its time."""
    from bench.broadcast import Moment, make_broadcast

    folder = tmp_path_factory.mktemp("asr-media")
    out = {}
    for key, t in KEYWORD_AT.items():
        truth = make_broadcast(folder / f"{key}.mp4", duration=48.0, moments=[Moment(t, "keyword")])
        out[key] = (folder / f"{key}.mp4", truth.moments[0].t)
    return out


def test_channels_share_one_asr_server_and_each_clips_its_own_keyword(livecut_stack, ffmpeg, keyword_broadcasts):
    """Three channels pushed at once: one ASR server process serves them all, and each
    channel's keyword gives that channel's clip, at its own time, and none at the others'."""
    from bench.stack import ClipSubscriber

    stack = livecut_stack
    channels = {key: _new_rtmp_channel(stack, f"asr {key}") for key in KEYWORD_AT}
    subscribers = {key: ClipSubscriber(stack.base_url, stack.api_key, c["id"]) for key, c in channels.items()}
    pushes = [_push(ffmpeg, channels[key], keyword_broadcasts[key][0]) for key in KEYWORD_AT]
    try:
        clips = {key: subscribers[key].wait_for(1, timeout=90) for key in KEYWORD_AT}
        assert all(p.wait(60) == 0 for p in pushes)
        time.sleep(3.0)  # a stray second clip would have arrived by now
    finally:
        for p in pushes:
            p.kill()
        for s in subscribers.values():
            s.close()
    assert len(asr_server_processes()) == 1, asr_server_processes()
    for key, got in clips.items():
        assert len(subscribers[key].clips) == 1, (key, subscribers[key].clips)
        clip = got[0]
        moment_t = keyword_broadcasts[key][1]
        assert clip["stream_start"] <= moment_t <= clip["stream_end"], (key, clip)
        assert clip["signals"].get("keyword", 0) > 0, (key, clip["signals"])
        assert "god" in clip["transcript"].lower(), (key, clip["transcript"])
    for channel in channels.values():
        assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204


def test_a_sigkilled_asr_server_comes_back_and_the_keyword_clip_still_arrives(livecut_stack, ffmpeg, keyword_broadcasts):
    """Kill -9 the ASR server while a channel is pushed, before its keyword is said: Ray
    brings the server back and the keyword is heard and clipped."""
    from bench.stack import ClipSubscriber

    stack = livecut_stack
    channel = _new_rtmp_channel(stack, "asr kill")
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    path, moment_t = keyword_broadcasts["middle"]
    push = _push(ffmpeg, channel, path)
    try:
        live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=30)
        while live["health"]["stream_time"] < 8.0:  # the server has been transcribing calm talk
            time.sleep(0.5)
            live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=10)
        (server,) = asr_server_processes()
        actor_pid = live["health"]["pid"]
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        clips = subscriber.wait_for(1, timeout=90)
        assert push.wait(60) == 0
    finally:
        push.kill()
        subscriber.close()
    (back,) = asr_server_processes()
    assert back.pid != server.pid
    clip = clips[0]
    assert clip["stream_start"] <= moment_t <= clip["stream_end"], clip
    assert clip["signals"].get("keyword", 0) > 0, clip["signals"]
    assert "god" in clip["transcript"].lower(), clip["transcript"]
    after = stack.api("GET", f"/api/channels/{channel['id']}").json()
    assert after["health"]["pid"] == actor_pid  # the stream actor itself was never restarted
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204
