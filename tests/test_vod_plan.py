"""VOD planning, pure: shards cover the recording once, seams lose nothing, and merged shards
fuse exactly as one pass over the whole recording would."""
from __future__ import annotations

import math
import random

import pytest

from records.wire import Signal, Word
from stream_actor.settings import channel_settings
from vod import plan
from vod.plan import Shard, ShardResult

# The planning and merging mechanics, with the hand-written fusion (a strong loudness burst or
# "oh my god" is a moment on its own): independent of what the fitted weights make of them.
HAND_WRITTEN = {"profile": "default-manual"}


@pytest.mark.parametrize("duration", [7.0, 95.0, 179.9, 181.0, 600.0, 3600.0, 3601.5])
def test_shards_tile_the_recording_and_read_a_lead_and_a_tail(duration):
    shards = plan.plan_shards(duration, 180.0, lead=35.0, tail=20.0)
    assert shards[0].start == 0.0 and shards[-1].end == duration
    for a, b in zip(shards, shards[1:]):
        assert a.end == b.start  # owned ranges tile [0, duration] with no gap or overlap
        assert b.read_from == max(0.0, b.start - 35.0)
        assert a.read_to == min(duration, a.end + 20.0)
    if duration >= 180:
        assert all(90.0 <= s.end - s.start <= 270.0 for s in shards)  # "about 2-5 min"
    assert [s.index for s in shards] == list(range(len(shards)))


def test_a_signal_belongs_to_exactly_one_shard():
    shards = plan.plan_shards(600.0, 180.0, lead=35.0)
    times = [0.0, 1.5, 199.99, 200.0, 200.01, 399.99, 400.0, 599.9, 600.0]
    for t in times:
        owners = [s.index for s in shards if plan.owned([Signal("x", t, 1.0)], s)]
        assert len(owners) == 1, (t, owners)


def test_a_recording_without_duration_is_refused():
    with pytest.raises(ValueError):
        plan.plan_shards(0.0, 180.0, lead=35.0)


def test_frontier_is_the_start_of_the_first_unfinished_shard():
    shards = plan.plan_shards(600.0, 200.0, lead=35.0)
    assert plan.frontier(shards, set()) == 0.0
    assert plan.frontier(shards, {1, 2}) == 0.0
    assert plan.frontier(shards, {0, 2}) == shards[1].start
    assert math.isinf(plan.frontier(shards, {0, 1, 2}))


def _signals(seed: int, duration: float) -> list[Signal]:
    rng = random.Random(seed)
    names = ["loudness", "crowd", "keyword", "scene", "scene_rate", "laughter"]
    out = []
    for _ in range(int(duration / 4)):
        out.append(Signal(rng.choice(names), round(rng.uniform(0, duration), 2), round(rng.uniform(0.2, 1.6), 2)))
    return sorted(out, key=lambda s: s.t)


def _results(shards: list[Shard], signals: list[Signal], words: list[Word]) -> dict[int, ShardResult]:
    return {
        s.index: ShardResult(
            signals=plan.owned(signals, s), words=[w for w in words if s.start <= w.start < s.end]
        )
        for s in shards
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merged_shards_fuse_like_one_pass_and_final_moments_never_change(seed):
    settings = channel_settings(HAND_WRITTEN)
    duration = 900.0
    signals = _signals(seed, duration)
    shards = plan.plan_shards(duration, 150.0, lead=35.0)
    results = _results(shards, signals, [])
    whole = plan.fuse(signals, settings)
    assert whole, "the random signals should make some moments"
    merged = plan.merge(shards, results, settings, duration=duration)
    assert [(m.seq, m.t, m.span()) for m in merged.moments] == [(m.seq, m.t, m.span()) for m in whole]
    # shards finishing one by one (in any order): each moment found final early is exactly the
    # one the whole recording gives, so its seq is a stable key for the idempotent commit
    by_seq = {m.seq: m for m in whole}
    order = list(range(len(shards)))
    random.Random(seed).shuffle(order)
    done: dict[int, ShardResult] = {}
    seen = set()
    for i in order:
        done[i] = results[i]
        for m in plan.merge(shards, done, settings, duration=duration).moments:
            assert by_seq[m.seq] == m
            seen.add(m.seq)
    assert seen == set(by_seq)


def test_fusion_is_fed_in_steps_so_old_signals_are_not_dropped_by_its_horizon():
    settings = channel_settings(HAND_WRITTEN)
    # two moments far apart: one push of everything would drop the first (horizon 60 s)
    signals = [Signal("loudness", 10.0, 1.5), Signal("loudness", 500.0, 1.5)]
    assert [m.t for m in plan.fuse(signals, settings)] == [10.0, 500.0]


def test_transcript_signals_come_from_the_merged_words_across_a_seam():
    settings = channel_settings(HAND_WRITTEN)
    shards = plan.plan_shards(360.0, 180.0, lead=35.0)
    seam = shards[1].start
    words = [
        Word(seam - 0.8, seam - 0.5, "oh"), Word(seam - 0.45, seam - 0.2, "my"), Word(seam + 0.05, seam + 0.4, "god!"),
    ]
    merged = plan.merge(shards, _results(shards, [], words), settings, duration=360.0)
    keywords = [s for s in merged.signals if s.name == "keyword"]
    assert len(keywords) == 1 and "oh my god" in keywords[0].detail.lower()
    assert len(merged.moments) == 1


def test_clip_range_is_pre_and_post_roll_around_the_span_inside_the_recording():
    settings = channel_settings(HAND_WRITTEN)
    moment = plan.fuse([Signal("loudness", 4.0, 1.5)], settings)[0]
    start, end = plan.clip_range(moment, [], settings, duration=7.0)
    assert (start, end) == (0.0, 7.0)
    moment = plan.fuse([Signal("loudness", 100.0, 1.5)], settings)[0]
    assert plan.clip_range(moment, [], settings, duration=1000.0) == (100.0 - 10.0, 100.0 + 5.0)
