"""Small helpers for the detector tests: real generated media, decoded the way the actor does.

Imported by the test modules as ``media`` (pytest puts ``tests/`` on ``sys.path``).
Expensive things (the 75 s broadcast, the whisper model) are made once per test run.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

RATE = 16000

_TMP = Path(tempfile.mkdtemp(prefix="livecut-media-"))
atexit.register(shutil.rmtree, _TMP, True)


def decode_audio(path: Path, rate: int = RATE) -> np.ndarray:
    """All of a file's audio as float32 mono at ``rate`` (PyAV, like the stream actor)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    return np.concatenate(parts).astype(np.float32)


@functools.cache
def broadcast() -> tuple[Path, object, np.ndarray]:
    """The default 75 s labelled broadcast: (mp4 path, Truth, its 16 kHz mono audio)."""
    from bench.broadcast import make_broadcast

    path = _TMP / "broadcast.mp4"
    truth = make_broadcast(path)
    return path, truth, decode_audio(path)


@functools.cache
def speech_only() -> np.ndarray:
    """40 s of the broadcast's calm speech with nothing planted, 16 kHz mono."""
    from bench.broadcast import make_broadcast

    path = _TMP / "speech_only.mp4"
    make_broadcast(path, duration=40.0, moments=[])
    return decode_audio(path)


@functools.cache
def whisper_model():
    from detectors.speech import SpeechOptions, load_whisper_model

    return load_whisper_model(SpeechOptions())


def speak(text: str, rate: int = RATE) -> np.ndarray:
    """espeak-ng saying ``text``, as float32 mono at ``rate`` (ffmpeg resamples)."""
    wav = _TMP / f"speak-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
        check=True,
        capture_output=True,
    )
    return np.frombuffer(out.stdout, np.float32).copy()


def feed(detector, samples: np.ndarray, chunk: float, t0: float = 0.0, rate: int = RATE) -> list:
    """Push ``samples`` through ``detector.push(t, chunk)`` in ``chunk``-second pieces."""
    step = max(1, int(round(chunk * rate)))
    out: list = []
    for i in range(0, len(samples), step):
        out += detector.push(t0 + i / rate, samples[i : i + step])
    return out



def keyframes(path: Path, width: int = 64, height: int = 36) -> list[tuple[float, np.ndarray]]:
    """(stream time, small gray frame) for each keyframe, decoded like the actor does."""
    out: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(stream):
            small = frame.reformat(width=width, height=height, format="gray")
            out.append((float(frame.time), small.to_ndarray().copy()))
    return out


__all__ = ["RATE", "broadcast", "decode_audio", "feed", "keyframes", "speak", "speech_only", "whisper_model"]


def timed_words(sentences, start: float = 0.0, *, gap: float, word: float = 0.3) -> list:
    """Words of ``sentences`` in stream time, like whisper gives them (punctuation attached):
    ``word`` seconds each, ``gap`` seconds of pause after each sentence."""
    from records.wire import Word

    out: list = []
    t = start
    for sentence in sentences:
        for w in sentence.split():
            out.append(Word(round(t, 3), round(t + word - 0.05, 3), w))
            t += word
        t += gap
    return out
