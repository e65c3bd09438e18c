"""Crowd noise (cheers, roars) and laughter, from spectral features.

Rules over a few cheap features, not a trained classifier; what each rule captures:

* ``"crowd"``: many voices (plus clapping and room noise) blur into a noise-like spectrum,
  so inside the speech band (300-3400 Hz) the spectral flatness is high, where one talker's
  voiced speech or music is harmonic (flatness near 0). A crowd moment is also louder than the
  channel's usual level (a rolling baseline, as :mod:`detectors.loudness`), not narrow-band
  (spectral bandwidth: no hum, bass or thump), and lasts: ``min_crowd_seconds`` of hops in a
  row, so a clap, a door slam or a fricative never counts. It does *not* tell a cheer from
  booing, applause, a loud fan, rain or a noisy game explosion that lasts a second: all are
  broadband swells above the usual level (plain pink noise passes too). A crowd no louder
  than the talk (background murmur) does not count.
* ``"laughter"``: a laugh is a train of voiced bursts ("ha-ha-ha") at 3-6 per second. The
  level envelope is deeply modulated (``min_depth_db``) and periodic: its autocorrelation,
  once the slow trend is removed, peaks at a 3-6 Hz lag (``min_periodicity``), and the onset
  strength (spectral flux) repeats at the same lag. The loud frames are harmonic
  (low flatness: voiced, not claps or hi-hats). Speech has the same syllable rate but not the
  regularity, and music with a beat keeps its chords sounding between beats (shallow
  envelope). It misses breathy or silent laughs and a big audience laughing all at once
  (that is noise-like: it may come out as ``"crowd"``), and a staccato instrument repeating a
  voiced note at 3-6 Hz would pass.

Features are computed on a fixed grid (512-point FFT every 250 samples of 16 kHz audio, decided
every ``hop`` = 0.25 s), so live chunking and batch give the same signals. They are librosa's
(``stft``, ``feature.rms``, ``spectral_flatness``, ``spectral_bandwidth``, ``amplitude_to_db``,
``onset.onset_strength``), written out in numpy (:func:`frame_features`): importing librosa
(numba, llvmlite, scipy) costs a stream actor about 190 MiB, for five formulas.
``tests/test_crowd.py`` checks them against librosa.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Annotated

import msgspec
import numpy as np

from records.wire import Signal

RATE = 16000
N_FFT = 512  # 32 ms analysis frames...
FRAME_HOP = 250  # ...every 15.6 ms (64 per second: a 3-6 Hz lag is 11-21 frames)
FPS = RATE / FRAME_HOP
_BAND = (300.0, 3400.0)  # where voices (and crowds) are; flatness is measured here
_FREQS = np.fft.rfftfreq(N_FFT, 1.0 / RATE)
_IN_BAND = (_FREQS >= _BAND[0]) & (_FREQS <= _BAND[1])
_WINDOW = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def magnitudes(y: np.ndarray) -> np.ndarray:
    """|STFT| of ``y`` (no centering: frames start at 0, FRAME_HOP apart), bins × frames."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(y, np.float32), N_FFT)[::FRAME_HOP]
    return np.abs(np.fft.rfft(frames * _WINDOW, axis=1)).astype(np.float32).T


