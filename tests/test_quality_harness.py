"""The quality harness, short: generated genre broadcasts through the real detectors, offline.

A sports broadcast (crowd roars with commentator shouts, a replay montage, chat) must come
out with fused F1 >= 0.8, and a distractor-only broadcast (loud music ramping in, hype
words said calmly, hard scene cuts) with no moment at all. Also checks the generator's
truth and chat files, and the scorer's matching rules on hand-made events.
"""
from __future__ import annotations

import msgspec
import pytest

from bench.genres import ChatLog, GenreTruth, load_chat, load_genre_truth, make_genre_broadcast
from bench.quality import BEFORE, report_run, run_paths, score, score_run
from records.wire import Signal


@pytest.fixture(scope="module")
def sports(tmp_path_factory):
    mp4 = tmp_path_factory.mktemp("quality") / "sports.mp4"
    # 62 s: two moments 30 s apart, no distractor (the distractor-only broadcast has them).
    make_genre_broadcast(mp4, "sports", duration=62.0, seed=3, distractors=())
    return mp4


@pytest.fixture(scope="module")
def distractors(tmp_path_factory):
    mp4 = tmp_path_factory.mktemp("quality") / "distractors.mp4"
    # 58 s: a scene cut, a calm keyword, ~25 s of loud music ramping in.
    make_genre_broadcast(mp4, "distractors", duration=58.0, seed=1)
    return mp4


@pytest.fixture(scope="module")
def runs(sports, distractors):
    """Both broadcasts through the detectors, offline, side by side (one process each)."""
    sports_run, distractors_run = run_paths([sports, distractors], jobs=2)
    return {"sports": sports_run, "distractors": distractors_run}


def test_generator_writes_truth_and_chat(sports, distractors):
    truth = load_genre_truth(sports)
    assert truth.genre == "sports" and truth.profile == "sports" and len(truth.moments) == 2
    for a, b in zip(truth.moments, truth.moments[1:]):
        assert b.t - a.t >= 30.0  # separate highlights: each its own clip
    for m in truth.moments:
        assert {"loudness", "chat"} <= set(m.expected_signals)
        assert m.parts and m.t == min(p.t for p in m.parts) and m.end >= m.t
    assert truth.distractors == []
    chat = load_chat(sports, truth)
    assert chat == sorted(chat, key=lambda c: c.t) and len({c.user for c in chat}) > 20
    for m in truth.moments:  # a burst of >= 8 msg/s follows each moment
        burst = next(p for p in m.parts if p.kind == "chat_burst")
        n = sum(1 for c in chat if burst.t <= c.t < burst.end)
        assert n / (burst.end - burst.t) >= 8.0
    quiet = [c for c in chat if all(not (m.t - 1 <= c.t <= m.end + 1) for m in truth.moments)]
    assert len(quiet) / (truth.duration - sum(m.end - m.t + 2 for m in truth.moments)) < 3.0

    dtruth = load_genre_truth(distractors)
    assert dtruth.moments == []
    assert {"loud_music", "calm_keyword", "scene_cut"} <= {d.kind for d in dtruth.distractors}
    assert msgspec.json.decode(distractors.with_name(dtruth.chat_log).read_bytes(), type=ChatLog).messages


def test_scorer_matching_rules():
    truth = msgspec.convert({
        "genre": "x", "duration": 60.0, "seed": 0,
        "moments": [
            {"t": 10.0, "kind": "a", "expected_signals": ["loudness", "keyword"], "end": 13.0,
             "parts": [{"kind": "crowd_roar", "t": 10.0, "end": 13.0, "signals": ["loudness"]},
                       {"kind": "shouted_keyword", "t": 10.5, "end": 12.0, "signals": ["keyword"]}]},
            {"t": 30.0, "kind": "b", "expected_signals": ["loudness"], "end": 32.0,
             "parts": [{"kind": "crowd_roar", "t": 30.0, "end": 32.0, "signals": ["loudness"]}]},
        ],
        "distractors": [{"t": 45.0, "kind": "loud_music", "end": 55.0}],
    }, GenreTruth)
    events = [(10.0 - BEFORE + 0.1, {"loudness": 1.0}), (11.0, {"keyword": 1.0}), (50.0, {"loudness": 1.0})]
    signals = [Signal("loudness", 10.0, 1.0), Signal("keyword", 20.0, 1.0), Signal("loudness", 50.0, 1.0)]
    sc = score(truth, events, signals)
    assert [mi for mi, _ in sc.matched] == [0] and sc.matched[0][1] == 11.0  # nearest onset wins
    assert sc.missed == [1]
    assert [(t, hit) for t, _, hit in sc.false_positives] == [(10.0 - BEFORE + 0.1, ""), (50.0, "loud_music")]
    assert (sc.fused.precision, sc.fused.recall) == (1 / 3, 1 / 2)
    loud, kw = sc.signals["loudness"], sc.signals["keyword"]
    assert (loud.fired, loud.tp_fired, loud.expected, loud.hit) == (2, 1, 2, 1)
    assert (kw.fired, kw.tp_fired, kw.expected, kw.hit) == (1, 0, 1, 0)


def test_sports_broadcast_fused_f1(runs):
    run = runs["sports"]
    sc = score_run(run)
    print(report_run(run, sc))
    assert sc.fused.f1 is not None and sc.fused.f1 >= 0.8, report_run(run, sc)
    assert not sc.false_positives, report_run(run, sc)
    assert sc.signals["loudness"].recall == 1.0  # every moment has a crowd roar
    assert 0.0 < run.cpu_seconds / run.stream_seconds < 1.0  # offline faster than real time


def test_distractor_only_broadcast_has_no_moment(runs):
    run = runs["distractors"]
    sc = score_run(run)
    print(report_run(run, sc))
    assert run.events == [], report_run(run, sc)
    assert sc.signals["scene"].fired >= 1  # the cuts were seen; fusion kept them apart
