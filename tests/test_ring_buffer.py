"""Disk ring buffer: keyframe-aligned MPEG-TS segments, eviction, discontinuities."""
from __future__ import annotations

import subprocess
from pathlib import Path

import av
import msgspec
import pytest

from stream_actor.clock import StreamClock, raw_time
from stream_actor.ring_buffer import (
    RingBuffer,
    RingOptions,
    SegmentIndex,
    file_time,
)

pytestmark = pytest.mark.usefixtures("ffmpeg")  # a required peer: fails loudly when missing

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
FPS = 15


@pytest.fixture(scope="module")
def flv(tmp_path_factory) -> Path:
    """12 s of H.264 (B-frames, 2 s GOP) + AAC as FLV, like the RTMP edge relays."""
    path = tmp_path_factory.mktemp("media") / "src.flv"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "12",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "audio.flv"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "7",
         "-c:a", "aac", "-f", "flv", str(path)],
        check=True,
    )
    return path


def feed(
    path: Path, ring: RingBuffer, clock: StreamClock, retime=None, stop_at=None, plain=False
) -> int:
    """Demux ``path`` into ``ring`` as one session. ``retime(raw_seconds) -> offset``
    shifts raw timestamps (to fake resets and jumps); ``plain`` maps them with
    ``to_stream_time(index, raw)`` instead of ``packet_time``. Returns packets written."""
    container = av.open(str(path))
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    clock.begin_session()
    ring.begin_session(video, audio)
    written = 0
    for packet in container.demux():
        if packet.size == 0:
            continue
        if stop_at is not None and float(packet.dts * packet.time_base) >= stop_at:
            break
        if retime is not None:
            shift = round(retime(float(packet.dts * packet.time_base)) / packet.time_base)
            packet.pts += shift
            packet.dts += shift
        if plain:
            t = clock.to_stream_time(packet.stream.index, raw_time(packet))
        else:
            t = clock.packet_time(packet)
        written += ring.write(packet, t)
    return written


def read_segment(path: Path, near: float):
    """[(kind, pts stream time, dts stream time, keyframe)] in file order."""
    out = []
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size:
                pts = file_time(float(p.pts * p.time_base), near)
                dts = file_time(float(p.dts * p.time_base), near)
                out.append((p.stream.type, pts, dts, p.is_keyframe))
    return out


def first_video_frame_time(path: Path, near: float) -> float:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return file_time(float(frame.pts * frame.time_base), near)


def test_segments_keyframe_aligned_contiguous(flv, tmp_path):
    ring = RingBuffer(tmp_path / "ring")
    written = feed(flv, ring, StreamClock())
    ring.end_session()
    segments = ring.segments()
    assert len(segments) == 6
    for seg in segments:
        packets = read_segment(seg.path, seg.start)
        video = [p for p in packets if p[0] == "video"]
        assert video[0][3], f"segment {seg.seq} does not start with a keyframe"
        assert video[0][1] == pytest.approx(seg.start, abs=1e-3)
        assert seg.keyframes[0] == pytest.approx(seg.start)
        # decodable on its own: the first decoded frame is the keyframe itself
        assert first_video_frame_time(seg.path, seg.start) == pytest.approx(seg.start, abs=1e-3)
        assert 1.9 < seg.duration < 2.2
        assert seg.bytes == seg.path.stat().st_size
    for a, b in zip(segments, segments[1:]):
        assert -1e-3 <= b.start - a.end <= 1 / FPS  # contiguous
    # stream copy: every packet went into a segment
    total = sum(len(read_segment(s.path, s.start)) for s in segments)
    assert total == written
    assert ring.seconds_buffered == pytest.approx(sum(s.duration for s in segments))
    assert ring.start == segments[0].start and ring.end == segments[-1].end


