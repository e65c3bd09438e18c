"""Music/speech discrimination on generated audio: music beds (bench.genres), sung lyrics
(bench.voices.sing) are music; calm and shouted talk, laughter, a crowd roar and noise are not."""
import functools
import tempfile
from pathlib import Path

import msgspec
import numpy as np
import pytest

import media
from bench import genres, voices
from bench.broadcast import roar
from detectors.arousal import ArousalDetector, ArousalOptions
from detectors.music import MusicDetector, MusicOptions
from detectors.pitch import VoiceFrames

SR = voices.SAMPLE_RATE
SECONDS = 12.0
LEVEL = -26.0
LYRICS = "let's go let's go we are the champions tonight oh yeah"


def _song(rng: np.random.Generator, seconds: float) -> np.ndarray:
    parts, n = [], 0
    while n < seconds * SR:
        parts.append(voices.sing(LYRICS, rng, tempo_bpm=float(rng.uniform(90, 130)), key_hz=float(rng.uniform(150, 260))))
        n += len(parts[-1])
    return np.concatenate(parts)[: int(seconds * SR)]


def _over(voice: np.ndarray, bed: np.ndarray, bed_db: float) -> np.ndarray:
    """``voice`` at the talk level, ``bed`` ``bed_db`` dB from it (negative: under it)."""
    n = min(len(voice), len(bed))
    return voices.at_dbfs(voice[:n], LEVEL) + voices.at_dbfs(bed[:n], LEVEL + bed_db)


def _laughs(rng: np.random.Generator, seconds: float) -> np.ndarray:
    plan = genres._Plan(genre="podcast", duration=seconds, rng=rng, work=Path(tempfile.mkdtemp()),
                        audio=np.zeros(0, np.float32))
    parts, n = [], 0
    while n < seconds * SR:
        parts += [genres._laughter(plan, 2), np.zeros(int(0.3 * SR), np.float32)]
        n += len(parts[-2]) + len(parts[-1])
    return np.concatenate(parts)[: int(seconds * SR)]


def _with_roars(talk: np.ndarray, seed: int) -> np.ndarray:
    """Crowd roars 15 dB over the talk at 2 s and 8 s (bench.broadcast's loud moments)."""
    out = talk.copy()
    for k, t in enumerate((2.0, 8.0)):
        burst = roar(2.5, seed + k) * 10 ** ((LEVEL + 15.0) / 20.0)
        out[int(t * SR) : int(t * SR) + len(burst)] += burst
    return out


@functools.cache
def _example(kind: str, seed: int) -> np.ndarray:
    """SECONDS of one kind of audio at 16 kHz."""
    rng = np.random.default_rng(seed)
    bed = genres._music(SECONDS, 0.1, seed)
    speaker = voices.speakers(rng, 1)[0]
    x = {
        "bed": lambda: voices.at_dbfs(bed, LEVEL),
        "quiet_bed": lambda: voices.at_dbfs(bed, -45.0),
        "song_over_bed": lambda: _over(_song(rng, SECONDS), bed, -6.0),
        "calm": lambda: voices.at_dbfs(voices.talk(speaker, SECONDS, rng), LEVEL),
        "shouted": lambda: voices.at_dbfs(voices.talk(speaker, SECONDS, rng, "shouted"), LEVEL),
        "shouted_over_bed": lambda: _over(voices.talk(speaker, SECONDS, rng, "shouted"), bed, -10.0),
        "laughter": lambda: voices.at_dbfs(_laughs(rng, SECONDS), LEVEL),
        "roar": lambda: voices.at_dbfs(roar(SECONDS, seed), LEVEL),
        "noise": lambda: voices.at_dbfs(rng.standard_normal(int(SECONDS * SR)).astype(np.float32), LEVEL),
        "talk_over_crowd": lambda: _over(voices.talk(speaker, SECONDS, rng), roar(SECONDS, seed), -12.0),
        "talk_with_roars": lambda: _with_roars(voices.at_dbfs(voices.talk(speaker, SECONDS, rng), LEVEL), seed),
    }[kind]()
    return voices.to_16k(x)


