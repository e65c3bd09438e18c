"""Sentiment bursts over transcript words: real sentences, timed like ASR output."""
import msgspec
import pytest

import media

from bench.broadcast import CALM_SENTENCES
from detectors.sentiment import SentimentDetector, SentimentOptions
from records.wire import Word

WORD = 0.3  # seconds per word (about 200 words a minute)
GAP = 0.9  # seconds between sentences: a pause that also ends an utterance


def say(sentences, start: float = 0.0, gap: float = GAP) -> list[Word]:
    return media.timed_words(sentences, start, gap=gap, word=WORD)


def run(words: list[Word], opts: SentimentOptions | None = None, batch: int = 0):
    d = SentimentDetector(opts)
    if batch:
        out = [s for i in range(0, len(words), batch) for s in d.push(words[i : i + batch])]
    else:
        out = d.push(words)
    return out + d.flush()


def start_of(words: list[Word], text: str) -> float:
    first = text.split()[0]
    return next(w.start for w in words if w.text == first)


CALM = list(CALM_SENTENCES) * 2  # about two minutes of ordinary talk


def test_quiet_on_calm_talk():
    assert run(say(CALM)) == []
    # ASR that writes no punctuation at all: utterances are cut by max_words instead.
    bare = [Word(w.start, w.end, w.text.strip(".,")) for w in say(CALM, gap=0.3)]
    assert run(bare) == []


@pytest.mark.parametrize("keyword", ["Oh my god, no way.", "Let's go.", "That's insane.", "Clip it.", "Unbelievable."])
def test_quiet_on_a_keyword_said_calmly(keyword):
    assert run(say([*CALM_SENTENCES[:6], keyword, *CALM_SENTENCES[6:]])) == []


@pytest.mark.parametrize(
    "outburst, mood",
    [
        ("YES! YES! YES!", "positive"),
        ("Great job, well done.", "positive"),
        ("That was amazing, what a play!", "positive"),
        ("No! No! That is terrible, I hate this!", "negative"),
        ("What a disaster, we lost everything.", "negative"),
    ],
)
def test_fires_on_an_outburst_after_calm_talk(outburst, mood):
    words = say([*CALM_SENTENCES[:8], outburst, *CALM_SENTENCES[8:]], start=100.0)
    signals = run(words)
    assert len(signals) == 1, signals
    s = signals[0]
    assert (s.name, s.t) == ("sentiment", start_of(words, outburst))
    assert s.detail.startswith(mood) and s.detail.endswith(outburst)
    assert 0.6 <= s.value <= 1.5


def test_a_clear_burst_is_about_one():
    words = say([*CALM_SENTENCES[:8], "Yes! Yes! We won! This is the best day ever!"])
    [s] = run(words)
    assert s.value == pytest.approx(1.0, abs=0.25)


def test_an_outburst_of_several_sentences_fires_once():
    words = say([*CALM_SENTENCES[:8], "YES! YES! YES!", "WE WON!!!", "Great job, well done.", *CALM_SENTENCES[8:]])
    signals = run(words)
    assert [s.t for s in signals] == [start_of(words, "YES!")]


def test_a_channel_that_always_gushes_only_fires_on_a_change():
    gush = ["I love this, it is great.", "This game is really fun, I like it a lot.", "Great job, well done."]
    words = say(gush * 8)  # ~80 s of constant enthusiasm
    late = [w for w in words if w.start >= 40.0]
    detector = SentimentDetector()
    assert len(detector.push([w for w in words if w.start < 40.0])) <= 1  # the very start may stand out
    assert detector.push(late) == []  # once it is the baseline, more of it is not a burst
    outburst = say(["That was awful, I hate losing like this!"], start=late[-1].end + 1.0)
    [s] = detector.push(outburst) + detector.flush()
    assert s.detail.startswith("negative") and s.value > 1.0  # far from a positive baseline


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_same_result_whatever_the_batches(batch):
    words = say([*CALM_SENTENCES[:5], "No! No! That is terrible, I hate this!", *CALM_SENTENCES[5:9], "YES! YES! YES!"])
    assert run(words, batch=batch) == run(words)
    assert len(run(words)) == 2


def test_words_handed_over_twice_count_once():
    words = say([*CALM_SENTENCES[:4], "YES! YES! YES!", CALM_SENTENCES[4]])
    d = SentimentDetector()
    assert len(d.push(words)) == 1
    scored = d.utterances
    assert d.push(words) == [] and d.push(words[-12:]) == [] and d.flush() == []
    assert d.utterances == scored


def test_pauses_split_utterances_without_punctuation():
    calm = [Word(w.start, w.end, w.text.rstrip(".,")) for w in say(CALM_SENTENCES[:4])]
    hype = say(["i love it so much wow"], start=calm[-1].end + 1.0)
    after = say(["the river runs along the valley"], start=hype[-1].end + 0.8)
    d = SentimentDetector()
    assert d.push(calm + hype) == []  # the utterance is still open: no punctuation, no pause yet
    [s] = d.push(after)  # the next word comes after a pause: the utterance was "i love it so much wow"
    assert s.t == hype[0].start and s.detail.endswith(": i love it so much wow")
    assert d.flush() == []


def test_until_closes_an_utterance_left_open():
    calm = say(CALM_SENTENCES[:4])
    hype = say(["i love it so much wow"], start=calm[-1].end + 1.0)
    d = SentimentDetector()
    assert d.push(calm + hype, until=hype[-1].end + 0.3) == []  # maybe mid-sentence still
    assert len(d.push([], until=hype[-1].end + 0.7)) == 1  # a pause long enough: it is over


def test_options_reject_unknown_fields():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"min_shift": 0.3, "nope": 1}, SentimentOptions)


def test_on_whisper_words_from_espeak_speech(espeak, ffmpeg):
    """End to end through ASR: a keyword read calmly stays quiet, the outburst fires (once)."""
    import numpy as np

    import media
    from bench.broadcast import DEFAULT_KEYWORD
    from detectors.speech import StreamingTranscriber

    texts = [CALM_SENTENCES[0], DEFAULT_KEYWORD, CALM_SENTENCES[2], "Yes! Yes! We won! This is the best day ever!",
             CALM_SENTENCES[3]]
    parts = [p for text in texts for p in (media.speak(text) * 0.3, np.zeros(int(0.8 * media.RATE), np.float32))]
    outburst = (sum(len(p) for p in parts[:6]) / media.RATE, sum(len(p) for p in parts[:7]) / media.RATE)
    transcriber = StreamingTranscriber(media.whisper_model())
    words = media.feed(transcriber, np.concatenate(parts), 0.5, t0=50.0) + transcriber.flush()
    d = SentimentDetector()
    [s] = d.push(words) + d.flush()
    # At the outburst (whisper may split off its first "Yes" at a pause, a weak utterance).
    assert 50.0 + outburst[0] - 0.5 <= s.t <= 50.0 + outburst[1], (s, outburst)
    assert s.detail.startswith("positive") and "won" in s.detail.lower()
