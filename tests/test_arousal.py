"""Vocal arousal on generated speech (bench.voices): a raised voice fires at equal loudness,
a louder calm voice and sung lyrics do not."""
import functools

import msgspec
import numpy as np
import pytest

import media
from bench import voices
from detectors.arousal import ArousalDetector, ArousalOptions

SR = voices.SAMPLE_RATE
TALK_DBFS = -26.0
SENTENCE = "oh my god no way, that was absolutely insane"


@functools.cache
def _scene(seed: int, style: str, gain_db: float = 0.0) -> tuple[np.ndarray, float]:
    """20 s of calm talk by one speaker, the target (``style``: a say() style, or "sing"),
    then 4 s more calm talk, at 16 kHz; and the target's start time. The talk and the
    target have the same active level (+``gain_db`` for the target)."""
    rng = np.random.default_rng(seed)
    speaker = voices.speakers(rng, 1)[0]
    warm = voices.at_dbfs(voices.talk(speaker, 20.0, rng), TALK_DBFS)
    if style == "sing":
        target = voices.sing("let's go let's go we are the champions tonight", rng, tempo_bpm=110, key_hz=200)
    else:
        target = voices.say(SENTENCE, speaker, style, rng)
    target = voices.at_dbfs(target, TALK_DBFS + gain_db)
    tail = voices.at_dbfs(voices.talk(speaker, 4.0, rng), TALK_DBFS)
    gap = np.zeros(SR // 2, np.float32)
    audio = np.concatenate([warm, gap, target, gap, tail])
    return voices.to_16k(audio), (len(warm) + len(gap)) / SR


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_sentence_at_equal_loudness_only_the_shouted_one_fires(seed, espeak):
    calm, t_calm = _scene(seed, "calm")
    shouted, t_shout = _scene(seed, "shouted")
    assert media.feed(ArousalDetector(), calm, 0.1) == []
    fired = media.feed(ArousalDetector(), shouted, 0.1)
    assert len(fired) == 1, fired
    assert fired[0].name == "arousal" and fired[0].value >= 1.0
    assert abs(fired[0].t - t_shout) <= 1.0, (fired, t_shout)
    assert "pitch +" in fired[0].detail


def test_styles_really_are_at_equal_active_loudness(espeak):
    rng = np.random.default_rng(4)
    speaker = voices.speakers(rng, 1)[0]
    levels = [voices.active_rms(voices.say(SENTENCE, speaker, s, rng)) for s in voices.STYLES]
    assert np.allclose(levels, 1.0, atol=1e-3), levels


def test_a_louder_calm_voice_does_not_fire(espeak):
    louder, _ = _scene(1, "calm", gain_db=10.0)
    assert media.feed(ArousalDetector(), louder, 0.1) == []


def test_sung_lyrics_after_talk_do_not_fire(espeak):
    for seed in (1, 2):
        song, _ = _scene(seed, "sing")
        assert media.feed(ArousalDetector(), song, 0.1) == []


@pytest.mark.parametrize("chunk", [0.137, 1000.0])
def test_same_result_whatever_the_chunk_size(chunk, espeak):
    shouted, _ = _scene(2, "shouted")
    expected = media.feed(ArousalDetector(), shouted, 0.1)
    assert expected
    assert media.feed(ArousalDetector(), shouted, chunk) == expected


def test_nothing_fires_before_the_speakers_normal_is_known(espeak):
    shouted, t_shout = _scene(2, "shouted")
    start = int((t_shout - 1.0) * media.RATE)  # the stream starts just before the shout
    assert media.feed(ArousalDetector(), shouted[start:], 0.1, t0=t_shout - 1.0) == []


def test_options_are_bounded_and_strict():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"pitch_trigger_st": -1.0}, ArousalOptions)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"no_such_option": 1}, ArousalOptions)