def _p(kind: str, seed: int) -> np.ndarray:
    """p for each judged window (unreported windows count as p = 0)."""
    audio = _example(kind, seed)
    signals = media.feed(MusicDetector(MusicOptions(report_min=0.0)), audio, 0.1)
    assert len(signals) == int(SECONDS) - 3  # one a second once a 3 s window is full (the last frame
    #                                          ends 20 ms past the audio)
    assert all(s.name == "music" and 0.0 <= s.value <= 1.0 for s in signals)
    return np.array([s.value for s in signals])


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("kind", ["bed", "quiet_bed", "song_over_bed"])
def test_music_is_music(kind, seed, espeak):
    p = _p(kind, seed)
    assert (p >= 0.5).mean() >= 0.7, p


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("kind", ["calm", "shouted", "shouted_over_bed", "laughter", "roar", "noise",
                                  "talk_over_crowd", "talk_with_roars"])
def test_speech_and_crowds_are_not_music(kind, seed, espeak):
    p = _p(kind, seed)
    # Over a bed, the pauses between shouted sentences leave the bed alone: music, rightly.
    assert (p < 0.5).mean() >= (0.8 if kind == "shouted_over_bed" else 0.9), p


def test_a_shout_over_the_bed_is_less_music_than_a_song_over_it(espeak):
    for seed in (1, 2):
        assert _p("shouted_over_bed", seed).mean() < _p("song_over_bed", seed).mean() - 0.3


def test_default_reports_only_likely_music_and_nothing_for_silence():
    assert MusicDetector().push(0.0, np.zeros(10 * media.RATE, np.float32)) == []
    calm = _example("calm", 1)
    assert all(s.value >= 0.3 for s in media.feed(MusicDetector(), calm, 0.1))


@pytest.mark.parametrize("chunk", [0.137, 1000.0])
def test_same_result_whatever_the_chunk_size(chunk, espeak):
    audio = np.concatenate([_example("calm", 1), _example("song_over_bed", 1)])
    expected = media.feed(MusicDetector(), audio, 0.1)
    assert expected
    assert media.feed(MusicDetector(), audio, chunk) == expected


def test_frames_shared_with_the_arousal_detector_give_the_same_signals(espeak):
    """The pipeline analyses frames once (pitch.VoiceFrames) for arousal and music: same signals
    as each detector's own push, across a gap in stream time too."""
    audio = np.concatenate([_example("calm", 1), _example("song_over_bed", 1)])
    step, half = media.RATE // 10, len(audio) // 2
    gap_t = half / media.RATE + 5.0  # where the audio after the gap starts
    chunks = [(i / media.RATE + (5.0 if i >= half else 0.0), audio[i : i + step]) for i in range(0, len(audio), step)]
    alone_m, alone_a = MusicDetector(), ArousalDetector(ArousalOptions(warmup_seconds=1.0))
    shared_m, shared_a = MusicDetector(), ArousalDetector(ArousalOptions(warmup_seconds=1.0))
    frames = VoiceFrames()
    expected, got = [], []
    for t, x in chunks:
        expected += alone_a.push(t, x) + alone_m.push(t, x)
        voice = list(frames.push(t, x))
        got += [s for f in voice for s in shared_a.push_frames(f)] + [s for f in voice for s in shared_m.push_frames(f)]
    assert any(s.name == "music" for s in expected)
    assert got == expected
    # the gap restarted the frames: after it, music is what a fresh detector finds
    fresh = media.feed(MusicDetector(), audio[half:], 0.1, gap_t)
    assert [s for s in got if s.name == "music" and s.t > gap_t] == fresh


def test_options_are_bounded_and_strict():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"report_min": 2.0}, MusicOptions)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"no_such_option": 1}, MusicOptions)
