"""Cutting clips out of the ring buffer: stream copy into a fast-start MP4.

``cut_clip`` reads the MPEG-TS segments covering [start, end], starts at a video
keyframe next to ``start`` (no re-encode, so the cut can only begin on a keyframe: of
the keyframes just before and after ``start``, the one giving the duration nearest to
``end - start``, so with a 2 s keyframe interval the clip is within 1 s of the
requested length), ends at the clean cut point nearest to ``end``, rebases
timestamps to 0 and writes an MP4 with its ``moov`` box first (``+faststart``), so a
browser can play it before it has downloaded. Audio is copied too. A JPEG thumbnail
is decoded from the frame nearest ``thumbnail_at`` (default: the keyframe nearest the
middle).

A range spanning a session boundary (a reconnect, possibly with new codec parameters)
is cut from the segments of one session only: the one covering most of the range.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from .durable import replace_durably
from .ring_buffer import Segment, file_time

__all__ = ["ClipCut", "ClipError", "NotBuffered", "UnsupportedCodec", "cut_clip", "cut_media", "part_path", "PART_SUFFIX", "seek_before", "transcode_media", "write_jpeg"]

log = logging.getLogger(__name__)

#: How far (seconds) the requested range may reach past what is buffered.
SLACK = 0.5
#: How far before a recording's clip to seek: keyframes are rarely further apart, and the
#: seek lands on the one before.
LOOKBACK = 12.0
_TB = Fraction(1, 90000)
#: Suffix of a file being written (``part_path``); the stream actor sweeps stale ones at start.
PART_SUFFIX = ".part"


class ClipError(RuntimeError):
    pass


class NotBuffered(ClipError):
    """The requested range is not (or no longer) in the ring buffer."""


class UnsupportedCodec(ClipError):
    """A buffered codec cannot be stored in MP4."""


@dataclass(frozen=True, slots=True)
class ClipCut:
    """What was actually cut, in stream time."""

    start: float  # the keyframe the clip starts on
    end: float
    duration: float


@dataclass(slots=True)
class _Pkt:
    kind: str
    pts: float  # stream time
    dts: float
    key: bool
    duration: float
    packet: av.Packet


def cut_clip(
    segments: list[Segment],
    start: float,
    end: float,
    video_out: Path,
    thumbnail_out: Path,
    *,
    thumbnail_at: float | None = None,
    thumbnail_width: int = 320,
    partial: bool = False,
) -> ClipCut:
    """Stream-copy [start, end] (stream time) of ``segments`` into ``video_out`` (MP4)
    and write a JPEG thumbnail to ``thumbnail_out``: the frame nearest
    ``thumbnail_at``, by default the keyframe nearest the middle of the clip (one
    decode instead of up to a GOP's worth).

    Raises ``NotBuffered`` when the range is not buffered (with ``partial=True`` a
    partly buffered range is cut to what is there), ``UnsupportedCodec`` when a codec
    cannot go into MP4. Both outputs are written to a temporary name and renamed, so
    a reader never sees half a file.
    """
    video_out, thumbnail_out = Path(video_out), Path(thumbnail_out)
    if not end > start:
        raise ValueError(f"empty clip range [{start}, {end}]")
    if not segments:
        raise NotBuffered(f"[{start:.2f}, {end:.2f}] is not buffered: the buffer is empty")
    segments = sorted(segments, key=lambda s: s.seq)
    have_start = min(s.start for s in segments)
    have_end = max(s.end for s in segments)
    missing = (
        f"[{start:.2f}, {end:.2f}] is not buffered "
        f"(buffered: [{have_start:.2f}, {have_end:.2f}])"
    )
    if not partial and (start < have_start - SLACK or end > have_end + SLACK):
        raise NotBuffered(missing)
    overlapping = [s for s in segments if s.end > start and s.start < end]
    if not overlapping:
        raise NotBuffered(missing)

    # One session only: the one covering most of the range.
    cover: dict[int, float] = {}
    for s in overlapping:
        cover[s.session] = cover.get(s.session, 0.0) + min(s.end, end) - max(s.start, start)
    session = max(cover, key=lambda k: (cover[k], k))
    chosen = _back_to_keyframe(segments, [s for s in overlapping if s.session == session], start)
    start = max(start, chosen[0].start)
    end = min(end, chosen[-1].end)

    containers: list[av.container.InputContainer] = []
    try:
        templates, packets = _read(chosen, containers)
        return _cut_packets(
            templates, packets, start, end, video_out, thumbnail_out,
            complete=not chosen[-1].open, thumbnail_at=thumbnail_at, thumbnail_width=thumbnail_width,
        )
    finally:
        for container in containers:
            container.close()


def cut_media(
    location: str,
    start: float,
    end: float,
    video_out: Path,
    thumbnail_out: Path,
    *,
    origin: float = 0.0,
    options: dict[str, str] | None = None,
    thumbnail_width: int = 320,
) -> ClipCut:
    """``cut_clip`` for a recording (a file, an HTTP(S) URL, an HLS playlist): seek to the
    keyframe before ``start`` and stream-copy [start, end] (seconds of the recording, whose
    first timestamp is ``origin``). Over HTTP, FFmpeg's seek is a Range request, so only the
    clip's part of the file is read."""
    if not end > start:
        raise ValueError(f"empty clip range [{start}, {end}]")
    video_out, thumbnail_out = Path(video_out), Path(thumbnail_out)
    with av.open(location, options=options or {}) as container:
        streams, templates = _first_streams(container)
        seek_before(container, start - LOOKBACK, origin)
        packets: list[_Pkt] = []
        past_end = set()
        for packet in container.demux(*[container.streams[i] for i in streams]):
            kind = streams.get(packet.stream_index)
            if kind is None or packet.size == 0 or packet.pts is None:
                continue
            tb = float(packet.time_base)
            pts = packet.pts * tb - origin
            dts = pts if packet.dts is None else packet.dts * tb - origin
            if pts > end + 2.0:  # past the end (with room for reordered frames)
                past_end.add(kind)
                if len(past_end) == len(streams):
                    break
                continue
            duration = packet.duration * tb if packet.duration else 0.0
            packets.append(_Pkt(kind, pts, dts, packet.is_keyframe, duration, packet))
        return _cut_packets(
            templates, packets, start, end, video_out, thumbnail_out, complete=True, thumbnail_width=thumbnail_width
        )


def transcode_media(
    location: str,
    start: float,
    end: float,
    video_out: Path,
    thumbnail_out: Path,
    *,
    origin: float = 0.0,
    options: dict[str, str] | None = None,
    thumbnail_width: int = 320,
) -> ClipCut:
    """The last resort for codecs MP4 cannot hold: decode [start, end] and encode H.264 + AAC
    (libx264 ``veryfast``). Costs about a real-time second of CPU per clip second at 720p."""
    if not end > start:
        raise ValueError(f"empty clip range [{start}, {end}]")
    video_out, thumbnail_out = Path(video_out), Path(thumbnail_out)
    middle = (start + end) / 2
    thumb: list = []

    def write(tmp: Path) -> None:
        with av.open(location, options=options or {}) as src, av.open(
            str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"}
        ) as out:
            vin = src.streams.video[0] if src.streams.video else None
            ain = src.streams.audio[0] if src.streams.audio else None
            vout = aout = resampler = None
            video_n = audio_n = 0
            if vin is not None:
                rate = vin.average_rate or Fraction(30)
                vout = out.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
                vout.width, vout.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
                vout.pix_fmt = "yuv420p"
            if ain is not None:
                aout = out.add_stream("aac", rate=48000, layout="stereo")
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
            seek_before(src, start - LOOKBACK, origin)
            for frame in src.decode(*[s for s in (vin, ain) if s is not None]):
                if frame.pts is None:
                    continue
                t = float(frame.pts * frame.time_base) - origin
                if t < start:
                    continue
                if t >= end:
                    if isinstance(frame, av.VideoFrame) or vin is None:
                        break
                    continue
                if isinstance(frame, av.VideoFrame):
                    if not thumb or abs(t - middle) < abs(thumb[0] - middle):
                        thumb[:] = [t, frame]
                    frame = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                    frame.pts, frame.time_base = video_n, 1 / Fraction(vout.average_rate)
                    video_n += 1
                    out.mux(vout.encode(frame))
                else:
                    frame.pts = None  # the resampler must not act on the source's timestamps
                    for resampled in resampler.resample(frame):
                        resampled.pts, resampled.time_base = audio_n, Fraction(1, 48000)
                        audio_n += resampled.samples
                        out.mux(aout.encode(resampled))
            for stream in (vout, aout):
                if stream is not None:
                    out.mux(stream.encode(None))

    _replace_write(video_out, write)
    _replace_write(thumbnail_out, lambda tmp: write_jpeg(thumb[1] if thumb else None, tmp, thumbnail_width))
    return ClipCut(start, end, end - start)


def _cut_packets(
    templates: dict,
    packets: list[_Pkt],
    start: float,
    end: float,
    video_out: Path,
    thumbnail_out: Path,
    *,
    complete: bool,
    thumbnail_at: float | None = None,
    thumbnail_width: int = 320,
) -> ClipCut:
    """Cut [start, end] out of ``packets`` (stream time, decode order): MP4 and thumbnail."""
    video = [p for p in packets if p.kind == "video"]
    audio = [p for p in packets if p.kind == "audio"]
    if "video" in templates:
        if not video:
            raise NotBuffered(f"no video packets in [{start:.2f}, {end:.2f}]")
        video, clip_start, clip_end = _video_range(video, start, end, complete)
    else:
        clip_start = max(start, min((p.pts for p in audio), default=start))
        clip_end = end
    audio = [p for p in audio if clip_start - 1e-3 <= p.pts < clip_end]
    if audio and "video" not in templates:
        clip_end = max(p.pts + p.duration for p in audio)
    if not video and not audio:
        raise NotBuffered(f"nothing buffered in [{start:.2f}, {end:.2f}]")

    # Thumbnail first: muxing below rewrites the packets' timestamps.
    frame, sar = None, None
    if video:
        if thumbnail_at is None:  # the keyframe nearest the middle: one decode
            middle = (clip_start + clip_end) / 2
            at = min((p.pts for p in video if p.key), key=lambda k: abs(k - middle))
        else:
            at = min(max(thumbnail_at, clip_start), clip_end)
        sar = templates["video"].codec_context.sample_aspect_ratio
        try:
            frame = _decode_near(templates["video"], video, at)
        except av.error.FFmpegError:
            log.warning("thumbnail decode failed; writing a placeholder", exc_info=True)
    _replace_write(thumbnail_out, lambda tmp: write_jpeg(frame, tmp, thumbnail_width, sar))
    _replace_write(video_out, lambda tmp: _mux_mp4(tmp, templates, video, audio, clip_start))
    return ClipCut(clip_start, clip_end, clip_end - clip_start)


def _back_to_keyframe(segments: list[Segment], chosen: list[Segment], start: float) -> list[Segment]:
    """A forced cut (``ring_buffer``) opens a segment without a keyframe: reach back through
    the session's earlier segments to the keyframe at or before ``start``."""
    earlier = [s for s in segments if s.session == chosen[0].session and s.seq < chosen[0].seq]
    while earlier and chosen[0].forced and not (chosen[0].keyframes and chosen[0].keyframes[0] <= start):
        chosen = [earlier.pop(), *chosen]
    return chosen


def _first_streams(container) -> tuple[dict[int, str], dict[str, av.stream.Stream]]:
    """The first video and audio stream: {index: kind} and {kind: stream}."""
    streams: dict[int, str] = {}
    templates: dict[str, av.stream.Stream] = {}
    for kind in ("video", "audio"):
        found = [s for s in container.streams if s.type == kind]
        if found:
            streams[found[0].index] = kind
            templates[kind] = found[0]
    return streams, templates


def seek_before(container, t: float, origin: float = 0.0) -> None:
    """Seek a recording to the keyframe at or before ``t`` (seconds from its first timestamp,
    ``origin``). At or before its start there is nothing to seek: some demuxers (HLS's) refuse
    a seek before the first timestamp."""
    if t > 0:
        container.seek(int((origin + t) * av.time_base), backward=True)


def _read(chosen: list[Segment], containers: list) -> tuple[dict, list[_Pkt]]:
    """All packets of the chosen segments, in file order, with stream times."""
    templates: dict[str, av.stream.Stream] = {}
    packets: list[_Pkt] = []
    for seg in chosen:
        try:
            container = av.open(str(seg.path), format="mpegts")
        except FileNotFoundError:
            raise NotBuffered(f"segment {seg.seq} was evicted while cutting") from None
        except av.error.FFmpegError as e:
            if seg.open:  # just opened for writing: nothing in it yet
                continue
            raise ClipError(f"cannot read segment {seg.path}: {e}") from e
        containers.append(container)
        streams, found = _first_streams(container)
        for kind, stream in found.items():
            templates.setdefault(kind, stream)
        try:
            for packet in container.demux():
                kind = streams.get(packet.stream_index)
                if kind is None or packet.size == 0 or packet.pts is None:
                    continue
                tb = float(packet.time_base)
                pts = file_time(packet.pts * tb, seg.start)
                dts = pts if packet.dts is None else file_time(packet.dts * tb, seg.start)
                duration = packet.duration * tb if packet.duration else 0.0
                packets.append(_Pkt(kind, pts, dts, packet.is_keyframe, duration, packet))
        except av.error.FFmpegError:
            if not seg.open:  # the open segment may end in a partly written packet
                raise
    return templates, packets


def _video_range(
    video: list[_Pkt], start: float, end: float, complete: bool = True
) -> tuple[list[_Pkt], float, float]:
    """Video packets (decode order) from a keyframe near ``start`` to the cut point
    nearest ``end``.

    Of the keyframes just before and just after ``start`` (the nearest one is one of
    them), the one giving the duration nearest ``end - start`` wins; the earlier one on
    a tie. The end is cut after a prefix (in decode order) that presents without
    holes: every packet after it is presented later than everything in it. Any
    decode-order prefix is decodable (references come first). ``complete=False``: the
    packets end in a segment still being written, whose last frames may be missing,
    so the very end is not a clean cut.
    """
    keys = [i for i, p in enumerate(video) if p.key and p.pts < end]
    if not keys:
        raise NotBuffered(f"no keyframe before {end:.2f}")
    before = [i for i in keys if video[i].pts <= start]
    after = [i for i in keys if video[i].pts > start]
    candidates = ([before[-1]] if before else []) + ([after[0]] if after else [])
    frame = _frame_duration(video)
    best = None
    for first in candidates:
        packets, clip_start, clip_end = _cut_end(video, first, end, frame, complete)
        err = abs((clip_end - clip_start) - (end - start))
        if best is None or err < best[0] - 1e-6:
            best = (err, packets, clip_start, clip_end)
    return best[1], best[2], best[3]


def _cut_end(video: list[_Pkt], first: int, end: float, frame: float, complete: bool):
    clip_start = video[first].pts
    # no leading pictures of an open GOP (they reference the previous GOP)
    rest = [p for p in video[first:] if p.pts >= clip_start]
    suffix_min = [float("inf")] * (len(rest) + 1)
    for i in range(len(rest) - 1, -1, -1):
        suffix_min[i] = min(rest[i].pts, suffix_min[i + 1])
    if not complete:
        suffix_min[-1] = float("-inf")
    best, best_err, best_end = 1, float("inf"), clip_start + frame
    newest = clip_start  # latest pts in the prefix
    for k in range(1, len(rest) + 1):
        p = rest[k - 1]
        newest = max(newest, p.pts)
        if newest < suffix_min[k]:  # clean cut after k packets
            shown = newest + frame
            err = abs(shown - end)
            if err < best_err:
                best, best_err, best_end = k, err, shown
            elif shown > end:
                break  # only getting further away
    return rest[:best], clip_start, best_end


def _frame_duration(video: list[_Pkt]) -> float:
    steps = sorted(b.dts - a.dts for a, b in zip(video, video[1:]) if b.dts > a.dts)
    return steps[len(steps) // 2] if steps else 1 / 30


def _decode_near(template: av.VideoStream, video: list[_Pkt], at: float):
    """The decoded frame nearest stream time ``at``, decoding from the keyframe at or
    before it and stopping at the first frame past it."""
    keys = [i for i, p in enumerate(video) if p.key and p.pts <= at] or [0]
    ctx = template.codec_context
    ctx.thread_type = "AUTO"
    near = video[0].pts
    best, best_err = None, float("inf")

    def consider(frames) -> bool:
        nonlocal best, best_err
        for frame in frames:
            if frame.pts is None:
                continue
            when = file_time(float(frame.pts * (frame.time_base or _TB)), near)
            if abs(when - at) < best_err:
                best, best_err = frame, abs(when - at)
            if when >= at:
                return True
        return False

    for p in video[keys[-1]:]:
        if consider(ctx.decode(p.packet)):
            return best
    consider(ctx.decode(None))
    return best


def write_jpeg(
    frame: av.VideoFrame | None, path: Path, width: int = 320, sar: Fraction | None = None
) -> None:
    """Write ``frame`` scaled to ``width`` (display aspect kept, ``sar`` = sample
    aspect ratio) as a JPEG; a gray 16:9 placeholder when ``frame`` is None."""
    if frame is None:
        height = (width * 9 // 16) // 2 * 2
        frame = av.VideoFrame(width, height, "yuvj420p")
        for plane in frame.planes:
            plane.update(b"\x80" * plane.buffer_size)
    else:
        sar = sar or 1
        height = max(2, round(width * frame.height / (frame.width * float(sar)) / 2) * 2)
        frame = frame.reformat(width=width, height=height, format="yuvj420p")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.qscale = True
    ctx.global_quality = 4 * 118  # -q:v 4 (FF_QP2LAMBDA = 118)
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    Path(path).write_bytes(data)


def _mux_mp4(
    path: Path, templates: dict, video: list[_Pkt], audio: list[_Pkt], base: float
) -> None:
    out = av.open(str(path), "w", format="mp4", container_options={"movflags": "+faststart"})
    try:
        streams = {}
        for kind, pkts in (("video", video), ("audio", audio)):
            if not pkts:
                continue
            template = templates[kind]
            try:
                streams[kind] = out.add_stream_from_template(template)
            except ValueError as e:
                raise UnsupportedCodec(
                    f"{kind} codec {template.codec_context.name!r} cannot be stored in MP4; "
                    "buffer a stream with H.264/HEVC video and AAC/MP3/Opus audio"
                ) from e
        for p in sorted(video + audio, key=lambda p: p.dts):
            packet = p.packet
            packet.time_base = _TB
            packet.pts = round((p.pts - base) * 90000)
            packet.dts = round((p.dts - base) * 90000)
            packet.duration = round(p.duration * 90000)
            packet.stream = streams[p.kind]
            out.mux_one(packet)
    finally:
        out.close()


def part_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete (a crash can leave one behind)."""
    return path.with_name(f".{path.name}{PART_SUFFIX}")


def _replace_write(path: Path, write) -> None:
    """Write through ``part_path`` and rename: readers never see half a file, and once this
    returns the file is on disk (fsynced with its directory), so a row may point at it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path)
    try:
        write(tmp)
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
