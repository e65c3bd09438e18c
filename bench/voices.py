"""Synthetic speech in several speaking styles (calm, excited, shouted) and sung lyrics.

espeak-ng does the talking; numpy shapes the style. Used by the labelled corpus (bench.corpus)
and the arousal/music detector tests. All audio is float32 mono at ``SAMPLE_RATE`` (22050 Hz,
espeak-ng's own rate) and at unit *active* RMS (the RMS of the frames that carry sound), so
two styles of the same sentence can be compared at equal loudness with :func:`at_dbfs`.

What makes each style (what a listener, and detectors/arousal.py, hears):

=========  ================================================================================
calm       the speaker's own pitch and speed, a little random variation
excited    pitch +15..25 (espeak units: F0 ~4-6 semitones up), +20..40 wpm, a wider range
shouted    pitch +25..40 (F0 ~7-10 semitones up), +25..45 wpm, the widest range, pauses cut
           to 60 ms, and a shouted timbre: a high shelf (+8..12 dB above ~1.5 kHz) and soft
           clipping flatten the spectral tilt (~+4-6 dB) the way a raised voice does
=========  ================================================================================

:func:`talk` strings calm sentences (bench.broadcast's) into a stretch of talk. :func:`sing`
holds each word on a note of a pentatonic scale, within an octave (stable pitch, vibrato):
a harmonic source at the note's F0 shaped by the spectral envelope of the word as espeak-ng
says it, after the word's own first consonant. A pitch tracker sees long flat voiced runs.

Deterministic: the same arguments and the same rng state give the same audio. espeak-ng
output is cached in memory per process (the corpus says the same things many times).
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import numpy as np

from bench.broadcast import CALM_SENTENCES, SAMPLE_RATE, read_wav

Style = Literal["calm", "excited", "shouted"]
STYLES: tuple[Style, ...] = ("calm", "excited", "shouted")

# espeak-ng voice variants that all speak English clearly: male and female, US and UK.
VOICES = (
    "en-us", "en-us+m3", "en-us+m7", "en-gb+m1", "en-gb-x-rp+m5", "en-029+m2",
    "en-us+f2", "en-us+f3", "en-us+f4", "en-gb+f2",
)  # fmt: skip

_FRAME = 441  # 20 ms at 22050 Hz: the frame of active_rms
_SCRATCH: dict[int, Path] = {}  # per process: a forked worker must not share its parent's files


def _scratch() -> Path:
    pid = os.getpid()
    if pid not in _SCRATCH:
        _SCRATCH[pid] = Path(tempfile.mkdtemp(prefix="livecut-voices-"))
        atexit.register(shutil.rmtree, _SCRATCH[pid], True)
    return _SCRATCH[pid]


@dataclass(frozen=True)
class Speaker:
    """One synthetic person: an espeak-ng voice, a base pitch (0-99) and speed (wpm)."""

    voice: str
    pitch: int
    speed: int


def speakers(rng: np.random.Generator, n: int) -> list[Speaker]:
    """``n`` varied speakers: voices cycled from a shuffled list, pitch 30-60, speed 150-185."""
    order = rng.permutation(len(VOICES))
    return [
        Speaker(VOICES[order[i % len(VOICES)]], int(rng.integers(30, 61)), int(rng.integers(150, 186)))
        for i in range(n)
    ]


def active_rms(x: np.ndarray, frame: int = _FRAME) -> float:
    """RMS over the 20 ms frames that carry sound (louder than 10% of the loudest frame's RMS):
    a level that does not depend on how much silence or pause surrounds the speech."""
    x = np.asarray(x, np.float64)
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    if not len(frames):
        return float(np.sqrt((x**2).mean())) if len(x) else 0.0
    rms = np.sqrt((frames**2).mean(axis=1))
    active = rms[rms > 0.1 * rms.max()]
    return float(np.sqrt((active**2).mean())) if len(active) else 0.0


def at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled so that its active RMS is ``dbfs`` dB full scale."""
    level = active_rms(x)
    return (np.asarray(x, np.float32) * (10.0 ** (dbfs / 20.0) / level if level > 0 else 1.0)).astype(np.float32)


def say(text: str, speaker: Speaker, style: Style, rng: np.random.Generator) -> np.ndarray:
    """``speaker`` saying ``text`` in ``style``, at unit active RMS (see the module doc)."""
    if style == "calm":
        pitch = speaker.pitch + int(rng.integers(-3, 4))
        speed = speaker.speed + int(rng.integers(-8, 9))
        x = _espeak(text, speaker.voice, pitch, speed, "medium")
    elif style == "excited":
        pitch = speaker.pitch + int(rng.integers(15, 26))
        speed = speaker.speed + int(rng.integers(20, 41))
        x = _espeak(text, speaker.voice, pitch, speed, "high")
    elif style == "shouted":
        pitch = speaker.pitch + int(rng.integers(25, 41))
        speed = speaker.speed + int(rng.integers(25, 46))
        x = _shout_timbre(_shorten_pauses(_espeak(text, speaker.voice, pitch, speed, "x-high")),
                          boost_db=float(rng.uniform(8.0, 12.0)), drive=float(rng.uniform(2.0, 3.5)))
    else:
        raise ValueError(f"unknown style {style!r}")
    return _unit(x)


def talk(speaker: Speaker, seconds: float, rng: np.random.Generator, style: Style = "calm",
         sentences: tuple[str, ...] = CALM_SENTENCES) -> np.ndarray:
    """``seconds`` of ``speaker`` talking in ``style``: sentences (from a random one on) with
    0.3-1.0 s pauses between them, at unit active RMS."""
    parts: list[np.ndarray] = []
    n, i = 0, int(rng.integers(0, len(sentences)))
    while n < seconds * SAMPLE_RATE:
        parts += [say(sentences[i % len(sentences)], speaker, style, rng),
                  np.zeros(int(rng.uniform(0.3, 1.0) * SAMPLE_RATE), np.float32)]
        n += len(parts[-2]) + len(parts[-1])
        i += 1
    return _unit(np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]) if parts else np.zeros(0, np.float32)


