"""End to end for live HLS: a url channel on a `.m3u8` URL that does not exist yet, then
ffmpeg publishes a generated broadcast as live HLS in real time, in two runs appended to
one playlist (the second after an ``#EXT-X-DISCONTINUITY`` with its timestamps restarted,
as an encoder restart or an ad break does). Each planted moment gives exactly one clip,
and the channel goes waiting → live → waiting.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from bench.broadcast import DEFAULT_KEYWORD, Moment, make_broadcast
from bench.stack import ClipSubscriber
from hls_fixture import DirServer

pytestmark = pytest.mark.e2e

#: A loud moment at 12 s and a keyword at 31 s (clips [2, 17] and [21, 36] s); the second run
#: starts at 19 s, between the clips.
MOMENTS = [Moment(t=12.0, kind="loud"), Moment(t=31.0, kind="keyword", text=DEFAULT_KEYWORD)]
DURATION = 41.0
SPLIT = 19.0


def hls_run(ffmpeg: str, media, playlist, *, start: float, until: float | None, last: bool) -> subprocess.Popen:
    """ffmpeg -re publishing [start, until) of ``media`` as live HLS, appended to ``playlist``."""
    flags = "append_list+discont_start" + ("" if last else "+omit_endlist")
    span = ["-t", str(until - start)] if until is not None else []
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-ss", str(start), "-re", "-i", str(media), *span, "-c", "copy",
         "-f", "hls", "-hls_time", "1", "-hls_list_size", "10", "-hls_flags", flags,
         "-hls_segment_filename", str(playlist.with_name("seg_%04d.ts")), str(playlist)],
        stderr=subprocess.PIPE, text=True,
    )


def test_live_hls_channel_with_a_discontinuity(livecut_stack, tmp_path, ffmpeg, espeak):
    stack = livecut_stack
    truth = make_broadcast(tmp_path / "broadcast.mp4", duration=DURATION, moments=MOMENTS, gop_seconds=1.0)
    assert [m.t for m in truth.moments if m.t + 5 < SPLIT] and [m.t for m in truth.moments if m.t - 10 > SPLIT]
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    playlist = live_dir / "live.m3u8"
    web = DirServer(live_dir)
    runs: list[subprocess.Popen] = []
    subscriber = None
    response = stack.api("POST", "/api/channels", json={
        "name": "live hls", "source": "url", "url": web.url("live.m3u8")
    })
    assert response.status_code == 201, response.text
    channel = response.json()
    try:
        # no playlist yet: the actor is up and waits, polling the URL
        waiting = stack.wait_channel(channel["id"], lambda c: c["health_at"] is not None, timeout=90)
        assert waiting["status"] == "waiting", (
            waiting, "the url plugin needs the operator's allow_private (--allow-private-urls) "
            "passed as a source option by the stream actor"
        )
        subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
        runs.append(hls_run(ffmpeg, tmp_path / "broadcast.mp4", playlist, start=0.0, until=SPLIT, last=False))
        stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=45)
        assert runs[0].wait(SPLIT + 20) == 0, runs[0].stderr.read()
        runs.append(hls_run(ffmpeg, tmp_path / "broadcast.mp4", playlist, start=SPLIT, until=None, last=True))
        deadline = time.monotonic() + 10
        while "#EXT-X-DISCONTINUITY" not in playlist.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # the first run's own tag scrolled out of the window long ago
        assert "#EXT-X-DISCONTINUITY" in playlist.read_text()
        assert runs[1].wait(truth.duration - SPLIT + 20) == 0, runs[1].stderr.read()
        clips = subscriber.wait_for(len(truth.moments), timeout=30)
        # the ENDLIST of the last run ends the broadcast: the channel waits for the next one
        ended = stack.wait_channel(channel["id"], lambda c: c["status"] == "waiting", timeout=30)
        time.sleep(3)  # anything late (a second clip for one moment) would show up now
        clips = list(subscriber.clips)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
        if subscriber is not None:
            subscriber.close()
        stack.api("DELETE", f"/api/channels/{channel['id']}")
        web.close()
    assert len(clips) == len(truth.moments), (clips, truth.moments)
    for moment, clip in zip(truth.moments, sorted(clips, key=lambda c: c["stream_start"])):
        # stream time continues across the discontinuity (StreamClock places the session
        # after the previous one): the second run's moments land at most a few seconds late
        assert clip["stream_start"] <= moment.t + 3.0 and moment.t <= clip["stream_end"], (moment, clip)
    assert ended["health"]["stream_time"] > truth.duration - 5
    polls = web.hits("live.m3u8")
    assert polls[0][1] == 404  # the channel was polled before the broadcast existed
