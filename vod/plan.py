"""Planning a VOD job, with no I/O: shards, what each owns, and merging their output.

A recording is cut into shards of about ``shard_seconds`` that run in parallel. Each shard
*owns* the stream time [start, end): only the signals (and ASR utterances) that begin there
are its own, so no moment is found twice or lost at a seam. It also reads a ``lead`` before
its start, so the detectors' rolling baselines (loudness, crowd: 30 s) are warm when its
own range begins, and a ``tail`` after its end, so an utterance that starts in its range is
heard to its end.

The shards' outputs are then merged in time order and go through what the stream actor
runs live: transcript signals (keywords, sentiment) over the merged words, then one
``Fusion`` fed in stream-time order. Fusion is causal when fed in time order, so the moments
of a prefix of the recording never change as later shards arrive: a moment is *final*, and
can be cut, once every shard before ``moment end + settle`` is done. Its ``seq`` is then a
stable key, which makes committing its clip idempotent.
"""
from __future__ import annotations

import math

import msgspec

from detectors.boundaries import snap_clip
from detectors.fusion import Fusion
from records.wire import MomentEvent, Signal, Word
from stream_actor.settings import ChannelSettings

FUSION_STEP = 1.0  # seconds of stream time per fusion push: as live, signals never arrive all at once
SNAP_MARGIN = 3.0  # a clip edge moves to a sentence boundary at most this far (detectors.boundaries)


class Shard(msgspec.Struct, frozen=True):
    index: int
    start: float  # the stream time it owns: [start, end)
    end: float
    read_from: float  # what it decodes: [read_from, read_to]
    read_to: float


class ShardResult(msgspec.Struct):
    """What one shard found in the time it owns."""

    signals: list[Signal]  # audio and video detector signals (transcript signals are made when merging)
    words: list[Word]  # ASR words of the utterances that start in its range
    cpu: dict[str, float] = {}  # CPU seconds per stage
    media_seconds: float = 0.0  # stream seconds decoded (lead and tail included)


def shard_lead(settings: ChannelSettings) -> float:
    """Seconds a shard decodes before its start: the longest detector history, plus a margin."""
    # Not the arousal baseline (60 s of voiced speech, more than a minute of audio): 35 s of
    # lead warms it well past its warm-up, and a lead that long would make every shard of a
    # short recording read it from the start.
    return max(settings.loudness.baseline_seconds, settings.crowd.baseline_seconds, settings.music.window,
               settings.scene.rate_window) + 5.0


def plan_shards(duration: float, shard_seconds: float, lead: float, tail: float = 20.0) -> list[Shard]:
    """Equal shards of about ``shard_seconds`` covering [0, duration]."""
    if not duration > 0:
        raise ValueError(f"cannot plan a recording of {duration!r} s")
    count = max(1, round(duration / shard_seconds))
    length = duration / count
    shards = []
    for i in range(count):
        start = i * length
        end = duration if i == count - 1 else (i + 1) * length
        shards.append(Shard(i, start, end, max(0.0, start - lead), min(duration, end + tail)))
    return shards


def owned(signals: list[Signal], shard: Shard) -> list[Signal]:
    """The signals that begin in the shard's own time. Times are compared to the millisecond:
    two shards compute a seam's signal on the same hop grid, but their resamplers' phases
    differ by microseconds."""
    last = shard.end == shard.read_to
    return [s for s in signals if shard.start <= round(s.t, 3) and (round(s.t, 3) < shard.end or last)]


def frontier(shards: list[Shard], done: set[int]) -> float:
    """Stream time up to which every shard is done (inf when all are)."""
    for shard in shards:
        if shard.index not in done:
            return shard.start
    return math.inf


class Merged(msgspec.Struct):
    signals: list[Signal]  # every signal (detectors' and transcript's), in time order
    words: list[Word]  # the transcript, in time order
    moments: list[MomentEvent]  # final moments, latest version of each, in time order


def merge(
    shards: list[Shard], results: dict[int, ShardResult], settings: ChannelSettings, *, duration: float
) -> Merged:
    """The final moments of the shards done so far (a contiguous prefix of the recording)."""
    from stream_actor.detection import DetectorPipeline  # the live pipeline's transcript detectors

    until = frontier(shards, set(results))
    prefix = [results[s.index] for s in shards if s.end <= until or math.isinf(until)]
    words = sorted((w for r in prefix for w in r.words), key=lambda w: (w.start, w.end))
    transcript = DetectorPipeline(settings, None).word_signals(words, until=min(until, duration))
    signals = sorted([*(s for r in prefix for s in r.signals), *transcript], key=lambda s: s.t)
    signals = [s for s in signals if s.t < until]
    settle = max(settings.fusion.cluster_gap, settings.clip.post_roll + SNAP_MARGIN)
    moments = [m for m in fuse(signals, settings) if m.span()[1] + settle < until]
    return Merged(signals=signals, words=words, moments=moments)


def fuse(signals: list[Signal], settings: ChannelSettings) -> list[MomentEvent]:
    """Signals in time order through the live ``Fusion``; the latest event of each moment."""
    fusion = Fusion(settings.fusion)
    latest: dict[int, MomentEvent] = {}
    i = 0
    while i < len(signals):
        step_end = (math.floor(signals[i].t / FUSION_STEP) + 1) * FUSION_STEP
        j = i
        while j < len(signals) and signals[j].t < step_end:
            j += 1
        for event in fusion.push(signals[i:j]):
            latest[event.seq] = event
        i = j
    return sorted(latest.values(), key=lambda m: m.t)


def clip_range(moment: MomentEvent, words: list[Word], settings: ChannelSettings, duration: float) -> tuple[float, float]:
    """A moment's clip as live: pre- and post-roll around its span, snapped to sentences."""
    first, last = moment.span()
    start, end = snap_clip(first - settings.clip.pre_roll, last + settings.clip.post_roll, words)
    return max(0.0, start), min(duration, end)

