"""The disk ring buffer: the last minutes of a broadcast as MPEG-TS segment files.

Packets are stream-copied (never re-encoded) into segment files under one directory,
their timestamps rewritten to stream time (see ``clock``). Every segment file starts
with a video keyframe (audio-only streams cut on time; a forced cut, below, is the
exception), so any segment can be decoded and clipped on its own. The open segment is flushed after every packet, so the
clipper can read it while it is being written. Oldest segments are deleted first when
either cap (seconds or bytes) is exceeded. Every option is bounded, and the open segment
is closed at ``max_segment_seconds`` or ``max_segment_bytes`` even without a keyframe
(a forced cut; the clipper then reaches back to the keyframe before a clip's start), so
no stream can grow one file without limit.

Timestamps inside the files are stream time plus ``TS_OFFSET`` (so that the decode
timestamps of B-frame streams never go negative), modulo the 33-bit 90 kHz MPEG-TS
clock; ``file_time`` undoes both.

``SegmentIndex`` is the pure bookkeeping; ``RingBuffer`` adds the muxing and the files.
``RingBuffer`` may be read (``segments``, properties) from other threads while one
thread writes.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import av
import msgspec

from .clock import raw_time

__all__ = [
    "RingOptions",
    "Segment",
    "SegmentIndex",
    "RingBuffer",
    "RingBufferError",
    "TS_OFFSET",
    "TS_WRAP",
    "file_time",
    "SEGMENT_SUFFIX",
]

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: Seconds added to stream time inside segment files.
TS_OFFSET = 10.0
#: The MPEG-TS timestamp period in seconds (2**33 ticks of 90 kHz, about 26.5 h).
TS_WRAP = 2**33 / 90000
SEGMENT_SUFFIX = ".ts"
_TB = Fraction(1, 90000)
#: This many packets in a row rejected by the muxer is an error (disk full, ...).
MAX_CONSECUTIVE_ERRORS = 50
#: A keyframe this close to ``segment_seconds`` after the segment start still cuts.
_CUT_TOLERANCE = 0.01

#: Codecs MPEG-TS carries and FFmpeg's demuxer recognises again on reading.
TS_CODECS = {
    "video": {"h264", "hevc", "mpeg2video", "mpeg1video", "mpeg4", "av1"},
    "audio": {"aac", "mp3", "mp2", "ac3", "eac3", "opus"},
}


def file_time(ts_seconds: float, near: float) -> float:
    """Stream time of a timestamp read from a segment file (seconds), given a stream
    time ``near`` it is known to be close to (e.g. the segment's start)."""
    t = ts_seconds - TS_OFFSET
    return t + round((near - t) / TS_WRAP) * TS_WRAP


class RingOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every field is bounded: a channel's settings cannot make the ring (or one of its
    files) grow without limit."""

    max_seconds: Annotated[float, msgspec.Meta(ge=4.0, le=3600.0)] = 120.0
    max_bytes: Annotated[int, msgspec.Meta(ge=64 * KiB, le=16 * GiB)] = 512 * MiB
    #: A new segment starts at the first video keyframe this long after the open one's start.
    segment_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=60.0)] = 2.0
    #: The open segment is closed here even without a keyframe (a forced cut), so a stream
    #: whose keyframes stop cannot grow one file forever. Also capped by ``max_seconds``.
    max_segment_seconds: Annotated[float, msgspec.Meta(ge=1.0, le=300.0)] = 60.0
    #: The same cap in bytes; also capped by ``max_bytes``.
    max_segment_bytes: Annotated[int, msgspec.Meta(ge=64 * KiB, le=1 * GiB)] = 128 * MiB

    def __post_init__(self) -> None:
        if self.max_segment_seconds < self.segment_seconds:
            raise ValueError("max_segment_seconds must be >= segment_seconds")

    @property
    def segment_cap_seconds(self) -> float:
        return min(self.max_segment_seconds, self.max_seconds)

    @property
    def segment_cap_bytes(self) -> int:
        return min(self.max_segment_bytes, self.max_bytes)


class RingBufferError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment file. Times are stream time; ``end`` is the end of its last packet."""

    seq: int
    path: Path
    start: float
    end: float
    bytes: int
    session: int = 0  # segments of one session share codec parameters
    keyframes: tuple[float, ...] = ()  # stream times (pts) of the video keyframes
    open: bool = False  # still being written
    forced: bool = False  # a video segment opened by a forced cut: it starts without a keyframe

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class _Entry:
    seq: int
    path: Path
    start: float
    end: float
    bytes: int = 0
    session: int = 0
    keyframes: list[float] = field(default_factory=list)
    open: bool = True
    forced: bool = False

    def snapshot(self) -> Segment:
        return Segment(
            self.seq, self.path, self.start, self.end, self.bytes, self.session,
            tuple(self.keyframes), self.open, self.forced,
        )


