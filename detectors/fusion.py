"""Fusion: detector signals that agree in time become one moment, and a moment covers its cluster.

Signals come from detectors with very different lags (loudness within a second, ASR keywords
several seconds later, chat a few seconds after the action, scene cuts whenever a keyframe
arrives), so they are kept for a while and re-scored as they arrive, in any order.

* The score is a probability that a person would clip the moment: a logistic model over the
  strongest signal of each name, ``p = sigmoid(bias + sum of weight * min(value, cap))``.
  The weights, bias and threshold of the genre profiles are fitted on a labelled corpus
  (``bench.fit_fusion``, ``detectors/fitted``); the defaults here are the hand-written fallback.
* A moment starts when the signals inside one ``window`` reach ``threshold``. At least one of
  them must be a trigger: ``modifiers`` (sentiment, a single scene cut) only ever raise or
  lower a moment that something else started.
* A signal with a negative weight is *context* (``music``: loud music, a sung hype phrase):
  it never joins a moment, it lowers the score of any moment within ``context_window`` of
  it. Context comes from the audio path, which runs ahead of ASR, so it is there when a
  moment is judged.
* Signals within ``cluster_gap`` of a moment's span join it and stretch the span (up to
  ``max_span``), so a roar, the shouted keyword after it and the chat burst that follows are
  one moment whose clip covers all three; modifiers join without stretching it. A joining
  signal can raise the moment's score: the moment is then emitted again, with the same
  ``seq``, until it is cut.
* "One moment gives one event": any other signal within ``cooldown`` of a moment's span
  (before or after) belongs to that moment and can never start another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from records.wire import MomentEvent, Signal

# The hand-written weights were additive ("a sum of 1.0 is a moment"); as logits they are
# scaled by LOGIT_SCALE with bias -LOGIT_SCALE, so a sum of 1.0 is p = 0.5 exactly.
LOGIT_SCALE = 4.0

# What each signal is worth in the hand-written fallback (>= 1.0: a moment on its own).
ADDITIVE_WEIGHTS: dict[str, float] = {
    "loudness": 1.0,  # a roar or a yell well above the stream's own level
    "arousal": 1.0,  # a voice well above its speaker's own pitch and effort
    "keyword": 1.0,  # the phrase's own weight is its value (weak phrases are < 1)
    "crowd": 1.0,  # broadband crowd noise or cheering
    "laughter": 0.8,
    "hud": 1.0,  # a game-HUD event from the channel's game profile
    "chat": 0.8,  # chat message rate burst
    "emote": 0.5,  # emote share burst
    "sentiment": 0.5,  # an emotional utterance against the channel's baseline
    "speech_rate": 0.15,  # an utterance rushed against the speaker's normal: only corroborates
    "scene_rate": 0.6,  # rapid cuts (replays, montages)
    "scene": 0.3,  # a single cut: common, only ever corroborates
    "music": -0.6,  # context: music playing (loudness, lyrics and swells inside it count less)
}


def logits(additive: dict[str, float]) -> dict[str, float]:
    """Hand-written additive weights as logit weights (bias ``-LOGIT_SCALE``)."""
    return {name: round(LOGIT_SCALE * w, 6) for name, w in additive.items()}


DEFAULT_WEIGHTS: dict[str, float] = logits(ADDITIVE_WEIGHTS)
DEFAULT_MODIFIERS = ("sentiment", "speech_rate", "scene", "music")


def _default_weights() -> dict[str, float]:
    return dict(DEFAULT_WEIGHTS)


SignalName = Annotated[str, msgspec.Meta(max_length=64)]
Weights = Annotated[dict[SignalName, Annotated[float, msgspec.Meta(ge=-40.0, le=40.0)]], msgspec.Meta(max_length=64)]


class FusionOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How signals add up to a moment: p = sigmoid(bias + sum over names of weight * min(value, cap))."""

    weights: Weights = msgspec.field(default_factory=_default_weights)  # logit weight per signal name; others count 0
    bias: Annotated[float, msgspec.Meta(ge=-100.0, le=100.0)] = -LOGIT_SCALE  # the logit with no signal at all
    cap: Annotated[float, msgspec.Meta(gt=0.0, le=100.0)] = 2.0  # one very strong signal counts at most this much (before its weight)
    threshold: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.5  # probability at which a moment is emitted
    modifiers: Annotated[list[SignalName], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_MODIFIERS))  # names that never start a moment on their own
    window: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 5.0  # seconds: signals this close together add up (ASR word times vs onsets)
    context_window: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 2.0  # seconds: context this close to a moment's signals lowers it
    cluster_gap: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 4.0  # seconds: a signal this close to a moment's span joins it
    max_span: Annotated[float, msgspec.Meta(gt=0.0, le=300.0)] = 20.0  # seconds: a moment's span never grows longer than this
    cooldown: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 15.0  # seconds each side of a moment's span in which no other can start
    horizon: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 60.0  # seconds of stream time a signal waits for late partners, then dropped