def test_plain_mapping_keeps_order(flv, tmp_path):
    """Mapping raw timestamps without the decode time (B-frame video first, so the
    first audio packets land before the session start and are clamped) still gives
    keyframe-aligned segments with increasing timestamps."""
    ring = RingBuffer(tmp_path / "ring")
    written = feed(flv, ring, StreamClock(), plain=True)
    ring.end_session()
    last, total = {}, 0
    for seg in ring.segments():
        packets = read_segment(seg.path, seg.start)
        total += len(packets)
        assert [p for p in packets if p[0] == "video"][0][3]
        for kind, _pts, dts, _key in packets:
            assert dts > last.get(kind, -1.0)
            last[kind] = dts
    assert total == written and len(ring.segments()) == 6


def test_eviction_by_seconds(flv, tmp_path):
    ring = RingBuffer(tmp_path / "ring", RingOptions(max_seconds=6.5))
    feed(flv, ring, StreamClock())
    ring.end_session()
    segments = ring.segments()
    assert ring.seconds_buffered <= 6.5
    assert [s.seq for s in segments] == [3, 4, 5]  # the newest survive
    assert ring.end == pytest.approx(12.0, abs=0.3)
    on_disk = sorted(p.name for p in (tmp_path / "ring").iterdir())
    assert on_disk == [s.path.name for s in segments]  # evicted files are deleted


def test_eviction_by_bytes(flv, tmp_path):
    probe = RingBuffer(tmp_path / "probe")
    feed(flv, probe, StreamClock())
    probe.end_session()
    sizes = [s.bytes for s in probe.segments()]
    cap = sum(sizes[-2:]) + 1000  # room for about two segments
    ring = RingBuffer(tmp_path / "ring", RingOptions(max_bytes=cap))
    feed(flv, ring, StreamClock())
    ring.end_session()
    segments = ring.segments()
    assert ring.bytes_buffered <= cap
    assert [s.seq for s in segments] == [4, 5]
    assert sorted(p.name for p in (tmp_path / "ring").iterdir()) == [s.path.name for s in segments]


def test_survives_reset_and_gap(flv, tmp_path):
    def retime(raw: float) -> float:
        if raw >= 8.0:
            return 600.0  # a 10-minute forward jump
        if raw >= 4.0:
            return -1000.0  # timestamps go backwards (encoder restart)
        return 0.0

    clock = StreamClock()
    ring = RingBuffer(tmp_path / "ring", RingOptions(segment_seconds=1.0))
    written = feed(flv, ring, clock, retime=retime)
    ring.end_session()
    assert clock.discontinuities >= 2
    segments = ring.segments()
    assert ring.end == pytest.approx(12.0, abs=0.5)  # not 600 s, not negative
    for a, b in zip(segments, segments[1:]):
        assert -1e-3 <= b.start - a.end <= 0.15
    last = {}
    total = 0
    for seg in segments:
        packets = read_segment(seg.path, seg.start)
        total += len(packets)
        assert [p for p in packets if p[0] == "video"][0][3]
        for kind, _pts, dts, _key in packets:
            assert dts > last.get(kind, -1.0)  # monotonic across the discontinuities
            last[kind] = dts
    assert total == written


def test_open_segment_readable_while_written(flv, tmp_path):
    ring = RingBuffer(tmp_path / "ring", RingOptions(segment_seconds=60.0))
    written = feed(flv, ring, StreamClock(), stop_at=5.0)  # session still open
    (seg,) = ring.segments()
    assert seg.open
    packets = read_segment(seg.path, seg.start)
    assert len(packets) >= written - 4  # at most a packet or two still in the muxer
    newest = max(p[1] for p in packets)
    assert newest > ring.end - 0.3
    ring.end_session()
    assert len(read_segment(seg.path, seg.start)) == written


def test_new_session_new_segment(flv, tmp_path):
    clock = StreamClock()
    ring = RingBuffer(tmp_path / "ring", RingOptions(segment_seconds=60.0))
    feed(flv, ring, clock, stop_at=3.0)
    feed(flv, ring, clock, stop_at=3.0)  # the publisher reconnected
    ring.end_session()
    first, second = ring.segments()
    assert (first.session, second.session) == (1, 2)
    assert second.start >= first.end
    assert not first.open and not second.open
    video = [p for p in read_segment(second.path, second.start) if p[0] == "video"]
    assert video[0][3]


