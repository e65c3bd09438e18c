"""Detection that measures excitement, not level, through the VOD path's detectors and the
shipped (fitted) fusion profiles:

* music: a song with sung "let's go" gives no moment; the same words shouted over the same
  bed, at the same level, do;
* calibration: every fitted profile loads and is what a channel gets; a shouted line scores
  higher than the same line said calmly at equal loudness;
* a short run of the harness on a fixed slice of the corpus's TEST part, with P and R asserted.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench import voices
from bench.broadcast import SAMPLE_RATE, SPEECH_DBFS, write_wav
from bench.corpus_signals import analyse_media
from detectors.fusion import FusionOptions
from detectors.genres import FITTED_DIR, MANUAL_PROFILES, PROFILES, load_fitted
from stream_actor.settings import channel_settings
from vod.plan import fuse

SPEAKER = voices.Speaker("en-us+m3", 42, 165)
LINE_AT = 30.0  # s: after the speaker's baseline has warmed up


@pytest.fixture(scope="module")
def whisper():
    from detectors.speech import SpeechOptions, load_whisper_model

    return load_whisper_model(SpeechOptions())


def _place(out: np.ndarray, x: np.ndarray, t: float) -> None:
    i = int(t * SAMPLE_RATE)
    out[i : i + len(x)] += x[: max(0, len(out) - i)]


def _broadcast(folder: Path, name: str, line: np.ndarray, bed: np.ndarray | None = None, seed: int = 7) -> Path:
    """Calm talk by SPEAKER, ``line`` at LINE_AT (the talk pauses for it), ``bed`` under it from
    LINE_AT - 8 s; written as AAC in MP4 as an encoder would."""
    rng = np.random.default_rng(seed)
    seconds = 55.0
    out = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    _place(out, voices.at_dbfs(voices.talk(SPEAKER, LINE_AT - 1.0, rng), SPEECH_DBFS), 0.0)
    _place(out, voices.at_dbfs(line, SPEECH_DBFS), LINE_AT)
    after = LINE_AT + len(line) / SAMPLE_RATE + 1.5
    _place(out, voices.at_dbfs(voices.talk(SPEAKER, seconds - after, rng), SPEECH_DBFS), after)
    if bed is not None:
        _place(out, bed, LINE_AT - 8.0)
    np.clip(out, -1.0, 1.0, out=out)
    wav, mp4 = folder / f"{name}.wav", folder / f"{name}.mp4"
    write_wav(wav, out)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", "-b:a", "128k",
                    str(mp4)], check=True)
    return mp4


def _song_bed(seconds: float, dbfs: float) -> np.ndarray:
    from bench.corpus import Band, band_stems

    band = Band(bpm=118.0, root=196.0, progression=0, instrument="keys", four_on_floor=True)
    return voices.at_dbfs(sum(band_stems(seconds, band, seed=3).values()), dbfs)


def _moments_near(mp4: Path, model, profile: str = "default", opts: dict | None = None):
    settings = channel_settings({"profile": profile, **({"fusion": opts} if opts else {})})
    signals, words, _cpu, _media = analyse_media(str(mp4), channel_settings({}), model)
    moments = [m for m in fuse(signals, settings) if LINE_AT - 4.0 <= m.t <= LINE_AT + 8.0]
    return moments, signals, words


# --- music --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def music_cases(tmp_path_factory, whisper, ffmpeg, espeak):
    folder = tmp_path_factory.mktemp("music")
    rng = np.random.default_rng(5)
    bed = _song_bed(24.0, SPEECH_DBFS - 10.0)  # a song bed under the commentary
    sung = voices.sing("let's go let's go oh my god let's go", rng, tempo_bpm=118.0, key_hz=196.0)
    shouted = voices.say("Let's go! Let's go! Oh my god!", SPEAKER, "shouted", rng)
    return {
        "sung": _moments_near(_broadcast(folder, "sung", sung, bed), whisper),
        "shouted": _moments_near(_broadcast(folder, "shouted", shouted, bed), whisper),
    }


def test_sung_lets_go_over_a_song_is_not_a_moment(music_cases):
    moments, signals, _words = music_cases["sung"]
    assert any(s.name == "music" and s.value >= 0.5 for s in signals if LINE_AT - 5 <= s.t <= LINE_AT + 5)
    assert moments == [], [(m.t, m.signals) for m in moments]


def test_the_same_words_shouted_over_the_same_song_are(music_cases):
    moments, signals, words = music_cases["shouted"]
    assert len(moments) == 1, ([(s.name, s.t, s.value) for s in signals], [w.text for w in words])
    assert "arousal" in moments[0].signals
    print("shouted over the song:", moments[0].score, moments[0].signals)
    assert moments[0].score >= channel_settings({}).fusion.threshold


# --- calibration ----------------------------------------------------------------------------


def test_every_profile_ships_fitted_and_a_channel_gets_it():
    for name in MANUAL_PROFILES:
        fitted = load_fitted(name)
        assert fitted is not None, f"detectors/fitted/{name}.json is missing or unusable"
        assert {"arousal", "music", "keyword", "loudness"} <= set(fitted.features)
        assert fitted.weights["music"] <= 0.0 and fitted.fitted_on["part"] == "train"
        fusion = channel_settings({"profile": name}).fusion
        assert (fusion.bias, fusion.threshold) == (fitted.bias, fitted.threshold)
        assert all(fusion.weights[k] == v for k, v in fitted.weights.items())
        manual = channel_settings({"profile": f"{name}-manual"}).fusion
        assert manual.bias == FusionOptions().bias  # the hand-written fallback stays selectable
    assert sorted(p.stem for p in FITTED_DIR.glob("*.json")) == sorted(MANUAL_PROFILES)
    assert set(PROFILES) == set(MANUAL_PROFILES) | {f"{n}-manual" for n in MANUAL_PROFILES}


@pytest.fixture(scope="module")
def calm_and_shouted(tmp_path_factory, whisper, ffmpeg, espeak):
    folder = tmp_path_factory.mktemp("arousal")
    line = "Oh my god, no way, that was absolutely insane!"
    out = {}
    for style in ("calm", "shouted"):
        said = voices.say(line, SPEAKER, style, np.random.default_rng(11))
        # the lowest threshold: every candidate moment comes out with its score
        out[style] = _moments_near(_broadcast(folder, style, said), whisper, opts={"threshold": 0.001})
    return out


def test_a_shouted_line_scores_higher_than_the_same_line_said_calmly(calm_and_shouted):
    def best(style):
        moments = calm_and_shouted[style][0]
        return max((m.score for m in moments), default=0.0)

    assert best("shouted") > best("calm")
    assert best("shouted") >= channel_settings({}).fusion.threshold  # a moment with the shipped threshold
    assert best("calm") < channel_settings({}).fusion.threshold  # the calm line is not


# --- a fixed slice of the corpus's test part ------------------------------------------------------

SLICE_SECONDS = 150.0
SLICE = (("sports", 0), ("just_chatting", 1), ("podcast", 0), ("gaming", 0), ("distractors", 0))


@pytest.fixture(scope="module")
def test_slice(tmp_path_factory, whisper, ffmpeg, espeak):
    from bench.corpus import make_broadcast, seed_for
    from bench.corpus_signals import recorded_split
    from bench.genres import load_genre_truth, truth_path
    from bench.quality import score

    folder = tmp_path_factory.mktemp("slice")
    scores = []
    for genre, i in SLICE:
        mp4 = make_broadcast(folder, seed_for("test", genre, i), duration=SLICE_SECONDS)
        truth = load_genre_truth(mp4)
        assert recorded_split(truth_path(mp4)) == "test" and truth.duration == SLICE_SECONDS
        settings = channel_settings({"hud": {"profile": truth.game_profile}} if truth.game_profile else {})
        signals, _words, _cpu, _media = analyse_media(str(mp4), settings, whisper)
        events = fuse(signals, channel_settings({"profile": truth.profile or truth.genre}))
        scores.append((truth, score(truth, [(e.t, e.signals) for e in events], signals)))
    return scores


def test_harness_on_a_fixed_test_slice(test_slice):
    found = sum(sc.fused.hit for _t, sc in test_slice)
    planted = sum(sc.fused.expected for _t, sc in test_slice)
    fired = sum(sc.fused.fired for _t, sc in test_slice)
    right = sum(sc.fused.tp_fired for _t, sc in test_slice)
    report = [(t.genre, t.seed, sc.missed, [(round(fp[0], 1), fp[2]) for fp in sc.false_positives])
              for t, sc in test_slice]
    print(report, f"P {right}/{fired}, R {found}/{planted}")
    # A regression guard at today's level, not the targets (P and R >= 0.95), which the
    # shipped profiles do not reach yet: see the README's test-part table.
    assert planted >= 5, report
    assert right / fired >= 0.75, report  # precision
    assert found / planted >= 0.5, report  # recall
    distractors = [sc for t, sc in test_slice if t.genre == "distractors"]
    assert sum(sc.fused.fired for sc in distractors) <= 1, report
