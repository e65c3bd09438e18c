"""End to end over WHIP: a planted moment pushed by a real WebRTC peer (aiortc, then FFmpeg's
own WHIP muxer) comes out as exactly one clip notification from the real stack."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber
from stream_actor.whip.media import ENCODER_THREAD

pytestmark = pytest.mark.e2e

# FFmpeg's WHIP muxer re-encodes the broadcast (WebRTC carries H.264 + Opus), paced to real time.
FFMPEG_WHIP = textwrap.dedent(
    """
    import sys, time
    import av
    src_path, url, key = sys.argv[1:4]
    src = av.open(src_path)
    out = av.open(url, "w", format="whip", options={"authorization": key, "handshake_timeout": "8000"})
    vin, ain = src.streams.video[0], src.streams.audio[0]
    v = out.add_stream("libx264", rate=15)
    v.width, v.height, v.pix_fmt = vin.width, vin.height, "yuv420p"
    v.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": "30", "bf": "0"}
    a = out.add_stream("libopus", rate=48000)
    a.layout = "stereo"
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    fifo = av.AudioFifo()
    t0, apts = time.monotonic(), 0
    for frame in src.decode(vin, ain):
        delay = t0 + float(frame.pts * frame.time_base) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if isinstance(frame, av.VideoFrame):
            frame.pict_type = av.video.frame.PictureType.NONE
            for p in v.encode(frame.reformat(format="yuv420p")):
                out.mux(p)
        else:
            for f in resampler.resample(frame):
                fifo.write(f)
            while (chunk := fifo.read(960)) is not None:
                chunk.pts, chunk.sample_rate = apts, 48000
                apts += 960
                for p in a.encode(chunk):
                    out.mux(p)
    for p in v.encode():
        out.mux(p)
    out.close()  # DELETEs the WHIP session
    """
)


@pytest.fixture(scope="module")
def broadcast(tmp_path_factory, ffmpeg, espeak):
    path = tmp_path_factory.mktemp("whip") / "broadcast.mp4"
    truth = make_broadcast(path, duration=45.0)
    assert truth.moments
    return path, truth


def _push_channel(stack, name: str) -> dict:
    response = stack.api("POST", "/api/channels", json={"name": name, "source": "rtmp"})
    assert response.status_code == 201, response.text
    channel = response.json()
    stack.wait_channel(channel["id"], lambda c: c["health_at"] is not None)
    return channel


def _assert_one_clip_per_moment(clips: list[dict], truth) -> None:
    assert len(clips) == len(truth.moments), clips
    for moment in truth.moments:
        assert len([c for c in clips if c["stream_start"] <= moment.t <= c["stream_end"]]) == 1, (moment, clips)


def _pids_with_thread(name: str) -> set[int]:
    """The processes that have a thread of this OS name."""
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/task/*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.add(int(comm.parts[2]))
        except (OSError, ValueError):
            pass
    return pids


async def _encoder_pids(timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while not (pids := _pids_with_thread(ENCODER_THREAD)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return pids


def test_aiortc_publisher_over_whip_gives_a_clip_per_moment(livecut_stack, broadcast):
    """Also: the session's decode and encode run in the channel's stream actor, the process
    that holds its stream slot, not in ``livecut up`` (the API and edge process)."""
    stack, (media, truth) = livecut_stack, broadcast
    channel = _push_channel(stack, "whip aiortc")
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    encoders: set[int] = set()

    async def publish() -> str:
        player = MediaPlayer(str(media))  # paces the file to real time
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(player.video, direction="sendonly")
        pc.addTransceiver(player.audio, direction="sendonly")
        ended = asyncio.Event()
        player.video.on("ended", ended.set)
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{stack.base_url}/whip/{channel['id']}", content=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {channel['ingest']['stream_key']}"},
            )
            assert answer.status_code == 201, answer.text
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
            encoders.update(await _encoder_pids())
            await asyncio.wait_for(ended.wait(), truth.duration + 30)
            deleted = await http.delete(f"{stack.base_url}{answer.headers['Location']}",
                                        headers={"Authorization": f"Bearer {channel['ingest']['stream_key']}"})
        await pc.close()
        return deleted.status_code

    try:
        assert asyncio.run(publish()) in (200, 204)
        actor_pid = stack.api("GET", f"/api/channels/{channel['id']}").json()["health"]["pid"]
        assert encoders == {actor_pid}, (encoders, actor_pid)
        assert stack.process.pid not in encoders
        _assert_one_clip_per_moment(subscriber.wait_for(len(truth.moments) + 1, timeout=15), truth)
        stack.wait_channel(channel["id"], lambda c: c["status"] == "offline", timeout=30)
    finally:
        subscriber.close()
        stack.api("DELETE", f"/api/channels/{channel['id']}")


def test_ffmpeg_whip_muxer_gives_a_clip_per_moment(livecut_stack, broadcast):
    stack, (media, truth) = livecut_stack, broadcast
    channel = _push_channel(stack, "whip ffmpeg")
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    try:
        push = subprocess.run(
            [sys.executable, "-c", FFMPEG_WHIP, str(media), f"{stack.base_url}/whip/{channel['id']}",
             channel["ingest"]["stream_key"]],
            capture_output=True, text=True, timeout=truth.duration + 60,
        )
        assert push.returncode == 0, push.stderr[-3000:]
        _assert_one_clip_per_moment(subscriber.wait_for(len(truth.moments) + 1, timeout=15), truth)
        stack.wait_channel(channel["id"], lambda c: c["status"] == "offline", timeout=30)
    finally:
        subscriber.close()
        stack.api("DELETE", f"/api/channels/{channel['id']}")