def test_audio_only_cuts_on_time(audio_only, tmp_path):
    ring = RingBuffer(tmp_path / "ring")
    feed(audio_only, ring, StreamClock())
    ring.end_session()
    segments = ring.segments()
    assert len(segments) == 4
    assert all(1.95 < s.duration < 2.1 for s in segments[:-1])
    assert all(p[0] == "audio" for s in segments for p in read_segment(s.path, s.start))


def test_stale_files_removed_and_packet_untouched(flv, tmp_path):
    (tmp_path / "ring").mkdir()
    (tmp_path / "ring" / "00000042.ts").write_bytes(b"old")
    ring = RingBuffer(tmp_path / "ring")
    assert not (tmp_path / "ring" / "00000042.ts").exists()
    with av.open(str(flv)) as c:
        ring.begin_session(c.streams.video[0], c.streams.audio[0])
        packet = next(p for p in c.demux(video=0) if p.is_keyframe)
        before = (packet.pts, packet.dts, packet.time_base, packet.stream)
        assert ring.write(packet, 100.0)
        assert (packet.pts, packet.dts, packet.time_base, packet.stream) == before
    ring.end_session()


def test_options_strict():
    assert RingOptions().max_bytes == 512 * 1024 * 1024
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_second": 5}, RingOptions)


def test_segment_index_pure():
    index = SegmentIndex()
    path = lambda seq: Path(f"/x/{seq}.ts")  # noqa: E731
    for i in range(5):
        index.open(path, float(2 * i), session=1, keyframe=True)
        index.update(2.0 * i + 2.0, nbytes=100, keyframe=2.0 * i + 1.0)
    assert index.current is not None and index.current.seq == 4
    assert index.lookup(3.0, 5.0)[0].seq == 1  # the segment containing the start
    assert [s.seq for s in index.lookup(3.0, 5.0)] == [1, 2]
    assert index.keyframes(2.0, 5.0) == [2.0, 3.0, 4.0, 5.0]
    dropped = index.evict(max_seconds=5.0, max_bytes=10_000)
    assert [s.seq for s in dropped] == [0, 1, 2]  # oldest first, until <= 5 s
    assert index.evict(max_seconds=0.0, max_bytes=0) and len(index) == 1  # never the open one
    assert index.current.seq == 4 and index.start == 8.0 and index.seconds == 2.0


def test_unsupported_audio_codec_buffers_video_only(tmp_path):
    path = tmp_path / "nelly.flv"  # old Flash audio: Nellymoser cannot go into MPEG-TS
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "3",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",
         "-c:a", "nellymoser", "-f", "flv", str(path)],
        check=True,
    )
    ring = RingBuffer(tmp_path / "ring")
    feed(path, ring, StreamClock())
    assert ring.skipped and "nellymoser" in ring.skipped[0]
    ring.end_session()
    kinds = {p[0] for s in ring.segments() for p in read_segment(s.path, s.start)}
    assert kinds == {"video"} and ring.seconds_buffered > 2.5


# -- hard bounds and forced cuts (issue 10, point 7) ----------------------------------------

def _sparse_keyframes(path: Path, seconds: float, gop_frames: int, bitrate: str = "300k") -> Path:
    """H.264 + AAC whose keyframes are ``gop_frames`` apart (no scene-cut keyframes)."""
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop_frames), "-keyint_min", str(gop_frames),
         "-sc_threshold", "0", "-b:v", bitrate, "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path)],
        check=True,
    )
    return path


@pytest.mark.parametrize("bad", [
    {"segment_seconds": 1e9},
    {"segment_seconds": 0},
    {"max_seconds": 0.5},
    {"max_seconds": 1e9},
    {"max_bytes": 10},
    {"max_bytes": 2**62},
    {"max_segment_seconds": 1e9},
    {"max_segment_bytes": 2**40},
    {"segment_seconds": 30, "max_segment_seconds": 10},
])
def test_ring_option_out_of_bounds_is_refused(bad, tmp_path):
    from stream_actor.settings import validate_channel_settings

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(bad, RingOptions)
    with pytest.raises(msgspec.ValidationError):  # through a channel's settings too
        validate_channel_settings({"ring": bad})
    with pytest.raises(ValueError):  # and a Struct built in code (ValidationError is a ValueError)
        RingBuffer(tmp_path / "ring", RingOptions(**bad))


