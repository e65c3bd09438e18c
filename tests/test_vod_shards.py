"""Shards on real media, without Ray: cutting a recording into shards anywhere (a seam right on
a planted roar, or just before a shouted keyword) finds exactly the moments one pass over the
whole recording finds."""
from __future__ import annotations

import pytest

from bench.broadcast import make_broadcast
from stream_actor.settings import channel_settings
from vod import plan
from vod.probe import probe
from vod.shard import analyse_shard


@pytest.fixture(scope="module")
def recording(tmp_path_factory, ffmpeg, espeak):
    path = tmp_path_factory.mktemp("shards") / "broadcast.mp4"
    truth = make_broadcast(path, duration=75.0)  # roar at 20 s and 60 s, "oh my god, no way" at 40 s
    from detectors.speech import SpeechOptions, load_whisper_model

    return path, truth, probe(str(path)), load_whisper_model(SpeechOptions())


def _moments(recording, shard_seconds: float):
    path, _truth, info, model = recording
    settings = channel_settings({})
    shards = plan.plan_shards(info.duration, shard_seconds, plan.shard_lead(settings))
    results = {s.index: analyse_shard(str(path), s, settings, model, origin=info.origin) for s in shards}
    merged = plan.merge(shards, results, settings, duration=info.duration)
    return shards, merged


@pytest.mark.parametrize("shard_seconds", [15.0, 37.5, 18.75])  # seams at 60 s (a roar), at 37.5 s, ...
def test_shards_find_the_moments_of_one_pass(recording, shard_seconds):
    _path, truth, info, _model = recording
    _one, whole = _moments(recording, info.duration)
    shards, sharded = _moments(recording, shard_seconds)
    assert len(shards) > 1
    assert len(whole.moments) == len(truth.moments) == len(sharded.moments)
    for moment, one_pass, planted in zip(sharded.moments, whole.moments, truth.moments):
        assert abs(moment.t - planted.t) < 3.0
        # audio signals land on the same grid (exactly); ASR words may move by tens of ms, as
        # whisper aligns an utterance in a window packed with other neighbours
        assert abs(moment.t - one_pass.t) <= 0.25, (moment, one_pass)
        # speech_rate is the one signal of word *timing*: a shift of tens of ms can tip it either way
        assert moment.signals.keys() - {"speech_rate"} == one_pass.signals.keys() - {"speech_rate"}
    # every utterance once, whichever way the recording was cut: no word lost or doubled
    sharded_words, whole_words = [w.text for w in sharded.words], [w.text for w in whole.words]
    assert abs(len(sharded_words) - len(whole_words)) <= 0.03 * len(whole_words), (sharded_words, whole_words)


def test_shards_starting_anywhere_put_audio_signals_on_the_same_grid(recording):
    """The invariant that keeps a seam exact: a shard that starts reading at any time computes
    each audio signal at the very time a shard that started earlier does (to the millisecond),
    so ownership by time gives it to exactly one of them."""
    path, _truth, info, model = recording
    settings = channel_settings({})
    results = []
    for read_from in (0.0, 13.37, 17.9):  # AAC frames (21.3 ms) fall differently against each
        shard = plan.Shard(0, start=0.0, end=info.duration, read_from=read_from, read_to=info.duration)
        result = analyse_shard(str(path), shard, settings, None, origin=info.origin)
        results.append({(s.name, round(s.t, 3)) for s in result.signals if s.name in ("loudness", "crowd") and s.t > 55})
    assert results[0], "the roar at 60 s fires loudness and crowd"
    assert results[0] == results[1] == results[2]
