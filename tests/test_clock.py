"""StreamClock: raw timestamps -> monotonic stream time (table-driven, pure)."""
from __future__ import annotations

from fractions import Fraction

import av
import pytest

from stream_actor.clock import StreamClock

V, A = 0, 1  # stream indexes
F = 1 / 30  # default frame


def run(events, max_gap=5.0):
    """events: ("S", wall) begins a session at wall time ``wall``, ("S",) at the
    arrival of its first packet; (index, raw, wall) or (index, raw, wall, duration)
    maps a packet. Returns the mapped times."""
    wall = [0.0]
    clock = StreamClock(max_gap=max_gap, default_frame=F, now=lambda: wall[0])
    out = []
    for ev in events:
        if ev[0] == "S":
            if len(ev) > 1:
                wall[0] = ev[1]
            clock.begin_session(*ev[1:])
            continue
        index, raw, wall[0], *dur = ev
        out.append(clock.time(index, raw, dur[0] if dur else None))
    return out, clock


CASES = {
    # first session starts at 0 whatever the raw origin
    "origin": (
        [("S", 0), (V, 1000.0, 0), (V, 1000.5, 0.5), (V, 1001.0, 1)],
        [0.0, 0.5, 1.0],
    ),
    # timestamps reset to 0: continue from last + one frame
    "reset": (
        [("S", 0), (V, 50.0, 0), (V, 51.0, 1), (V, 0.0, 1.1), (V, 1.0, 2.1)],
        [0.0, 1.0, 1.0 + F, 2.0 + F],
    ),
    # forward jump beyond max_gap: discontinuity, continue after one frame
    "jump": (
        [("S", 0), (V, 10.0, 0), (V, 11.0, 1), (V, 611.0, 1.1), (V, 612.0, 2.1)],
        [0.0, 1.0, 1.0 + F, 2.0 + F],
    ),
    # forward step below max_gap is real time passing (e.g. dropped frames)
    "small gap kept": (
        [("S", 0), (V, 10.0, 0), (V, 14.0, 4)],
        [0.0, 4.0],
    ),
    # known packet duration is the "one frame" after a reset
    "reset uses duration": (
        [("S", 0), (A, 5.0, 0, 0.02), (A, 5.02, 0, 0.02), (A, 0.0, 0)],
        [0.0, 0.02, 0.04],
    ),
    # reconnect: continue after the previous session plus the wall-clock gap
    "new session": (
        [("S", 100), (V, 7.0, 100), (V, 9.0, 102, 0.5), ("S", 110), (V, 0.0, 112), (V, 1.0, 113)],
        [0.0, 2.0, 2.5 + 8.0, 3.5 + 8.0],
    ),
    # ... measured to the first packet when the session start time is not given
    "new session, first packet": (
        [("S",), (V, 7.0, 100), (V, 9.0, 102, 0.5), ("S",), (V, 0.0, 112), (V, 1.0, 113)],
        [0.0, 2.0, 2.5 + 10.0, 3.5 + 10.0],
    ),
    # reconnect with a timeline far ahead and no measurable gap: still contiguous
    "new session no gap": (
        [("S", 0), (V, 0.0, 0), (V, 1.0, 0, 0.1), ("S", 0), (V, 5000.0, 0)],
        [0.0, 1.0, 1.1],
    ),
    # A/V offset inside a session is preserved
    "av aligned": (
        [("S", 0), (V, 10.0, 0), (A, 10.25, 0), (V, 11.0, 0), (A, 11.25, 0)],
        [0.0, 0.25, 1.0, 1.25],
    ),
    # both streams reset (interleaved around the reset): they stay aligned
    "av aligned across reset": (
        [
            ("S", 0),
            (V, 20.0, 0), (A, 20.01, 0, 0.02), (V, 20.5, 0), (A, 20.51, 0, 0.02),
            (V, 0.0, 0),  # video resets first ...
            (A, 20.53, 0, 0.02),  # ... audio still on the old timeline
            (A, 0.02, 0, 0.02),  # ... then resets too
            (V, 0.5, 0), (A, 0.52, 0, 0.02),
        ],
        [0.0, 0.01, 0.5, 0.51, 0.5 + F, 0.53, 0.52 + F, 1.0 + F, 1.02 + F],
    ),
    # a late-starting stream joins the session's epoch
    "late stream": (
        [("S", 0), (V, 3.0, 0), (V, 4.0, 1), (A, 6.5, 3)],
        [0.0, 1.0, 3.5],
    ),
    # a stream starting slightly before the session origin is clamped, not negative
    "no negative": (
        [("S", 0), (V, 10.0, 0), (A, 9.9, 0), (A, 10.1, 0)],
        [0.0, 0.0, 0.1],
    ),
    # B-frames: pts out of order within a GOP is not a reset
    "b-frame reorder": (
        [("S", 0), (V, 10.0, 0), (V, 10.2, 0), (V, 10.067, 0), (V, 10.133, 0), (V, 10.4, 0)],
        [0.0, 0.2, 0.067, 0.133, 0.4],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_clock_table(name):
    events, expected = CASES[name]
    got, _ = run(events)
    assert got == pytest.approx(expected, abs=1e-9), name


def test_monotonic_per_stream_through_chaos():
    events = [("S", 0)]
    raw = 100.0
    for i in range(300):
        raw += 0.04
        if i % 50 == 49:
            raw = 0.0 if i % 100 == 49 else raw + 60.0  # resets and jumps
        wall = i * 0.04 + (3.0 if i > 150 else 0.0)
        events.append((V, raw, wall))
        events.append((A, raw + 0.01, wall, 0.02))
        if i == 150:
            events.append(("S", i * 0.04 + 3.0))  # a 3 s outage
    got, clock = run(events)
    v, a = got[0::2], got[1::2]
    assert all(x <= y for x, y in zip(v, v[1:]))
    assert all(x <= y for x, y in zip(a, a[1:]))
    assert clock.discontinuities >= 4
    # total stream time ~ wall time (12 s of packets + 3 s outage), not the raw jumps
    assert 14.0 < clock.end < 16.5
    # audio stays 10 ms after video in every pair
    assert all(abs((y - x) - 0.01) < 1e-6 for x, y in zip(v, a))


def test_packet_time_uses_pts_then_dts():
    packet = av.Packet(b"\x00" * 8)
    packet.time_base = Fraction(1, 1000)
    packet.pts, packet.dts = 1200, 1100
    clock = StreamClock()
    assert clock.packet_time(packet) == pytest.approx(0.1)  # the session starts at its dts
    packet.pts, packet.dts = 1300, 1200
    assert clock.packet_time(packet) == pytest.approx(0.2)
    packet.pts, packet.dts = None, 1400
    assert clock.packet_time(packet) == pytest.approx(0.3)
    packet.pts = packet.dts = None
    assert clock.packet_time(packet) is None


def test_aliases():
    wall = [50.0]
    clock = StreamClock(now=lambda: wall[0])
    clock.start_session(50.0)
    assert clock.to_stream_time(0, 3.0) == 0.0
    assert clock.to_stream_time(0, 4.0) == 1.0
    wall[0] = 60.0
    clock.start_session(58.0)
    assert clock.to_stream_time(0, 0.0) == pytest.approx(1.0 + 8.0)


def test_resume_continues_an_earlier_clock_after_the_time_it_was_down():
    wall = [100.0]
    clock = StreamClock(now=lambda: wall[0])
    clock.resume(500.0, wall_end=90.0)  # a previous process reached 500 s, 10 s ago
    clock.begin_session()
    assert clock.time(V, 7.0) == pytest.approx(510.0)
    wall[0] = 101.0
    assert clock.time(V, 8.0) == pytest.approx(511.0)
    clock.resume(100.0, wall_end=0.0)  # an older reading changes nothing
    assert clock.end == pytest.approx(511.0)
