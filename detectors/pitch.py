"""Frame-level voice analysis shared by the arousal and music detectors: a fixed frame grid,
and per frame its level, pitch (F0) and spectral tilt, all from one FFT per frame batch.

Pitch: normalised autocorrelation of the Hann-windowed frame (the power spectrum's inverse
FFT, divided by the window's own autocorrelation so that long lags are not penalised), the
earliest strong peak in 70-500 Hz, refined by a parabola. Tilt: energy in 1-4 kHz over
100 Hz-1 kHz, in dB; a raised voice flattens it (more energy up high).

:class:`VoiceFrames` runs the grid and the analysis once for every detector that reads them
(a pipeline's arousal and music detectors take the same frames through ``push_frames``).

The grid is anchored on the first sample pushed and hops a whole number of samples that
divides a second, so live 100 ms chunks and VOD shards (starting on whole seconds) analyse
exactly the same frames.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

RATE = 16000
HOP = 320  # 20 ms: divides one second
FRAME = 640  # 40 ms: more than two periods of the lowest pitch (70 Hz)
NFFT = 1024  # >= FRAME + the longest lag: the circular autocorrelation does not wrap
F0_MIN, F0_MAX = 70.0, 500.0
VOICED_MIN = 0.5  # normalised autocorrelation peak a voiced frame reaches
_OCTAVE_SHARE = 0.85  # the earliest peak this close to the best is the period (no octave drops)

_WINDOW = np.hanning(FRAME)
_WINDOW_AC = np.fft.irfft(np.abs(np.fft.rfft(_WINDOW, NFFT)) ** 2)
_LAG_LO, _LAG_HI = int(RATE / F0_MAX), int(np.ceil(RATE / F0_MIN))
_FREQS = np.fft.rfftfreq(NFFT, 1.0 / RATE)
_LOW_BAND = (_FREQS >= 100) & (_FREQS < 1000)
_HIGH_BAND = (_FREQS >= 1000) & (_FREQS < 4000)


class FrameGrid:
    """Collects pushed audio into overlapping frames on a fixed grid (hop ``HOP``).

    A push whose ``t0`` does not continue the previous audio (a gap or a jump in stream time)
    restarts the grid there.
    """

    def __init__(self, hop: int = HOP, frame: int = FRAME) -> None:
        self.hop, self.frame = hop, frame
        self._buf = np.zeros(0, np.float32)
        self._t_buf = 0.0  # stream time of _buf[0]
        self._started = False

    def continues(self, t0: float) -> bool:
        """Whether audio starting at ``t0`` continues what was pushed before."""
        return self._started and abs(t0 - (self._t_buf + len(self._buf) / RATE)) <= self.hop / RATE

    def push(self, t0: float, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (start time of each new frame, frames as an [n, frame] array)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if not self.continues(t0):
            self._started, self._buf, self._t_buf = True, samples, t0
        else:
            self._buf = np.concatenate([self._buf, samples])
        n = (len(self._buf) - self.frame) // self.hop + 1 if len(self._buf) >= self.frame else 0
        if n <= 0:
            return np.zeros(0), np.zeros((0, self.frame), np.float32)
        idx = np.arange(n)[:, None] * self.hop + np.arange(self.frame)
        frames = self._buf[idx]
        times = self._t_buf + np.arange(n) * self.hop / RATE
        self._buf = self._buf[n * self.hop :]
        self._t_buf += n * self.hop / RATE
        return times, frames


class Frames(NamedTuple):
    """One push's analysed frames. ``restart``: the audio did not continue the previous push
    (or is the first), so a reader drops its frame context before taking these."""

    restart: bool
    times: np.ndarray  # start time of each frame
    level: np.ndarray  # dBFS
    st: np.ndarray  # pitch in semitones above 55 Hz, NaN when unvoiced
    tilt: np.ndarray  # dB
    power: np.ndarray  # [n, NFFT // 2 + 1] power spectrum


class VoiceFrames:
    """A frame grid and its analysis, computed once for every detector that reads them (the
    arousal and music detectors of one pipeline take the same :class:`Frames`)."""

    def __init__(self) -> None:
        self._grid = FrameGrid()

    def push(self, t0: float, samples: np.ndarray) -> Iterator[Frames]:
        """One :class:`Frames` per piece (see :func:`pieces`) that restarts the grid or completes
        frames, lazily: a huge VOD chunk is analysed one piece at a time."""
        for t, piece in pieces(t0, samples):
            restart = not self._grid.continues(t)
            times, frames = self._grid.push(t, piece)
            if len(times):
                level, f0, tilt, power = analyse(frames)
                yield Frames(restart, times, level, semitones(f0), tilt, power)
            elif restart:
                empty = np.zeros(0)
                yield Frames(True, empty, empty, empty, empty, np.zeros((0, NFFT // 2 + 1)))


def pieces(t0: float, samples: np.ndarray, seconds: float = 10.0):
    """``samples`` as (t, piece) of at most ``seconds``: bounds the memory a huge VOD chunk's
    frame matrix would take (the grid makes the result the same either way)."""
    samples = np.asarray(samples, np.float32).reshape(-1)
    n = int(seconds * RATE)
    for i in range(0, max(1, len(samples)), n):
        yield t0 + i / RATE, samples[i : i + n]


def analyse(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: (level dBFS, F0 in Hz or NaN when unvoiced, tilt dB, power spectrum)."""
    frames = np.asarray(frames, np.float64)
    level = 10.0 * np.log10((frames**2).mean(axis=1) + 1e-12)
    power = np.abs(np.fft.rfft(frames * _WINDOW, NFFT, axis=1)) ** 2
    ac = np.fft.irfft(power, NFFT, axis=1)[:, : _LAG_HI + 2] / _WINDOW_AC[: _LAG_HI + 2]
    r = ac / (ac[:, :1] + 1e-12)
    seg = r[:, _LAG_LO - 1 : _LAG_HI + 2]
    peak = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] > seg[:, 2:])
    val = np.where(peak, seg[:, 1:-1], -1.0)
    best = val.max(axis=1)
    first = np.argmax(val >= _OCTAVE_SHARE * best[:, None], axis=1)  # earliest near-best peak
    rows = np.arange(len(frames))
    a, b, c = seg[rows, first], seg[rows, first + 1], seg[rows, first + 2]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0).clip(-0.5, 0.5)
    lag = _LAG_LO + first + shift
    voiced = (best >= VOICED_MIN) & (level > -70.0)
    f0 = np.where(voiced, RATE / lag, np.nan)
    tilt = 10.0 * np.log10((power[:, _HIGH_BAND].sum(axis=1) + 1e-12) / (power[:, _LOW_BAND].sum(axis=1) + 1e-12))
    return level, f0, tilt, power


