"""Fusion rules, and the whole audio path over the labelled 75 s broadcast."""
import itertools
import time

import pytest

import media
from detectors.fusion import Fusion, FusionOptions, probability
from detectors.keywords import KeywordSpotter
from detectors.loudness import LoudnessDetector
from detectors.speech import SpeechOptions, StreamingTranscriber
from records.wire import Signal

LOUD = Signal("loudness", 20.0, 1.4)
WORDS = Signal("keyword", 21.5, 0.6, "no way")
CUT = Signal("scene", 19.6, 1.5)


def latest(events):
    """The last version of each moment (fusion re-emits a moment that grows)."""
    return list({e.seq: e for e in events}.values())


@pytest.mark.parametrize("order", list(itertools.permutations([LOUD, WORDS, CUT])))
def test_one_moment_gives_one_event_whatever_the_arrival_order(order):
    fusion = Fusion()
    events = latest([e for s in order for e in fusion.push([s])])
    assert len(events) == 1, events
    assert 19.6 <= events[0].t <= 21.5
    assert events[0].score >= FusionOptions().threshold
    assert events[0].span() == (20.0, 21.5)  # the clip covers the triggers; the cut (a modifier) only adds
    assert set(events[0].signals) == {"loudness", "keyword", "scene"}


def test_weak_signals_add_up_within_the_window():
    fusion = Fusion()
    assert fusion.push([CUT]) == []  # a modifier never starts a moment
    (event,) = fusion.push([WORDS])  # 4 * (0.3 * 1.5 + 0.6) - 4 = 0.2 > 0: p > 0.5
    assert event.signals == {"scene": 1.8, "keyword": 2.4}
    assert event.t == WORDS.t  # the strongest contributor
    assert event.score == pytest.approx(probability(0.2), abs=1e-4)
    assert [s.name for s in event.triggers] == ["scene", "keyword"]
    assert event.triggers[1].detail == "no way"


def test_per_name_max_and_cap():
    fusion = Fusion()
    assert fusion.push([Signal("keyword", 5.0, 0.6), Signal("keyword", 6.0, 0.6)]) == []  # max, not sum
    (event,) = fusion.push([Signal("loudness", 30.0, 9.0)])
    assert event.signals == {"loudness": 4.0 * FusionOptions().cap}


def test_quiet_input_gives_nothing():
    fusion = Fusion()
    signals = [Signal("scene", t, 3.0) for t in range(0, 300, 30)]  # cuts alone: 0.3 * cap
    signals += [Signal("keyword", t + 10, 0.6, "insane") for t in range(0, 300, 30)]  # weak words alone
    signals += [Signal("loudness", t + 20, 0.5) for t in range(0, 300, 30)]  # below its trigger...
    signals += [Signal("scene", t + 21, 1.0) for t in range(0, 300, 30)]  # ...even with a cut: 0.8
    signals += [Signal("unheard-of", t, 5.0) for t in range(0, 300, 5)]  # not a weighted name
    assert fusion.push(signals) == []


def test_modifiers_never_start_a_moment_alone():
    fusion = Fusion(FusionOptions(weights={"sentiment": 10.0, "scene": 10.0, "keyword": 4.0}))
    assert fusion.push([Signal("sentiment", 10.0, 1.0), Signal("scene", 11.0, 2.0)]) == []  # p ~ 1, but no trigger
    (event,) = fusion.push([Signal("keyword", 12.0, 0.2, "insane")])  # a weak trigger with them is a moment
    assert event.t == 11.0 and event.score > 0.99


