"""The labelled corpus generator (bench.corpus): consistent truth, a clean split, determinism,
loudness processing that does what it says, and sung hype lyrics labelled as distractors."""
import tempfile
from pathlib import Path

import msgspec
import numpy as np
import pytest

from bench import corpus, voices
from bench.broadcast import SAMPLE_RATE, SPEECH_DBFS
from bench.genres import GenreTruth, _Plan, load_genre_truth

HYPE = ("let's go", "oh my god", "no way")


def _windows_meet(m, d) -> bool:
    """bench.quality's windows: a moment [t - 3, end + 3], a distractor [t - 3, end + 6]."""
    return m.t - 3.0 <= d.end + 6.0 and d.t - 3.0 <= m.end + 3.0


@pytest.fixture(scope="module")
def truths(espeak):
    # one broadcast of each kind, short: a moment genre's first seed of each split, distractors
    seeds = [corpus.seed_for("train", g, 0) for g in corpus.MOMENT_GENRES] + [
        corpus.seed_for("test", "distractors", 1)
    ]
    return [corpus.plan_truth(s, duration=90.0)[0] for s in seeds]


def test_train_and_test_seeds_are_disjoint_and_named_by_split():
    assert not set(corpus.TRAIN_SEEDS) & set(corpus.TEST_SEEDS)
    train = corpus.broadcast_seeds("train")
    test = corpus.broadcast_seeds("test")
    assert train and test and not set(train) & set(test)
    assert all(corpus.split_of(s) == "train" for s in train)
    assert all(corpus.split_of(s) == "test" for s in test)
    assert {corpus.genre_of(s) for s in test} == set(corpus.CORPUS_GENRES)
    assert corpus.stem_of(corpus.seed_for("test", "sports", 2), "flattened") == "test-sports-s5202-flattened"
    with pytest.raises(ValueError):
        corpus.split_of(3000)
    # the default sizes: train >= 1.5 h with moments + 0.5 h distractors, test >= 1.5 h + 1.0 h
    for split, (moments_h, distractors_h) in (("train", (1.5, 0.5)), ("test", (1.5, 1.0))):
        seeds = corpus.broadcast_seeds(split)
        dis = sum(corpus.genre_of(s) == "distractors" for s in seeds) * corpus.DEFAULT_DURATION / 3600
        mom = sum(corpus.genre_of(s) != "distractors" for s in seeds) * corpus.DEFAULT_DURATION / 3600
        assert mom >= moments_h and dis >= distractors_h


def test_truth_is_consistent(truths):
    for t in truths:
        name = f"{t.genre} s{t.seed}"
        plain = msgspec.json.decode(msgspec.json.encode(t), type=GenreTruth)  # bench.genres reads it as before
        assert [(m.t, m.end, m.kind, len(m.parts)) for m in plain.moments] == [
            (m.t, m.end, m.kind, len(m.parts)) for m in t.moments
        ]
        assert t.split == corpus.split_of(t.seed) and t.loudness in corpus.LOUDNESS_MODES, name
        if t.genre == "distractors":
            assert not t.moments and t.distractors, name
        else:
            assert t.moments, name
        for m in t.moments:
            assert 0.0 <= m.t <= m.end <= t.duration, (name, m)
            assert m.parts and min(p.t for p in m.parts) == m.t and max(p.end for p in m.parts) == m.end, (name, m)
            assert set(m.expected_signals) == {s for p in m.parts for s in p.signals}, (name, m)
            if t.loudness == "flattened":
                assert "loudness" not in m.expected_signals, (name, m)
        for a, b in zip(t.moments, t.moments[1:]):  # closer than that, they are one moment
            assert b.t - a.end >= corpus.MOMENT_SPACING, (name, a, b)
        for d in t.distractors:
            assert 0.0 <= d.t <= d.end <= t.duration, (name, d)
            assert not any(_windows_meet(m, d) for m in t.moments), (name, d)


def test_same_seed_same_truth_and_audio(espeak):
    seed = corpus.seed_for("train", "podcast", 3)
    a, audio_a = corpus.plan_truth(seed, duration=60.0)
    b, audio_b = corpus.plan_truth(seed, duration=60.0)
    assert a == b
    assert np.array_equal(audio_a, audio_b)
    other, _ = corpus.plan_truth(seed + 1, duration=60.0)
    assert other.moments != a.moments


