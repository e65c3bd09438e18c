"""Recordings' transcription (detectors.transcribe): whole VAD utterances, packed, decoded once.

Real tiny.en (bundled, no downloads) on espeak-ng speech laid out with known sentence times,
pauses of 0.3-3 s, a long silence and a stretch of music; plus a stand-in model that "hears"
the audio's voiced stretches exactly, to check the packing arithmetic, the ownership of
utterances by overlapping shards and the second looks without whisper's own imprecision.
"""
from types import SimpleNamespace

import numpy as np
import pytest

import media
from bench.asr_quality import wer
from bench.vod_asr import make_recording
from detectors.speech import SpeechOptions
from detectors.transcribe import LEAD_NEEDED, MAX_WINDOW, TAIL_NEEDED, transcribe_recording

RATE = media.RATE
SENTENCES = (
    "Welcome back to the stream, everyone.",
    "Today we are looking at the new map and the changes to the economy.",
    "The weather in the north has been mild for most of the week.",
    "Remember to check the settings before you start a new round.",
    "The storm last night knocked out power for about three hours.",
    "We are going to try the harder difficulty this time around.",
    "My cat keeps walking across the keyboard whenever I start recording.",
    "Let us gather some wood before the sun goes down.",
    "The score is tied and there are only two minutes left.",
    "Please be kind to each other in the comments.",
    "The soundtrack of this game was recorded with a real orchestra.",
    "The train leaves the station every fifteen minutes in the morning.",
)
PAUSES = (0.4, 1.2, 0.6, 2.5, 0.3, 8.0, 0.8, 1.5, 0.5, 3.0, 0.7, 1.0)  # after each sentence
MUSIC_AFTER = 5  # 10 s of music (and a second of silence) after the 8 s silence that follows sentence 6


@pytest.fixture(scope="module")
def recording(espeak, ffmpeg, tmp_path_factory):
    """(audio, [(start, end, text)] per sentence, [(start, end, kind)] of silences and music)."""
    items: list = [("pause", 1.0)]
    for i, (sentence, pause) in enumerate(zip(SENTENCES, PAUSES)):
        items += [("say", sentence), ("pause", pause)]
        if i == MUSIC_AFTER:
            items += [("music", 10.0), ("pause", 1.0)]
    return make_recording(items, tmp_path_factory.mktemp("vod-asr"))


@pytest.fixture(scope="module")
def whole(recording):
    audio = recording[0]
    stats: dict = {}
    return transcribe_recording(media.whisper_model(), audio, 0.0, SpeechOptions(), stats=stats), stats


def _sentence_of(w, said) -> int:
    """The sentence nearest to a word (distance of their spans)."""
    return min(range(len(said)), key=lambda i: max(said[i][0] - w.end, w.start - said[i][1], 0.0))


# --- real tiny.en -----------------------------------------------------------------------------


def test_words_match_the_script(recording, whole):
    _audio, said, _quiet = recording
    words, stats = whole
    script = " ".join(text for _, _, text in said)
    assert wer(script, " ".join(w.text for w in words)) < 0.12  # measured 0.047 (6 words of 129)
    assert abs(len(words) - len(script.split())) <= 6
    assert stats["whisper_calls"] == stats["windows"] <= 3  # ~55 s of speech: two or three windows
    assert 9 <= stats["utterances"] <= 12  # one per sentence (a pause under end_silence joins two)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_word_times_lie_in_their_sentences(recording, whole):
    """Packing offsets are undone exactly: every word lies on the sentence it belongs to."""
    _audio, said, _quiet = recording
    words, _stats = whole
    for w in words:
        start, end, _text = said[_sentence_of(w, said)]
        assert start - 0.35 <= w.start <= w.end <= end + 0.35, (w, start, end)  # measured: <= 0.19 s off
    for i, (start, end, text) in enumerate(said):
        heard = " ".join(w.text for w in words if _sentence_of(w, said) == i)
        assert wer(text, heard) <= 0.5, (text, heard)  # each sentence's words in its place (measured <= 0.36)


def test_no_words_on_silence_or_music(recording, whole):
    _audio, _said, quiet = recording
    words, _stats = whole
    long_ = [(a, b, kind) for a, b, kind in quiet if b - a >= 5]
    assert {kind for *_, kind in long_} == {"silence", "music"}
    for a, b, kind in long_:
        assert not [w for w in words if w.end > a + 0.5 and w.start < b - 0.5], kind