def probability(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


@dataclass
class _Moment:
    seq: int
    start: float
    end: float
    best: dict[str, Signal] = field(default_factory=dict)  # strongest member signal per name

    def near(self, t: float, margin: float) -> bool:
        return self.start - margin <= t <= self.end + margin


class Fusion:
    """Feed signals with :meth:`push` (any order, any lateness); get moments as events.

    Each moment is emitted when it crosses the threshold and again whenever a joining signal
    stretches its span or raises its score (same ``seq``; consumers keep the latest).
    The event's ``t`` is the time of its strongest signal (earliest on ties), ``score`` the
    probability, ``signals`` each name's contribution to the logit (context included, so a
    person sees why), ``start``/``end`` its span and ``triggers`` the strongest signal of
    each name.
    """

    def __init__(self, opts: FusionOptions | None = None) -> None:
        self.opts = opts or FusionOptions()
        self._modifiers = frozenset(self.opts.modifiers)
        self._pending: list[Signal] = []  # not (yet) part of any moment, sorted by t
        self._context: list[Signal] = []  # negative-weight signals: they only lower scores
        self._moments: list[_Moment] = []  # recent moments (to join, or for the cooldown)
        self._newest = float("-inf")
        self._next_seq = 1

    def push(self, signals: list[Signal]) -> list[MomentEvent]:
        o = self.opts
        self._newest = max([self._newest, *(s.t for s in signals)])
        changed: dict[int, _Moment] = {}
        for s in sorted(signals, key=lambda s: s.t):
            contribution = self._contribution(s)
            if s.t < self._newest - o.horizon or contribution == 0.0:
                continue  # too old to matter (its partners are gone), or not weighted
            if contribution < 0.0:
                self._context.append(s)
            elif (moment := self._joinable(s)) is not None:
                if self._join(moment, s):
                    changed[moment.seq] = moment
            elif not self._claimed(s.t):
                self._pending.append(s)
        self._pending.sort(key=lambda s: s.t)
        self._context.sort(key=lambda s: s.t)
        while (moment := self._first_crossing()) is not None:
            self._moments.append(moment)
            changed[moment.seq] = moment
            self._absorb_pending()
        self._prune()
        return [self._event(m) for m in sorted(changed.values(), key=lambda m: m.seq)]

    def _contribution(self, s: Signal) -> float:
        return self.opts.weights.get(s.name, 0.0) * min(max(s.value, 0.0), self.opts.cap)

    def _joinable(self, s: Signal) -> _Moment | None:
        o = self.opts
        for m in self._moments:
            if m.near(s.t, o.cluster_gap) and max(m.end, s.t) - min(m.start, s.t) <= o.max_span:
                return m
        return None

    def _join(self, m: _Moment, s: Signal) -> bool:
        """Add ``s`` to ``m``; True when the moment's span or score changed. A modifier raises
        the score but never stretches the span: it would stretch the clip, and the cooldown
        with it, over the next moment (a late ASR-timed signal after a shout, say)."""
        before = (m.start, m.end, self._logit(m.best))
        if s.name not in self._modifiers:
            m.start, m.end = min(m.start, s.t), max(m.end, s.t)
        if s.name not in m.best or s.value > m.best[s.name].value:
            m.best[s.name] = s
        return (m.start, m.end, self._logit(m.best)) != before

    def _absorb_pending(self) -> None:
        """Pending signals that now join a moment, or fall in its cooldown, are taken."""
        grew = True
        while grew:
            grew = False
            rest = []
            for s in self._pending:
                if (m := self._joinable(s)) is not None:
                    grew |= self._join(m, s)
                elif not self._claimed(s.t):
                    rest.append(s)
            self._pending = rest

    def _claimed(self, t: float) -> bool:
        return any(m.near(t, self.opts.cooldown) for m in self._moments)

    def _logit(self, best: dict[str, Signal]) -> float:
        return self.opts.bias + sum(self._contribution(s) for s in best.values())

    def _strongest(self, signals) -> dict[str, Signal]:
        best: dict[str, Signal] = {}
        for s in signals:
            if s.name not in best or s.value > best[s.name].value:
                best[s.name] = s
        return best

    def _first_crossing(self) -> _Moment | None:
        """The earliest window [t, t + window] of pending signals (with the context around it)
        that holds a trigger and whose probability crosses the threshold."""
        o = self.opts
        pending = self._pending
        for i, anchor in enumerate(pending):
            members = [s for s in pending[i:] if s.t <= anchor.t + o.window]
            if all(s.name in self._modifiers for s in members):
                continue
            context = [c for c in self._context
                       if members[0].t - o.context_window <= c.t <= members[-1].t + o.context_window]
            best = self._strongest([*members, *context])
            if probability(self._logit(best)) >= o.threshold - 1e-9:
                span = [s.t for s in members if s.name not in self._modifiers]
                moment = _Moment(self._next_seq, min(span), max(span), best)
                self._next_seq += 1
                taken = {id(s) for s in members}
                self._pending = [s for s in pending if id(s) not in taken]
                return moment
        return None

    def _event(self, m: _Moment) -> MomentEvent:
        lead = min(m.best.values(), key=lambda s: (-self._contribution(s), s.t))
        contributions = {name: round(self._contribution(s), 3) for name, s in m.best.items()}
        return MomentEvent(
            t=lead.t, score=round(probability(self._logit(m.best)), 4), signals=contributions,
            start=m.start, end=m.end, seq=m.seq,
            triggers=sorted((s for s in m.best.values() if self._contribution(s) > 0), key=lambda s: s.t),
        )

    def _prune(self) -> None:
        """Forget what can no longer matter: old lone signals, moments past their cooldown."""
        o = self.opts
        oldest = self._newest - o.horizon
        self._pending = [s for s in self._pending if s.t >= oldest]
        self._context = [s for s in self._context if s.t >= oldest]
        self._moments = [m for m in self._moments if m.end >= oldest - o.cooldown]
