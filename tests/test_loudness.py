"""Loudness bursts on real generated broadcast audio (decoded with PyAV like the actor)."""
import numpy as np
import pytest

import media
from detectors.loudness import LoudnessDetector, LoudnessOptions

RATE = media.RATE


def _loud_truth():
    _, truth, audio = media.broadcast()
    return [m.t for m in truth.moments if m.kind == "loud"], audio


def test_fires_once_per_planted_burst_and_never_on_speech(ffmpeg, espeak):
    loud, audio = _loud_truth()
    assert len(loud) == 2
    signals = media.feed(LoudnessDetector(), audio, 0.1)
    assert len(signals) == len(loud), signals
    for s, t in zip(signals, loud):
        assert s.name == "loudness"
        assert abs(s.t - t) <= 1.0, (s, t)
        assert s.value >= 1.0


@pytest.mark.parametrize("chunk", [0.02, 0.137, 0.2])
def test_same_result_whatever_the_chunk_size(chunk, ffmpeg, espeak):
    _, audio = _loud_truth()
    assert media.feed(LoudnessDetector(), audio, chunk) == media.feed(LoudnessDetector(), audio, 0.1)


def test_quiet_on_speech_only(ffmpeg, espeak):
    speech = media.speech_only()
    assert media.feed(LoudnessDetector(), speech, 0.1) == []
    # The whole stream 10 dB louder or quieter is still just speech.
    assert media.feed(LoudnessDetector(), speech * 10 ** (10 / 20), 0.1) == []
    assert media.feed(LoudnessDetector(), speech * 10 ** (-10 / 20), 0.1) == []


def test_quiet_stream_still_fires_on_its_bursts(ffmpeg, espeak):
    loud, audio = _loud_truth()
    signals = media.feed(LoudnessDetector(), audio * 10 ** (-8 / 20), 0.1)
    assert [round(s.t) for s in signals] == [round(t) for t in loud]


def test_no_fire_at_stream_start_even_on_a_roar(ffmpeg, espeak):
    loud, audio = _loud_truth()
    start = loud[0]  # the stream starts in the middle of a crowd roar
    signals = media.feed(LoudnessDetector(), audio[int(start * RATE) :], 0.1, t0=start)
    assert [round(s.t) for s in signals] == [round(t) for t in loud[1:]]


def test_speech_after_silence_or_room_tone_does_not_fire(ffmpeg, espeak):
    speech = media.speech_only()[: 20 * RATE]
    silence = np.zeros(30 * RATE, np.float32)
    room = (np.random.default_rng(1).standard_normal(30 * RATE) * 10 ** (-55 / 20)).astype(np.float32)
    for lead in (silence, room):
        assert media.feed(LoudnessDetector(), np.concatenate([lead, speech]), 0.1, t0=3.0) == []


def test_a_click_is_not_a_burst(ffmpeg, espeak):
    speech = media.speech_only().copy()
    speech[int(25.0 * RATE) : int(25.03 * RATE)] = 0.9  # 30 ms full-scale click
    assert media.feed(LoudnessDetector(), speech, 0.1) == []


def test_t_is_the_onset_of_the_burst():
    rng = np.random.default_rng(3)
    calm = (rng.standard_normal(20 * RATE) * 0.03).astype(np.float32)  # about -30 dBFS
    roar = (rng.standard_normal(3 * RATE) * 0.3).astype(np.float32)  # +20 dB
    audio = np.concatenate([calm, roar, calm[: 5 * RATE]])
    signals = media.feed(LoudnessDetector(), audio, 0.05, t0=100.0)
    assert len(signals) == 1
    assert abs(signals[0].t - 120.0) <= 0.2
    assert signals[0].value == pytest.approx(20 / LoudnessOptions().trigger_db, rel=0.3)


def test_options_reject_unknown_fields():
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"trigger_db": 6.0, "nope": 1}, LoudnessOptions)