def frame_features(S: np.ndarray, prev_db: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Per frame of a magnitude spectrogram: level (dBFS), in-band flatness, bandwidth (Hz),
    onset strength (against ``prev_db``, the dB spectrum of the frame before, or the first
    frame itself), and the last frame's dB spectrum (the next call's ``prev_db``)."""
    power = S.astype(np.float64) ** 2
    edges = power.copy()
    edges[0] *= 0.5  # the DC and Nyquist bins count once (librosa.feature.rms)
    edges[-1] *= 0.5
    level = 20.0 * np.log10(np.sqrt(2.0 * edges.sum(axis=0) / N_FFT**2) + 1e-9)
    band = np.maximum(1e-10, power[_IN_BAND])
    flat = np.exp(np.log(band).mean(axis=0)) / band.mean(axis=0)
    total = S.sum(axis=0)
    share = np.where(total >= np.finfo(S.dtype).tiny, S / np.where(total > 0, total, 1.0), S)
    centroid = (_FREQS[:, None] * share).sum(axis=0)
    bandwidth = np.sqrt((share * (_FREQS[:, None] - centroid) ** 2).sum(axis=0))
    db = 10.0 * np.log10(np.maximum(1e-10, power))
    before = np.concatenate([db[:, :1] if prev_db is None else prev_db, db[:, :-1]], axis=1)
    onset = np.maximum(0.0, db - before).mean(axis=0)
    return level, flat, bandwidth, onset, db[:, -1:]


class CrowdOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`CrowdDetector`; defaults suit speech-led streams."""

    hop: Annotated[float, msgspec.Meta(ge=0.05, le=1.0)] = 0.25  # seconds between decisions; also the time resolution of t
    baseline_seconds: Annotated[float, msgspec.Meta(ge=1.0, le=600.0)] = 30.0  # how much recent history defines the usual level
    baseline_percentile: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 90.0  # a high percentile: loud speech counts as usual
    warmup_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 5.0  # non-silent audio needed before anything fires
    silence_db: Annotated[float, msgspec.Meta(ge=-120.0, le=0.0)] = -50.0  # frames quieter than this (dBFS) are silence: no features
    floor_db: Annotated[float, msgspec.Meta(ge=-120.0, le=0.0)] = -35.0  # the baseline never goes below this (dBFS)
    # crowd
    crowd_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 3.0  # a crowd hop is at least this much above the baseline...
    clear_crowd_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 6.0  # ...and this much above is a clear crowd: value 1.0
    min_flatness: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.1  # median in-band spectral flatness of a noise-like hop
    min_bandwidth: Annotated[float, msgspec.Meta(ge=0.0, le=8000.0)] = 700.0  # Hz, median spectral bandwidth: not a hum, bass or thump
    min_crowd_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 1.0  # crowd hops in a row before it counts
    # laughter
    laugh_window: Annotated[float, msgspec.Meta(ge=0.25, le=5.0)] = 1.25  # seconds of envelope whose periodicity is measured
    min_rate: Annotated[float, msgspec.Meta(gt=0.0, le=20.0)] = 3.0  # Hz: the slowest and...
    max_rate: Annotated[float, msgspec.Meta(gt=0.0, le=20.0)] = 6.0  # ...fastest burst rate of a laugh
    min_periodicity: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)] = 0.62  # autocorrelation of the detrended dB envelope at that lag
    clear_periodicity: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)] = 0.75  # ...this much is a clear laugh: value 1.0
    min_onset_periodicity: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)] = 0.3  # autocorrelation of the onset strength at that lag
    min_depth_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 12.0  # level swing between bursts and gaps (90th - 10th percentile)
    max_voiced_flatness: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.1  # the loud frames are harmonic (voiced), not noise-like
    laugh_below_db: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 12.0  # a laugh may be this much quieter than the baseline
    min_laugh_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 0.5  # periodic windows in a row before it counts
    release_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 1.0  # a crowd or laugh is over after this long without it
    max_crowd_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 10.0  # a longer crowd starts to become the usual level


