"""Fusion rules, and the whole audio path over the labelled 75 s broadcast."""
import itertools
import time

import pytest

import media
from detectors.fusion import Fusion, FusionOptions
from detectors.keywords import KeywordSpotter
from detectors.loudness import LoudnessDetector
from detectors.speech import SpeechOptions, StreamingTranscriber
from records.wire import Signal

LOUD = Signal("loudness", 20.0, 1.4)
WORDS = Signal("keyword", 21.5, 0.6, "no way")
CUT = Signal("scene", 19.6, 1.5)


@pytest.mark.parametrize("order", list(itertools.permutations([LOUD, WORDS, CUT])))
def test_one_moment_gives_one_event_whatever_the_arrival_order(order):
    fusion = Fusion()
    events = [e for s in order for e in fusion.push([s])]
    assert len(events) == 1, events
    assert 19.6 <= events[0].t <= 21.5
    assert events[0].score >= 1.0


def test_weak_signals_add_up_within_the_window():
    fusion = Fusion()
    assert fusion.push([CUT]) == []  # 0.3 * 1.5 = 0.45
    (event,) = fusion.push([WORDS])  # + 0.6 = 1.05
    assert event.signals == {"scene": 0.45, "keyword": 0.6}
    assert event.t == WORDS.t  # the strongest contributor
    assert event.score == pytest.approx(1.05)


def test_per_name_max_and_cap():
    fusion = Fusion()
    assert fusion.push([Signal("keyword", 5.0, 0.6), Signal("keyword", 6.0, 0.6)]) == []  # max, not sum
    (event,) = fusion.push([Signal("loudness", 30.0, 9.0)])
    assert event.signals == {"loudness": FusionOptions().cap}


def test_quiet_input_gives_nothing():
    fusion = Fusion()
    signals = [Signal("scene", t, 3.0) for t in range(0, 300, 30)]  # cuts alone: 0.3 * cap
    signals += [Signal("keyword", t + 10, 0.6, "insane") for t in range(0, 300, 30)]  # weak words alone
    signals += [Signal("loudness", t + 20, 0.5) for t in range(0, 300, 30)]  # below its trigger...
    signals += [Signal("scene", t + 21, 1.0) for t in range(0, 300, 30)]  # ...even with a cut: 0.8
    signals += [Signal("chat", t, 5.0) for t in range(0, 300, 5)]  # not a weighted name
    assert fusion.push(signals) == []


def test_two_moments_further_apart_than_cooldown_give_two_events():
    fusion = Fusion()
    events = fusion.push([Signal("loudness", 20.0, 1.2)]) + fusion.push([Signal("keyword", 40.0, 1.0, "let's go")])
    assert [e.t for e in events] == [20.0, 40.0]
    assert fusion.push([Signal("loudness", 40.5, 1.5)]) == []  # the second moment, again


def test_late_signals_within_cooldown_never_make_a_second_event():
    cooldown = FusionOptions().cooldown
    fusion = Fusion()
    (event,) = fusion.push([Signal("loudness", 100.0, 1.3)])
    # ASR is seconds behind: its keywords for the same moment, before and after, come late.
    assert fusion.push([Signal("keyword", 100.0 + cooldown - 0.5, 1.2, "clip it")]) == []
    assert fusion.push([Signal("keyword", 100.0 - cooldown + 0.5, 1.0, "let's go")]) == []
    assert fusion.push([Signal("loudness", 104.0, 2.0)]) == []
    # Outside the cooldown a new moment is possible again.
    assert [e.t for e in fusion.push([Signal("keyword", 100.0 + cooldown + 1.0, 1.0, "omg")])] == [116.0]
    assert event.t == 100.0


def test_a_signal_older_than_the_horizon_is_ignored():
    fusion = Fusion()
    fusion.push([Signal("scene", 500.0, 1.0)])
    assert fusion.push([Signal("loudness", 500.0 - FusionOptions().horizon - 1.0, 1.5)]) == []


def test_old_lonely_signals_are_forgotten():
    fusion = Fusion()
    fusion.push([Signal("scene", 0.0, 1.0)])
    fusion.push([Signal("scene", t, 1.0) for t in range(100, 1000, 60)])
    assert len(fusion._pending) <= 2  # bounded memory on a long stream


# --- the whole audio path over the labelled broadcast -------------------------------------


def test_broadcast_gives_exactly_one_event_per_planted_moment(ffmpeg, espeak):
    """Loudness + speech + keywords + fusion, fed live-style in 100 ms chunks."""
    _, truth, audio = media.broadcast()
    rate, step = media.RATE, media.RATE // 10
    loudness, keywords, fusion = LoudnessDetector(), KeywordSpotter(), Fusion()
    speech_opts = SpeechOptions()
    speech = StreamingTranscriber(media.whisper_model(), speech_opts)
    cpu = dict.fromkeys(["loudness", "speech", "keywords", "fusion"], 0.0)
    signals: list[Signal] = []
    events = []  # (stream time fed when it was emitted, event)

    def timed(name, fn, *args):
        start = time.process_time()
        try:
            return fn(*args)
        finally:
            cpu[name] += time.process_time() - start

    for i in range(0, len(audio), step):
        t, chunk = i / rate, audio[i : i + step]
        fed = t + len(chunk) / rate
        new = timed("loudness", loudness.push, t, chunk)
        new += timed("keywords", keywords.push, timed("speech", speech.push, t, chunk))
        assert fed - speech.transcribed_until <= speech_opts.max_chunk + 0.25  # bounded ASR lag
        signals += new
        events += [(fed, e) for e in timed("fusion", fusion.push, new)]
    tail = keywords.push(speech.flush())
    signals += tail
    events += [(len(audio) / rate, e) for e in fusion.push(tail)]
    duration = len(audio) / rate
    print("\nCPU seconds per stream second:", {k: round(v / duration, 4) for k, v in cpu.items()})
    print("signals:", signals)
    print("events:", events)

    assert len(events) == len(truth.moments), events
    for (fed, event), moment in zip(sorted(events, key=lambda x: x[1].t), truth.moments):
        assert abs(event.t - moment.t) <= 3.0, (event, moment)
        if moment.kind == "loud":
            assert "loudness" in event.signals, event
        else:
            assert set(event.signals) == {"keyword"}, event  # the phrase alone, not its volume
            assert fed <= moment.t + 6.5  # available about 6 s after it was said
    # Each detector fired only at its own kind of moment.
    loud_at = [m.t for m in truth.moments if m.kind == "loud"]
    said_at = [m.t for m in truth.moments if m.kind == "keyword"]
    assert len([s for s in signals if s.name == "loudness"]) == len(loud_at)
    for s in signals:
        near = loud_at if s.name == "loudness" else said_at
        assert min(abs(s.t - t) for t in near) <= 3.0, s
