"""Crowd and laughter from spectral features, on generated audio: the broadcast's roars,
crowds of espeak-ng voices, espeak-ng and synthetic laughs; and speech, music with a beat,
a clap and a door slam, which must stay quiet."""
import functools
import io
import subprocess
import wave

import msgspec
import numpy as np
import pytest
from scipy.signal import lfilter, resample_poly

import media
from detectors.crowd import FRAME_HOP, N_FFT, RATE as CROWD_RATE, CrowdDetector, CrowdOptions, frame_features, magnitudes

RATE = media.RATE
SPEECH = 10 ** (-26 / 20)  # the broadcast's speech level (RMS while voiced)
AT = 20.0  # where the test sounds go into the 40 s of calm speech


def db(x: float) -> float:
    return 10 ** (x / 20)


@functools.cache
def voice(text: str, variant: str = "en", pitch: int = 50, speed: int = 175) -> np.ndarray:
    """espeak-ng saying ``text``, trimmed, at unit RMS, 16 kHz."""
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", variant, "-p", str(pitch), "-s", str(speed), text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    x = resample_poly(x, RATE, rate)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0] : loud[-1] + 1]
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def crowd(seconds: float, seed: int, voices: int = 60) -> np.ndarray:
    """A cheering crowd: many espeak-ng voices shouting at random offsets, pitches and speeds,
    over pink noise (the room, clapping), fading in and out."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    shouts = [voice(text, variant, int(rng.integers(30, 99)), int(rng.integers(130, 260)))
              for text in ("yeah!", "woo!", "whoo hoo", "yes!", "go go", "yeah")
              for variant in ("en+m3", "en+f2")]
    out = np.zeros(n, np.float32)
    for _ in range(voices):
        clip = shouts[rng.integers(len(shouts))]
        clip = resample_poly(clip, 100, int(100 * rng.uniform(0.85, 1.2)))  # pitch and speed together
        start = int(rng.uniform(-0.3, seconds - 0.2) * RATE)
        a, b = max(0, start), min(n, start + len(clip))
        if b > a:
            out[a:b] += clip[a - start : b - start] * rng.uniform(0.3, 1.0)
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / RATE), 100))
    out = unit(out) + 0.5 * unit(np.fft.irfft(spectrum, n))
    t = np.arange(n) / RATE
    return unit(out * np.clip(np.minimum(t / 0.3, (seconds - t) / 0.5), 0, 1))


def espeak_laughs() -> tuple[np.ndarray, list[float]]:
    """Four bouts of "ha ha ha" by different voices at 4-5.5 per second; and their starts."""
    parts, starts, t = [], [], 0.0
    for variant, pitch, speed, n in [("en+m3", 60, 150, 9), ("en+f2", 85, 175, 10), ("en+m1", 35, 190, 8),
                                     ("en+f4", 70, 160, 9)]:
        bout = voice(" ".join(["ha"] * n), variant, pitch, speed)
        parts += [bout, np.zeros(int(0.6 * RATE), np.float32)]
        starts.append(t)
        t += (len(bout) + int(0.6 * RATE)) / RATE
    return np.concatenate(parts), starts


def synth_laugh(seconds: float, rate_hz: float, f0: tuple[float, float], seed: int) -> np.ndarray:
    """Voiced bursts at ``rate_hz``: a glottal pulse train (falling pitch) through /a/-like
    formants, each burst with a breathy "h" onset, fading over the bout."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    phase = np.cumsum(np.linspace(f0[0], f0[1], n) / RATE)
    source = (np.diff(np.floor(phase), prepend=0) > 0) + 0.05 * rng.standard_normal(n)
    vowel = sum(g * _resonator(source, f, bw) for f, bw, g in [(800, 90, 1.0), (1250, 110, 0.6), (2600, 160, 0.3)])
    cycle = (t * rate_hz) % 1.0
    burst = np.sin(np.pi * np.clip(cycle / 0.55, 0, 1)) ** 0.7
    breath = 0.15 * rng.standard_normal(n) * np.where(cycle < 0.1, 1.0, 0.1)
    x = (vowel / np.std(vowel) * burst + breath) * np.clip(np.minimum(t / 0.1, (seconds - t) / 0.3), 0, 1)
    return unit(x * np.linspace(1.0, 0.6, n))


def _resonator(x: np.ndarray, f: float, bw: float) -> np.ndarray:
    r = np.exp(-np.pi * bw / RATE)
    return lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / RATE), r * r], x)


