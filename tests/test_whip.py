"""WHIP ingest with real peers on loopback: an aiortc publisher and FFmpeg's own WHIP muxer
(PyAV's bundled FFmpeg, in a subprocess) POST to the router served by uvicorn; the FLV the
sink collects is demuxed and decoded with PyAV."""
from __future__ import annotations

import asyncio
import fractions
import io
import subprocess
import sys
import textwrap
import time

import av
import httpx
import numpy as np
import pytest
import uvicorn
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from fastapi import FastAPI

from gateway import errors
from gateway.whip import WhipIngest, WhipOptions, WhipRefused
from stream_actor.whip.media import FlvMuxer, MediaPipeline, avc_config, output_size, split_annexb
from stream_actor.whip.sdp import check_offer, is_ffmpeg_offer, rewrite_answer
from stream_actor.whip.sessions import WhipSessions
from conftest import free_port

CHANNEL = "chan-1"
KEY = "sk_live_0123456789abcdef"
OPTIONS = WhipOptions(x264_preset="ultrafast", video_bitrate=800_000, idle_timeout=2.0, connect_timeout=10.0)


# ---------------------------------------------------------------- helpers


class CollectingSink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes: list[bytes] = []
        self.first_write_at: float | None = None
        self.closed = asyncio.Event()

    async def write(self, data: bytes) -> None:
        assert not self.closed.is_set(), "write after close"
        if self.first_write_at is None:
            self.first_write_at = time.monotonic()
        self.writes.append(bytes(data))
        self.data += data

    async def close(self) -> None:
        assert not self.closed.is_set(), "sink closed twice"
        self.closed.set()


class LocalHost(WhipSessions):
    """The sessions run in the test's process (in livecut: in the channel's stream actor)."""

    released = 0

    def release(self) -> None:
        self.released += 1


class Server:
    def __init__(self, options: WhipOptions = OPTIONS) -> None:
        self.sinks: list[CollectingSink] = []
        self.opened_at: list[float] = []
        self.host = LocalHost(self.open_sink, label=CHANNEL)
        self.ingest = WhipIngest(self.open_host, options)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/whip/{CHANNEL}"

    async def open_host(self, channel_id: str, key: str) -> LocalHost | None:
        if channel_id != CHANNEL:
            raise WhipRefused(404, "not_found", "no such channel")
        if key != KEY:
            return None
        return self.host

    async def open_sink(self) -> CollectingSink:
        self.opened_at.append(time.monotonic())
        sink = CollectingSink()
        self.sinks.append(sink)
        return sink

    async def __aenter__(self) -> Server:
        app = FastAPI()
        errors.install(app)
        app.include_router(self.ingest.router)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            assert not self.task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ingest.close()
        self.server.should_exit = True
        await self.task


class Pausable:
    """While ``paused`` is set, recv() waits: the track sends nothing, the connection stays."""

    paused: asyncio.Event

    async def _gate(self) -> None:
        while self.paused.is_set():
            await asyncio.sleep(0.05)


class MovingPicture(Pausable, VideoStreamTrack):
    """320x240 at 30 fps: a gradient scrolling sideways (gives the encoder real work)."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = asyncio.Event()
        x = np.linspace(0, 255, 320, dtype=np.float32)
        y = np.linspace(0, 255, 240, dtype=np.float32)[:, None]
        planes = [(x + y) / 2, np.broadcast_to(x, (240, 320)), np.broadcast_to(y, (240, 320))]
        self.base = np.stack(planes, -1).astype(np.uint8)
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        await self._gate()
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(np.roll(self.base, 4 * self.n, axis=1), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.n += 1
        return frame


class Tone(Pausable, MediaStreamTrack):
    """A 440 Hz tone, 20 ms frames of 48 kHz s16 mono, paced in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.paused = asyncio.Event()
        self.samples = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        await self._gate()
        n = 960
        if self.start is None:
            self.start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self.start + self.samples / 48000 - time.monotonic()))
        t = (np.arange(n) + self.samples) / 48000
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts, frame.time_base = self.samples, fractions.Fraction(1, 48000)
        self.samples += n
        return frame


