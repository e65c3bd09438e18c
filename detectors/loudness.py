"""Loudness bursts: short-term level well above the stream's own recent normal.

A fixed dBFS threshold would not work across streams (every streamer mixes differently), so
the level of each 400 ms window is compared with a rolling baseline: a high percentile of the
last ~30 s of non-silent windows. Using a *high* percentile means ordinary speech peaks are
already "normal" and only a crowd roar or a yell clears the trigger.

Audio arrives in chunks of any size; all work happens on a fixed hop grid (100 ms), so the
result does not depend on how the audio was chunked (live and batch agree).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Annotated

import msgspec
import numpy as np

from records.wire import Signal

RATE = 16000


class LoudnessOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`LoudnessDetector`; defaults suit normal speech-led streams."""

    window: Annotated[float, msgspec.Meta(ge=0.05, le=5.0)] = 0.4  # seconds of audio per level measurement (short-term loudness)
    hop: Annotated[float, msgspec.Meta(ge=0.01, le=1.0)] = 0.1  # seconds between measurements; also the time resolution of t
    baseline_seconds: Annotated[float, msgspec.Meta(ge=1.0, le=600.0)] = 30.0  # how much recent history defines "normal"
    baseline_percentile: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 90.0  # a high percentile: loud speech peaks count as normal
    trigger_db: Annotated[float, msgspec.Meta(gt=0.0, le=60.0)] = 8.0  # excess over baseline that is a clear burst (value 1.0)
    release_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 4.0  # a burst is over once the excess drops below this...
    release_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 1.0  # ...for this long (so a wobbling roar fires once)
    min_loud_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.2  # this much of the window must itself be loud: no clicks
    onset_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 4.0  # the burst's t is the first hop this far above the baseline
    warmup_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 5.0  # seconds of non-silent audio needed before anything fires
    silence_db: Annotated[float, msgspec.Meta(ge=-120.0, le=0.0)] = -45.0  # windows quieter than this (dBFS) are silence or room tone:
    #                            not history, and not counted as warm-up
    floor_db: Annotated[float, msgspec.Meta(ge=-120.0, le=0.0)] = -35.0  # the baseline never goes below this (dBFS): speech after a
    #                          long silence, or a whisper-quiet stream, is not a burst
    max_burst_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 10.0  # a longer loud stretch starts to become the new normal


class LoudnessDetector:
    """Feed 16 kHz float32 mono with :meth:`push`; get one ``Signal("loudness")`` per burst.

    ``value`` = excess dB over the baseline / ``trigger_db`` (>= 1.0 when it fires);
    ``t`` = the stream time the burst started (hop resolution).
    """

    def __init__(self, opts: LoudnessOptions | None = None) -> None:
        self.opts = opts = opts or LoudnessOptions()
        self._hop_n = max(1, int(round(opts.hop * RATE)))
        self._hops_per_window = max(1, int(round(opts.window / opts.hop)))
        self._pending = np.zeros(0, np.float32)  # samples not yet making a full hop
        self._t_pending = 0.0  # stream time of _pending[0]
        self._started = False
        self._recent: deque[tuple[float, float]] = deque(maxlen=self._hops_per_window)  # (t, energy)
        # Baseline history: one window level (dB) per hop, NaN where not "normal" audio.
        self._history: deque[float] = deque(maxlen=max(1, int(round(opts.baseline_seconds / opts.hop))))
        self._in_burst = False
        self._burst_hops = 0
        self._quiet_hops = 0

    def push(self, t0: float, samples: np.ndarray) -> list[Signal]:
        samples = np.asarray(samples, np.float32).reshape(-1)
        expected = self._t_pending + len(self._pending) / RATE
        if not self._started or abs(t0 - expected) > self.opts.hop:
            # First audio, or a gap/jump in stream time: restart the hop grid (keep history).
            self._started = True
            self._pending = samples
            self._t_pending = t0
            self._recent.clear()
        else:
            self._pending = np.concatenate([self._pending, samples])
        out: list[Signal] = []
        n = self._hop_n
        full = len(self._pending) // n
        for i in range(full):
            hop = self._pending[i * n : (i + 1) * n]
            sig = self._step(self._t_pending + i * n / RATE, float(np.dot(hop, hop)) / n)
            if sig is not None:
                out.append(sig)
        if full:
            self._pending = self._pending[full * n :]
            self._t_pending += full * n / RATE
        return out

    def _step(self, t: float, energy: float) -> Signal | None:
        o = self.opts
        self._recent.append((t, energy))
        if len(self._recent) < self._hops_per_window:
            return None
        level = _db(sum(e for _, e in self._recent) / len(self._recent))
        baseline = self._baseline()
        excess = level - baseline if baseline is not None else -math.inf
        fired: Signal | None = None
        if self._in_burst:
            self._burst_hops += 1
            self._quiet_hops = self._quiet_hops + 1 if excess < o.release_db else 0
            if self._quiet_hops * o.hop >= o.release_seconds:
                self._in_burst = False
        elif excess >= o.trigger_db and self._sustained(baseline + o.trigger_db):
            self._in_burst, self._burst_hops, self._quiet_hops = True, 0, 0
            onset = self._onset(baseline + o.onset_db)
            fired = Signal("loudness", t=round(onset, 3), value=round(excess / o.trigger_db, 3),
                           detail=f"{level:.1f} dBFS vs baseline {baseline:.1f}")
        # A burst is not "normal": keep it out of the baseline, unless it goes on so long that
        # it has become the normal (then the baseline catches up and the burst releases).
        normal = level > o.silence_db and (not self._in_burst or self._burst_hops * o.hop > o.max_burst_seconds)
        self._history.append(level if normal else math.nan)
        return fired

    def _baseline(self) -> float | None:
        o = self.opts
        h = np.fromiter(self._history, float, len(self._history))
        h = h[~np.isnan(h)]
        if len(h) * o.hop < o.warmup_seconds:
            return None  # warming up: not enough normal audio to know what loud means
        return max(float(np.percentile(h, o.baseline_percentile)), o.floor_db)

    def _sustained(self, loud_db: float) -> bool:
        """Enough of the window is loud on its own: a single click is not a burst."""
        loud = sum(1 for _, e in self._recent if _db(e) >= loud_db)
        return loud * self.opts.hop >= self.opts.min_loud_seconds - 1e-9

    def _onset(self, onset_db: float) -> float:
        """Start of the earliest hop of the current run that is above ``onset_db``."""
        t_onset = self._recent[-1][0]
        for t, e in reversed(self._recent):
            if _db(e) < onset_db:
                break
            t_onset = t
        return t_onset


def _db(energy: float) -> float:
    return 10.0 * math.log10(energy + 1e-12)
