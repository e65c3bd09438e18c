"""Stream time: one timeline for a whole broadcast.

Raw packet timestamps cannot be trusted over a broadcast's life: encoders restart
them at zero, jump them forward after a stall, and every reconnect (a new publish, a
reopened URL) starts a new timeline. ``StreamClock`` maps each packet's raw timestamp
(seconds, per stream index) to *stream time*, seconds since the broadcast started:

* inside a session all streams share one offset (an "epoch"), so audio and video stay
  aligned with each other exactly as the source aligned them;
* a timestamp that goes backwards by more than ``reorder`` (B-frames legitimately
  present out of order by a fraction of a second), or jumps forward by more than
  ``max_gap``, is a discontinuity: the stream that sees it starts a new epoch
  continuing from the latest time seen plus one frame; the other streams move to the
  new epoch when their own timestamps make the same jump (a packet that still fits
  the old epoch keeps it, so interleaving around the reset does not matter);
* a new session continues after the previous one, advanced by the wall-clock time
  between the last packet of the previous session and the start of the new one, so
  stream time keeps tracking real time across an outage.

The raw timestamp of a packet is its pts, or its dts when pts is unset (``raw_time``):
the convention ``RingBuffer.write`` and the decoders share. Stream time never goes
below the end of the previous session; per stream it is monotonic up to the reorder
of the input (dts in gives monotonic times out). Pure apart from reading the wall
clock (injectable).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["StreamClock", "raw_time"]


def raw_time(packet) -> float | None:
    """A packet's raw timestamp in seconds: its pts, or its dts when pts is unset.

    ``StreamClock.packet_time`` maps this timestamp, and ``RingBuffer.write`` and the
    decoders take ``t`` to be its stream time.
    """
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return None
    return float(ts * packet.time_base)


@dataclass(slots=True)
class _Track:
    offset: float  # stream time = raw + offset
    top: float  # latest stream time returned
    last: float  # stream time returned for the previous packet
    duration: float  # last known packet duration


class StreamClock:
    """Maps raw timestamps to stream time. See the module docstring.

    ``default_frame`` is the "one frame" used when a stream's packet duration is
    unknown. ``now`` is the wall clock (``time.time`` seconds, the clock
    ``begin_session(wall)`` values come from), injectable for tests.
    """

    def __init__(
        self,
        *,
        max_gap: float = 5.0,
        reorder: float = 1.0,
        default_frame: float = 1 / 30,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.max_gap = max_gap
        self.reorder = reorder
        self.default_frame = default_frame
        self._now = now
        self.session = 0  # number of sessions begun
        self.discontinuities = 0  # resets and jumps handled so far
        self._tracks: dict[int, _Track] = {}
        self._epoch: float | None = None  # current epoch offset of this session
        self._floor = 0.0  # no stream time of this session is earlier than this
        self._end = 0.0  # latest (time + duration) seen, over all sessions
        self._wall_end: float | None = None  # wall clock at the latest packet
        self._wall_start: float | None = None  # wall clock given to begin_session

    # -- sessions -------------------------------------------------------------------

    def begin_session(self, wall: float | None = None) -> None:
        """Start a new session (a reconnect, a reopened URL). Its first packet is
        placed after everything so far, plus the wall-clock gap between the last
        packet of the previous session and ``wall`` (default: that first packet's
        arrival), in ``now``'s clock."""
        self.session += 1
        self._tracks.clear()
        self._epoch = None
        self._floor = self._end
        self._wall_start = wall

    start_session = begin_session  # alias

    def resume(self, end: float, wall_end: float) -> None:
        """Continue an earlier clock (e.g. of a restarted actor) that reached stream time
        ``end`` at wall time ``wall_end``: the next session starts after it, plus the gap."""
        if end > self._end:
            self._end = end
            self._wall_end = wall_end

    @property
    def end(self) -> float:
        """Latest stream time seen, including that packet's duration."""
        return self._end

    # -- mapping --------------------------------------------------------------------

    def time(
        self,
        index: int,
        raw: float,
        duration: float | None = None,
        decode: float | None = None,
    ) -> float:
        """Stream time of a packet of stream ``index`` with raw timestamp ``raw``
        (seconds) and, if known, duration ``duration`` and raw decode timestamp
        ``decode`` (seconds). The session starts at the first packet's decode time when
        given: a first keyframe presented after B-frame delay then does not push the
        other streams' first packets before the start of the session."""
        now = self._now()
        if self._epoch is None:  # first packet of the session sets its epoch
            start = self._floor
            if self._wall_end is not None:  # a previous session: add the outage
                began = self._wall_start if self._wall_start is not None else now
                start += max(0.0, began - self._wall_end)
            origin = raw if decode is None or not 0.0 <= raw - decode <= self.reorder else decode
            self._epoch = start - origin
            self._floor = start

        track = self._tracks.get(index)
        if track is None:
            t = max(raw + self._epoch, self._floor)
            track = self._tracks[index] = _Track(self._epoch, t, t, 0.0)
        else:
            t = raw + track.offset
            if not self._fits(t, track.top):
                moved = raw + self._epoch
                if track.offset != self._epoch and self._fits(moved, track.top):
                    track.offset, t = self._epoch, moved  # follows another stream's reset
                else:  # a discontinuity: continue from the latest time + one frame
                    self.discontinuities += 1
                    t = max(
                        tr.top + (tr.duration or self.default_frame)
                        for tr in self._tracks.values()
                    )
                    self._epoch = track.offset = t - raw
            t = max(t, self._floor)
        if duration is not None and duration > 0:
            track.duration = duration
        elif 0.0 < t - track.last <= 0.2:  # unknown duration: estimate by the step
            track.duration = t - track.last
        track.last = t
        track.top = max(track.top, t)
        self._end = max(self._end, t + (track.duration or 0.0))
        self._wall_end = now
        return t

    def to_stream_time(self, index: int, raw: float, duration: float | None = None) -> float:
        """Alias of ``time``."""
        return self.time(index, raw, duration)

    def packet_time(self, packet) -> float | None:
        """Stream time of an ``av.Packet``'s raw timestamp (pts, or dts when pts is
        unset); None for a packet without timestamps (e.g. a demuxer's flush packet)."""
        raw = raw_time(packet)
        if raw is None:
            return None
        duration = float(packet.duration * packet.time_base) if packet.duration else None
        decode = float(packet.dts * packet.time_base) if packet.dts is not None else None
        return self.time(packet.stream_index, raw, duration, decode)

    def _fits(self, t: float, top: float) -> bool:
        return top - self.reorder <= t <= top + self.max_gap