def test_context_lowers_a_moment_around_it_and_never_starts_one():
    opts = FusionOptions(weights={"loudness": 4.0, "keyword": 4.0, "arousal": 4.0, "music": -6.0})
    alone = Fusion(opts).push([Signal("loudness", 50.0, 1.2)])
    assert len(alone) == 1  # a burst in talk is a moment
    fusion = Fusion(opts)
    music = [Signal("music", float(t), 0.9) for t in range(40, 60)]
    assert fusion.push(music) == []  # context alone: nothing
    assert fusion.push([Signal("loudness", 50.0, 1.2)]) == []  # a swell inside music: not a moment
    assert fusion.push([Signal("keyword", 51.0, 1.0, "let's go")]) == []  # sung: not either
    (shout,) = fusion.push([Signal("arousal", 52.0, 1.5)])  # a shout over the music is
    assert shout.signals["music"] == pytest.approx(-5.4) and shout.score >= opts.threshold
    assert [s.name for s in shout.triggers] == ["loudness", "keyword", "arousal"]  # context is no trigger


def test_two_moments_further_apart_than_cooldown_give_two_events():
    fusion = Fusion()
    events = fusion.push([Signal("loudness", 20.0, 1.2)]) + fusion.push([Signal("keyword", 40.0, 1.0, "let's go")])
    assert [e.t for e in events] == [20.0, 40.0]
    assert len({e.seq for e in events}) == 2
    (again,) = fusion.push([Signal("loudness", 40.5, 1.5)])  # the second moment, grown
    assert again.seq == events[1].seq and again.span() == (40.0, 40.5)


def test_signals_close_to_a_moment_join_it_and_its_span_covers_them():
    fusion = Fusion()
    (roar,) = fusion.push([Signal("loudness", 100.0, 1.3)])
    (grown,) = fusion.push([Signal("keyword", 103.0, 1.0, "let's go")])  # ASR, seconds later
    (chat,) = fusion.push([Signal("chat", 106.5, 1.0)])  # viewers react later still
    assert roar.seq == grown.seq == chat.seq
    assert chat.span() == (100.0, 106.5)
    assert chat.signals == pytest.approx({"loudness": 5.2, "keyword": 4.0, "chat": 3.2})
    assert chat.score == pytest.approx(probability(5.2 + 4.0 + 3.2 - 4.0), abs=1e-4)
    assert {s.name for s in chat.triggers} == {"loudness", "keyword", "chat"}
    # a weaker signal of a name already in the moment inside its span changes nothing
    assert fusion.push([Signal("keyword", 101.0, 0.6, "no way")]) == []


def test_late_signals_within_cooldown_never_make_a_second_event():
    o = FusionOptions()
    fusion = Fusion()
    (event,) = fusion.push([Signal("loudness", 100.0, 1.3)])
    # Past the cluster gap but inside the cooldown: claimed by the moment, not part of its clip.
    assert fusion.push([Signal("keyword", 100.0 + o.cooldown - 0.5, 1.2, "clip it")]) == []
    assert fusion.push([Signal("keyword", 100.0 - o.cooldown + 0.5, 1.0, "let's go")]) == []
    # Outside the cooldown a new moment is possible again.
    (second,) = fusion.push([Signal("keyword", 100.0 + o.cooldown + 1.0, 1.0, "omg")])
    assert second.t == 116.0 and second.seq != event.seq
    assert event.t == 100.0


def test_a_moment_span_never_grows_past_max_span():
    o = FusionOptions()
    fusion = Fusion()
    events = latest(fusion.push([Signal("loudness", float(t), 1.5) for t in range(0, 60, 3)]))
    for e in events:
        start, end = e.span()
        assert end - start <= o.max_span
    assert len(events) >= 2  # a minute of roaring is more than one 20 s moment


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
        assert fed - speech.transcribed_until <= speech_opts.max_lag + 0.25  # bounded ASR lag
        signals += new
        events += [(fed, e) for e in timed("fusion", fusion.push, new)]
    tail = keywords.push(speech.flush())
    signals += tail
    events += [(len(audio) / rate, e) for e in fusion.push(tail)]
    first_fed = {}
    for fed, e in events:
        first_fed.setdefault(e.seq, fed)
    events = [(first_fed[e.seq], e) for e in latest([e for _, e in events])]  # when first emitted, latest version
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