def test_batched_and_sequential_decoding_give_the_same_words(recording, whole):
    audio = recording[0]
    words, _stats = whole  # batched (the default)
    one_by_one = transcribe_recording(media.whisper_model(), audio, 0.0, SpeechOptions(), batch_size=1)
    assert [w.text for w in one_by_one] == [w.text for w in words]
    assert all(abs(a.start - b.start) < 0.2 and abs(a.end - b.end) < 0.2 for a, b in zip(one_by_one, words))


@pytest.mark.parametrize("where", ["silence", "mid-sentence", "short-pause"])
def test_overlapping_shards_transcribe_each_utterance_once(recording, whole, where):
    """Shard A owns [0, X), shard B [X, end); each is given the audio it needs beyond its range."""
    audio, said, quiet = recording
    ref, _ = whole
    if where == "silence":
        x = next(a + 4.0 for a, b, kind in quiet if kind == "silence" and b - a >= 5)
    elif where == "mid-sentence":
        x = (said[2][0] + said[2][1]) / 2
    else:
        x = (said[8][1] + said[9][0]) / 2  # in the 0.5 s pause between two sentences
    model, opts = media.whisper_model(), SpeechOptions()
    cut_a, cut_b = int((x + TAIL_NEEDED) * RATE), int((x - LEAD_NEEDED) * RATE) + 123  # B: off the VAD grid
    a = transcribe_recording(model, audio[:cut_a], 0.0, opts, own_until=x)
    b = transcribe_recording(model, audio[cut_b:], cut_b / RATE, opts, own_from=x)
    assert a and b
    assert a[-1].end <= b[0].start  # nothing twice: A's words all come before B's
    joined = a + b
    # Not the same windows as one run's (they are packed from each shard's first utterance), so
    # whisper may hear a word differently: but no utterance twice, and none lost.
    assert abs(len(joined) - len(ref)) <= 4  # measured <= 2
    assert wer(" ".join(w.text for w in ref), " ".join(w.text for w in joined)) < 0.08  # measured <= 0.031
    assert all(said[_sentence_of(w, said)][0] < x for w in a)  # A: the sentences begun before X
    assert all(said[_sentence_of(w, said)][0] >= x for w in b)  # B: the others
    if where == "mid-sentence":  # the utterance under X started before it: A's, whole
        inside = [w for w in joined if said[2][0] - 0.3 <= w.start <= said[2][1] + 0.3]
        assert inside and all(w in a for w in inside)
        assert wer(said[2][2], " ".join(w.text for w in inside)) < 0.35


# --- a stand-in model that hears the voiced stretches exactly ---------------------------------


def voiced_runs(audio: np.ndarray, t0: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) of the stretches where the 10 ms RMS around each sample is above
    -40 dBFS, joined across gaps under 0.2 s: the same wherever the audio is cut (away from
    the stretches), to the sample."""
    k = 160
    power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    loud = np.concatenate([[False], (power[k:] - power[:-k]) / k > 1e-4, [False]])
    edges = np.flatnonzero(np.diff(loud.astype(np.int8)))
    runs: list[list[int]] = []
    for a, b in zip(edges[::2], edges[1::2]):
        if runs and a - runs[-1][1] < 0.2 * RATE:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return [(t0 + (a + k // 2) / RATE, t0 + (b - 1 + k // 2) / RATE) for a, b in runs]


class HearsVoicedStretches:
    """Stands in for WhisperModel.transcribe: one word per voiced stretch of the audio it is
    given, exactly where it is (w0, w1, ...: no loop to collapse). ``reject_over`` /
    ``stop_after`` seconds: windows longer than that are condemned whole (a low
    avg_logprob) / decoded only that far."""

    def __init__(self, reject_over: float | None = None, stop_after: float | None = None):
        self.reject_over, self.stop_after, self.calls = reject_over, stop_after, []

    def transcribe(self, audio, **kwargs):
        assert kwargs["without_timestamps"] and kwargs["word_timestamps"] and not kwargs["vad_filter"]
        seconds = len(audio) / RATE
        self.calls.append(seconds)
        runs = voiced_runs(audio)
        if self.stop_after is not None and seconds > self.stop_after:
            runs = [r for r in runs if r[1] <= self.stop_after]
        logprob = -1.5 if self.reject_over is not None and seconds > self.reject_over else -0.2
        words = [SimpleNamespace(word=f" w{i}", start=a, end=b, probability=0.9) for i, (a, b) in enumerate(runs)]
        seg = SimpleNamespace(text="".join(w.word for w in words), words=words, avg_logprob=logprob,
                              compression_ratio=1.2, no_speech_prob=0.1)  # fmt: skip
        return iter([seg] if words else []), None


def _spoken(recording, t0: float = 0.0) -> list[tuple[float, float]]:
    """The voiced stretches of the sentences (not of the music)."""
    audio, said, _quiet = recording
    return [(a + t0, b + t0) for a, b in voiced_runs(audio) if any(a < e and b > s for s, e, _ in said)]


def _close(words, runs, tol=0.002) -> bool:
    """The words are at these (start, end) times (to the ms Words are rounded to), once each.
    Where an utterance was cut (too long for a window, or at a seam) the stand-in hears a
    voiced stretch as two words less than 0.2 s apart: those count as one."""
    spans: list[list[float]] = []
    for w in words:
        if spans and w.start - spans[-1][1] < 0.199:
            spans[-1][1] = w.end
        else:
            spans.append([w.start, w.end])
    return len(spans) == len(runs) and all(
        abs(s - a) <= tol and abs(e - b) <= tol for (s, e), (a, b) in zip(spans, runs)
    )


def test_packing_offsets_are_undone_exactly(recording):
    audio = recording[0]
    model = HearsVoicedStretches()
    stats: dict = {}
    words = transcribe_recording(model, audio, 1234.5678, SpeechOptions(), batch_size=1, stats=stats)
    assert _close(words, _spoken(recording, 1234.5678))
    assert len(model.calls) == stats["windows"] >= 2 and max(model.calls) <= MAX_WINDOW
    assert sum(model.calls) < len(audio) / RATE - 20  # the silence, music and long pauses are cut out


def test_a_condemned_window_is_judged_in_halves(recording):
    """Whisper's figures condemn a whole window: its utterances are not all lost with it."""
    audio = recording[0]
    model = HearsVoicedStretches(reject_over=12.0)
    stats: dict = {}
    words = transcribe_recording(model, audio, 0.0, SpeechOptions(), batch_size=1, stats=stats)
    assert stats["retried"] >= 2 and len(model.calls) > stats["windows"]
    assert max(model.calls) > 12.0  # windows were condemned...
    assert _close(words, _spoken(recording))  # ...but no utterance (all shorter than 12 s) with them


