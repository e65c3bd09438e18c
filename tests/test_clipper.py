"""Clip cutter: stream copy from ring-buffer segments into a fast-start MP4 + JPEG."""
from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import time
from pathlib import Path

import av
import pytest

from stream_actor.clipper import NotBuffered, cut_clip
from stream_actor.clock import StreamClock
from stream_actor.ring_buffer import RingBuffer, RingOptions

pytestmark = pytest.mark.usefixtures("ffmpeg")  # a required peer: fails loudly when missing

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
FPS = 15


def make_flv(path: Path, seconds: float, size: str = "320x240", freq: int = 440) -> Path:
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}",
         "-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", str(2 * FPS), "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path)],
        check=True,
    )
    return path


def feed(path: Path, ring: RingBuffer, clock: StreamClock, end_session: bool = True) -> None:
    with av.open(str(path)) as c:
        clock.begin_session()
        ring.begin_session(c.streams.video[0], c.streams.audio[0])
        for packet in c.demux():
            t = clock.packet_time(packet)
            if t is not None and packet.size:
                ring.write(packet, t)
    if end_session:
        ring.end_session()


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return make_flv(tmp_path_factory.mktemp("media") / "src.flv", 30)


@pytest.fixture(scope="module")
def ring(src, tmp_path_factory) -> RingBuffer:
    ring = RingBuffer(tmp_path_factory.mktemp("ring"))
    feed(src, ring, StreamClock())
    return ring


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def top_level_boxes(path: Path) -> list[str]:
    boxes, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size == 0:
            break
        pos += size
    return boxes


def nal_units(payload: bytes) -> list[bytes]:
    """The NAL units of a length-prefixed (AVCC) H.264 packet."""
    units, pos = [], 0
    while pos + 4 <= len(payload):
        (size,) = struct.unpack(">I", payload[pos:pos + 4])
        units.append(payload[pos + 4:pos + 4 + size])
        pos += 4 + size
    return units


def payloads(path: Path, offset: float = 0.0) -> dict[tuple[str, int], list[bytes]]:
    """{(kind, pts in ms): payload} for a file, ``offset`` seconds added to pts; H.264
    as its slice NAL units (without the parameter sets and access unit delimiters
    that MPEG-TS segments carry in-band)."""
    out = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size and p.pts is not None:
                ms = round((float(p.pts * p.time_base) + offset) * 1000)
                data = bytes(p)
                if p.stream.type == "video":
                    units = nal_units(data)
                    out[("video", ms)] = [n for n in units if n[0] & 0x1F not in (7, 8, 9)]
                else:
                    out[("audio", ms)] = [data]
    return out


