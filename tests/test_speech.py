"""Streaming transcription with the bundled tiny.en on espeak-ng speech (no downloads)."""
import re
from types import SimpleNamespace

import numpy as np
import pytest

import media
from bench.asr_quality import synth_music, wer
from detectors.speech import SpeechOptions, StreamingTranscriber, words_between
from records.wire import Word

RATE = media.RATE
SENTENCES = "Welcome back to the stream, everyone. Today we are looking at the new map and the weather."
# Said without a pause long enough to end an utterance: exercises LocalAgreement, the
# buffer trimming and the max_lag bound rather than the commit at each utterance's end.
MONOLOGUE = (
    "The river runs along the eastern side of the valley, and most players prefer the second route "
    "because it is shorter. I usually drink tea in the afternoon while I read, and the library opens "
    "at nine and closes at six in the evening. The next update should arrive at the end of the month."
)


@pytest.fixture(scope="module")
def speech(espeak, ffmpeg) -> np.ndarray:
    pause = np.zeros(RATE, np.float32)
    return np.concatenate([pause, media.speak(SENTENCES), pause])


@pytest.fixture(scope="module")
def monologue(espeak, ffmpeg) -> np.ndarray:
    return np.concatenate([np.zeros(RATE // 2, np.float32), media.speak(MONOLOGUE), np.zeros(RATE, np.float32)])


@pytest.fixture(scope="module")
def monologue_ref(monologue) -> tuple[list[Word], int]:
    """The monologue transcribed from one big push (as VOD does): (words, whisper calls)."""
    tr = StreamingTranscriber(media.whisper_model())
    return tr.push(0.0, monologue) + tr.flush(), tr.chunks


def _text(words: list[Word]) -> str:
    return " ".join(re.sub(r"[^a-z ]", "", w.text.lower()) for w in words)


def _feed_checked(tr: StreamingTranscriber, audio: np.ndarray, chunk: float = 0.1, flush_every: float = 0.0,
                  behind=lambda fed: 0.0) -> tuple[list[Word], list[float]]:  # fmt: skip
    """Push ``audio`` in pieces, checking after each push that committed text is never
    rewritten: no word lands in audio already declared final, words never overlap or go back
    in time, and every emitted word is final. Returns (words, ASR lag after each push)."""
    step = int(chunk * RATE)
    words: list[Word] = []
    lags: list[float] = []
    next_flush = flush_every
    for i in range(0, len(audio), step):
        final_before = tr.transcribed_until
        fed = (i + len(audio[i : i + step])) / RATE
        new = tr.push(i / RATE, audio[i : i + step], behind=behind(fed))
        if flush_every and fed >= next_flush:
            new += tr.flush()
            next_flush += flush_every
            assert tr.transcribed_until == pytest.approx(fed)
        for w in new:
            assert w.start >= final_before - 0.1, (w, final_before)  # not into audio already final
            assert not words or w.start >= words[-1].end, (words[-1], w)  # no overlap, no going back
            assert w.start <= w.end <= tr.transcribed_until + 1e-6 <= fed + 1e-6, (w, tr.transcribed_until, fed)
            words.append(w)
        assert tr.transcribed_until >= final_before  # final audio never becomes unfinal again
        lags.append(fed - tr.transcribed_until)
    words += tr.flush()
    assert tr.transcribed_until == pytest.approx(len(audio) / RATE)
    return words, lags


# --- behaviour on speech ------------------------------------------------------------------


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
    assert tr.chunks >= 2  # ~5 s of speech: at least one LocalAgreement pass before the final one


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


def test_any_push_sizes_give_the_same_words_and_calls(monologue, monologue_ref):
    """Decisions sit on a fixed grid of stream time: live and VOD input transcribe alike."""
    ref, calls = monologue_ref
    ragged = StreamingTranscriber(media.whisper_model())
    sizes = np.random.default_rng(3).integers(1, 9000, size=len(monologue) // 1000)
    words, i = [], 0
    for n in sizes:
        if i >= len(monologue):
            break
        words += ragged.push(i / RATE, monologue[i : i + n])
        i += int(n)
    words += ragged.push(i / RATE, monologue[i:]) + ragged.flush()
    assert words == ref
    assert ragged.chunks == calls


def test_committed_text_is_never_rewritten(monologue, monologue_ref):
    """Live 100 ms pushes: each word is emitted once, in order, never into final audio; and
    ASR lag stays under max_lag even though the speaker never pauses for long."""
    opts = SpeechOptions()
    tr = StreamingTranscriber(media.whisper_model(), opts)
    words, lags = _feed_checked(tr, monologue)
    assert max(lags) <= opts.max_lag + 0.25
    assert wer(MONOLOGUE, " ".join(w.text for w in words)) < 0.35, _text(words)
    assert words == monologue_ref[0]  # the same as from one big push: nothing live was provisional


def test_flushing_at_any_time_keeps_the_transcript_consistent(monologue):
    """Clips flush the transcriber whenever they are ready, mid-word or not: the words stay
    once-only and in order (whisper just hears the words cut by a flush less well)."""
    tr = StreamingTranscriber(media.whisper_model())
    words, _ = _feed_checked(tr, monologue, flush_every=4.3)
    text = _text(words)
    for expected in ("river", "library", "evening", "month"):
        assert expected in text, text
    assert wer(MONOLOGUE, " ".join(w.text for w in words)) < 0.6, text


def test_a_gap_in_stream_time_flushes_and_restarts(speech):
    tr = StreamingTranscriber(media.whisper_model())
    first = tr.push(0.0, speech)
    words = first + tr.push(500.0, np.zeros(RATE, np.float32))  # jump: the rest is final now
    assert "weather" in _text(words)
    assert 500.0 <= tr.transcribed_until <= 501.0  # restarted at 500 s (and the silence is final)
    assert all(w.end <= len(speech) / RATE for w in words)


def test_no_drift_after_a_long_silence(speech):
    """The buffer restarts over silence: words after it are timed as precisely as before."""
    model = media.whisper_model()
    alone = StreamingTranscriber(model)
    ref = alone.push(0.0, speech) + alone.flush()
    tr = StreamingTranscriber(model)
    silence = np.zeros(60 * RATE + (-len(speech)) % tr.TICK, np.float32)  # keeps the grid aligned
    words = tr.push(0.0, np.concatenate([speech, silence, speech])) + tr.flush()
    offset = (len(speech) + len(silence)) / RATE
    later = [w for w in words if w.start >= offset]
    assert [w.text for w in later] == [w.text for w in ref]
    assert all(abs(w.start - offset - r.start) < 0.05 for w, r in zip(later, ref))


# --- no text on silence or music ----------------------------------------------------------


def test_no_text_on_30_s_of_silence_and_whisper_is_not_even_asked():
    tr = StreamingTranscriber(media.whisper_model())
    assert media.feed(tr, np.zeros(30 * RATE, np.float32), 0.1) + tr.flush() == []
    assert tr.chunks == 0
    assert tr.transcribed_until == pytest.approx(30.0)


def test_no_words_on_silence_and_hiss():
    tr = StreamingTranscriber(media.whisper_model())
    hiss = (np.random.default_rng(0).standard_normal(10 * RATE) * 10 ** (-70 / 20)).astype(np.float32)
    assert media.feed(tr, np.zeros(10 * RATE, np.float32), 0.1, t0=5.0) == []
    assert media.feed(tr, hiss, 0.1, t0=15.0) + tr.flush() == []
    assert tr.chunks == 0
    assert tr.transcribed_until == pytest.approx(25.0)


def test_no_text_on_30_s_of_music():
    opts = SpeechOptions()
    tr = StreamingTranscriber(media.whisper_model(), opts)
    lags = []
    words = []
    music = synth_music(30.0)
    for i in range(0, len(music), RATE // 10):
        words += tr.push(i / RATE, music[i : i + RATE // 10])
        lags.append((i + RATE // 10) / RATE - tr.transcribed_until)
    assert words + tr.flush() == []
    assert max(lags) <= opts.speech_pad + 0.25  # not speech: final as soon as it is heard


def test_no_text_on_music_even_when_whisper_hears_it():
    """With the VAD gate held open, whisper does run on music: the segment filters (confidence,
    non-words, annotations) must still let nothing through."""
    tr = StreamingTranscriber(media.whisper_model(), SpeechOptions(vad_threshold=0.0, vad_neg_threshold=0.0))
    assert media.feed(tr, synth_music(12.0, seed=1), 0.1) + tr.flush() == []
    assert tr.chunks >= 3


def test_a_steady_tone_is_not_speech():
    opts = SpeechOptions()
    tr = StreamingTranscriber(media.whisper_model(), opts)
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(14 * RATE) / RATE)).astype(np.float32)
    assert media.feed(tr, tone, 0.1) + tr.flush() == []
    assert tr.chunks == 0


# --- the commit policy and the filters, with a scripted model -------------------------------


class ScriptedModel:
    """Stands in for WhisperModel: 'hears' the script's words that end inside the audio it is
    given (times relative to that audio), garbling a word at the audio's very end, plus the
    ``extra`` words (negative times count from the audio's end), as one segment with the
    given scores, like whisper decoding without timestamps."""

    def __init__(self, script: list[tuple[float, float, str]], extra=(), **scores):
        self.script, self.extra, self.scores, self.calls = script, list(extra), scores, []

    def transcribe(self, audio, **kwargs):
        assert kwargs["without_timestamps"] and kwargs["temperature"] == 0
        seconds = len(audio) / RATE
        self.calls.append(seconds)
        heard = [(a, b, text) for a, b, text in self.script if b <= seconds]
        if heard and heard[-1][1] > seconds - 0.5:  # a word at the very edge: not heard right yet
            a, b, text = heard[-1]
            heard[-1] = (a, b, text + "-ish")
        heard += [(a % seconds, b % seconds or seconds, text) for a, b, text in self.extra]
        return iter([_segment(heard, **self.scores)] if heard else []), None


def _segment(words, avg_logprob=-0.2, compression_ratio=1.2, no_speech_prob=0.1):
    ws = [SimpleNamespace(word=" " + text, start=a, end=b, probability=0.9) for a, b, text in words]
    return SimpleNamespace(text="".join(w.word for w in ws), start=words[0][0], end=words[-1][1], words=ws,
                           avg_logprob=avg_logprob, compression_ratio=compression_ratio, no_speech_prob=no_speech_prob)  # fmt: skip


def test_local_agreement_commits_only_what_two_hypotheses_share(speech):
    # espeak's speech lies in about [1.0, 5.9] s; the buffer starts speech_pad before it.
    script = [(0.5 + 0.35 * i, 0.5 + 0.35 * i + 0.3, f"w{i}") for i in range(12)]
    model = ScriptedModel(script)
    tr = StreamingTranscriber(model, SpeechOptions(first_step=1.5, step=1.5))
    seen, words = [], []
    for i in range(0, len(speech), RATE // 10):
        new = tr.push(i / RATE, speech[i : i + RATE // 10])
        seen.append([w.text for w in new])
        words += new
    words += tr.flush()
    assert [w.text for w in words] == [t for _, _, t in script]  # no garbled guess was committed
    assert len(model.calls) >= 3
    assert sum(1 for batch in seen if batch) >= 3  # committed progressively, not all at the end


ONE_CALL = SpeechOptions(first_step=30.0, max_lag=30.0)  # only at the utterance's end, speech_pad after it
SAID = [(0.5 + 0.4 * i, 0.8 + 0.4 * i, text) for i, text in enumerate("we are looking at the map.".split())]


@pytest.mark.parametrize(
    "extra, scores, kept",
    [
        ([(-0.35, -0.2, "Thank"), (-0.2, -0.0, "you.")], {}, SAID),  # over the silence after the speech
        ([(3.0, 3.3, "[Music]"), (3.3, 3.4, "♪")], {}, SAID),  # annotations
        ([], {"avg_logprob": -1.5}, []),  # unsure: invented
        ([], {"compression_ratio": 3.0}, []),  # a decoder loop
        ([], {"no_speech_prob": 0.87, "avg_logprob": -0.96}, []),  # what tiny.en says on music
    ],
    ids=["thank-you-on-silence", "annotations", "unsure", "repetitive", "no-speech"],
)
def test_hallucination_filters(speech, extra, scores, kept):
    model = ScriptedModel(SAID, extra, **scores)
    tr = StreamingTranscriber(model, ONE_CALL)
    words = tr.push(0.0, speech) + tr.flush()
    assert [w.text for w in words] == [t for _, _, t in kept]
    assert len(model.calls) == 1


def test_thank_you_is_kept_when_it_is_said(speech):
    said = [(0.5 + 0.4 * i, 0.8 + 0.4 * i, text) for i, text in enumerate(["Thank", "you."])]
    tr = StreamingTranscriber(ScriptedModel(said), ONE_CALL)
    assert [w.text for w in tr.push(0.0, speech) + tr.flush()] == ["Thank", "you."]


def test_repeated_phrase_loops_are_kept_once(speech):
    loop = ["oh", "my", "god"] * 4 + ["no", "way"]
    script = [(0.5 + 0.3 * i, 0.75 + 0.3 * i, text) for i, text in enumerate(loop)]
    tr = StreamingTranscriber(ScriptedModel(script))
    words = tr.push(0.0, speech) + tr.flush()
    assert [w.text for w in words] == ["oh", "my", "god", "no", "way"]
    assert tr.loops >= 1


def test_whisper_is_never_asked_about_silence_or_music():
    model = ScriptedModel([(0.0, 0.5, "Thank"), (0.5, 0.9, "you.")])
    tr = StreamingTranscriber(model)
    quiet = np.concatenate([np.zeros(30 * RATE, np.float32), synth_music(30.0)])
    assert media.feed(tr, quiet, 0.1) + tr.flush() == []
    assert model.calls == []


# --- load shedding ------------------------------------------------------------------------


def test_load_shedding_keeps_lag_bounded(monologue, monologue_ref):
    calm_words, calm_calls = monologue_ref
    model = media.whisper_model()
    # 1. Somewhat behind: half the whisper calls.
    slow = StreamingTranscriber(model)
    _feed_checked(slow, monologue, behind=lambda fed: 7.0)
    assert slow.chunks < calm_calls
    # 2. Further behind: each hypothesis is committed at once.
    eager = StreamingTranscriber(model)
    eager_words, lags = _feed_checked(eager, monologue, behind=lambda fed: 12.0)
    assert eager.shed_level == 2 and eager_words
    # 3. Far behind for a while: audio is dropped unheard, and ASR keeps up with the input.
    tr = StreamingTranscriber(model)
    words, lags = _feed_checked(tr, monologue, behind=lambda fed: 30.0 if 4.0 <= fed < 10.0 else 0.0)
    dropping = lags[39:99]  # the pushes that ended in [4, 10) s
    assert max(dropping) < 1e-6  # transcribed_until follows the input while shedding
    assert 6.0 - 0.1 <= tr.shed_seconds <= 6.0 + SpeechOptions().max_lag + 0.5  # + what was not final yet
    assert not [w for w in words if 4.0 < w.start < 9.85]  # nothing from the dropped audio [3.9, 9.9)
    assert words and len(words) < len(calm_words)


# --- helpers --------------------------------------------------------------------------------


def test_a_clips_words_are_those_inside_it_timed_from_its_start():
    words = [Word(1.0, 1.5, "Oh"), Word(1.6, 1.9, "my"), Word(2.0, 2.4, "god,"), Word(9.0, 9.5, "later.")]
    assert " ".join(w.text for w in words_between(words, 0.0, 3.0)) == "Oh my god,"
    picked = words_between(words, 1.7, 9.2)
    assert [w.text for w in picked] == ["my", "god,", "later."]
    assert [(w.start, w.end) for w in picked] == [(0.0, 0.2), (0.3, 0.7), (7.3, 7.5)]  # clamped to the clip
    assert words_between(words, 3.0, 8.0) == []


def test_auto_device_is_the_cpu_without_a_gpu():
    import ctranslate2

    from detectors.speech import resolve_compute_type, resolve_device

    expected = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    assert resolve_compute_type("auto", "cpu") == "int8"
    assert resolve_compute_type("auto", "cuda") == "float16"


def test_wer():
    assert wer("Oh my god, no way!", "oh my god no way") == 0.0
    assert wer("the library opens at nine", "the library opens at 9") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)
    assert wer("", "") == 0.0
