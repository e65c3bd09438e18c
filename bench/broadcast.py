"""A labelled synthetic broadcast: calm speech with planted moments, and its ground truth.

Used by the detector tests, the end-to-end test, the latency bench and the demo. The audio is
mixed here with numpy from espeak-ng speech and synthetic crowd roars; ffmpeg draws the video
(lavfi ``testsrc2``: gentle motion, never a scene cut) and encodes both like a live encoder
would (x264 zerolatency, fixed GOP, AAC), so the file can be pushed over RTMP as is.

Everything is deterministic: the same arguments give the same media and the same truth.

    python -m bench.broadcast OUT.mp4 [--duration 75]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

SAMPLE_RATE = 22050  # espeak-ng's native rate; ffmpeg resamples to 48 kHz when encoding
SPEECH_DBFS = -26.0  # RMS of the calm speech while it is voiced: a normal broadcast level
ROAR_GAIN_DB = 15.0  # a crowd roar sits this far above the speech (the brief: about +15 dB)
ROAR_SECONDS = 2.5
KEYWORD_GAIN_DB = 2.0  # excited, but far below what the loudness detector calls loud
KEYWORD_GAP = 1.0  # seconds of silence around a spoken keyword so it is heard on its own
DEFAULT_KEYWORD = "Oh my god, no way!"  # tiny.en hears espeak-ng say this reliably

# Ordinary sentences with no hype phrase in them (nor anything ASR could turn into one).
CALM_SENTENCES = (
    "Welcome back to the stream, everyone.",
    "Today we are looking at the new map and the changes to the economy.",
    "The weather in the north has been mild for most of the week.",
    "I think the best approach here is to take it slowly.",
    "Remember to check the settings before you start a new round.",
    "The team has been practicing this strategy for a while now.",
    "We will take a short look at the chat in a minute.",
    "This part of the level is usually quiet, so we can talk for a bit.",
    "The next update should arrive at the end of the month.",
    "Thanks for the questions about the hardware, I will answer them later.",
    "The river runs along the eastern side of the valley.",
    "Most players prefer the second route because it is shorter.",
    "I usually drink tea in the afternoon while I read.",
    "The library opens at nine and closes at six in the evening.",
)


class Moment(msgspec.Struct, frozen=True):
    """A planted moment: ``t`` is when it starts (burst onset, or first spoken word)."""

    t: float
    kind: Literal["loud", "keyword"]
    text: str = ""  # the phrase spoken, for keyword moments


class Truth(msgspec.Struct):
    """What was planted in a generated broadcast (also written as ``<stem>.truth.json``)."""

    duration: float
    moments: list[Moment]


def default_moments(duration: float) -> list[Moment]:
    """Every 20 s from 20 s on, loud and keyword in turn, leaving 10 s of calm at the end.

    75 s gives loud at 20 s, keyword at 40 s, loud at 60 s. The 20 s spacing is more than
    fusion's 15 s cooldown, so each moment must come out as its own clip.
    """
    kinds: tuple[Literal["loud", "keyword"], ...] = ("loud", "keyword")
    out: list[Moment] = []
    t = 20.0
    while t <= duration - 10.0:
        kind = kinds[len(out) % 2]
        out.append(Moment(t=t, kind=kind, text=DEFAULT_KEYWORD if kind == "keyword" else ""))
        t += 20.0
    return out


def make_broadcast(
    path: Path,
    *,
    duration: float = 75.0,
    moments: list[Moment] | None = None,
    width: int = 320,
    height: int = 240,
    fps: int = 15,
    gop_seconds: float = 2.0,
    workdir: Path | None = None,
) -> Truth:
    """Write the MP4 at ``path`` and ``<stem>.truth.json`` beside it; return the truth.

    Keyword moments' ``t`` is adjusted to where the phrase's first sound actually lands, so
    the truth is exact even though the given time is only a request.
    """
    path = Path(path)
    moments = default_moments(duration) if moments is None else list(moments)
    for m in moments:
        if not 0.0 <= m.t < duration:
            raise ValueError(f"moment at {m.t}s is outside a {duration}s broadcast")
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="broadcast-")) if own_tmp else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        audio, truth = _mix_audio(duration, moments, work)
        wav = work / f"{path.stem}.mix.wav"
        _write_wav(wav, audio)
        _encode(path, wav, duration, width, height, fps, gop_seconds)
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    path.with_name(f"{path.stem}.truth.json").write_bytes(msgspec.json.format(msgspec.json.encode(truth)))
    return truth


def load_truth(mp4: Path) -> Truth:
    mp4 = Path(mp4)
    return msgspec.json.decode(mp4.with_name(f"{mp4.stem}.truth.json").read_bytes(), type=Truth)


# --- audio -----------------------------------------------------------------------------


def _mix_audio(duration: float, moments: list[Moment], work: Path) -> tuple[np.ndarray, Truth]:
    n = int(round(duration * SAMPLE_RATE))
    out = np.zeros(n, np.float32)
    speech_gain = _db(SPEECH_DBFS)
    placed: list[Moment] = []
    keep_clear: list[tuple[float, float]] = []  # spans where calm speech pauses for a keyword
    for i, m in enumerate(sorted(moments, key=lambda m: m.t)):
        if m.kind == "loud":
            start = int(m.t * SAMPLE_RATE)
            roar = _roar(min(ROAR_SECONDS, duration - m.t), seed=1000 + i) * speech_gain * _db(ROAR_GAIN_DB)
            out[start : start + len(roar)] += roar
            placed.append(m)
        elif m.kind == "keyword":
            text = m.text or DEFAULT_KEYWORD
            voice = _speak(text, work / f"kw{i}.wav", excited=True) * speech_gain * _db(KEYWORD_GAIN_DB)
            start = int(m.t * SAMPLE_RATE)
            voice = voice[: max(0, n - start)]
            out[start : start + len(voice)] += voice
            placed.append(Moment(t=round(start / SAMPLE_RATE, 3), kind="keyword", text=text))
            keep_clear.append((m.t - KEYWORD_GAP, m.t + len(voice) / SAMPLE_RATE + KEYWORD_GAP))
        else:
            raise ValueError(f"unknown moment kind {m.kind!r}")
    sentences = [_speak(s, work / f"calm{j}.wav") * speech_gain for j, s in enumerate(CALM_SENTENCES)]
    rng = np.random.default_rng(7)
    t, j = 1.0, 0
    while t < duration:
        clip = sentences[j % len(sentences)]
        end = t + len(clip) / SAMPLE_RATE
        blocked = next((b for a, b in keep_clear if t < b and end > a), None)
        if blocked is not None:
            t = blocked  # resume right after the keyword's quiet margin
            continue
        start = int(t * SAMPLE_RATE)
        part = clip[: max(0, n - start)]
        out[start : start + len(part)] += part
        j += 1
        t = end + float(rng.uniform(0.4, 1.1))  # natural pauses between sentences
    np.clip(out, -1.0, 1.0, out=out)
    return out, Truth(duration=duration, moments=placed)


def _speak(
    text: str,
    wav: Path,
    excited: bool = False,
    *,
    voice: str | None = None,
    pitch: int | None = None,
    speed: int | None = None,
) -> np.ndarray:
    """espeak-ng speech, trimmed of its leading/trailing silence, at unit voiced RMS.

    ``voice`` (e.g. ``"en-us+f3"``), ``pitch`` (0-99) and ``speed`` (words per minute)
    override espeak-ng's defaults (``excited`` is pitch 70, speed 190).
    """
    args = ["espeak-ng", "-w", str(wav)]
    if voice:
        args += ["-v", voice]
    if excited:
        args += ["-p", "70", "-s", "190"]
    if pitch is not None:
        args += ["-p", str(int(pitch))]
    if speed is not None:
        args += ["-s", str(int(speed))]
    subprocess.run([*args, text], check=True, capture_output=True)
    x = _read_wav(wav)
    voiced = np.flatnonzero(np.abs(x) > 0.01)
    x = x[voiced[0] : voiced[-1] + 1] if len(voiced) else x
    frames = x[: len(x) // 441 * 441].reshape(-1, 441)  # 20 ms frames
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    active = rms[rms > 0.1 * rms.max()] if len(rms) else rms
    level = float(np.sqrt((active**2).mean())) if len(active) else 1.0
    return (x / level).astype(np.float32)


def _roar(seconds: float, seed: int) -> np.ndarray:
    """Crowd-roar-like burst at unit RMS: band-limited noise, wobbling, with soft edges."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum *= ((freqs > 250) & (freqs < 3500)) / np.sqrt(np.maximum(freqs, 1.0) / 250)  # pinkish band
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / SAMPLE_RATE
    wobble = 1.0 + 0.25 * np.sin(2 * np.pi * 3.1 * t) * np.sin(2 * np.pi * 0.7 * t + 1.0)
    edge = np.minimum(1.0, np.minimum(t / 0.15, (seconds - t) / 0.4)).clip(0.0, 1.0)
    x = noise * wobble * edge
    body = x[int(0.15 * SAMPLE_RATE) : max(int(0.15 * SAMPLE_RATE) + 1, n - int(0.4 * SAMPLE_RATE))]
    return (x / np.sqrt((body**2).mean())).astype(np.float32)


