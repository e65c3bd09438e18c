"""Fusion: detector signals that agree in time become one moment.

Signals come from detectors with very different lags (loudness within a second, ASR keywords
several seconds later, scene cuts whenever a keyframe arrives), so they are kept for a while
and re-scored as they arrive, in any order. The rule that matters most downstream is
"one moment gives one event": once an event is emitted, every signal within ``cooldown`` of it
(before or after) belongs to that moment and can never start another.
"""
from __future__ import annotations

import msgspec

from records.wire import MomentEvent, Signal


def _default_weights() -> dict[str, float]:
    return {"loudness": 1.0, "keyword": 1.0, "scene": 0.3}


class FusionOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How signals add up to a moment (score = sum over names of weight * min(value, cap))."""

    weights: dict[str, float] = msgspec.field(default_factory=_default_weights)  # per signal name; others count 0
    cap: float = 2.0  # one very strong signal counts at most this much (before its weight)
    threshold: float = 1.0  # score at which a moment is emitted
    window: float = 5.0  # seconds: signals this close together add up (ASR word times vs onsets)
    cooldown: float = 15.0  # seconds each side of an event in which no other event can start
    horizon: float = 60.0  # seconds of stream time a signal waits for late partners, then dropped


class Fusion:
    """Feed signals with :meth:`push` (any order, any lateness); get each moment exactly once.

    The event's ``t`` is the time of its strongest contributing signal (earliest on ties),
    ``score`` the window's score when it crossed, ``signals`` each name's contribution.
    """

    def __init__(self, opts: FusionOptions | None = None) -> None:
        self.opts = opts or FusionOptions()
        self._pending: list[Signal] = []  # not (yet) part of any event, sorted by t
        self._events: list[MomentEvent] = []  # recent emitted events (for the cooldown)
        self._newest = float("-inf")

    def push(self, signals: list[Signal]) -> list[MomentEvent]:
        self._newest = max([self._newest, *(s.t for s in signals)])
        for s in signals:
            # Too old to matter (its partners are gone), or part of a moment already emitted.
            if s.t < self._newest - self.opts.horizon or self._contribution(s) <= 0.0 or self._claimed(s.t):
                continue
            self._pending.append(s)
        self._pending.sort(key=lambda s: s.t)
        out: list[MomentEvent] = []
        while (event := self._first_crossing()) is not None:
            out.append(event)
            self._events.append(event)
            self._pending = [s for s in self._pending if not self._claimed(s.t)]
        self._prune()
        return out

    def _contribution(self, s: Signal) -> float:
        return self.opts.weights.get(s.name, 0.0) * min(max(s.value, 0.0), self.opts.cap)

    def _claimed(self, t: float) -> bool:
        return any(abs(t - e.t) < self.opts.cooldown for e in self._events)

    def _first_crossing(self) -> MomentEvent | None:
        """The earliest window [t, t + window] of pending signals whose score crosses."""
        o = self.opts
        pending = self._pending
        for i, anchor in enumerate(pending):
            best: dict[str, Signal] = {}  # per name, the strongest signal in the window
            for s in pending[i:]:
                if s.t > anchor.t + o.window:
                    break
                if s.name not in best or self._contribution(s) > self._contribution(best[s.name]):
                    best[s.name] = s
            contributions = {name: self._contribution(s) for name, s in best.items()}
            score = sum(contributions.values())
            if score >= o.threshold - 1e-9:
                lead = min(best.values(), key=lambda s: (-self._contribution(s), s.t))
                return MomentEvent(t=lead.t, score=round(score, 3),
                                   signals={k: round(v, 3) for k, v in contributions.items()})
        return None

    def _prune(self) -> None:
        """Forget what can no longer matter: old lone signals, events past their cooldown."""
        o = self.opts
        oldest = self._newest - o.horizon
        self._pending = [s for s in self._pending if s.t >= oldest]
        self._events = [e for e in self._events if e.t >= oldest - o.cooldown]