def test_utterances_after_an_early_stop_get_a_second_look(recording):
    audio = recording[0]
    model = HearsVoicedStretches(stop_after=10.0)
    stats: dict = {}
    words = transcribe_recording(model, audio, 0.0, SpeechOptions(), batch_size=1, stats=stats)
    assert stats["retried"] >= 1
    assert _close(words, _spoken(recording))  # every voiced stretch, once, in its place


@pytest.fixture(scope="module")
def long_talk(espeak, ffmpeg, tmp_path_factory):
    """~38 s of talk without a pause the VAD hears (0.15 s between sentences), then three
    sentences with pauses: one utterance longer than a window, and longer than a shard's tail."""
    items: list = [("pause", 1.0)]
    for sentence in (SENTENCES * 2)[:12]:
        items += [("say", sentence), ("pause", 0.15)]
    items += [("pause", 2.0)]
    for sentence in SENTENCES[-3:]:
        items += [("say", sentence), ("pause", 0.8)]
    return make_recording(items, tmp_path_factory.mktemp("vod-asr-long"))


@pytest.mark.parametrize("which", ["recording", "long_talk"])
def test_overlapping_shards_own_every_utterance_exactly_once(which, request):
    """Wherever the seam X falls (in a sentence, a pause, the music, a long talk), shard A
    (given TAIL_NEEDED seconds beyond X) and shard B (LEAD_NEEDED before X) together give
    the words of one run over all of the audio: none twice, none lost."""
    rec = request.getfixturevalue(which)
    audio = rec[0]
    opts = SpeechOptions()
    model = HearsVoicedStretches()
    ref = transcribe_recording(model, audio, 0.0, opts, batch_size=1)
    assert _close(ref, _spoken(rec))
    duration = len(audio) / RATE
    cuts = 0
    for x in np.arange(1.3, duration - 1.0, 2.9):
        cut_a, cut_b = int((x + TAIL_NEEDED) * RATE), max(0, int((x - LEAD_NEEDED) * RATE) - 77)
        stats: dict = {}
        a = transcribe_recording(model, audio[:cut_a], 0.0, opts, own_until=float(x), batch_size=1, stats=stats)
        b = transcribe_recording(model, audio[cut_b:], cut_b / RATE, opts, own_from=float(x), batch_size=1)
        assert stats["cut_at_end"] == 0 and all(w.start < x + TAIL_NEEDED for w in a)
        assert _close(a + b, _spoken(rec)), x
        if a and b and b[0].start - a[-1].end < 0.199:
            cuts += 1  # the long talk was cut after the seam (both shards cut it at the same place)
    assert cuts >= 3 if which == "long_talk" else cuts == 0
