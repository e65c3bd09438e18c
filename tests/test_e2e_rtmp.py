"""End to end on real parts: `livecut up` (Ray, PostgreSQL, Redis, gateway, RTMP ingest),
the ffmpeg CLI publishing a generated broadcast over RTMP in real time, and a python-socketio
subscriber. Each planted moment must give exactly one clip; the calm parts none.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import asyncpg
import av
import httpx
import pytest

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber

pytestmark = pytest.mark.e2e

PRE_ROLL, POST_ROLL = 10.0, 5.0


@pytest.fixture(scope="module")
def run(tmp_path_factory, livecut_stack, ffmpeg, espeak):
    """Push the whole broadcast once; the tests below examine what came out."""
    work = tmp_path_factory.mktemp("e2e")
    truth = make_broadcast(work / "broadcast.mp4", duration=75.0)
    stack = livecut_stack
    try:
        response = stack.api("POST", "/api/channels", json={"name": "e2e", "source": "rtmp"})
        assert response.status_code == 201, response.text
        channel = response.json()
        assert channel["ingest"]["rtmp_url"] == f"rtmp://127.0.0.1:{stack.rtmp_port}/live"
        second = stack.api("POST", "/api/channels", json={"name": "e2e second", "source": "rtmp"}).json()
        for c in (channel, second):
            stack.wait_channel(c["id"], lambda c: c["health_at"] is not None)  # actor up
        subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
        # A second publisher on the same port at the same time, routed by its own key.
        other = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
             "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000", "-t", "30", "-c:v", "libx264",
             "-preset", "ultrafast", "-g", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv",
             f"{second['ingest']['rtmp_url']}/{second['ingest']['stream_key']}"],
        )
        push = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(work / "broadcast.mp4"),
             "-c", "copy", "-f", "flv", f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"],
            stderr=subprocess.PIPE, text=True,
        )
        both_live = _wait_both_live(stack, channel["id"], second["id"], timeout=30)
        assert other.wait(60) == 0
        assert push.wait(truth.duration + 60) == 0, push.stderr.read()
        stack.api("DELETE", f"/api/channels/{second['id']}")
        clips = subscriber.wait_for(len(truth.moments) + 1, timeout=20)  # +1: prove there is no extra
        subscriber.close()
        after = stack.wait_channel(channel["id"], lambda c: c["status"] == "offline", timeout=30)
    except BaseException:
        print(stack.log_tail(200))
        raise
    yield {"truth": truth, "clips": clips, "channel": channel, "second": second, "after_push": after,
           "dsn": stack.database_url, "acks": subscriber.acks, "stack": stack, "media": work / "broadcast.mp4",
           "both_live": both_live}


def _wait_both_live(stack, first: str, second: str, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = [stack.api("GET", f"/api/channels/{cid}").json() for cid in (first, second)]
        if all(v["status"] == "live" for v in views):
            return views
        time.sleep(0.5)
    raise AssertionError(f"the two channels were never live together: {views}")


def test_two_channels_publish_at_once_on_one_port(run):
    first, second = run["both_live"]
    assert first["ingest"]["rtmp_url"] == second["ingest"]["rtmp_url"]  # one port for every channel
    assert run["channel"]["ingest"]["stream_key"] != run["second"]["ingest"]["stream_key"]
    assert "stream_key" not in first["ingest"] and "stream_key" not in second["ingest"]  # shown on create only
    assert first["status"] == second["status"] == "live"


def test_each_planted_moment_gives_exactly_one_clip(run):
    truth, clips = run["truth"], run["clips"]
    assert run["acks"] and run["acks"][0]["ok"] is True
    assert len(clips) == len(truth.moments), [(c["stream_start"], c["stream_end"], c["signals"]) for c in clips]
    for moment in truth.moments:
        covering = [c for c in clips if c["stream_start"] <= moment.t <= c["stream_end"]]
        assert len(covering) == 1, (moment, [(c["stream_start"], c["stream_end"]) for c in clips])


def test_calm_parts_give_no_clip(run):
    planted = [m.t for m in run["truth"].moments]
    for clip in run["clips"]:
        assert any(clip["stream_start"] <= t <= clip["stream_end"] for t in planted), clip


SNAP_MAX = 3.0  # detectors.boundaries.snap_clip's max_extend


def _rows(run) -> dict[str, dict]:
    async def rows():
        conn = await asyncpg.connect(run["dsn"])
        try:
            return {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM clips WHERE channel_id = $1", run["channel"]["id"])}
        finally:
            await conn.close()

    return asyncio.run(rows())


def test_clips_are_valid_mp4_of_the_right_length(run):
    stack = run["stack"]
    stored = _rows(run)
    for clip in run["clips"]:
        path = Path(stored[clip["id"]]["video_path"])
        assert path.parent == stack.data_dir / "clips" / run["channel"]["id"]
        with av.open(str(path)) as container:
            assert container.format.name.startswith("mov,mp4")
            kinds = sorted(s.type for s in container.streams)
            assert kinds == ["audio", "video"]
            duration = container.duration / 1_000_000
            assert abs(duration - (clip["stream_end"] - clip["stream_start"])) <= 1.0, duration
            assert container.streams.video[0].codec_context.name == "h264"
            frames = sum(1 for _ in container.decode(video=0))
            assert frames > 0
        # pre-roll + post-roll, each edge moved out to a sentence boundary by at most SNAP_MAX
        length = clip["stream_end"] - clip["stream_start"]
        assert PRE_ROLL + POST_ROLL - 1.0 <= length <= PRE_ROLL + POST_ROLL + 2 * SNAP_MAX + 1.0, clip
        thumb = path.with_suffix(".jpg").read_bytes()
        assert thumb[:2] == b"\xff\xd8"


def test_postgres_rows_match_the_notifications(run):
    stored = _rows(run)
    assert set(stored) == {c["id"] for c in run["clips"]}
    for clip in run["clips"]:
        row = stored[clip["id"]]
        assert row["channel_id"] == clip["channel_id"] == run["channel"]["id"]
        assert row["stream_start"] == pytest.approx(clip["stream_start"])
        assert row["stream_end"] == pytest.approx(clip["stream_end"])
        assert row["score"] == pytest.approx(clip["score"])
        assert row["transcript"] == clip["transcript"]
        # a signed, short-lived URL that opens the file without an API key
        assert clip["video_url"].startswith(f"/api/clips/{clip['id']}/video?exp=")
        video = httpx.get(f"{run['stack'].base_url}{clip['video_url']}", timeout=10)
        assert video.status_code == 200 and video.content == Path(row["video_path"]).read_bytes()


def test_publish_end_leaves_channel_offline(run):
    assert run["after_push"]["status"] == "offline"


def test_unknown_stream_key_is_refused(run, ffmpeg):
    stack = run["stack"]
    push = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
         "-t", "3", "-c:v", "libx264", "-f", "flv", stack.rtmp_url("not-a-key")],
        capture_output=True, text=True, timeout=60,
    )
    assert push.returncode != 0


def test_a_new_publish_with_the_same_key_resumes_the_channel(run, ffmpeg):
    stack, channel = run["stack"], run["channel"]
    before = run["after_push"]["health"]["stream_time"]
    push = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(run["media"]),
         "-t", "8", "-c", "copy", "-f", "flv", f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"],
    )
    try:
        live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=30)
        assert push.wait(60) == 0
    finally:
        push.kill()
    after = stack.wait_channel(channel["id"], lambda c: c["status"] == "offline", timeout=30)
    assert live["id"] == channel["id"]
    assert after["health"]["stream_time"] > before + 5  # stream time continued, not restarted


def test_transcripts_reach_the_clip_end(run):
    """Cutting early for latency must not cost the transcript: the keyword clip's own words
    (said 5 s before its end) are in it, and every clip has text from the calm speech."""
    keyword_moments = [m for m in run["truth"].moments if m.kind == "keyword"]
    for moment in keyword_moments:
        clip = next(c for c in run["clips"] if c["stream_start"] <= moment.t <= c["stream_end"])
        assert "god" in clip["transcript"].lower(), clip["transcript"]
        assert clip["signals"].get("keyword", 0) >= 1.0
    for clip in run["clips"]:
        assert len(clip["transcript"].split()) >= 10, clip


def test_a_second_publisher_on_a_live_key_is_refused(run, ffmpeg):
    stack, channel = run["stack"], run["channel"]
    url = f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"
    first = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(run["media"]), "-t", "12",
         "-c", "copy", "-f", "flv", url],
    )
    try:
        stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=30)
        second = subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(run["media"]), "-t", "3",
             "-c", "copy", "-f", "flv", url],
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode != 0
        assert first.poll() is None  # the first publisher was not disturbed
        assert first.wait(60) == 0
    finally:
        first.kill()
    stack.wait_channel(channel["id"], lambda c: c["status"] == "offline", timeout=30)