class CrowdDetector:
    """Feed 16 kHz float32 mono with :meth:`push`; get ``Signal("crowd")`` and
    ``Signal("laughter")``, one per event.

    crowd: ``t`` = start of the first crowd hop; ``value`` = mean excess dB over the baseline
    / ``clear_crowd_db`` (>= crowd_db / clear_crowd_db = 0.5 when it fires).
    laughter: ``t`` = start of the first periodic window (within about 0.25 s of the laugh's
    start); ``value`` = mean envelope periodicity / ``clear_periodicity`` (>= 0.83 when it
    fires, about 1.0 for a clear "ha-ha-ha", at most 1.33).
    """

    def __init__(self, opts: CrowdOptions | None = None) -> None:
        self.opts = opts = opts or CrowdOptions()
        self._frames_per_hop = max(1, int(round(opts.hop * FPS)))
        self._hop_n = self._frames_per_hop * FRAME_HOP
        self._hop_s = self._hop_n / RATE  # opts.hop on the frame grid
        self._lags = np.arange(int(FPS / opts.max_rate), int(math.ceil(FPS / opts.min_rate)) + 1)
        self._detrend = max(1, int(round(FPS / opts.min_rate)))
        self._pending = np.zeros(0, np.float32)
        self._t_pending = 0.0
        self._started = False
        self._reset_grid()
        window = max(int(round(opts.laugh_window * FPS)), 2 * self._lags[-1] + 1)
        self._level: deque[float] = deque(maxlen=window)  # per frame, dBFS
        self._flat: deque[float] = deque(maxlen=window)
        self._onset: deque[float] = deque(maxlen=window)
        self._history: deque[float] = deque(maxlen=max(1, int(round(opts.baseline_seconds / self._hop_s))))
        self._crowd = _Event("crowd", self._hop_s, opts.release_seconds)
        self._crowd_hops = max(1, int(round(opts.min_crowd_seconds / self._hop_s)))
        self._run_power: deque[float] = deque(maxlen=self._crowd_hops)  # latest crowd-like hops' powers
        self._laugh = _Event("laughter", self._hop_s, opts.release_seconds)

    def _reset_grid(self) -> None:
        self._tail = np.zeros(N_FFT - FRAME_HOP, np.float32)  # frames overlap the previous hop
        self._prev_db: np.ndarray | None = None  # last frame's dB spectrum (for onset strength)

    def push(self, t0: float, samples: np.ndarray) -> list[Signal]:
        samples = np.asarray(samples, np.float32).reshape(-1)
        expected = self._t_pending + len(self._pending) / RATE
        if not self._started or abs(t0 - expected) > self.opts.hop:
            # First audio, or a gap/jump in stream time: restart the grid (keep the baseline).
            self._started = True
            self._pending, self._t_pending = samples, t0
            self._reset_grid()
            for frames in (self._level, self._flat, self._onset):
                frames.clear()
            self._crowd.run = self._laugh.run = 0
            self._run_power.clear()
        else:
            self._pending = np.concatenate([self._pending, samples])
        out: list[Signal] = []
        n = self._hop_n
        full = len(self._pending) // n
        for i in range(full):
            out += self._step(self._t_pending + i * n / RATE, self._pending[i * n : (i + 1) * n])
        if full:
            self._pending = self._pending[full * n :]
            self._t_pending += full * n / RATE
        return out

    # --- features ---------------------------------------------------------------------

    def _features(self, hop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per frame of this hop: level (dBFS), in-band flatness, bandwidth (Hz), onset strength."""
        y = np.concatenate([self._tail, hop])
        self._tail = y[-(N_FFT - FRAME_HOP) :]
        level, flat, bandwidth, onset, self._prev_db = frame_features(magnitudes(y), self._prev_db)
        return level, flat, bandwidth, onset

    def _step(self, t: float, hop: np.ndarray) -> list[Signal]:
        o = self.opts
        level, flat, bandwidth, onset = self._features(hop)
        self._level.extend(level.tolist())
        self._flat.extend(flat.tolist())
        self._onset.extend(onset.tolist())
        hop_db = 10.0 * math.log10(float(np.mean(10.0 ** (level / 10.0))) + 1e-12)
        baseline = self._baseline()
        out: list[Signal] = []
        crowdlike = False
        if baseline is not None:
            # Spectrally crowd-like hops in a row, whose level over the last second (a crowd's
            # level wobbles hop to hop) is above the baseline.
            crowdlike = self._crowd_hop(level, flat, bandwidth) and hop_db > baseline
            if crowdlike:
                self._run_power.append(10.0 ** (hop_db / 10.0))
            else:
                self._run_power.clear()
            run_db = 10.0 * math.log10(sum(self._run_power) / len(self._run_power)) if crowdlike else -math.inf
            crowd = run_db >= baseline + o.crowd_db
            sig = self._crowd.step(t, crowd, (run_db - baseline) / o.clear_crowd_db if crowd else 0.0,
                                   o.min_crowd_seconds, f"{run_db:.1f} dBFS vs baseline {baseline:.1f}")
            if sig is not None:
                out.append(sig)
            laugh = self._laugh_stats(baseline)
            sig = self._laugh.step(t + self._hop_s - len(self._level) / FPS, laugh is not None,
                                   (laugh or 0.0) / o.clear_periodicity, o.min_laugh_seconds,
                                   f"periodicity {laugh or 0.0:.2f}")
            if sig is not None:
                out.append(sig)
        # A crowd is not the usual level, unless it goes on so long that it has become it.
        usual = hop_db > o.silence_db and not crowdlike and not self._crowd.active
        usual = usual or (self._crowd.active and self._crowd.age * self._hop_s > o.max_crowd_seconds)
        self._history.append(hop_db if usual else math.nan)
        return out

    def _baseline(self) -> float | None:
        o = self.opts
        h = np.fromiter(self._history, float, len(self._history))
        h = h[~np.isnan(h)]
        if not len(h) or len(h) * self._hop_s < o.warmup_seconds:
            return None
        return max(float(np.percentile(h, o.baseline_percentile)), o.floor_db)

    def _crowd_hop(self, level, flat, bandwidth) -> bool:
        """Noise-like and not narrow: many voices (or claps), not one voice or music."""
        o = self.opts
        active = level > o.silence_db
        if active.mean() < 0.75:
            return False
        noisy = float(np.median(flat[active])) >= o.min_flatness
        return noisy and float(np.median(bandwidth[active])) >= o.min_bandwidth

    def _laugh_stats(self, baseline: float) -> float | None:
        """The window's envelope periodicity if it looks like laughter, else None."""
        o = self.opts
        if len(self._level) < self._level.maxlen:
            return None
        level = np.fromiter(self._level, float, len(self._level))
        top = float(np.percentile(level, 90))
        if top < max(o.silence_db, baseline - o.laugh_below_db):
            return None
        level = np.maximum(level, top - 40.0)
        if top - float(np.percentile(level, 10)) < o.min_depth_db:
            return None  # no gaps between bursts: a held note, a roar, continuous speech
        flat = np.fromiter(self._flat, float, len(self._flat))
        if float(np.median(flat[level >= np.percentile(level, 60)])) > o.max_voiced_flatness:
            return None  # the bursts are noise: claps, hi-hats, a crowd
        # Periodicity of the dB envelope (gaps floored at 30 dB down), its trend (a step, a
        # swell) removed with a moving mean one slowest period long.
        env = np.maximum(level, top - 30.0)
        k = self._detrend
        trend = np.convolve(env, np.ones(k) / k, mode="valid")
        periodicity, lag = _periodicity(env[k // 2 : k // 2 + len(trend)] - trend, self._lags)
        if periodicity < o.min_periodicity:
            return None
        onset = np.convolve(np.fromiter(self._onset, float, len(self._onset)), np.ones(3) / 3, mode="same")
        if _autocorr(onset, lag) < o.min_onset_periodicity:
            return None  # the bursts do not start alike
        return periodicity


class _Event:
    """Run-length rule shared by both signals: fire once a condition held long enough, then
    stay quiet until it has been gone for ``release_seconds``."""

    def __init__(self, name: str, hop: float, release_seconds: float) -> None:
        self.name, self.hop, self.release_seconds = name, hop, release_seconds
        self.run = 0  # hops in a row the condition held
        self.active = False
        self.age = 0  # hops since it fired, while active
        self._quiet = 0
        self._start = 0.0
        self._values: list[float] = []

    def step(self, t: float, on: bool, value: float, min_seconds: float, detail: str) -> Signal | None:
        hop = self.hop
        self.age += 1
        if not on:
            self.run, self._values = 0, []
            self._quiet += 1
            if self.active and self._quiet * hop >= self.release_seconds - 1e-9:
                self.active = False
            return None
        self._quiet = 0
        if self.active:
            return None  # the same event going on
        if self.run == 0:
            self._start = t
        self.run += 1
        self._values.append(value)
        if self.run * hop < min_seconds - 1e-9:
            return None
        self.active, self.age = True, 0
        value = sum(self._values) / len(self._values)
        return Signal(self.name, t=round(float(self._start), 3), value=round(float(value), 3), detail=detail)


def _autocorr(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    denom = float(np.dot(x, x))
    return float(np.dot(x[:-lag], x[lag:])) / denom if denom > 0 else 0.0


def _periodicity(x: np.ndarray, lags: np.ndarray) -> tuple[float, int]:
    """Highest normalised autocorrelation over ``lags``, and its lag."""
    best, best_lag = -1.0, int(lags[0])
    for lag in lags:
        if lag < len(x):
            r = _autocorr(x, int(lag))
            if r > best:
                best, best_lag = r, int(lag)
    return best, best_lag
