"""Speech rate from word timestamps: a rushed utterance against the speaker's own normal."""
from detectors.speech_rate import SpeechRateDetector, SpeechRateOptions, syllables
from records.wire import Word


def utterance(t: float, text: str, syllables_per_second: float) -> list[Word]:
    """Words laid end to end at the given rate (one vowel group per word here)."""
    words, start = [], t
    for token in text.split():
        length = syllables(token) / syllables_per_second
        words.append(Word(start, start + length, token))
        start += length
    return words


CALM = "we went to the shop and then we got home"


def test_a_rushed_utterance_fires_and_a_normal_one_does_not():
    detector = SpeechRateDetector()
    signals = []
    t = 0.0
    for _ in range(8):  # the speaker's normal: 4 syllables per second
        words = utterance(t, CALM, 4.0)
        signals += detector.push(words)
        t = words[-1].end + 1.0
    assert signals == []
    rushed = utterance(t, "did you see that he got all of them", 5.6)  # 40% faster
    (signal,) = detector.push(rushed, until=rushed[-1].end + 1.0)
    assert signal.name == "speech_rate" and signal.t == rushed[0].start
    assert signal.value > 1.0  # beyond the clear rise (30%)
    t = rushed[-1].end + 1.0
    slow = utterance(t, CALM, 4.2)
    assert detector.push(slow, until=slow[-1].end + 1.0) == []


def test_batches_do_not_matter_and_short_utterances_have_no_rate():
    words, t = [], 0.0
    for rate in (4.0, 4.1, 3.9, 4.0, 4.0, 4.1, 6.0):
        words += utterance(t, CALM, rate)
        t = words[-1].end + 1.0
    words += [Word(t, t + 0.1, "go")]  # one word: no rate at all
    whole = SpeechRateDetector().push(words, until=t + 5.0)
    one_by_one = SpeechRateDetector()
    pieces = [s for w in words for s in one_by_one.push([w])] + one_by_one.push([], until=t + 5.0)
    assert whole == pieces and len(whole) == 1
    assert SpeechRateDetector(SpeechRateOptions(warmup_utterances=50)).push(words, until=t + 5.0) == []