def semitones(f0: np.ndarray) -> np.ndarray:
    """Hz to semitones above 55 Hz (NaN stays NaN)."""
    return 12.0 * np.log2(f0 / 55.0)


def held_notes(st: np.ndarray, min_frames: int = 10, max_drift: float = 0.5) -> np.ndarray:
    """Frames inside a held note: a run of >= ``min_frames`` voiced frames (NaN = unvoiced)
    whose pitch, median-smoothed over 5 frames, stays within
    ``max_drift`` semitones of the run's median over every ``min_frames`` stretch."""
    n = len(st)
    if n < min_frames:
        return np.zeros(n, bool)
    # Median over 5 frames (100 ms): vibrato and a stray frame (another note of a chord, an
    # octave slip) do not break the note; an unvoiced frame (NaN) in the span still does.
    pad = np.concatenate([[np.nan, np.nan], st, [np.nan, np.nan]])
    five = np.lib.stride_tricks.sliding_window_view(pad, 5)
    smooth = np.sort(five, axis=1)[:, 2]  # the median of 5, as np.median gives it
    smooth[np.isnan(five).any(axis=1)] = np.nan  # ...which is NaN when any of them is
    # max and min over every min_frames stretch (NaN when any frame is unvoiced), a shift at a
    # time: on the few dozen frames of a live push this is cheaper than a sliding window view
    m = n - min_frames + 1
    hi, lo = smooth[:m].copy(), smooth[:m].copy()
    for j in range(1, min_frames):
        np.maximum(hi, smooth[j : j + m], out=hi)
        np.minimum(lo, smooth[j : j + m], out=lo)
    with np.errstate(invalid="ignore"):
        span = hi - lo
    steady = (span <= max_drift).astype(float)
    return np.convolve(steady, np.ones(min_frames))[:n] > 0.5  # every frame a steady stretch covers