class SegmentIndex:
    """Pure bookkeeping of the segments: oldest first, at most the last one open."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._next_seq = 0

    def open(self, path_for, start: float, session: int, keyframe: bool, forced: bool = False) -> Segment:
        """Close the open segment, if any, and open a new one starting at ``start``.
        ``path_for(seq)`` names its file; ``forced``: a video segment cut without a keyframe."""
        self.close()
        seq = self._next_seq
        self._next_seq += 1
        entry = _Entry(seq, Path(path_for(seq)), start, start, session=session, forced=forced)
        if keyframe:
            entry.keyframes.append(start)
        self._entries.append(entry)
        return entry.snapshot()

    def update(self, end: float, nbytes: int | None = None, keyframe: float | None = None) -> None:
        """Extend the open segment to ``end``, set its size, note a keyframe."""
        entry = self._open_entry()
        if entry is None:
            raise RingBufferError("no open segment")
        entry.end = max(entry.end, end)
        if nbytes is not None:
            entry.bytes = nbytes
        if keyframe is not None and (not entry.keyframes or keyframe > entry.keyframes[-1]):
            entry.keyframes.append(keyframe)

    def discard_open(self) -> None:
        """Forget the open segment (its file could not be created)."""
        if self._open_entry() is not None:
            self._entries.pop()

    def close(self) -> Segment | None:
        entry = self._open_entry()
        if entry is None:
            return None
        entry.open = False
        return entry.snapshot()

    @property
    def current(self) -> Segment | None:
        entry = self._open_entry()
        return entry.snapshot() if entry else None

    def evict(self, max_seconds: float, max_bytes: int) -> list[Segment]:
        """Drop oldest closed segments while either total exceeds its cap; returns them."""
        dropped = []
        while self._entries and not self._entries[0].open and (
            self.seconds > max_seconds or self.bytes > max_bytes
        ):
            dropped.append(self._entries.pop(0).snapshot())
        return dropped

    def lookup(self, start: float, end: float) -> list[Segment]:
        """Segments overlapping [start, end], oldest first. The keyframe at or before
        ``start`` is included: the segment containing ``start``, and, when that one was
        opened by a forced cut (it starts without a keyframe), the earlier segments of
        its session back to one holding a keyframe."""
        first = next((i for i, e in enumerate(self._entries) if e.end >= start and e.start <= end), None)
        if first is None:
            return []
        while first > 0:
            entry = self._entries[first]
            if not entry.forced or self._entries[first - 1].session != entry.session or (
                entry.keyframes and entry.keyframes[0] <= start
            ):
                break
            first -= 1
        return [e.snapshot() for e in self._entries[first:] if e.start <= end]

    def keyframes(self, start: float = float("-inf"), end: float = float("inf")) -> list[float]:
        return [k for e in self._entries for k in e.keyframes if start <= k <= end]

    def all(self) -> list[Segment]:
        return [e.snapshot() for e in self._entries]

    @property
    def start(self) -> float:
        return self._entries[0].start if self._entries else 0.0

    @property
    def end(self) -> float:
        return self._entries[-1].end if self._entries else 0.0

    @property
    def seconds(self) -> float:
        return sum(e.end - e.start for e in self._entries)

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _open_entry(self) -> _Entry | None:
        if self._entries and self._entries[-1].open:
            return self._entries[-1]
        return None


@dataclass(slots=True)
class _Out:
    """Per input stream state inside a session."""

    index: int  # the input stream's index
    kind: str  # "video" | "audio"
    template: av.stream.Stream
    last_dts: int | None = None  # 90 kHz, file time
    frame: float = 0.0  # seconds, last packet duration (or dts step)
    stream: av.stream.Stream | None = None  # the stream in the open segment's container


class RingBuffer:
    """Keyframe-aligned MPEG-TS segments of the last ``max_seconds`` under ``directory``.

    Use: ``begin_session(video, audio)`` for each source session, ``write(packet, t)``
    for each packet (``t`` = ``StreamClock.packet_time(packet)``), ``end_session()``
    when it ends, ``close()`` at the end. ``segments(start, end)`` gives what the
    clipper needs. Stale segment files in ``directory`` are deleted at construction.
    """

    def __init__(self, directory: Path | str, options: RingOptions | None = None) -> None:
        self.directory = Path(directory)
        # a Struct built in code skips the bounds that decoding checks: check them here too
        self.options = msgspec.convert(msgspec.to_builtins(options), RingOptions) if options else RingOptions()
        self._keep_seconds: float | None = None  # a tighter cap while the disk is low (``shrink``)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*" + SEGMENT_SUFFIX):
            stale.unlink(missing_ok=True)
        self._index = SegmentIndex()
        self._lock = threading.Lock()
        self._session = 0
        self._tracks: dict[int, _Out] = {}
        self._video: int | None = None  # index of the video input stream
        self._container: av.container.OutputContainer | None = None
        self._in_session = False
        self.packets_written = 0
        self.packets_dropped = 0  # before the first keyframe of a session, or unknown
        self.forced_cuts = 0  # segments closed at their size or duration cap, without a keyframe
        self.mux_errors = 0  # packets the muxer rejected
        self._consecutive_errors = 0
        self.skipped: list[str] = []  # streams of the current session left out, and why

    # -- sessions -------------------------------------------------------------------

    def begin_session(
        self, video: av.VideoStream | None, audio: av.AudioStream | None
    ) -> None:
        """Start a session with these input streams (either may be None). The next
        segment starts at the session's first video keyframe.

        An audio codec MPEG-TS cannot carry (e.g. Speex or Nellymoser from old Flash
        encoders) is left out with a warning (see ``skipped``): the clips are silent.
        An unsupported video codec raises ``RingBufferError``.
        """
        self.skipped = []
        if audio is not None and audio.codec_context.name not in TS_CODECS["audio"]:
            reason = (
                f"audio codec {audio.codec_context.name!r} cannot be buffered in MPEG-TS "
                f"(supported: {', '.join(sorted(TS_CODECS['audio']))}): buffering video only"
            )
            log.warning(reason)
            self.skipped.append(reason)
            audio = None
        if video is not None and video.codec_context.name not in TS_CODECS["video"]:
            raise RingBufferError(
                f"video codec {video.codec_context.name!r} cannot be buffered in MPEG-TS "
                f"(supported: {', '.join(sorted(TS_CODECS['video']))})"
            )
        if video is None and audio is None:
            raise RingBufferError("a session needs a video or an audio stream")
        self.end_session()
        self._session += 1
        self._in_session = True
        self._tracks = {}
        self._video = video.index if video is not None else None
        for stream in (video, audio):
            if stream is not None:
                self._tracks[stream.index] = _Out(stream.index, stream.type, stream)

    def end_session(self) -> None:
        """Close the open segment (the source session ended)."""
        self._close_container()
        with self._lock:
            self._index.close()
        self._in_session = False

    def close(self, delete: bool = False) -> None:
        self.end_session()
        if delete:
            with self._lock:
                for segment in self._index.all():
                    segment.path.unlink(missing_ok=True)
                self._index = SegmentIndex()

    # -- writing --------------------------------------------------------------------

    def write(self, packet: av.Packet, t: float) -> bool:
        """Buffer ``packet``, whose pts (dts when pts is unset: ``clock.raw_time``)
        is at stream time ``t`` (``StreamClock.packet_time``).

        Returns False when the packet was dropped (not a session stream, no
        timestamps, or before the session's first keyframe). The packet itself is left
        as it was (timestamps, time base and stream are restored after muxing).
        """
        if not self._in_session:
            raise RingBufferError("write() outside a session: call begin_session() first")
        track = self._tracks.get(packet.stream_index)
        raw = raw_time(packet)
        if track is None or raw is None or packet.size == 0:
            self.packets_dropped += 1
            return False
        tb = packet.time_base
        shift = t - raw  # stream time = raw + shift
        pts = float(packet.pts * tb) + shift if packet.pts is not None else t
        dts = float(packet.dts * tb) + shift if packet.dts is not None else pts
        duration = float(packet.duration * tb) if packet.duration else 0.0
        if track.last_dts is not None and not duration:
            duration = track.frame
        is_key = track.kind == "video" and packet.is_keyframe

        current = self._index.current
        long_enough = self.options.segment_seconds - _CUT_TOLERANCE
        if self._video is not None:
            if is_key and (current is None or pts - current.start >= long_enough):
                self._rotate(pts, keyframe=True)
            elif current is None:
                self.packets_dropped += 1
                return False
            elif self._over_cap(current, dts):  # keyframes stopped (or are far apart): cut anyway
                self.forced_cuts += not is_key
                self._rotate(pts if is_key else dts, keyframe=is_key, forced=not is_key)
        elif current is None or dts - current.start >= long_enough or self._over_cap(current, dts):
            self._rotate(dts, keyframe=False)

        dts_ticks = round((dts + TS_OFFSET) * 90000) % 2**33
        pts_ticks = round((pts + TS_OFFSET) * 90000) % 2**33
        if track.last_dts is not None:
            step = (dts_ticks - track.last_dts) % 2**33
            if step == 0 or step > 2**32:  # not increasing (after a clamp): nudge it
                dts_ticks = (track.last_dts + 1) % 2**33
                pts_ticks = max(pts_ticks, dts_ticks)
            elif not packet.duration:
                track.frame = step / 90000
        saved = (packet.pts, packet.dts, packet.duration, tb, packet.stream)
        try:
            packet.time_base = _TB
            packet.pts, packet.dts = pts_ticks, dts_ticks
            packet.duration = round(duration * 90000)
            packet.stream = track.stream
            self._container.mux_one(packet)
        except av.error.FFmpegError as e:
            self.mux_errors += 1
            self._consecutive_errors += 1
            if self._consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                raise RingBufferError(f"segment muxing keeps failing: {e}") from e
            log.warning("dropped a %s packet at %.3f: %s", track.kind, pts, e)
            return False
        finally:
            packet.time_base = saved[3]
            packet.pts, packet.dts, packet.duration = saved[0], saved[1], saved[2]
            packet.stream = saved[4]
        self._consecutive_errors = 0
        track.last_dts = dts_ticks
        if duration:
            track.frame = duration
        self.packets_written += 1

        try:
            nbytes = os.path.getsize(self._index.current.path)
        except OSError:
            nbytes = None
        with self._lock:
            self._index.update(
                pts + (duration or track.frame), nbytes, keyframe=pts if is_key else None
            )
            self._evict()
        return True

    def _over_cap(self, current: Segment, t: float) -> bool:
        return (
            t - current.start >= self.options.segment_cap_seconds
            or current.bytes >= self.options.segment_cap_bytes
        )

    def _rotate(self, start: float, keyframe: bool, forced: bool = False) -> None:
        self._close_container()
        with self._lock:
            segment = self._index.open(
                lambda seq: self.directory / f"{seq:08d}{SEGMENT_SUFFIX}",
                start, self._session, keyframe, forced,
            )
            self._evict()
        try:
            container = av.open(
                str(segment.path),
                "w",
                format="mpegts",
                container_options={
                    "flush_packets": "1",  # the open segment stays readable
                    "mpegts_copyts": "1",  # keep our timestamps as they are
                    "pes_payload_size": "0",  # one PES per audio frame: no audio lag
                    "max_interleave_delta": "500000",  # a stalled stream holds others <= 0.5 s
                },
            )
        except Exception:
            with self._lock:
                self._index.discard_open()
            raise
        try:
            for track in self._tracks.values():
                track.stream = container.add_stream_from_template(track.template)
        except Exception:
            container.close()
            with self._lock:
                self._index.discard_open()
            segment.path.unlink(missing_ok=True)
            raise
        self._container = container

    def _close_container(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.close()
        except Exception:  # a segment with no packet yet: nothing worth keeping
            log.debug("closing segment container failed", exc_info=True)
        with self._lock:
            current = self._index.current
            if current is not None:
                try:
                    self._index.update(current.end, os.path.getsize(current.path))
                except OSError:
                    pass
                self._evict()

    def shrink(self, keep_seconds: float | None) -> None:
        """Keep at most ``keep_seconds`` buffered from now on (evicting now), e.g. a clip's
        pre-roll while the disk is low; ``None`` goes back to ``max_seconds``. The open
        segment is never evicted."""
        with self._lock:
            self._keep_seconds = keep_seconds
            self._evict()

    def _evict(self) -> None:  # holds the lock
        max_seconds = self.options.max_seconds
        if self._keep_seconds is not None:
            max_seconds = min(max_seconds, self._keep_seconds)
        if self._index.seconds <= max_seconds and self._index.bytes <= self.options.max_bytes:
            return
        for segment in self._index.evict(max_seconds, self.options.max_bytes):
            segment.path.unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------

    def segments(self, start: float = float("-inf"), end: float = float("inf")) -> list[Segment]:
        """Snapshots of the segments overlapping [start, end], including the open one."""
        with self._lock:
            return self._index.lookup(start, end)

    def keyframes(self, start: float = float("-inf"), end: float = float("inf")) -> list[float]:
        with self._lock:
            return self._index.keyframes(start, end)

    @property
    def start(self) -> float:
        """Stream time of the oldest buffered packet (0.0 when empty)."""
        with self._lock:
            return self._index.start

    @property
    def end(self) -> float:
        """Stream time the buffer reaches (buffered until); 0.0 when empty."""
        with self._lock:
            return self._index.end

    @property
    def seconds_buffered(self) -> float:
        """Sum of the segments' durations (gaps between sessions do not count)."""
        with self._lock:
            return self._index.seconds

    @property
    def bytes_buffered(self) -> int:
        with self._lock:
            return self._index.bytes

    @property
    def session(self) -> int:
        return self._session