def _db(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise RuntimeError(f"unexpected espeak-ng output format in {path}")
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:  # other espeak-ng builds/voices: linear resampling is plenty here
        m = int(len(x) * SAMPLE_RATE / rate)
        x = np.interp(np.arange(m) * rate / SAMPLE_RATE, np.arange(len(x)), x).astype(np.float32)
    return x


def _write_wav(path: Path, x: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((x * 32767.0).astype("<i2").tobytes())


# Public names for the other generators (bench.genres): the same helpers, no copies.
speak = _speak
roar = _roar
db = _db
read_wav = _read_wav
write_wav = _write_wav


# --- video and muxing ------------------------------------------------------------------


def _encode(path: Path, wav: Path, duration: float, width: int, height: int, fps: int, gop_seconds: float) -> None:
    gop = max(1, int(round(gop_seconds * fps)))
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "ffmpeg", "-y", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
        *live_encoder_args(wav, duration, gop, path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


def live_encoder_args(wav: Path, duration: float, gop: int, path: Path) -> list[str]:
    """ffmpeg arguments after the video input: the audio, and encoding like a live encoder
    (x264 zerolatency, a fixed GOP with no keyframes at scene cuts, AAC), into ``path``."""
    return [
        "-i", str(wav),
        "-t", f"{duration:.3f}",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-aac_coder", "fast", "-b:a", "96k", "-ar", "48000", "-ac", "1",
        "-movflags", "+faststart",
        str(path),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="MP4 to write (the truth goes to <stem>.truth.json)")
    p.add_argument("--duration", type=float, default=75.0, help="seconds (default 75)")
    a = p.parse_args(argv)
    truth = make_broadcast(a.out, duration=a.duration)
    for m in truth.moments:
        print(f"{m.t:7.2f}s  {m.kind}  {m.text}")
    print(f"wrote {a.out} ({truth.duration:.0f}s)")


if __name__ == "__main__":
    main()
