"""Vocal arousal: a voice raised above the speaker's own normal, whatever the level.

A compressed or loudness-normalised broadcast flattens a shout's level, but not how it was
said: a raised voice has a higher pitch (F0) and a flatter spectral tilt (more energy above
1 kHz). Every 20 ms frame gets its pitch and tilt (detectors.pitch); the voiced *speech*
frames of the last ``baseline_seconds`` of normal talk define the speaker's baseline (the top
of the normal pitch range, its 90th percentile in semitones, so that a second, higher voice
on the stream reads as normal too; the median tilt in dB), and every ``step`` the last
``window`` seconds are compared with it:

    score = pitch_up / pitch_trigger_st + tilt_up / tilt_trigger_db      (fires at >= 1.0)

where ``pitch_up`` and ``tilt_up`` are the window's medians over its voiced speech frames
minus the baseline's. Level is deliberately not part of the score: a louder calm voice keeps
its pitch and tilt, and a shout at the talk's level does not. A shout also always raises the
pitch and flattens the tilt, so a window needs ``min_pitch_st`` of pitch to fire (tilt alone
may be a cymbal or a mic) and a tilt no duller than ``min_tilt_db``.

Sung notes are not speech: frames inside a held note (detectors.pitch.held_notes: >= 200 ms
of voiced frames within 0.5 semitone) neither count toward a window nor enter the baseline,
and a window mostly made of held notes is singing and scores 0.

Two more things are not this speaker's excitement: a rise beyond ``max_pitch_st`` (another
voice, a singer, or an octave error of the tracker), and anything while music plays
(``max_music``: the pipeline hands over the music detector's decisions; talk over a song
misleads the pitch tracker).

Chunking does not matter: frames sit on a fixed 20 ms grid, a frame is judged once the
frames a held note needs after it have arrived, and decisions fall on a fixed ``step`` grid.
"""
from __future__ import annotations

from collections import deque
from typing import Annotated

import msgspec
import numpy as np

from detectors import pitch
from records.wire import Signal

RATE = pitch.RATE
_FRAME_S = pitch.HOP / RATE
_HELD_FRAMES = 10  # 200 ms: a held (sung) note is at least this long...
_HELD_DRIFT = 0.5  # ...within this many semitones
_LOOKAHEAD = _HELD_FRAMES + 3  # frames after a frame that decide whether it is in a held note


class ArousalOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`ArousalDetector`; defaults suit one main talker."""

    window: Annotated[float, msgspec.Meta(ge=0.2, le=5.0)] = 1.0  # seconds of speech judged at a time
    step: Annotated[float, msgspec.Meta(ge=0.02, le=1.0)] = 0.1  # seconds between judgements (rounded to 20 ms frames)
    baseline_seconds: Annotated[float, msgspec.Meta(ge=5.0, le=600.0)] = 60.0  # voiced speech that defines the speaker's normal
    warmup_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 5.0  # voiced speech needed before anything fires
    baseline_percentile: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 90.0  # the speaker's normal pitch: this
    #                          percentile of the baseline's (high: a second, higher voice on the stream is normal too)
    pitch_trigger_st: Annotated[float, msgspec.Meta(gt=0.0, le=24.0)] = 3.0  # semitones above normal worth 1.0 on its own
    tilt_trigger_db: Annotated[float, msgspec.Meta(gt=0.0, le=40.0)] = 8.0  # flatter tilt (dB) worth 1.0 on its own
    min_pitch_st: Annotated[float, msgspec.Meta(ge=0.0, le=24.0)] = 1.5  # a window below this pitch rise never fires
    max_pitch_st: Annotated[float, msgspec.Meta(ge=0.0, le=48.0)] = 9.0  # nor one above: so far beyond the top is
    #                          another voice (a singer, a guest) or an octave error of the tracker, not this speaker
    min_tilt_db: Annotated[float, msgspec.Meta(ge=-40.0, le=40.0)] = -1.0  # nor one whose tilt got duller than this:
    #                          vocal effort flattens the tilt (a high voice with a dull tilt is more likely singing)
    min_voiced_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.25  # voiced speech a window needs to be judged
    max_held_share: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5  # more voiced frames in held notes: singing, score 0
    silence_db: Annotated[float, msgspec.Meta(ge=-120.0, le=0.0)] = -50.0  # frames quieter than this (dBFS) are not speech
    below_peak_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 25.0  # nor frames this far below the window's loudest
    release: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.5  # an excited stretch is over once the score is below this...
    release_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 1.0  # ...for this long
    max_burst_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 15.0  # a longer excited stretch becomes the new normal
    max_music: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5  # no judgement while detectors.music says music
    #                          at least this likely: talk over a song misleads the pitch tracker, and a song is no excitement


class ArousalDetector:
    """Feed 16 kHz float32 mono with :meth:`push`; get one ``Signal("arousal")`` per excited stretch.

    ``value`` = the score (>= 1.0 when it fires); ``t`` = the first raised voiced frame of the
    window that fired; ``detail`` = pitch and tilt against the baseline.
    """

    def __init__(self, opts: ArousalOptions | None = None) -> None:
        self.opts = opts = opts or ArousalOptions()
        self._frames = pitch.VoiceFrames()
        self._win = max(1, int(round(opts.window / _FRAME_S)))
        self._step = max(1, int(round(opts.step / _FRAME_S)))
        self._keep = self._win + 2 * _LOOKAHEAD  # frames of history the held-note test and a window need
        # Recent frames (time, level dB, pitch st or NaN, tilt dB); the last _LOOKAHEAD are not judged yet.
        self._t = np.zeros(0)
        self._lv = np.zeros(0)
        self._st = np.zeros(0)
        self._tl = np.zeros(0)
        self._pending = 0  # frames at the end of the arrays not judged yet
        self._count = 0  # frames judged since the grid started: decisions fall every _step of them
        cap = max(1, int(round(opts.baseline_seconds / _FRAME_S)))
        self._base = np.full((cap, 2), np.nan)  # ring of (pitch st, tilt dB) of normal speech frames
        self._base_n = 0
        self._base_med: tuple[int, tuple[float, float] | None] = (-1, None)  # (_base_n it is for, median)
        self._in_burst = False
        self._burst_steps = 0
        self._quiet_steps = 0
        self._music: deque[tuple[float, float]] = deque(maxlen=16)  # recent music decisions (t, p)

    def push(self, t0: float, samples: np.ndarray) -> list[Signal]:
        return [s for frames in self._frames.push(t0, samples) for s in self.push_frames(frames)]

    def push_frames(self, frames: pitch.Frames, music: list[Signal] = ()) -> list[Signal]:
        """Like :meth:`push`, from frames analysed once for several detectors (pitch.VoiceFrames).
        ``music``: the music detector's signals from the same frames (decided first): a window
        is not judged while the latest music decision at its end says music."""
        self._music.extend((s.t, s.value) for s in music)
        if frames.restart:  # a gap in stream time: what came before is no context (the baseline stays)
            self._t = self._lv = self._st = self._tl = np.zeros(0)
            self._pending = self._count = 0
        if not len(frames.times):
            return []
        self._t = np.concatenate([self._t, frames.times])
        self._lv = np.concatenate([self._lv, frames.level])
        self._st = np.concatenate([self._st, frames.st])
        self._tl = np.concatenate([self._tl, frames.tilt])
        self._pending += len(frames.times)
        ready = self._pending - _LOOKAHEAD
        out: list[Signal] = []
        if ready > 0:
            held = pitch.held_notes(self._st, _HELD_FRAMES, _HELD_DRIFT)
            first = len(self._t) - self._pending  # index of the first frame not judged yet
            for i in range(first, first + ready):
                self._count += 1
                if self._count % self._step == 0:
                    sig = self._decide(i + 1, held)
                    if sig is not None:
                        out.append(sig)
            self._pending -= ready
        drop = max(0, len(self._t) - self._keep - self._pending)
        if drop:
            self._t, self._lv, self._st, self._tl = self._t[drop:], self._lv[drop:], self._st[drop:], self._tl[drop:]
        return out

    def _decide(self, end: int, held: np.ndarray) -> Signal | None:
        """Judge the window of frames ending before index ``end``; update the baseline."""
        o = self.opts
        a = max(0, end - self._win)
        lv, st, tl, hd = self._lv[a:end], self._st[a:end], self._tl[a:end], held[a:end]
        voiced = ~np.isnan(st) & (lv > o.silence_db) & (lv > lv.max() - o.below_peak_db)
        speech = voiced & ~hd
        singing = voiced.any() and (voiced & hd).sum() > o.max_held_share * voiced.sum()
        singing = singing or self._music_at(float(self._t[end - 1]) + _FRAME_S) >= o.max_music
        base = self._baseline()
        score, pitch_up, tilt_up = 0.0, 0.0, 0.0
        if base is not None and not singing and speech.sum() * _FRAME_S >= o.min_voiced_seconds:
            pitch_up = float(np.median(st[speech])) - base[0]
            tilt_up = float(np.median(tl[speech])) - base[1]
            if o.min_pitch_st <= pitch_up <= o.max_pitch_st and tilt_up >= o.min_tilt_db:
                score = pitch_up / o.pitch_trigger_st + tilt_up / o.tilt_trigger_db
        fired: Signal | None = None
        if self._in_burst:
            self._burst_steps += 1
            self._quiet_steps = self._quiet_steps + 1 if score < o.release else 0
            if self._quiet_steps * self._step * _FRAME_S >= o.release_seconds:
                self._in_burst = False
        elif score >= 1.0:
            self._in_burst, self._burst_steps, self._quiet_steps = True, 0, 0
            raised = np.flatnonzero(speech & (st >= base[0] + o.min_pitch_st))
            onset = float(self._t[a + (raised[0] if len(raised) else 0)])
            fired = Signal("arousal", t=round(onset, 3), value=round(score, 3),
                           detail=f"pitch {pitch_up:+.1f} st, tilt {tilt_up:+.1f} dB, "
                                  f"voiced speech {speech.mean():.0%}")
        # Normal speech of this step feeds the baseline; an excited stretch does not, unless it
        # lasts so long that it has become the speaker's normal.
        if not self._in_burst or self._burst_steps * self._step * _FRAME_S > o.max_burst_seconds:
            if not singing:
                new = slice(len(speech) - min(self._step, len(speech)), None)
                self._remember(st[new][speech[new]], tl[new][speech[new]])
        return fired

    def _music_at(self, t: float) -> float:
        """p of the latest music decision (one a second) at or before ``t``; 0 when it reported
        nothing (p under its report_min). The same in live chunks and VOD pieces: a decision at
        ``t`` needs frames to ``t`` only, which a window judged at ``t`` has already seen."""
        for tm, p in reversed(self._music):
            if tm <= t + 1e-6:
                return p if t - tm < 1.0 - 1e-6 else 0.0
        return 0.0

    def _remember(self, st: np.ndarray, tl: np.ndarray) -> None:
        cap = len(self._base)
        for s, t in zip(st, tl):  # at most `step` frames per decision
            self._base[self._base_n % cap] = (s, t)
            self._base_n += 1

    def _baseline(self) -> tuple[float, float] | None:
        if self._base_med[0] == self._base_n:  # nothing remembered since: same median
            return self._base_med[1]
        n = min(self._base_n, len(self._base))
        base = None
        if n * _FRAME_S >= max(self.opts.warmup_seconds, 1e-9):
            pitch_level = np.percentile(self._base[:n, 0], self.opts.baseline_percentile)
            base = float(pitch_level), float(np.median(self._base[:n, 1]))
        self._base_med = (self._base_n, base)
        return base