async def publish(url: str, key: str = KEY) -> tuple[RTCPeerConnection, httpx.Response]:
    """An aiortc WHIP client: offer (sendonly video + audio), POST, apply the answer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(MovingPicture(), direction="sendonly")
    pc.addTransceiver(Tone(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient() as http:
        resp = await http.post(url, content=pc.localDescription.sdp,
                               headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"})
    if resp.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=resp.text, type="answer"))
    return pc, resp


async def offer_sdp() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def inspect_flv(data: bytes) -> dict:
    """Demux and decode an FLV byte stream with PyAV."""
    assert data[:3] == b"FLV", "no FLV header"
    container = av.open(io.BytesIO(bytes(data)), format="flv")
    kinds = {s.type: s.codec_context.name for s in container.streams}
    out = {"codecs": kinds, "video": [], "audio": [], "keyframes": [], "decoded_video": 0, "decoded_audio": 0,
           "size": None}
    for packet in container.demux():
        if packet.size == 0 or packet.pts is None:
            continue
        t = float(packet.pts * packet.time_base)
        out[packet.stream.type].append(t)
        if packet.stream.type == "video" and packet.is_keyframe:
            out["keyframes"].append(t)
        for frame in packet.decode():
            if packet.stream.type == "video":
                out["decoded_video"] += 1
                out["size"] = (frame.width, frame.height)
            else:
                out["decoded_audio"] += 1
    container.close()
    return out


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def assert_good_flv(flv: dict, seconds: float) -> None:
    assert flv["codecs"] == {"video": "h264", "audio": "aac"}
    assert flv["decoded_video"] == len(flv["video"]) > 0, "every video packet decodes"
    assert flv["decoded_audio"] >= len(flv["audio"]) - 2 > 0, "audio decodes"
    video, audio = flv["video"], flv["audio"]
    assert video[0] == 0.0 and all(b > a for a, b in zip(video, video[1:])), "video timestamps start at 0 and increase"
    assert all(b >= a for a, b in zip(audio, audio[1:])), "audio timestamps never go back"
    assert seconds - 1.0 <= video[-1] <= seconds + 0.5, f"video lasts {video[-1]:.2f} s of ~{seconds:.1f}"
    assert abs(audio[-1] - video[-1]) < 0.5, "audio and video end together"
    assert len(video) / max(video[-1], 0.1) > 20, "most frames arrive (30 fps sent)"
    gaps = [b - a for a, b in zip(flv["keyframes"], flv["keyframes"][1:])]
    assert flv["keyframes"][0] == 0.0 and all(1.9 <= g <= 2.3 for g in gaps), f"keyframes every 2 s: {flv['keyframes']}"


# ---------------------------------------------------------------- pure parts


def test_annexb_avcc_and_sizes():
    sps, pps, idr = b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\x80", b"\x65\x88\x84\x00"
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01" + idr
    assert split_annexb(stream) == [sps, pps, b"\x09\xf0", idr]
    cfg = avc_config(sps, pps)
    assert cfg[:4] == b"\x01\x64\x00\x1f" and cfg.endswith(b"\xfd\xf8\xf8\x00")  # High: 4:2:0 8-bit tail
    mux = FlvMuxer(has_audio=True, has_video=True)
    tags = mux.video(0, 0, True, stream)
    assert tags[0] == 9 and tags[11] == 0x17 and tags[12] == 0  # sequence header first
    assert mux.video(40, 0, False, b"\x00\x00\x01\x41\x9a") and mux.video(80, 0, True, stream).count(b"\x01\x64\x00\x1f") == 0
    assert output_size(640, 360, 1920, 1080) == (640, 360)
    assert output_size(3840, 2160, 1920, 1080) == (1920, 1080)
    assert output_size(1081, 721, 1920, 1080) == (1080, 720)


async def test_offer_checks_and_answer_rewrite():
    sdp = await offer_sdp()
    assert sorted(check_offer(sdp)) == ["audio", "video"]
    assert not is_ffmpeg_offer(sdp)
    assert is_ffmpeg_offer("v=0\r\no=FFmpeg 1 2 IN IP4 127.0.0.1\r\ns=FFmpegPublishSession\r\n")
    answer = ("v=0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 10.0.0.5\r\n"
              "a=candidate:a 1 udp 2130706431 fd00::5 6000 typ host\r\n"
              "a=candidate:b 1 udp 2130706431 10.0.0.5 5000 typ host\r\na=end-of-candidates\r\n")
    out = rewrite_answer(answer, "203.0.113.7")
    cands = [ln for ln in out.split("\r\n") if ln.startswith("a=candidate")]
    assert cands[0].split()[4:6] == ["203.0.113.7", "5000"] and cands[1].split()[4] == "10.0.0.5"
    assert "c=IN IP4 203.0.113.7" in out
    with pytest.raises(ValueError):
        WhipOptions(public_ip="not an ip")


def test_ffmpeg_workarounds_fail_loudly_without_the_aiortc_internals_they_use(monkeypatch):
    from aioice.ice import Connection

    from stream_actor.whip import ffmpeg_compat

    ffmpeg_compat.check_hooks()  # the pinned aiortc/aioice have them
    WhipIngest(lambda channel, key: None)
    monkeypatch.delattr(Connection, "query_consent")
    with pytest.raises(RuntimeError, match="query_consent"):
        WhipIngest(lambda channel, key: None)
    WhipIngest(lambda channel, key: None, WhipOptions(ffmpeg_compat=False))  # not needed when off


async def test_slow_sink_drops_oldest_video_and_caps_size():
    """A sink that does not take bytes stalls the encoder thread; the queue stays bounded by
    dropping the oldest frames, and what is kept is the newest.  Big frames are scaled down."""
    gate = asyncio.Event()

    class GatedSink(CollectingSink):
        async def write(self, data: bytes) -> None:
            await gate.wait()
            await super().write(data)

    sink = GatedSink()
    opts = WhipOptions(x264_preset="ultrafast", max_width=160, max_height=160,
                       max_queued_video_frames=4, max_queued_audio_frames=6)
    pipeline = MediaPipeline(sink, opts, has_video=True, has_audio=True, label="test")
    pipeline.start()
    picture = MovingPicture()
    for i in range(60):
        frame = av.VideoFrame.from_ndarray(np.roll(picture.base, 4 * i, axis=1), format="rgb24")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        pipeline.push(frame)
        for k in range(2):
            audio = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
            audio.sample_rate, audio.pts, audio.time_base = 48000, (2 * i + k) * 960, fractions.Fraction(1, 48000)
            pipeline.push(audio)
        await asyncio.sleep(0)
        assert pipeline._queued["video"] <= 4 and pipeline._queued["audio"] <= 6
    gate.set()
    await pipeline.close()
    st = pipeline.stats
    assert st.video_in == 60 and st.video_encoded + st.video_dropped == 60 and st.video_dropped >= 50
    flv = inspect_flv(sink.data)
    assert flv["size"] == (160, 120) and flv["decoded_video"] == st.video_encoded

    def picture_at(i: int) -> np.ndarray:
        f = av.VideoFrame.from_ndarray(np.roll(picture.base, 4 * i, axis=1), format="rgb24")
        return f.reformat(width=160, height=120).to_ndarray(format="rgb24").astype(np.int16)

    with av.open(io.BytesIO(bytes(sink.data)), format="flv") as container:
        last = [f for f in container.decode(video=0)][-1].to_ndarray(format="rgb24").astype(np.int16)
    assert np.abs(last - picture_at(59)).mean() < np.abs(last - picture_at(30)).mean(), "the newest frame is kept"


# ---------------------------------------------------------------- HTTP contract


async def test_refusals():
    async with Server() as srv:
        sdp = await offer_sdp()
        async with httpx.AsyncClient(base_url=srv.base) as http:
            def post(path=f"/whip/{CHANNEL}", key=KEY, body=sdp, ctype="application/sdp"):
                headers = {"Content-Type": ctype}
                if key is not None:
                    headers["Authorization"] = f"Bearer {key}"
                return http.post(path, content=body, headers=headers)

            r = await post(key="wrong")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
            r = await post(key=None)
            assert r.status_code == 401
            r = await post(path="/whip/nope")
            assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "message": "no such channel"}}
            for bad in ("hello", "v=0\r\ns=-\r\n", sdp.replace("a=fingerprint", "a=x-fingerprint")):
                r = await post(body=bad)
                assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", bad
            r = await post(ctype="text/plain")
            assert r.status_code == 415
            r = await post(body="v=0\r\n" + "a=x\r\n" * 20000)
            assert r.status_code == 413
            r = await http.patch(f"/whip/{CHANNEL}/abc")
            assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
            r = await http.delete(f"/whip/{CHANNEL}/abc", headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 404
            r = await http.options(f"/whip/{CHANNEL}")
            assert r.status_code == 204 and r.headers["accept-post"] == "application/sdp"
        assert srv.sinks == [] and srv.ingest.sessions == {}


async def test_create_app_mounts_whip(tmp_path, store, redis_url):
    """The gateway app serves the router when given ``whip=`` (and its lifespan closes it)."""
    import redis.asyncio as aioredis

    from gateway.app import create_app
    from records.settings import Settings

    class Control:
        async def channels_changed(self) -> None:
            pass

        async def stream_limit(self):
            return None

    srv = Server()
    settings = Settings(data_dir=str(tmp_path), api_key="api-key-1", port=8123, rtmp_port=1936, public_host="gw")
    redis = aioredis.from_url(redis_url)
    try:
        app = create_app(settings, store, redis, Control(), whip=srv.ingest)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            r = await http.post(f"/whip/{CHANNEL}", content=await offer_sdp(),
                                headers={"Content-Type": "application/sdp", "Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            r = await http.get(f"/whip/{CHANNEL}/x")
            assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    finally:
        await redis.aclose()


# ---------------------------------------------------------------- aiortc publisher


async def test_aiortc_publish_delete_and_conflict():
    async with Server() as srv:
        pc, resp = await publish(srv.url)
        try:
            assert resp.status_code == 201, resp.text
            assert resp.headers["content-type"].startswith("application/sdp")
            location = resp.headers["location"]
            assert location.startswith(f"/whip/{CHANNEL}/") and resp.headers["etag"]
            sink = srv.sinks[0]
            await wait_for(lambda: sink.first_write_at is not None, 10, "the first FLV bytes")
            startup = sink.first_write_at - srv.opened_at[0]
            assert sink.writes[0] == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", "first write: the FLV header"

            # A second publisher on the live channel is refused.
            pc2, resp2 = await publish(srv.url)
            await pc2.close()
            assert resp2.status_code == 409 and resp2.json()["error"]["code"] == "conflict"

            await asyncio.sleep(4.0)
            async with httpx.AsyncClient(base_url=srv.base) as http:
                r = await http.delete(location, headers={"Authorization": "Bearer wrong"})
                assert r.status_code == 401
                streamed = time.monotonic() - sink.first_write_at
                r = await http.delete(location, headers={"Authorization": f"Bearer {KEY}"})
                assert r.status_code == 200
            assert sink.closed.is_set(), "DELETE returns once the sink is closed"
            assert srv.ingest.sessions == {} and srv.host.sessions == {}
            assert srv.host.released == 1, "the channel is free for its next publisher"
        finally:
            await pc.close()
    flv = inspect_flv(sink.data)
    assert_good_flv(flv, streamed)
    assert flv["size"] == (320, 240)
    print(f"aiortc publish: POST -> first FLV bytes {startup * 1000:.0f} ms; {len(flv['video'])} video frames")


async def test_peer_going_away_ends_session():
    """A publisher that closes its peer connection (DTLS close_notify, no DELETE), and one
    that just stops sending, both end their session and close the sink."""
    async with Server() as srv:
        pc, resp = await publish(srv.url)
        assert resp.status_code == 201
        sink = srv.sinks[0]
        await wait_for(lambda: sink.first_write_at is not None, 10, "the first FLV bytes")
        await pc.close()
        await wait_for(sink.closed.is_set, 5, "the session to end after the peer closed")
        await wait_for(lambda: not srv.ingest.sessions, 2, "the session to be forgotten")

        pc, resp = await publish(srv.url)  # the channel is free again
        try:
            assert resp.status_code == 201
            sink = srv.sinks[1]
            await wait_for(lambda: sink.first_write_at is not None, 10, "the first FLV bytes")
            for transceiver in pc.getTransceivers():
                transceiver.sender.track.paused.set()  # silence, but the connection stays up
            t0 = time.monotonic()
            await wait_for(sink.closed.is_set, OPTIONS.idle_timeout + 3, "the idle timeout")
            assert time.monotonic() - t0 >= OPTIONS.idle_timeout - 0.5
        finally:
            await pc.close()
        assert inspect_flv(sink.data)["decoded_video"] > 0


# ---------------------------------------------------------------- FFmpeg's WHIP muxer

FFMPEG_PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import av, numpy as np
    url, key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    out = av.open(url, "w", format="whip", options={"authorization": key, "handshake_timeout": "8000"})
    v = out.add_stream("libx264", rate=30)
    v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
    v.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": "30", "bf": "0"}
    a = out.add_stream("libopus", rate=48000)
    a.layout = "stereo"
    base = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    t0, n, apts = time.monotonic(), 0, 0
    while n < seconds * 30:
        img = np.stack([np.roll(base, 3 * n, axis=1)] * 3, -1)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = n
        for p in v.encode(frame):
            out.mux(p)
        while apts < (n + 1) * 1600:
            t = (np.arange(960) + apts) / 48000
            s = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([s, s]).reshape(1, -1), format="flt", layout="stereo")
            af.sample_rate, af.pts = 48000, apts
            for p in a.encode(af):
                out.mux(p)
            apts += 960
        n += 1
        time.sleep(max(0.0, t0 + n / 30 - time.monotonic()))
    out.close()  # DELETEs the WHIP session
    """
)


