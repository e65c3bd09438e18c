"""Streaming transcription with the bundled tiny.en on espeak-ng speech (no downloads)."""
import re

import numpy as np
import pytest

import media
from detectors.speech import SpeechOptions, StreamingTranscriber, transcript_between
from records.wire import Word

RATE = media.RATE
SENTENCES = "Welcome back to the stream, everyone. Today we are looking at the new map and the weather."


@pytest.fixture(scope="module")
def speech(espeak, ffmpeg) -> np.ndarray:
    pause = np.zeros(RATE, np.float32)
    return np.concatenate([pause, media.speak(SENTENCES), pause])


def _text(words: list[Word]) -> str:
    return " ".join(re.sub(r"[^a-z ]", "", w.text.lower()) for w in words)


def test_transcribes_a_sentence(speech):
    tr = StreamingTranscriber(media.whisper_model())
    words = tr.push(0.0, speech) + tr.flush()
    text = _text(words)
    for expected in ("welcome", "stream", "looking", "map", "weather"):
        assert expected in text, text
    duration = len(speech) / RATE
    assert all(0.0 <= w.start <= w.end <= duration for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert tr.transcribed_until == pytest.approx(duration)
    assert tr.chunks >= 2  # ~8 s of speech is cut at a pause, not sent as one piece


def test_small_chunks_give_the_same_words_in_stream_time(speech):
    model = media.whisper_model()
    whole = StreamingTranscriber(model)
    ref = whole.push(0.0, speech) + whole.flush()
    live = StreamingTranscriber(model)
    words = media.feed(live, speech, 0.05, t0=1000.0) + live.flush()
    assert [w.text for w in words] == [w.text for w in ref]
    for w, r in zip(words, ref):
        assert w.start == pytest.approx(r.start + 1000.0, abs=0.01)
    assert all(1000.0 <= w.start < 1000.0 + len(speech) / RATE for w in words)


def test_no_words_on_silence_and_whisper_is_not_even_asked():
    tr = StreamingTranscriber(media.whisper_model())
    hiss = (np.random.default_rng(0).standard_normal(10 * RATE) * 10 ** (-70 / 20)).astype(np.float32)
    assert media.feed(tr, np.zeros(10 * RATE, np.float32), 0.1, t0=5.0) == []
    assert media.feed(tr, hiss, 0.1, t0=15.0) + tr.flush() == []
    assert tr.chunks == 0
    assert tr.transcribed_until == pytest.approx(25.0)


def test_chunks_are_bounded_even_without_pauses():
    """A word said at T is final by T + max_chunk: the buffer never holds more than that."""
    opts = SpeechOptions()
    tr = StreamingTranscriber(media.whisper_model(), opts)
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(14 * RATE) / RATE)).astype(np.float32)
    step = RATE // 10
    for i in range(0, len(tone), step):
        tr.push(i / RATE, tone[i : i + step])
        fed = (i + step) / RATE
        assert fed - tr.transcribed_until <= opts.max_chunk + 0.25
    assert tr.chunks >= 2


def test_a_gap_in_stream_time_flushes_and_restarts(speech):
    tr = StreamingTranscriber(media.whisper_model())
    first = tr.push(0.0, speech)
    words = first + tr.push(500.0, np.zeros(RATE, np.float32))  # jump: the rest is final now
    assert "weather" in _text(words)
    assert tr.transcribed_until == pytest.approx(500.0)
    assert all(w.end <= len(speech) / RATE for w in words)


def test_transcript_between():
    words = [Word(1.0, 1.5, "Oh"), Word(1.6, 1.9, "my"), Word(2.0, 2.4, "god,"), Word(9.0, 9.5, "later.")]
    assert transcript_between(words, 0.0, 3.0) == "Oh my god,"
    assert transcript_between(words, 1.7, 9.2) == "my god, later."
    assert transcript_between(words, 3.0, 8.0) == ""


def test_auto_device_is_the_cpu_without_a_gpu():
    import ctranslate2

    from detectors.speech import resolve_device

    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