def test_clip_is_stream_copy_faststart_with_thumbnail(src, ring, tmp_path):
    video_out, thumb = tmp_path / "clip.mp4", tmp_path / "clip.jpg"
    segments = ring.segments(5.3, 20.3)
    assert len(segments) >= 7  # spans segment boundaries
    t0 = time.perf_counter()
    cut = cut_clip(segments, 5.3, 20.3, video_out, thumb)
    elapsed = time.perf_counter() - t0
    print(f"cut a {cut.duration:.2f} s clip in {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0
    assert abs(cut.duration - 15.0) <= 1.0 and abs(cut.start - 5.3) <= 1.0
    assert cut.end == pytest.approx(cut.start + cut.duration)

    info = ffprobe(video_out)
    assert "mp4" in info["format"]["format_name"]
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
    assert float(info["format"]["start_time"]) == pytest.approx(0.0, abs=0.05)  # rebased
    assert float(info["format"]["duration"]) == pytest.approx(cut.duration, abs=0.15)
    boxes = top_level_boxes(video_out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # fast start

    with av.open(str(src)) as s, av.open(str(video_out)) as c:
        sv, cv = s.streams.video[0].codec_context, c.streams.video[0].codec_context
        assert (cv.width, cv.height, cv.profile) == (sv.width, sv.height, sv.profile)
        # same SPS/PPS: the avcC of the clip carries the source's parameter sets
        assert cv.extradata[5:] and sv.extradata[8:20] in cv.extradata

    # Stream copy: the clip's coded frames are the source's, byte for byte.
    source = payloads(src)
    clip = payloads(video_out, offset=cut.start)
    assert len([k for k in clip if k[0] == "video"]) >= 14 * FPS
    assert len([k for k in clip if k[0] == "audio"]) >= 14 * 46
    for key, units in clip.items():
        assert source[key] == units, key

    # the video frames are contiguous across the segment boundaries
    with av.open(str(video_out)) as c:
        times = sorted(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size)
    steps = [b - a for a, b in zip(times, times[1:])]
    assert all(abs(step - 1 / FPS) < 0.002 for step in steps)  # (FLV has 1 ms resolution)

    data = thumb.read_bytes()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    with av.open(str(thumb)) as j:
        frame = next(j.decode(video=0))
        assert (frame.width, frame.height) == (320, 240)


def test_thumbnail_at(ring, tmp_path):
    hashes = set()
    for i, at in enumerate((7.0, 10.5, None)):  # None: the middle, ~9.1
        cut_clip(ring.segments(6, 12), 6, 12, tmp_path / f"{i}.mp4", tmp_path / f"{i}.jpg",
                 thumbnail_at=at)
        hashes.add(hashlib.md5((tmp_path / f"{i}.jpg").read_bytes()).hexdigest())
    assert len(hashes) == 3  # different frames


@pytest.mark.parametrize(
    "start,end", [(0.0, 4.0), (0.9, 10.5), (3.9, 9.1), (11.0, 26.0), (21.2, 29.9)]
)
def test_duration_within_a_second(ring, tmp_path, start, end):
    cut = cut_clip(ring.segments(start, end), start, end, tmp_path / "c.mp4", tmp_path / "c.jpg")
    assert abs(cut.duration - (end - start)) <= 1.0
    assert abs(cut.start - start) <= 1.0 + 1.5 / FPS  # a keyframe next to the start
    with av.open(str(tmp_path / "c.mp4")) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert float(c.duration / av.time_base) == pytest.approx(cut.duration, abs=0.15)


def test_not_buffered(ring, tmp_path, src):
    out, thumb = tmp_path / "c.mp4", tmp_path / "c.jpg"
    with pytest.raises(NotBuffered):
        cut_clip(ring.segments(100, 110), 100, 110, out, thumb)
    with pytest.raises(NotBuffered):
        cut_clip(ring.segments(), 100, 110, out, thumb)  # past the end
    with pytest.raises(ValueError):
        cut_clip(ring.segments(), 10, 10, out, thumb)
    small = RingBuffer(tmp_path / "small", RingOptions(max_seconds=8))
    feed(src, small, StreamClock())
    with pytest.raises(NotBuffered, match="not buffered"):
        cut_clip(small.segments(), 2, 8, out, thumb)  # evicted
    cut = cut_clip(small.segments(), 20, 28, out, thumb, partial=True)
    assert cut.start >= small.start - 1e-6 and abs(cut.end - 28) < 0.2 and cut.duration > 3
    assert not out.with_name(".c.mp4.part").exists()


def test_clip_from_open_segment(src, tmp_path):
    ring = RingBuffer(tmp_path / "ring", RingOptions(segment_seconds=60))
    feed(src, ring, StreamClock(), end_session=False)
    (seg,) = ring.segments()
    assert seg.open
    end = ring.end
    cut = cut_clip(ring.segments(20, end), 20, end, tmp_path / "c.mp4", tmp_path / "c.jpg")
    assert abs(cut.duration - (end - 20)) <= 1.0
    ring.end_session()


def test_clip_across_session_boundary(tmp_path):
    first = make_flv(tmp_path / "a.flv", 6, "320x240", 440)
    second = make_flv(tmp_path / "b.flv", 10, "480x270", 880)  # new codec parameters
    clock, ring = StreamClock(), RingBuffer(tmp_path / "ring")
    feed(first, ring, clock)
    feed(second, ring, clock)
    boundary = ring.segments()[-1].start - 10 + 0.5  # about where session 2 starts
    sessions = {s.session for s in ring.segments(3.0, 14.0)}
    assert sessions == {1, 2}
    # mostly session 2: cut from session 2 only
    cut = cut_clip(ring.segments(3.0, 14.0), 3.0, 14.0, tmp_path / "c.mp4", tmp_path / "c.jpg")
    assert cut.start >= boundary - 1.0
    with av.open(str(tmp_path / "c.mp4")) as c:
        assert c.streams.video[0].codec_context.width == 480
    # mostly session 1: cut from session 1 only
    cut = cut_clip(ring.segments(1.0, 7.5), 1.0, 7.5, tmp_path / "d.mp4", tmp_path / "d.jpg")
    assert cut.end <= 6.3
    with av.open(str(tmp_path / "d.mp4")) as c:
        assert c.streams.video[0].codec_context.width == 320


def test_audio_only_clip(tmp_path):
    path = tmp_path / "radio.flv"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "8",
         "-c:a", "aac", "-f", "flv", str(path)],
        check=True,
    )
    ring = RingBuffer(tmp_path / "ring")
    with av.open(str(path)) as c:
        clock = StreamClock()
        ring.begin_session(None, c.streams.audio[0])
        for packet in c.demux():
            t = clock.packet_time(packet)
            if t is not None and packet.size:
                ring.write(packet, t)
    ring.end_session()
    cut = cut_clip(ring.segments(1.5, 6.5), 1.5, 6.5, tmp_path / "a.mp4", tmp_path / "a.jpg")
    assert cut.duration == pytest.approx(5.0, abs=0.1)
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert not c.streams.video and c.streams.audio[0].codec_context.name == "aac"
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"  # placeholder thumbnail