async def test_ffmpeg_whip_muxer_publishes(monkeypatch):
    """FFmpeg's WHIP muxer (GnuTLS build, P-224 DTLS certificate, a=setup:passive, no STUN
    answers after the handshake) against our endpoint: see ffmpeg_compat.py for the workarounds.
    It runs in a subprocess: PyAV holds the GIL through the muxer's blocking handshake.
    ICE consent checks run every 0.2 s instead of 5 s, so a session that still relied on
    them would die after ~4 s instead of ~30 s."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    async with Server() as srv:
        seconds = 6.0
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FFMPEG_PUBLISHER, srv.url, KEY, str(seconds),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        assert len(srv.sinks) == 1
        sink = srv.sinks[0]
        await wait_for(sink.closed.is_set, 5, "the DELETE from FFmpeg to end the session")
        startup = sink.first_write_at - srv.opened_at[0]
    flv = inspect_flv(sink.data)
    assert_good_flv(flv, seconds)
    assert flv["size"] == (320, 240)
    # Without the repeated ClientHello this is >= 1 s: OpenSSL's first retransmission timer.
    assert startup < 0.95, f"POST -> first FLV bytes took {startup:.2f} s"
    print(f"FFmpeg publish: POST -> first FLV bytes {startup * 1000:.0f} ms; {len(flv['video'])} video frames")