def music(seconds: float, seed: int, hats: bool = True) -> np.ndarray:
    """Chords (six harmonics a note, I-V-vi-IV, one a second) over a bass note, a kick drum on
    every beat (120 bpm) and, with ``hats``, a hi-hat on every eighth (4 per second)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    chords = [(261.6, 329.6, 392.0), (196.0, 246.9, 293.7), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6)]
    x = np.zeros(n)
    for i in range(int(np.ceil(seconds))):
        a, b = i * RATE, min(n, (i + 1) * RATE)
        tt = t[a:b] - t[a]
        for f in chords[i % 4]:
            for h in range(1, 7):
                x[a:b] += np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 6.3)) / h**1.3 * np.exp(-0.8 * tt)
        x[a:b] += 0.5 * np.sin(2 * np.pi * chords[i % 4][0] / 2 * tt)
    hiss = np.diff(rng.standard_normal(n), prepend=0.0)
    for beat in np.arange(0, seconds, 0.25):
        a = int(beat * RATE)
        if beat % 0.5 == 0:
            tt = np.arange(min(n - a, int(0.15 * RATE))) / RATE
            x[a : a + len(tt)] += 3 * np.sin(2 * np.pi * (50 + 80 * np.exp(-30 * tt)) * tt) * np.exp(-25 * tt)
        elif hats:
            tt = np.arange(min(n - a, int(0.04 * RATE))) / RATE
            x[a : a + len(tt)] += 0.6 * hiss[a : a + len(tt)] * np.exp(-120 * tt)
    return unit(x)


def bang(seconds: float, decay: float, thump_hz: float, seed: int) -> np.ndarray:
    """A clap (noise, fast decay) or a door slam (a low thump under the noise)."""
    rng = np.random.default_rng(seed)
    tt = np.arange(int(seconds * RATE)) / RATE
    x = rng.standard_normal(len(tt)) * np.exp(-decay * tt)
    if thump_hz:
        x += 2 * np.sin(2 * np.pi * thump_hz * tt) * np.exp(-12 * tt)
    return x.astype(np.float32)


def insert(sound: np.ndarray, at: float = AT) -> np.ndarray:
    """The calm speech with ``sound`` in a gap opened at ``at`` (the talker pauses for it)."""
    speech = media.speech_only()
    a = int(at * RATE)
    return np.concatenate([speech[:a], sound.astype(np.float32), speech[a:]])


def overlay(sound: np.ndarray, at: float = AT, base: np.ndarray | None = None) -> np.ndarray:
    """``sound`` added on top of the calm speech (or ``base``) from ``at``."""
    out = (media.speech_only() if base is None else base).copy()
    a = int(at * RATE)
    out[a : a + len(sound)] += sound[: len(out) - a]
    return out


def detect(samples: np.ndarray, chunk: float = 0.1, t0: float = 0.0, opts: CrowdOptions | None = None):
    return media.feed(CrowdDetector(opts), samples, chunk, t0=t0)


def test_the_features_are_librosas(espeak, ffmpeg):
    """The numpy features (stream actors do not import librosa: ~190 MiB) are librosa's:
    STFT, RMS level, in-band flatness, bandwidth, onset strength, on speech, a roar and silence."""
    import librosa

    _, _, audio = media.broadcast()
    y = np.concatenate([audio[: 4 * CROWD_RATE], np.zeros(CROWD_RATE, np.float32)])
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=FRAME_HOP, center=False, window="hann"))
    np.testing.assert_allclose(magnitudes(y), S, rtol=1e-3, atol=1e-4)
    level, flat, bandwidth, onset, last_db = frame_features(S)
    band = (librosa.fft_frequencies(sr=CROWD_RATE, n_fft=N_FFT) >= 300.0) & (librosa.fft_frequencies(sr=CROWD_RATE, n_fft=N_FFT) <= 3400.0)
    np.testing.assert_allclose(level, 20.0 * np.log10(librosa.feature.rms(S=S, frame_length=N_FFT)[0] + 1e-9), atol=1e-3)
    np.testing.assert_allclose(flat, librosa.feature.spectral_flatness(S=S[band])[0], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(bandwidth, librosa.feature.spectral_bandwidth(S=S, sr=CROWD_RATE, n_fft=N_FFT)[0], rtol=1e-3, atol=1e-2)
    db = librosa.amplitude_to_db(S, ref=1.0, amin=1e-5, top_db=None)
    want = librosa.onset.onset_strength(S=np.concatenate([db[:, :1], db], axis=1), sr=CROWD_RATE, center=False)[1:]
    np.testing.assert_allclose(onset, want, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(last_db, db[:, -1:], atol=1e-3)


# --- crowd ---------------------------------------------------------------------------


def test_crowd_fires_on_each_broadcast_roar_and_nothing_else(ffmpeg, espeak):
    _, truth, audio = media.broadcast()
    roars = [m.t for m in truth.moments if m.kind == "loud"]
    signals = detect(audio)
    assert [s.name for s in signals] == ["crowd"] * len(roars) == ["crowd", "crowd"], signals
    for s, t in zip(signals, roars):
        assert abs(s.t - t) <= 0.5 and s.value >= 1.0, (s, t)  # +15 dB over speech: a clear one


@pytest.mark.parametrize("seed, gain_db, mix", [(0, 6.0, insert), (1, 3.0, overlay), (2, 4.0, insert)])
def test_crowd_fires_on_a_crowd_of_espeak_voices(seed, gain_db, mix, espeak, ffmpeg):
    signals = detect(mix(crowd(3.0, seed) * SPEECH * db(gain_db)))
    assert [s.name for s in signals] == ["crowd"], signals
    assert AT <= signals[0].t <= AT + 1.0 and signals[0].value >= 0.5


def test_crowd_as_quiet_as_the_talk_is_not_a_moment(espeak, ffmpeg):
    assert detect(overlay(crowd(3.0, 3) * SPEECH * db(-3))) == []  # background murmur


# --- laughter ------------------------------------------------------------------------


def test_laughter_fires_once_per_espeak_laugh(espeak, ffmpeg):
    laughs, starts = espeak_laughs()
    signals = detect(insert(laughs * SPEECH))
    assert [s.name for s in signals] == ["laughter"] * len(starts), signals
    for s, start in zip(signals, starts):
        assert abs(s.t - (AT + start)) <= 0.5, (s, start)
        assert 0.8 <= s.value <= 1.3


@pytest.mark.parametrize("rate_hz, f0", [(3.3, (200, 150)), (4.8, (300, 200)), (6.0, (420, 300)), (4.5, (120, 100))])
def test_laughter_fires_on_a_synthetic_voiced_burst_train(rate_hz, f0, espeak, ffmpeg):
    signals = detect(insert(synth_laugh(2.0, rate_hz, f0, seed=int(rate_hz * 10)) * SPEECH * db(-3)))
    assert [s.name for s in signals] == ["laughter"], signals
    assert abs(signals[0].t - AT) <= 0.5


def test_laughter_is_not_speech_at_the_same_syllable_rate(espeak, ffmpeg):
    fast = np.concatenate([voice(s, "en", 50, 260) for s in ("Yes, yes, I know, I know, it is done.",
                                                           "Go, go, go, we have to hurry now, come on.")])
    assert detect(insert(fast * SPEECH)) == []


# --- must stay quiet -----------------------------------------------------------------


@pytest.mark.parametrize("gain_db", [0.0, 10.0, -10.0])
def test_quiet_on_calm_speech(gain_db, espeak, ffmpeg):
    assert detect(media.speech_only() * db(gain_db)) == []


@pytest.mark.parametrize("seed, hats, gain_db", [(0, True, 10.0), (1, False, 10.0), (2, True, 0.0)])
def test_quiet_on_steady_loud_music(seed, hats, gain_db, espeak, ffmpeg):
    assert detect(insert(music(15.0, seed, hats) * SPEECH * db(gain_db))) == []


def test_quiet_on_a_clap_and_a_door_slam(espeak, ffmpeg):
    audio = overlay(bang(0.15, 40.0, 0.0, 1) * SPEECH * db(25), at=22.0)
    audio = overlay(bang(0.4, 30.0, 70.0, 2) * SPEECH * db(25), at=27.0, base=audio)
    for k in range(12):  # and one person clapping 4 times a second
        audio = overlay(bang(0.15, 40.0, 0.0, 10 + k) * SPEECH * db(10), at=32.0 + k / 4, base=audio)
    assert detect(audio) == []


# --- mechanics -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [0.02, 0.137, 1.0])
def test_same_result_whatever_the_chunk_size(chunk, espeak, ffmpeg):
    laughs, _ = espeak_laughs()
    audio = insert(np.concatenate([laughs * SPEECH, crowd(3.0, 0) * SPEECH * db(6)]))
    expected = detect(audio, 0.1, t0=50.0)
    assert [s.name for s in expected] == ["laughter"] * 4 + ["crowd"]
    assert detect(audio, chunk, t0=50.0) == expected


def test_nothing_during_warmup_even_on_a_roar(espeak, ffmpeg):
    audio = insert(crowd(3.0, 0) * SPEECH * db(6), at=0.0)
    assert detect(audio) == []  # no baseline yet at the stream's start: the crowd is its normal
    later = insert(crowd(3.0, 0) * SPEECH * db(6), at=10.0)
    assert [s.name for s in detect(later)] == ["crowd"]  # the same crowd once the talk is known


def test_options_reject_unknown_fields():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"crowd_db": 4.0, "nope": 1}, CrowdOptions)