def test_stream_without_keyframes_is_cut_at_the_segment_cap(tmp_path):
    """One keyframe, then none for 20 s: the open segment is closed every 3 s anyway, and
    eviction keeps the ring bounded, instead of one file growing forever."""
    src = _sparse_keyframes(tmp_path / "nokey.flv", 20, gop_frames=100_000)
    ring = RingBuffer(tmp_path / "ring", RingOptions(max_seconds=9, max_segment_seconds=3))
    written = feed(src, ring, StreamClock())
    assert written > 0
    open_segment = ring.segments()[-1]
    assert open_segment.open and open_segment.duration <= 3.5  # + the B-frame reorder delay
    ring.end_session()
    segments = ring.segments()
    assert ring.forced_cuts >= 5
    assert all(s.duration <= 3.5 for s in segments)
    assert ring.seconds_buffered <= 9.0 and ring.end == pytest.approx(20.0, abs=0.3)
    assert all(s.forced for s in segments)  # the only keyframe (t=0) is long evicted
    on_disk = sorted(p.name for p in (tmp_path / "ring").iterdir())
    assert on_disk == [s.path.name for s in segments]


def test_open_segment_is_cut_at_its_byte_cap(tmp_path):
    cap = 64 * 1024
    src = _sparse_keyframes(tmp_path / "nokey.flv", 8, gop_frames=100_000, bitrate="1500k")
    ring = RingBuffer(tmp_path / "ring", RingOptions(max_segment_bytes=cap))
    feed(src, ring, StreamClock())
    ring.end_session()
    segments = ring.segments()
    assert len(segments) >= 5 and ring.forced_cuts == len(segments) - 1
    assert all(s.bytes <= cap + 32 * 1024 for s in segments)  # at most one packet past the cap


def test_clip_after_a_forced_cut_starts_at_the_keyframe_before(tmp_path):
    """Keyframes every 8 s, forced cuts every 3 s: a clip starting between keyframes still
    starts on the keyframe before its start, from an earlier segment, and plays."""
    from stream_actor.clipper import cut_clip

    src = _sparse_keyframes(tmp_path / "gop8.flv", 20, gop_frames=8 * FPS)
    ring = RingBuffer(tmp_path / "ring", RingOptions(max_segment_seconds=3))
    feed(src, ring, StreamClock())
    ring.end_session()
    assert ring.forced_cuts >= 3
    segments = ring.segments(12.5, 15.5)
    keyframe = segments[0].keyframes[0]  # 8 s, plus the encoder's B-frame delay
    assert 7.9 < keyframe < 8.4 and segments[1].forced and not segments[1].keyframes
    out, thumb = tmp_path / "c.mp4", tmp_path / "c.jpg"
    cut = cut_clip(segments, 12.5, 15.5, out, thumb)
    assert cut.start == pytest.approx(keyframe, abs=1e-3) and cut.end == pytest.approx(15.5, abs=0.2)
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == pytest.approx((cut.end - cut.start) * FPS, abs=3)


def test_shrink_evicts_down_to_the_kept_seconds_and_back(flv, tmp_path):
    ring = RingBuffer(tmp_path / "ring")
    feed(flv, ring, StreamClock())
    ring.end_session()
    assert ring.seconds_buffered > 11
    ring.shrink(4.5)
    assert ring.seconds_buffered <= 4.5 and len(ring.segments()) == 2
    assert sorted(p.name for p in (tmp_path / "ring").iterdir()) == [s.path.name for s in ring.segments()]
    ring.shrink(None)
    feed(flv, ring, StreamClock())
    ring.end_session()
    assert ring.seconds_buffered > 11  # the full ring again