def test_loudness_override_keeps_the_timeline(espeak):
    seed = corpus.seed_for("test", "sports", 0)
    own, _ = corpus.plan_truth(seed, duration=60.0)
    mode = next(m for m in ("flattened", "raw") if m != own.loudness)
    flat, _ = corpus.plan_truth(seed, duration=60.0, loudness=mode)
    assert flat.loudness == mode
    assert [(m.t, m.end, m.kind) for m in flat.moments] == [(m.t, m.end, m.kind) for m in own.moments]
    assert flat.distractors == own.distractors


def _talk_and_shout(rng):
    spk = voices.speakers(rng, 1)[0]
    gap = np.zeros(int(0.5 * SAMPLE_RATE), np.float32)
    talk = np.concatenate([np.concatenate([voices.say(s, spk, "calm", rng), gap]) for s in (
        "The weather has been grey and rainy all week.", "Let me read a few questions from the chat.",
        "I tried a new recipe for dinner and it was pretty good.")])
    shout = voices.say("Oh my god, no way, that was absolutely insane!", spk, "shouted", rng)
    x = np.concatenate([voices.at_dbfs(talk, SPEECH_DBFS), gap, voices.at_dbfs(shout, SPEECH_DBFS + 12.0), gap,
                        voices.at_dbfs(talk, SPEECH_DBFS)])
    return x, (int(2 * SAMPLE_RATE), len(talk)), (len(talk) + len(gap), len(talk) + len(gap) + len(shout))


def test_flattened_holds_a_shout_to_the_talks_level_and_raw_keeps_it_louder(espeak):
    x, (t0, t1), (s0, s1) = _talk_and_shout(np.random.default_rng(1))

    def difference(y):
        return 20 * np.log10(voices.active_rms(y[s0:s1]) / voices.active_rms(y[t0:t1]))

    assert difference(corpus.process_loudness(x, "raw")) > 10.0
    assert abs(difference(corpus.process_loudness(x, "flattened"))) < 3.0
    assert 2.0 < difference(corpus.process_loudness(x, "compressed")) < 8.0
    normalized = corpus.process_loudness(x, "normalized")
    assert difference(normalized) > 8.0 and np.abs(normalized).max() <= 0.9
    assert -17.0 < corpus.integrated_lufs(normalized) < -13.0
    with pytest.raises(ValueError):
        corpus.process_loudness(x, "loud")


@pytest.mark.parametrize("kind", ["sung_lyrics", "sung_chorus"])
def test_sung_lyrics_distractor_names_its_hype_phrase(kind, espeak):
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as work:
        plan = _Plan("just_chatting", 60.0, rng, Path(work), np.zeros(60 * SAMPLE_RATE, np.float32))
        plan.base_scenes.append((0.0, "facecam"))
        ctx = corpus._Ctx(plan, "distractors", "raw")
        d = corpus._plant_distractor(ctx, kind, 5.0, 40.0)
    assert d is not None and d.kind == kind
    assert d.text.startswith("sung: ") and any(p in d.text for p in HYPE), d.text
    sung = plan.audio[int(d.t * SAMPLE_RATE) : int(d.end * SAMPLE_RATE)]
    assert voices.active_rms(sung) > 10 ** ((SPEECH_DBFS - 20) / 20)  # it is in the mix


def test_make_corpus_writes_media_truth_and_index_and_caches(tmp_path, ffmpeg, espeak):
    paths = corpus.make_corpus(tmp_path, "train", scale=0.01, genres=("gaming",), duration=30.0)
    assert [p.name for p in paths] == [f"{corpus.stem_of(corpus.seed_for('train', 'gaming', 0))}.mp4"]
    mp4 = paths[0]
    assert mp4.stat().st_size > 10_000
    truth = load_genre_truth(mp4)  # bench.genres still reads it
    assert truth.genre == "gaming" and truth.game_profile == "example_shooter" and truth.duration == 30.0
    (entry,) = corpus.corpus_entries(tmp_path)
    assert (entry.split, entry.genre, entry.seed, entry.mp4) == ("train", "gaming", 1000, mp4.name)
    before = mp4.stat().st_mtime_ns
    corpus.make_corpus(tmp_path, "train", scale=0.01, genres=("gaming",), duration=30.0)
    assert mp4.stat().st_mtime_ns == before  # same parameters: kept
    assert corpus.corpus_entries(tmp_path, "test") == []