def sing(text: str, rng: np.random.Generator, *, tempo_bpm: float = 100.0, key_hz: float = 220.0,
         voice: str = "en-us") -> np.ndarray:
    """``text`` sung, one note per word, at unit active RMS (see the module doc).

    Each word is one or two beats of ``tempo_bpm`` (clamped to 0.25-0.6 s held), on a note of
    the major pentatonic scale of ``key_hz`` that moves by small steps, with ~5 Hz vibrato of
    about +-0.3 semitone and a short breath between notes. Keep ``key_hz`` within ~100-250 Hz
    so the top note stays under 500 Hz, the pitch trackers' ceiling (detectors.pitch).
    """
    scale = np.array([0, 2, 4, 7, 9, 12])  # one octave: stays inside a pitch tracker's range from a sane key
    step = 60.0 / tempo_bpm
    degree = int(rng.integers(0, 4))
    parts: list[np.ndarray] = []
    for word in text.split():
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(scale) - 1))
        f0 = key_hz * 2.0 ** (scale[degree] / 12.0)
        hold = float(np.clip(step * (1 + (rng.random() < 0.3)), 0.25, 0.6))
        spoken = _espeak(word, voice, 40, 110, "x-low")
        parts.append(_sung_note(spoken, f0, hold, float(rng.uniform(4.5, 6.0)), float(rng.uniform(0, 2 * np.pi))))
        parts.append(np.zeros(int(rng.uniform(0.03, 0.08) * SAMPLE_RATE), np.float32))
    return _unit(np.concatenate(parts) if parts else np.zeros(0, np.float32))


# --- helpers ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _espeak_cached(text: str, voice: str, pitch: int, speed: int, pitch_range: str) -> np.ndarray:
    wav = _scratch() / f"say-{threading.get_ident()}.wav"  # one file per thread: the corpus may speak in threads
    ssml = f'<speak><prosody range="{pitch_range}">{escape(text)}</prosody></speak>'
    cmd = ["espeak-ng", "-m", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), ssml]
    subprocess.run(cmd, check=True, capture_output=True)
    x = read_wav(wav)
    sound = np.flatnonzero(np.abs(x) > 0.01)
    x = x[sound[0] : sound[-1] + 1] if len(sound) else x
    x.setflags(write=False)
    return x


def _espeak(text: str, voice: str, pitch: int, speed: int, pitch_range: str) -> np.ndarray:
    return _espeak_cached(text, voice, int(np.clip(pitch, 0, 99)), int(np.clip(speed, 80, 450)), pitch_range).copy()


def _unit(x: np.ndarray) -> np.ndarray:
    level = active_rms(x)
    return (x / level if level > 0 else x).astype(np.float32)


def _shorten_pauses(x: np.ndarray, keep: float = 0.06) -> np.ndarray:
    """Cut every pause (a run of quiet 20 ms frames) down to ``keep`` seconds: shouting is rushed."""
    n = len(x) // _FRAME
    if n < 3:
        return x
    rms = np.sqrt((x[: n * _FRAME].astype(np.float64).reshape(n, _FRAME) ** 2).mean(axis=1))
    quiet = rms < 0.03 * rms.max()
    keep_frames = max(1, int(round(keep * SAMPLE_RATE / _FRAME)))
    mask = np.ones(n, bool)
    run = 0
    for i in range(n):  # a few hundred frames per sentence: a plain loop is fine
        run = run + 1 if quiet[i] else 0
        mask[i] = run <= keep_frames
    return np.concatenate([x[: n * _FRAME].reshape(n, _FRAME)[mask].reshape(-1), x[n * _FRAME :]])


def _shout_timbre(x: np.ndarray, boost_db: float, drive: float) -> np.ndarray:
    """Flatter spectral tilt: a smooth high shelf (+``boost_db`` above ~1.5 kHz), then soft
    clipping (tanh), which adds upper harmonics like a strained, raised voice."""
    n = len(x)
    spec = np.fft.rfft(x.astype(np.float64))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    shelf_db = boost_db / (1.0 + np.exp(-(f - 1500.0) / 300.0))
    y = np.fft.irfft(spec * 10.0 ** (shelf_db / 20.0), n)
    y /= np.abs(y).max() + 1e-9
    return (np.tanh(drive * y) / np.tanh(drive)).astype(np.float32)


def _envelope(x: np.ndarray, nfft: int = 1024, lifter: int = 30) -> np.ndarray:
    """Smooth magnitude spectral envelope of a word (cepstral liftering of the mean log spectrum
    of its loud frames): its formants, without its pitch harmonics."""
    hop = nfft // 2
    if len(x) < nfft:
        x = np.pad(x, (0, nfft - len(x)))
    idx = np.arange(0, len(x) - nfft + 1, hop)[:, None] + np.arange(nfft)
    frames = x[idx] * np.hanning(nfft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    loud = power.sum(axis=1) >= 0.25 * power.sum(axis=1).max()
    logmag = 0.5 * np.log(power[loud].mean(axis=0) + 1e-10)
    cep = np.fft.irfft(logmag)
    cep[lifter:-lifter] = 0.0
    return np.exp(np.fft.rfft(cep).real)


def _sung_note(spoken: np.ndarray, f0: float, hold: float, vib_hz: float, vib_phase: float) -> np.ndarray:
    """The word's first consonant (its first ~60 ms as spoken), then a vowel held ``hold``
    seconds on ``f0`` with vibrato, coloured by the word's spectral envelope."""
    env = _envelope(spoken)
    freqs = np.fft.rfftfreq(2 * (len(env) - 1), 1.0 / SAMPLE_RATE)
    n = int(hold * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f_inst = f0 * 2.0 ** (0.3 * np.sin(2 * np.pi * vib_hz * t + vib_phase) / 12.0)
    phase = 2 * np.pi * np.cumsum(f_inst) / SAMPLE_RATE
    vowel = np.zeros(n)
    for h in range(1, int(5000 / f0) + 1):
        vowel += np.interp(h * f0, freqs, env) / h**0.5 * np.sin(h * phase)
    attack = np.minimum(1.0, t / 0.03) * np.minimum(1.0, (hold - t) / 0.06).clip(0.0, 1.0)
    vowel *= attack / (np.sqrt((vowel**2).mean()) + 1e-9)
    head = spoken[: int(0.06 * SAMPLE_RATE)].astype(np.float64)
    head = head / (active_rms(head) + 1e-9) * 0.5 * np.linspace(1.0, 0.3, len(head))
    return np.concatenate([head, vowel]).astype(np.float32)


def to_16k(x: np.ndarray) -> np.ndarray:
    """22050 Hz audio resampled to the detectors' 16 kHz (polyphase, 320/441)."""
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(x, np.float64), 320, 441).astype(np.float32)
