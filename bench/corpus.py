"""A large, varied labelled corpus of synthetic broadcasts, split into train and test by seed.

Where bench.genres makes a handful of tidy broadcasts (moments on a grid, one voice, louder
moments), this makes hours of untidy ones, for fitting fusion on one part and judging it on
another. Everything varies per generator seed:

- moments: times (no grid), recipes, lengths; two events 6-12 s apart are sometimes planted
  together and are then ONE truth moment with both parts (a clip window holds both);
- voices (bench.voices): 1-3 speakers per broadcast (podcast 2-3), each with its own espeak-ng
  voice, pitch, speed and level; calm talk, and excited or shouted reactions that are as often
  at the talk's level as louder (a moment is defined by excitement, never by level alone);
- distractors: loud music coming in, a music swell (drums and bass rising in a bed already
  playing), songs with sung hype lyrics, a sung chorus turned up, calm stories with hype words
  in them, game sound effects and explosions under calm talk, a laugh track (gaming/sports
  only), single scene cuts, long music beds under talk, and (distractor-only broadcasts) a
  constantly loud, animated talker;
- loudness processing of the final mix (:func:`process_loudness`): raw, compressed, flattened
  (broadcast AGC: a shout is no louder than the talk) or normalized (-14 LUFS-ish).

=============  ==========================================================================
genre          moment recipes (parts; ``truth`` lists the signals each should light up)
=============  ==========================================================================
gaming         HUD banner + kill icon + shout; VICTORY + shout; HUD banner alone; laugh at a
               funny death; kill-cam montage + excited speech; a clutch shout (no HUD)
just_chatting  laugh; shouted hype phrase; excited speech without a hype word; a yell;
               group laugh (with a guest)
sports         goal: roar + shout + replay montage; big chance: roar + excited speech; save:
               roar + "what a save!"; a commentator's call without a roar
podcast        group laugh; exclamation then laughter; an excited exchange (two hosts, no
               hype word); a shout
distractors    no moment: 8-12 distractors, the picture, talk and profile of one of the four
               genres; a third of them (seed % 3 == 1) with a constantly loud, animated talker
=============  ==========================================================================

Truth rules (tests/test_corpus.py checks them): moments lie inside the broadcast; two truth
moments are at least MOMENT_SPACING s apart (end of one to onset of the next), closer events
are one moment; no distractor's scoring window ([t - 3, end + 6], bench.quality) meets a
moment's ([t - 3, end + 3]).

Split by seed: TRAIN_SEEDS and TEST_SEEDS are disjoint; a broadcast's seed fixes its genre
(100 seeds per genre), everything in it, and its loudness mode, so growing the corpus never
changes an existing broadcast. Fitting code must read only the train part.

Files per broadcast (``<split>-<genre>-s<seed>-<loudness>``): ``.mp4`` (x264 ultrafast, fixed
2 s GOP like a live encoder, AAC) and ``.truth.json`` (:class:`CorpusTruth`, readable by
bench.genres.load_genre_truth); ``corpus.json`` indexes them (:class:`Entry`). A broadcast whose
files exist with the same parameters is skipped. Deterministic: same arguments, same files.

    python -m bench.corpus OUT_DIR [--split train|test|all] [--genres gaming,podcast]
        [--hours-scale 0.1] [--duration 300] [--jobs 2] [--loudness flattened]
"""
from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgspec
import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import lfilter

from bench import voices
from bench.broadcast import SAMPLE_RATE, SPEECH_DBFS, CALM_SENTENCES, db, roar, write_wav
from bench.genres import (
    BASE_SCENES,
    CALM_TALK,
    FPS,
    GAME_PROFILE,
    GOP_SECONDS,
    HEIGHT,
    PART_SIGNALS,
    WIDTH,
    Distractor,
    GenreMoment,
    GenreTruth,
    Part,
    encode_plan,
    fill_talk,
    game_hum,
    _laughter,
    _montage,
    _music,
    _Plan,
)

CORPUS_VERSION = 1  # bump when the generator's output changes: the cache key includes it
SPLITS = ("train", "test")
TRAIN_SEEDS = range(1000, 2000)
TEST_SEEDS = range(5000, 6000)
MOMENT_GENRES = ("gaming", "just_chatting", "sports", "podcast")
CORPUS_GENRES = MOMENT_GENRES + ("distractors",)
SEEDS_PER_GENRE = 100  # seed = split base + 100 * genre index + i
LOUDNESS_MODES = ("raw", "compressed", "flattened", "normalized")
DEFAULT_DURATION = 300.0
# Broadcasts per genre at --hours-scale 1 (300 s each): train 1.67 h with moments + 0.5 h
# distractors; test 1.67 h with moments + 1.0 h distractors.
COUNTS = {
    "train": {"gaming": 5, "just_chatting": 5, "sports": 5, "podcast": 5, "distractors": 6},
    "test": {"gaming": 5, "just_chatting": 5, "sports": 5, "podcast": 5, "distractors": 12},
}

# Signals per part kind: bench.genres' names plus "arousal" (excitement in the voice:
# pitch, rate, timbre against the speaker's baseline). "loudness" is dropped from every part
# of a "flattened" broadcast, where nothing is louder than the talk.
CORPUS_PART_SIGNALS: dict[str, list[str]] = {
    **PART_SIGNALS,
    "shouted_keyword": ["keyword", "sentiment", "arousal"],
    "yelled_keyword": ["keyword", "sentiment", "arousal", "loudness"],
    "excited_speech": ["arousal"],
    "yelled_speech": ["arousal", "loudness"],
}

MOMENT_SPACING = 15.0  # s from a truth moment's end to the next one's onset, at least
FIRST_EVENT = (12.0, 25.0)  # s: baselines (loudness, the speaker's voice) need a warm-up
END_MARGIN = 6.0  # s after the last event
MOMENT_NEEDS, DOUBLE_NEEDS = 15.0, 28.0  # s a moment (a double one) may take from its onset
BED_P = 0.35  # a broadcast with moments has quiet background music all along
DOUBLE_P = 0.3  # a second event 6-12 s after the first, in the same truth moment
CLEAR_BEFORE_MOMENT = 10.0  # s from a distractor's end to a moment's onset (windows: 6 + 3, +1)
CLEAR_AFTER_MOMENT = 7.0  # s from a moment's end to a distractor's onset (windows: 3 + 3, +1)

KEYWORD_SHOUTS: dict[str, tuple[str, ...]] = {
    "common": (
        "Oh my god, no way, that was absolutely insane!", "Let's go! Let's go!", "Let's gooo!",
        "No way! No way!", "Oh my god!", "That's insane!", "Oh my god, let's go!",
        "No way, that was unbelievable!",
    ),
    "gaming": ("Did you see that, triple kill!", "Let's go, triple kill!", "What a play!", "That's insane, one shot!"),
    "just_chatting": ("Are you kidding me? No way!", "Oh my god, stop it!", "Let's go, we did it!"),
    "sports": ("What a save!", "What a goal!", "Oh my god, what a shot!", "Unbelievable, what a finish!"),
    "podcast": ("Oh my god, no way!", "No way, are you kidding me?", "Oh my god, stop!"),
}  # fmt: skip
# Excited speech without any phrase of detectors/keywords.py: only the voice tells.
PLAIN_SHOUTS = (
    "Are you serious right now?", "He actually did it!", "I can't believe he just did that!",
    "Wait, wait, look at this!", "Did that really just happen?", "Come on, come on, yes!",
    "She did it, she actually did it!", "Look at him go!", "That is the best thing I have ever seen!",
    "Yes! Yes! Yes!", "Get in there!", "Hold on, hold on, that worked!", "Stop it, that is amazing!",
)  # fmt: skip
# Calm narrative with hype words in it, said in the calm voice at the talk's level.
CALM_STORIES = (
    "And then he said, let's go to the store, so we went to the store.",
    "Oh my god, no way, she said, and we laughed about it for a while.",
    "My friend always says let's go whenever the bus arrives, it is a habit.",
    "There is no way to know that before the update comes out.",
    "She told me it was insane how expensive the tickets were this year.",
    "He looked at the menu and said, oh my god, they have soup again.",
    "The guide said let's go, and we walked slowly up to the old church.",
    "I told him no way, I am not driving all the way there tonight.",
    "What a play, my grandmother said about the theatre, and she meant it kindly.",
    "The title of the book was something like, what a shot, about a photographer.",
)
# Song lyrics: hype phrases sung, in a song, are not moments.
LYRICS = (
    "let's go, let's go, we are on our way tonight",
    "oh my god, no way, I never felt this way",
    "no way, no way, we are running out of time",
    "let's go all night, let's go, let's go",
    "oh my god, you are the one for me",
    "what a night, oh my god, what a night",
    "no way back, let's go, no way back",
)
BANNERS = ("ELIMINATED", "DOUBLE KILL", "3 KILLS", "4 KILLS")

RECIPES: dict[str, tuple[str, ...]] = {
    "gaming": ("elimination", "victory", "hud_only", "funny_death", "killcam", "clutch_shout"),
    "just_chatting": ("laugh", "hype_shout", "excited_plain", "yell", "group_laugh"),
    "sports": ("goal", "big_chance", "save", "commentator_call"),
    "podcast": ("group_laugh", "exclaim_laugh", "excited_exchange", "hype_shout"),
}
DISTRACTOR_KINDS: dict[str, tuple[str, ...]] = {
    "gaming": ("loud_music", "music_swell", "sung_lyrics", "sung_chorus", "calm_story", "game_sfx",
               "laugh_track", "scene_cut", "music_bed", "game_sfx"),
    "just_chatting": ("loud_music", "music_swell", "sung_lyrics", "sung_chorus", "calm_story", "scene_cut",
                      "music_bed"),
    "sports": ("loud_music", "music_swell", "sung_chorus", "calm_story", "laugh_track", "scene_cut", "music_bed"),
    "podcast": ("loud_music", "music_swell", "sung_lyrics", "calm_story", "scene_cut", "music_bed"),
}  # fmt: skip
SPEAKERS = {"gaming": (1, 2), "just_chatting": (1, 2), "sports": (1, 2), "podcast": (2, 3)}


# --- truth and index -----------------------------------------------------------------------


class CorpusPart(Part, frozen=True):
    """A Part, plus how a voice part was said (empty/0 for other parts)."""

    style: str = ""  # "calm", "excited" or "shouted" (bench.voices)
    level_db: float = 0.0  # dB over the speaker's talk level, before loudness processing
    speaker: int = -1  # index into CorpusTruth.speakers


class CorpusMoment(GenreMoment, frozen=True):
    parts: list[CorpusPart] = []


class CorpusTruth(GenreTruth):
    """GenreTruth (bench.genres.load_genre_truth reads it) plus what the corpus varies."""

    moments: list[CorpusMoment]

    split: str = ""
    loudness: str = "raw"  # the processing of the final mix (LOUDNESS_MODES)
    style: str = ""  # the genre the picture and talk follow (a distractor broadcast's host genre)
    speakers: list[str] = []  # "voice pitch speed level_db" per speaker, the main one first
    bed: str = ""  # a quiet instrumental music bed under the whole broadcast ("" = none)
    version: int = CORPUS_VERSION
    params: str = ""  # cache key: files with another key are made again


class Entry(msgspec.Struct, frozen=True):
    """One broadcast of the corpus (corpus.json)."""

    stem: str
    mp4: str  # file name, beside corpus.json
    genre: str
    style: str
    seed: int
    split: str
    loudness: str
    duration: float
    moments: int
    distractors: int


def split_of(seed: int) -> str:
    if seed in TRAIN_SEEDS:
        return "train"
    if seed in TEST_SEEDS:
        return "test"
    raise ValueError(f"seed {seed} is in neither TRAIN_SEEDS nor TEST_SEEDS")


def seed_for(split: str, genre: str, i: int) -> int:
    if not 0 <= i < SEEDS_PER_GENRE:
        raise ValueError(f"at most {SEEDS_PER_GENRE} broadcasts per genre and split")
    base = (TRAIN_SEEDS if split == "train" else TEST_SEEDS).start
    return base + SEEDS_PER_GENRE * CORPUS_GENRES.index(genre) + i


def genre_of(seed: int) -> str:
    base = (TRAIN_SEEDS if split_of(seed) == "train" else TEST_SEEDS).start
    return CORPUS_GENRES[(seed - base) // SEEDS_PER_GENRE]


def loudness_of(seed: int) -> str:
    """The seed's own loudness mode: consecutive seeds of a genre take the four modes in turn
    (balanced), the start shifted per genre. Overriding it changes nothing else."""
    return LOUDNESS_MODES[(seed + seed // SEEDS_PER_GENRE) % len(LOUDNESS_MODES)]


def style_of(seed: int) -> str:
    genre = genre_of(seed)
    return genre if genre != "distractors" else MOMENT_GENRES[seed % len(MOMENT_GENRES)]


def stem_of(seed: int, loudness: str | None = None) -> str:
    return f"{split_of(seed)}-{genre_of(seed)}-s{seed}-{loudness or loudness_of(seed)}"


def broadcast_seeds(split: str, *, scale: float = 1.0, genres: tuple[str, ...] = CORPUS_GENRES) -> list[int]:
    """The seeds of a split's broadcasts at ``scale`` (at least one per genre)."""
    splits = SPLITS if split == "all" else (split,)
    out = []
    for s in splits:
        for g in genres:
            n = max(1, int(math.ceil(COUNTS[s][g] * scale - 1e-9)))
            out += [seed_for(s, g, i) for i in range(n)]
    return out


# --- loudness processing ---------------------------------------------------------------------


def process_loudness(x: np.ndarray, mode: str, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The final mix after a broadcast's loudness processing (float32, within [-1, 1]).

    - ``raw``: as mixed (clipped to full scale).
    - ``compressed``: a fast feed-forward compressor (5 ms RMS detector, 5 ms attack, 80 ms
      release), threshold -32 dBFS, ratio 4:1, +7 dB make-up (the talk stays near its level).
    - ``flattened``: a broadcast AGC/limiter: a 400 ms RMS follower (centred: the processor
      looks ahead) drives the gain towards -20 dBFS at ratio 20:1 (gain within -30..+12 dB),
      then a -1 dBFS peak limiter. Short-term level is held nearly constant: a shout 12 dB
      over the talk comes out within ~1 dB of it.
    - ``normalized``: like a streaming platform: gain to -14 LUFS integrated (an approximate
      BS.1770 meter: K-weighting biquads at this rate, 400 ms blocks, -70 LUFS absolute and
      -10 LU relative gates), then the peak limiter. Relative levels are kept.
    """
    x = np.asarray(x, np.float64)
    if mode == "raw":
        y = x
    elif mode == "compressed":
        y = _compress(x, rate)
    elif mode == "flattened":
        y = _limit(_agc(x, rate), rate)
    elif mode == "normalized":
        y = _limit(x * db(-14.0 - integrated_lufs(x, rate)), rate)
    else:
        raise ValueError(f"unknown loudness mode {mode!r}; choose from {', '.join(LOUDNESS_MODES)}")
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def _compress(x: np.ndarray, rate: int, threshold_db: float = -32.0, ratio: float = 4.0,
              makeup_db: float = 7.0) -> np.ndarray:
    hop = max(1, int(0.005 * rate))
    n = len(x) // hop * hop
    frames = np.concatenate([x[:n], np.zeros(hop if n < len(x) else 0)])
    if len(x) > n:
        frames[n : n + len(x) - n] = x[n:]
    frames = frames.reshape(-1, hop)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    target = np.maximum(0.0, level - threshold_db) * (1.0 - 1.0 / ratio)  # dB of gain reduction
    a_att, a_rel = math.exp(-hop / (0.005 * rate)), math.exp(-hop / (0.080 * rate))
    gr = np.empty_like(target)
    g = 0.0
    for i, want in enumerate(target.tolist()):  # attack when reduction grows, release when it falls
        a = a_att if want > g else a_rel
        g = a * g + (1 - a) * want
        gr[i] = g
    centres = (np.arange(len(gr)) + 0.5) * hop
    gain_db = np.interp(np.arange(len(x)), centres, makeup_db - gr)
    return x * 10 ** (gain_db / 20)


def _agc(x: np.ndarray, rate: int, target_db: float = -20.0, ratio: float = 20.0) -> np.ndarray:
    power = uniform_filter1d(x**2, size=int(0.4 * rate), mode="nearest")
    level = 10 * np.log10(power + 1e-12)
    gain_db = np.clip((target_db - level) * (1.0 - 1.0 / ratio), -30.0, 12.0)
    gain_db = uniform_filter1d(gain_db, size=int(0.05 * rate), mode="nearest")  # no zipper noise
    return x * 10 ** (gain_db / 20)


def _limit(x: np.ndarray, rate: int, ceiling_db: float = -1.0) -> np.ndarray:
    """A look-ahead peak limiter: the gain dips smoothly (5 ms) before each peak over the ceiling."""
    w = max(1, int(0.005 * rate))
    peak = maximum_filter1d(np.abs(x), size=2 * w + 1)
    gain = np.minimum(1.0, db(ceiling_db) / np.maximum(peak, 1e-9))
    gain = uniform_filter1d(minimum_filter1d(gain, size=2 * w + 1), size=2 * w + 1)
    return x * gain


def _biquad(kind: str, f0: float, q: float, gain_db: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook biquad coefficients (b, a)."""
    w0 = 2 * math.pi * f0 / rate
    alpha, cw = math.sin(w0) / (2 * q), math.cos(w0)
    if kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    else:  # high shelf
        A = 10 ** (gain_db / 40)
        s = 2 * math.sqrt(A) * alpha
        b = [A * ((A + 1) + (A - 1) * cw + s), -2 * A * ((A - 1) + (A + 1) * cw), A * ((A + 1) + (A - 1) * cw - s)]
        a = [(A + 1) - (A - 1) * cw + s, 2 * ((A - 1) - (A + 1) * cw), (A + 1) - (A - 1) * cw - s]
    return np.array(b) / a[0], np.array(a) / a[0]


def integrated_lufs(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Integrated loudness, approximately per BS.1770 (mono): see :func:`process_loudness`."""
    y = np.asarray(x, np.float64)
    for kind, f0, q, g in (("highshelf", 1681.97, 0.7071, 4.0), ("highpass", 38.14, 0.5003, 0.0)):
        b, a = _biquad(kind, f0, q, g, rate)
        y = lfilter(b, a, y)
    block, hop = int(0.4 * rate), int(0.1 * rate)
    if len(y) < block:
        return -70.0
    c = np.concatenate([[0.0], np.cumsum(y**2)])
    starts = np.arange(0, len(y) - block + 1, hop)
    power = (c[starts + block] - c[starts]) / block
    loud = -0.691 + 10 * np.log10(power + 1e-12)
    gated = power[loud > -70.0]
    if not len(gated):
        return -70.0
    rel = -0.691 + 10 * np.log10(gated.mean()) - 10.0
    gated = power[(loud > -70.0) & (loud > rel)]
    return float(-0.691 + 10 * np.log10(gated.mean()))


# --- music and sound effects -----------------------------------------------------------------

PROGRESSIONS = (
    ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)),  # I V vi IV
    ((9, 12, 16), (5, 9, 12), (0, 4, 7), (7, 11, 14)),  # vi IV I V
    ((0, 4, 7), (5, 9, 12), (7, 11, 14), (5, 9, 12)),  # I IV V IV
    ((2, 5, 9), (7, 11, 14), (0, 4, 7), (0, 4, 7)),  # ii V I I
)
INSTRUMENTS = {  # harmonics (number, amplitude) and decay per second of a chord note
    "keys": (((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)), 0.6),
    "pluck": (((1, 1.0), (2, 0.7), (3, 0.5), (5, 0.3)), 4.0),
    "pad": (((1, 1.0), (2, 0.5), (3, 0.33), (4, 0.25), (5, 0.2), (6, 0.16)), 0.0),
    "organ": (((1, 1.0), (2, 0.8), (4, 0.6), (8, 0.3)), 0.1),
}


class Band(msgspec.Struct, frozen=True):
    """How a song sounds: tempo, key, chord progression, chord instrument, drum pattern."""

    bpm: float
    root: float  # Hz of the key's tonic
    progression: int
    instrument: str
    four_on_floor: bool

    @staticmethod
    def draw(rng: np.random.Generator) -> "Band":
        return Band(bpm=float(rng.uniform(80.0, 160.0)), root=float(rng.uniform(165.0, 290.0)),
                    progression=int(rng.integers(len(PROGRESSIONS))),
                    instrument=str(list(INSTRUMENTS)[int(rng.integers(len(INSTRUMENTS)))]),
                    four_on_floor=bool(rng.random() < 0.4))

    def describe(self) -> str:
        return f"{self.bpm:.0f} bpm, {self.root:.0f} Hz, {self.instrument}"


def band_stems(seconds: float, band: Band, seed: int) -> dict[str, np.ndarray]:
    """A song's chords, bass and drums (float32), scaled so that their sum has unit RMS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    beat = 60.0 / band.bpm
    bar = 4 * beat
    chords, bass, drums = (np.zeros(n, np.float64) for _ in range(3))
    harmonics, decay = INSTRUMENTS[band.instrument]
    prog = PROGRESSIONS[band.progression]
    for i in range(int(math.ceil(seconds / bar))):
        a, b = int(i * bar * SAMPLE_RATE), min(n, int((i + 1) * bar * SAMPLE_RATE))
        if a >= n:
            break
        tt = np.arange(b - a) / SAMPLE_RATE
        env = np.minimum(1.0, tt / 0.03) * np.exp(-tt * decay)
        for semi in prog[i % 4]:
            f = band.root * 2 ** (semi / 12)
            for h, amp in harmonics:
                chords[a:b] += amp * env * np.sin(2 * np.pi * f * h * tt)
        f = band.root / 2 * 2 ** (prog[i % 4][0] / 12)
        tb = tt % (beat / 2)  # eighth notes
        bass[a:b] += (np.sin(2 * np.pi * f * tt) + 0.4 * np.sin(4 * np.pi * f * tt)) * np.exp(-tb * 6.0)
    noise = rng.standard_normal(n)
    for k in range(int(seconds / beat)):
        s = int(k * beat * SAMPLE_RATE)
        ln = min(n - s, int(0.25 * SAMPLE_RATE))
        tt = np.arange(ln) / SAMPLE_RATE
        if band.four_on_floor or k % 2 == 0:
            drums[s : s + ln] += 2.5 * np.sin(2 * np.pi * (50 + 60 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 12)
        if k % 2 == 1:
            drums[s : s + ln] += 1.2 * noise[s : s + ln] * np.exp(-tt * 18)
        h = s + int(beat / 2 * SAMPLE_RATE)
        hl = min(n - h, int(0.05 * SAMPLE_RATE))
        if hl > 0:
            drums[h : h + hl] += 0.4 * np.diff(noise[h : h + hl + 1]) * np.exp(-np.arange(hl) / SAMPLE_RATE * 60)
    total = np.sqrt(((chords + bass + drums) ** 2).mean()) + 1e-9
    return {k: (v / total).astype(np.float32) for k, v in (("chords", chords), ("bass", bass), ("drums", drums))}


def _ramp(n: int, points: list[tuple[float, float]]) -> np.ndarray:
    """A gain curve (linear amplitude) through (seconds, dB) points, held at both ends."""
    ts, dbs = zip(*points)
    return (10 ** (np.interp(np.arange(n) / SAMPLE_RATE, ts, dbs) / 20)).astype(np.float32)


def game_sfx(seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Gunfire in bursts and a few explosions: loud and sudden, with no voice at all."""
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n, np.float64)
    shots = booms = 0
    t = float(rng.uniform(0.2, 1.0))
    while t < seconds - 2.0:
        if rng.random() < 0.3:  # an explosion: a thump and a long low rumble
            ln = int(float(rng.uniform(1.2, 2.2)) * SAMPLE_RATE)
            tt = np.arange(ln) / SAMPLE_RATE
            rumble = lfilter([0.02], [1, -0.98], rng.standard_normal(ln))
            x = rumble / (np.abs(rumble).max() + 1e-9) * np.exp(-tt * 2.5) * np.minimum(1, tt / 0.005)
            x += 0.8 * np.sin(2 * np.pi * (40 + 80 * np.exp(-tt * 20)) * tt) * np.exp(-tt * 6)
            s = int(t * SAMPLE_RATE)
            out[s : s + ln] += 3.0 * x[: n - s]
            booms += 1
            t += float(rng.uniform(1.5, 3.0))
        else:  # a burst of gunfire
            for _ in range(int(rng.integers(2, 9))):
                ln = int(0.12 * SAMPLE_RATE)
                tt = np.arange(ln) / SAMPLE_RATE
                crack = np.diff(rng.standard_normal(ln + 1)) * np.exp(-tt * 40)
                thump = np.sin(2 * np.pi * 90 * tt) * np.exp(-tt * 30)
                s = int(t * SAMPLE_RATE)
                if s + ln < n:
                    out[s : s + ln] += crack + 1.5 * thump
                    shots += 1
                t += float(rng.uniform(0.08, 0.15))
            t += float(rng.uniform(0.5, 2.0))
    level = voices.active_rms(out) or 1.0
    return (out / level).astype(np.float32), f"{shots} shots, {booms} explosions"


# --- planning ----------------------------------------------------------------------------------


class _CorpusPlan(_Plan):
    """bench.genres' plan, with espeak-ng calls cached (laughs repeat the same "ha")."""

    def voice(self, text: str, **kw) -> np.ndarray:
        cache = self.__dict__.setdefault("_voice_cache", {})
        key = (text, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = super().voice(text, **kw)
        return cache[key]


class _Ctx:
    """One broadcast being planned: the genres plan (audio, picture), speakers, truth."""

    def __init__(self, plan: _Plan, genre: str, loudness: str, seed: int = 0):
        self.seed = seed
        self.plan, self.genre, self.style, self.loudness = plan, genre, plan.genre, loudness
        rng = plan.rng
        lo, hi = SPEAKERS[self.style]
        self.speakers = voices.speakers(rng, int(rng.integers(lo, hi + 1)))
        self.levels = [float(rng.uniform(-2.0, 2.0)) for _ in self.speakers]  # dB around SPEECH_DBFS
        self.loud_talker = False
        self.bed = ""

    def gain(self, who: int, extra_db: float = 0.0) -> float:
        return db(SPEECH_DBFS + self.levels[who] + extra_db)

    def say(self, text: str, who: int, style: str) -> np.ndarray:
        return voices.say(text, self.speakers[who], style, self.plan.rng)

    def part(self, kind: str, t: float, end: float, text: str = "", **how) -> CorpusPart:
        signals = list(CORPUS_PART_SIGNALS[kind])
        if self.loudness == "flattened":
            signals = [s for s in signals if s != "loudness"]
        return CorpusPart(kind=kind, t=round(t, 3), end=round(end, 3), signals=signals, text=text, **how)


def _reaction_level(rng: np.random.Generator) -> float:
    """dB over the speaker's talk: as often at the same level as louder (excitement, not level)."""
    r = rng.random()
    if r < 0.4:
        return float(rng.uniform(-1.0, 1.0))
    if r < 0.8:
        return float(rng.uniform(3.0, 7.0))
    return float(rng.uniform(10.0, 13.0))


def _plant_event(ctx: _Ctx, recipe: str, t: float) -> list[Part]:
    plan, rng, genre = ctx.plan, ctx.plan.rng, ctx.style
    parts: list[Part] = []

    def shout(at: float, who: int = 0, keyword: bool | None = None, level: float | None = None) -> Part:
        if keyword is None:
            keyword = rng.random() < 0.6
        pool = KEYWORD_SHOUTS["common"] + KEYWORD_SHOUTS[genre] if keyword else PLAIN_SHOUTS
        text = pool[int(rng.integers(len(pool)))]
        style = "shouted" if rng.random() < 0.55 else "excited"
        level = _reaction_level(rng) if level is None else level
        x = ctx.say(text, who, style) * ctx.gain(who, level)
        plan.add(at, x)
        end = at + len(x) / SAMPLE_RATE
        plan.keep_clear.append((at - 1.0, end + 1.0))
        yelled = level >= 10.0
        if keyword:
            kind = "yelled_keyword" if yelled else "shouted_keyword"
        else:
            kind = "yelled_speech" if yelled else "excited_speech"
        return ctx.part(kind, at, end, text, style=style, level_db=round(level, 1), speaker=who)

    def laugh(at: float, n: int) -> Part:
        x = _laughter(plan, n) * db(float(rng.uniform(-3.0, 3.0)))
        plan.add(at, x)
        end = at + len(x) / SAMPLE_RATE
        plan.keep_clear.append((at - 0.8, end + 0.8))
        return ctx.part("laughter", at, end, f"{n} voices")

    def crowd(at: float, duck: Part | None = None) -> Part:
        seconds = float(rng.uniform(2.5, 4.5))
        x = roar(seconds, seed=int(rng.integers(1 << 30))) * db(SPEECH_DBFS + float(rng.uniform(12.0, 17.0)))
        if duck is not None:  # a broadcast mix ducks the crowd under the commentator
            tt = at + np.arange(len(x)) / SAMPLE_RATE
            inside = np.clip(np.minimum(tt - (duck.t - 0.15), (duck.end + 0.3) - tt) / 0.15, 0.0, 1.0)
            x = x * (1.0 - (1.0 - db(-14.0)) * inside)
        plan.add(at, x.astype(np.float32))
        return ctx.part("crowd_roar", at, at + seconds)

    def banner(at: float, text: str, kill: bool) -> Part:
        seconds = float(rng.uniform(2.5, 4.0))
        plan.banners.append((at, at + seconds, text))
        if kill:
            plan.kill_icons.append((at, at + float(rng.uniform(3.0, 4.5))))
        return ctx.part("hud_banner", at, at + seconds, text)

    def montage(at: float, seconds: float, pool: tuple[str, ...]) -> Part:
        cuts = _montage(plan, at, at + seconds, pool)
        return ctx.part("rapid_cuts", at, at + seconds, f"{cuts} cuts")

    other = 1 % len(ctx.speakers)  # a second person, where there is one
    if recipe == "elimination":
        text = BANNERS[int(rng.integers(len(BANNERS)))]
        parts += [banner(t, text, kill=True), shout(t + float(rng.uniform(0.3, 1.0)))]
    elif recipe == "victory":
        parts += [banner(t, "VICTORY", kill=False), shout(t + float(rng.uniform(0.4, 1.2)))]
    elif recipe == "hud_only":
        parts += [banner(t, BANNERS[int(rng.integers(len(BANNERS)))], kill=True)]
    elif recipe in ("funny_death", "laugh"):
        parts += [laugh(t, int(rng.integers(1, 3)))]
    elif recipe == "group_laugh":
        parts += [laugh(t, int(rng.integers(2, 4)))]
    elif recipe == "killcam":
        seconds = float(rng.uniform(4.5, 6.5))
        parts += [montage(t, seconds, ("killcam_snow", "killcam_night", "killcam_red")),
                  shout(t + float(rng.uniform(0.5, 2.0)), keyword=False)]
    elif recipe in ("clutch_shout", "commentator_call"):
        parts += [shout(t)]
    elif recipe == "hype_shout":
        parts += [shout(t, keyword=True)]
    elif recipe == "excited_plain":
        parts += [shout(t, keyword=False)]
    elif recipe == "yell":
        parts += [shout(t, level=float(rng.uniform(10.0, 13.0)))]
    elif recipe == "goal":
        said = shout(t + float(rng.uniform(0.5, 0.9)), level=float(rng.uniform(0.0, 9.0)))
        parts += [crowd(t, duck=said), said,
                  montage(t + float(rng.uniform(5.5, 6.5)), float(rng.uniform(4.5, 6.0)),
                          ("replay_closeup", "replay_net", "replay_crowd", "replay_aerial"))]
    elif recipe == "big_chance":
        said = shout(t + float(rng.uniform(0.4, 0.9)), keyword=False)
        parts += [crowd(t, duck=said), said]
    elif recipe == "save":
        said = shout(t + float(rng.uniform(0.5, 0.9)))
        parts += [crowd(t, duck=said), said]
    elif recipe == "exclaim_laugh":
        first = shout(t, keyword=True)
        parts += [first, laugh(first.end + 0.3, int(rng.integers(2, 4)))]
    elif recipe == "excited_exchange":
        first = shout(t, who=0, keyword=False)
        parts += [first, shout(first.end + float(rng.uniform(0.3, 0.8)), who=other, keyword=False)]
    else:
        raise ValueError(f"unknown moment recipe {recipe!r}")
    return parts


def _plant_moment(ctx: _Ctx, recipe: str, t: float, second: str | None) -> CorpusMoment:
    parts = _plant_event(ctx, recipe, t)
    kind = recipe
    if second is not None:  # a second highlight 6-12 s on: the same clip window, one truth moment
        heard = max((p.end for p in parts if p.kind not in ("hud_banner", "rapid_cuts")), default=t)
        t2 = max(t + float(ctx.plan.rng.uniform(6.0, 12.0)), heard + 1.0)
        parts += _plant_event(ctx, second, t2)
        kind = f"{recipe}+{second}"
    parts.sort(key=lambda p: p.t)
    signals = list(dict.fromkeys(s for p in parts for s in p.signals))
    text = " / ".join(p.text for p in parts if p.text and p.kind not in ("rapid_cuts", "laughter"))
    return CorpusMoment(t=round(min(p.t for p in parts), 3), kind=kind, expected_signals=signals,
                       end=round(max(p.end for p in parts), 3), text=text, parts=parts)


def _plant_distractor(ctx: _Ctx, kind: str, t: float, room: float) -> Distractor | None:
    """Plant ``kind`` at ``t`` within ``room`` seconds; None when it does not fit."""
    plan, rng = ctx.plan, ctx.plan.rng
    talk = SPEECH_DBFS  # dB levels below are relative to the talk

    def music(seconds: float) -> tuple[Band, dict[str, np.ndarray]]:
        band = Band.draw(rng)
        return band, band_stems(seconds, band, int(rng.integers(1 << 30)))

    def fade(n: int, t_in: float, t_out: float) -> np.ndarray:
        s = np.arange(n) / SAMPLE_RATE
        edge = np.minimum(s / max(t_in, 1e-3), (n / SAMPLE_RATE - s) / max(t_out, 1e-3))
        return np.clip(edge, 0, 1).astype(np.float32)

    def sung_line(text: str, band: Band) -> np.ndarray:
        return voices.sing(text, rng, tempo_bpm=band.bpm, key_hz=band.root,
                           voice=voices.VOICES[int(rng.integers(len(voices.VOICES)))])

    if kind == "scene_cut":
        scenes = BASE_SCENES[ctx.style]
        current = next(s for at, s in reversed(plan.base_scenes) if at <= t)
        scene = next(s for s in scenes if s != current)
        plan.base_scenes.append((t, scene))
        return Distractor(t=round(t, 3), kind=kind, end=round(t + 0.1, 3), text=f"to {scene}")
    if kind == "calm_story":
        text = CALM_STORIES[int(rng.integers(len(CALM_STORIES)))]
        who = int(rng.integers(len(ctx.speakers)))
        style = "excited" if ctx.loud_talker else "calm"
        x = ctx.say(text, who, style) * ctx.gain(who, 5.0 if ctx.loud_talker else 0.0)
        end = t + len(x) / SAMPLE_RATE
        if end - t > room:
            return None
        plan.talk_inserts.append((t, x))
        plan.keep_clear.append((t - 0.6, end + 0.6))
        return Distractor(t=round(t, 3), kind=kind, end=round(end, 3), text=text)
    if kind == "loud_music":
        seconds = min(room, float(rng.uniform(15.0, 32.0)))
        if seconds < 12.0:
            return None
        ramp, level = float(rng.uniform(2.0, 12.0)), float(rng.uniform(3.0, 8.0))
        n = int(seconds * SAMPLE_RATE)
        if rng.random() < 0.25:  # bench.genres' own music break
            x, what = _music(seconds, ramp, seed=int(rng.integers(1 << 30))), "120 bpm keys"
        else:
            band, stems = music(seconds)
            x, what = sum(stems.values()) * fade(n, ramp, 0.01), band.describe()
        x = x * fade(n, 0.01, 3.0) * db(talk + level)
        plan.add(t, x)
        return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3),
                          text=f"{what}, +{level:.1f} dB over the talk, {ramp:.0f} s ramp-in")
    if kind in ("music_swell", "music_bed", "sung_chorus", "sung_lyrics"):
        lo, hi = {"music_swell": (26.0, 40.0), "music_bed": (40.0, 90.0), "sung_chorus": (26.0, 40.0),
                  "sung_lyrics": (20.0, 40.0)}[kind]
        seconds = min(room, float(rng.uniform(lo, hi)))
        if seconds < lo - 2.0:
            return None
        band, stems = music(seconds)
        n = int(seconds * SAMPLE_RATE)
        bed_db = float(rng.uniform(-14.0, -6.0))
        edges = fade(n, float(rng.uniform(1.0, 4.0)), 2.0)
        if kind == "music_bed":
            plan.add(t, (stems["chords"] + stems["bass"] + stems["drums"]) * edges * db(talk + bed_db))
            return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3),
                              text=f"{band.describe()}, {bed_db:+.1f} dB under the talk")
        at = float(rng.uniform(6.0, max(6.5, seconds - 16.0)))  # the event inside the bed
        if kind == "music_swell":
            rise, hold, up = float(rng.uniform(2.0, 5.0)), float(rng.uniform(5.0, 10.0)), float(rng.uniform(9.0, 14.0))
            curve = _ramp(n, [(at, 0.0), (at + rise, up), (at + rise + hold, up), (at + rise + hold + 3.0, 0.0)])
            x = stems["chords"] + (stems["bass"] + stems["drums"]) * curve
            plan.add(t, x * edges * db(talk + bed_db))
            return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3),
                              text=f"{band.describe()}, bed {bed_db:+.1f} dB, drums and bass +{up:.0f} dB at "
                                   f"{t + at:.1f} s")
        bed = (stems["chords"] + stems["bass"] + stems["drums"]) * edges * db(talk + bed_db)
        vocal = np.zeros(n, np.float32)
        sung: list[str] = []
        if kind == "sung_lyrics":  # a song: verses of lyrics all along, at the band's level or a bit above
            s = float(rng.uniform(1.0, 3.0))
            while s < seconds - 4.0:
                line = LYRICS[int(rng.integers(len(LYRICS)))]
                y = sung_line(line, band)
                k = int(s * SAMPLE_RATE)
                y = y[: n - k]
                vocal[k : k + len(y)] += y
                sung.append(line)
                s += len(y) / SAMPLE_RATE + float(rng.uniform(0.8, 2.5))
            voice_db = bed_db + float(rng.uniform(0.0, 4.0))
            plan.add(t, bed + vocal * db(talk + voice_db) * edges)
            return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3),
                              text=f"sung: {' / '.join(sung)} ({band.describe()})")
        # sung_chorus: the bed plays, then the chorus (a hype lyric, twice) is turned up
        line = LYRICS[int(rng.integers(len(LYRICS)))]
        s = at
        for _ in range(2):
            y = sung_line(line, band)
            k = int(s * SAMPLE_RATE)
            y = y[: n - k]
            vocal[k : k + len(y)] += y
            s += len(y) / SAMPLE_RATE + 0.5
        up = float(rng.uniform(6.0, 10.0))
        curve = _ramp(n, [(at - 1.0, 0.0), (at, up), (s, up), (s + 1.5, 0.0)])
        plan.add(t, (bed + vocal * db(talk + bed_db + 2.0) * edges) * curve)
        return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3),
                          text=f"sung: {line} (chorus +{up:.0f} dB at {t + at:.1f} s; {band.describe()})")
    if kind == "game_sfx":
        seconds = min(room, float(rng.uniform(6.0, 15.0)))
        if seconds < 5.0:
            return None
        x, what = game_sfx(seconds, rng)
        level = float(rng.uniform(4.0, 12.0))
        plan.add(t, x * db(talk + level))
        return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3), text=f"{what}, {level:+.0f} dB")
    if kind == "laugh_track":
        seconds = min(room, float(rng.uniform(15.0, 30.0)))
        if seconds < 10.0:
            return None
        s, times = float(rng.uniform(1.0, 4.0)), 0
        while s < seconds - 4.0:  # canned audience laughter under calm talk, after each "joke"
            a, b = _laughter(plan, 3), _laughter(plan, 3)  # an audience: two groups, one joins late
            lag = int(float(rng.uniform(0.2, 0.5)) * SAMPLE_RATE)
            x = np.zeros(max(len(a), lag + len(b)), np.float32)
            x[: len(a)] += a
            x[lag : lag + len(b)] += b * 0.7
            plan.add(t + s, x * db(float(rng.uniform(-8.0, -2.0))))
            times += 1
            s += len(x) / SAMPLE_RATE + float(rng.uniform(4.0, 9.0))
        return Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3), text=f"canned laughter x{times}")
    raise ValueError(f"unknown distractor {kind!r}")


def _schedule(ctx: _Ctx) -> None:
    """Moments and distractors in random order at random times (see the module doc's rules)."""
    plan, rng, d = ctx.plan, ctx.plan.rng, ctx.plan.duration
    limit = d - END_MARGIN
    t = float(rng.uniform(*FIRST_EVENT))
    kinds = list(DISTRACTOR_KINDS[ctx.style])
    recipes = list(RECIPES[ctx.style])
    rng.shuffle(kinds)
    rng.shuffle(recipes)
    k_i = r_i = 0
    last_moment_end, last_distractor_end = -math.inf, -math.inf
    want_moments = ctx.genre != "distractors"
    last = ""
    while t < limit:
        moment = want_moments and (rng.random() < (0.5 if last == "moment" else 0.8))
        if moment:
            double = rng.random() < DOUBLE_P
            t0 = max(t, last_moment_end + MOMENT_SPACING, last_distractor_end + CLEAR_BEFORE_MOMENT)
            t0 += float(rng.uniform(0.0, 6.0)) if rng.random() < 0.4 else float(rng.uniform(4.0, 25.0))
            if t0 + (DOUBLE_NEEDS if double else MOMENT_NEEDS) > limit:
                if last == "moment":
                    break
                last, t = "moment", t0  # try a distractor in the time left
                continue
            recipe = recipes[r_i % len(recipes)]
            second = recipes[(r_i + 1) % len(recipes)] if double else None
            r_i += 2 if double else 1
            m = _plant_moment(ctx, recipe, t0, second)
            plan.moments.append(m)
            last_moment_end, t, last = m.end, m.end, "moment"
        else:
            kind = kinds[k_i % len(kinds)]
            k_i += 1
            t0 = max(t, last_moment_end + CLEAR_AFTER_MOMENT, last_distractor_end + 2.0)
            t0 += float(rng.uniform(0.0, 8.0))
            room = limit - t0
            if room < 6.0:
                break
            dis = _plant_distractor(ctx, kind, round(t0, 2), room)
            if dis is None:
                last = "distractor"
                continue
            plan.distractors.append(dis)
            last_distractor_end, t, last = dis.end, dis.end, "distractor"


def _calm_talk(ctx: _Ctx) -> None:
    """The speakers' talk everywhere except around reactions (the talk pauses there); in a
    podcast the speaker changes more often."""
    plan, rng = ctx.plan, ctx.plan.rng
    sentences = list(CALM_TALK[ctx.style]) + list(CALM_SENTENCES)
    style = "excited" if ctx.loud_talker else "calm"
    extra = 5.0 if ctx.loud_talker else 0.0
    cache: dict[tuple[int, int], np.ndarray] = {}
    who = 0

    def pick(placed: int) -> np.ndarray:
        nonlocal who
        if len(ctx.speakers) > 1 and rng.random() < (0.5 if ctx.style == "podcast" else 0.25):
            who = int(rng.integers(len(ctx.speakers)))
        key = (int(rng.integers(len(sentences))), who)
        if key not in cache:
            level = extra + (float(rng.uniform(-1.5, 1.5)) if ctx.loud_talker else 0.0)
            cache[key] = ctx.say(sentences[key[0]], who, style) * ctx.gain(who, level)
        return cache[key]

    fill_talk(plan, pick, (0.3, 1.2))


def _ambience(ctx: _Ctx) -> None:
    """The genre's bed: a murmuring crowd at a match, a low game hum; in some broadcasts with
    moments, quiet background music all along (moments happen over music too)."""
    plan, rng = ctx.plan, ctx.plan.rng
    n = len(plan.audio)
    if ctx.genre != "distractors" and rng.random() < BED_P:
        band = Band.draw(rng)
        level = float(rng.uniform(-20.0, -12.0))
        bed = sum(band_stems(plan.duration, band, int(rng.integers(1 << 30))).values())
        plan.audio[: len(bed)] += (bed * db(SPEECH_DBFS + level)).astype(np.float32)
        ctx.bed = f"{band.describe()}, {level:+.1f} dB under the talk"
    if ctx.style == "sports":
        bed = roar(plan.duration, seed=int(rng.integers(1 << 30)))
        t = np.arange(n) / SAMPLE_RATE
        swell = 1.0 + 0.3 * np.sin(2 * np.pi * t / float(rng.uniform(15, 30))) + 0.15 * np.sin(2 * np.pi * t / 7.3)
        plan.audio += (bed * swell * db(SPEECH_DBFS + float(rng.uniform(-15.0, -9.0)))).astype(np.float32)
    elif ctx.style == "gaming":
        hum = game_hum(n, rng)
        plan.audio += (hum * db(SPEECH_DBFS + float(rng.uniform(-24.0, -16.0)))).astype(np.float32)


# --- one broadcast -------------------------------------------------------------------------------


def _params(seed: int, duration: float, loudness: str, width: int, height: int, fps: int) -> str:
    key = f"v{CORPUS_VERSION} seed={seed} d={duration:.3f} l={loudness} {width}x{height}@{fps}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def make_broadcast(out_dir: Path, seed: int, *, duration: float = DEFAULT_DURATION, loudness: str | None = None,
                   width: int = WIDTH, height: int = HEIGHT, fps: int = FPS, reuse: bool = True) -> Path:
    """Write the seed's broadcast into ``out_dir``; return its MP4 (kept when already made alike)."""
    out_dir = Path(out_dir)
    loudness = loudness or loudness_of(seed)
    if loudness not in LOUDNESS_MODES:
        raise ValueError(f"unknown loudness mode {loudness!r}")
    stem = stem_of(seed, loudness)
    mp4 = out_dir / f"{stem}.mp4"
    params = _params(seed, duration, loudness, width, height, fps)
    tpath = out_dir / f"{stem}.truth.json"
    if reuse and mp4.exists() and tpath.exists():
        try:
            if msgspec.json.decode(tpath.read_bytes(), type=CorpusTruth).params == params:
                return mp4
        except msgspec.DecodeError:
            pass
    work = Path(tempfile.mkdtemp(prefix=f"corpus-{seed}-"))
    try:
        ctx = _plan_broadcast(seed, duration, loudness, work)
        plan = ctx.plan
        audio = process_loudness(plan.audio, loudness)
        wav = work / "mix.wav"
        write_wav(wav, audio)
        tmp = mp4.with_name(f".{stem}.tmp.mp4")
        encode_plan(tmp, wav, plan, width, height, fps, GOP_SECONDS, preset="ultrafast")  # cheap to make
        truth = _truth(ctx, width=width, height=height, fps=fps, params=params)
        tpath.write_bytes(msgspec.json.format(msgspec.json.encode(truth)))
        tmp.replace(mp4)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return mp4


def _plan_broadcast(seed: int, duration: float, loudness: str, work: Path) -> _Ctx:
    """Plan and mix the seed's broadcast (audio not yet loudness-processed; no picture yet)."""
    genre, style = genre_of(seed), style_of(seed)
    rng = np.random.default_rng([seed, CORPUS_GENRES.index(genre), 11])
    plan = _CorpusPlan(style, duration, rng, work, np.zeros(int(round(duration * SAMPLE_RATE)), np.float32))
    plan.base_scenes.append((0.0, BASE_SCENES[style][int(rng.integers(2))]))
    ctx = _Ctx(plan, genre, loudness, seed)
    if genre == "distractors" and seed % 3 == 1:  # a third of them: 1401, 1404, ... 5401, 5404, ...
        ctx.loud_talker = True
        plan.distractors.append(Distractor(t=0.0, kind="loud_talker", end=round(duration, 3),
                                           text="talks excited and 5 dB louder all along"))
    _schedule(ctx)
    _ambience(ctx)
    _calm_talk(ctx)
    return ctx


def _truth(ctx: _Ctx, *, width: int = WIDTH, height: int = HEIGHT, fps: int = FPS, params: str = "") -> CorpusTruth:
    plan, seed = ctx.plan, int(ctx.seed)
    return CorpusTruth(
        genre=ctx.genre, duration=plan.duration, seed=seed,
        moments=sorted(plan.moments, key=lambda m: m.t),
        distractors=sorted(plan.distractors, key=lambda d: d.t),
        profile=ctx.style, game_profile=GAME_PROFILE if ctx.style == "gaming" else None,
        width=width, height=height, fps=fps, gop_seconds=GOP_SECONDS,
        split=split_of(seed), loudness=ctx.loudness, style=ctx.style,
        speakers=[f"{s.voice} p{s.pitch} s{s.speed} {lv:+.1f}dB" for s, lv in zip(ctx.speakers, ctx.levels)],
        bed=ctx.bed, params=params,
    )  # fmt: skip


def plan_truth(seed: int, *, duration: float = DEFAULT_DURATION,
               loudness: str | None = None) -> tuple[CorpusTruth, np.ndarray]:
    """The seed's truth and its processed audio, without rendering or encoding (tests, stats)."""
    loudness = loudness or loudness_of(seed)
    work = Path(tempfile.mkdtemp(prefix=f"corpus-{seed}-"))
    try:
        ctx = _plan_broadcast(seed, duration, loudness, work)
        return _truth(ctx), process_loudness(ctx.plan.audio, loudness)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the corpus ------------------------------------------------------------------------------------


def _entry(mp4: Path) -> Entry:
    t = msgspec.json.decode(mp4.with_name(f"{mp4.stem}.truth.json").read_bytes(), type=CorpusTruth)
    return Entry(stem=mp4.stem, mp4=mp4.name, genre=t.genre, style=t.style, seed=t.seed, split=t.split,
                 loudness=t.loudness, duration=t.duration, moments=len(t.moments), distractors=len(t.distractors))


def _job(args: tuple) -> str:
    out_dir, seed, duration, loudness = args
    return str(make_broadcast(Path(out_dir), seed, duration=duration, loudness=loudness))


def make_corpus(out_dir: Path, split: str, *, scale: float = 1.0, genres: tuple[str, ...] = CORPUS_GENRES,
                loudness: str | None = None, jobs: int = 1, duration: float = DEFAULT_DURATION) -> list[Path]:
    """Make (or keep) the split's broadcasts in ``out_dir`` and index them in corpus.json.

    ``split``: "train", "test" or "all". ``loudness`` overrides every broadcast's own mode
    (the stems say which, so a flattened copy belongs in a folder of its own or beside).
    """
    if split not in SPLITS + ("all",):
        raise ValueError(f"unknown split {split!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = [(str(out_dir), s, duration, loudness) for s in broadcast_seeds(split, scale=scale, genres=tuple(genres))]
    if jobs > 1:
        # spawn, not fork: bench.voices names its espeak-ng scratch file per process at import
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            paths = [Path(p) for p in pool.map(_job, work)]
    else:
        paths = [Path(_job(w)) for w in work]
    index = out_dir / "corpus.json"
    entries = {e.stem: e for e in corpus_entries(out_dir)} if index.exists() else {}
    entries.update({p.stem: _entry(p) for p in paths})
    index.write_bytes(msgspec.json.format(msgspec.json.encode(sorted(entries.values(), key=lambda e: e.stem))))
    return paths


def corpus_entries(out_dir: Path, split: str | None = None) -> list[Entry]:
    """The broadcasts indexed in ``out_dir``/corpus.json (only ``split``'s when given)."""
    entries = msgspec.json.decode((Path(out_dir) / "corpus.json").read_bytes(), type=list[Entry])
    return [e for e in entries if split is None or e.split == split]


def composition(entries: list[Entry], out_dir: Path) -> str:
    """Hours per split and genre, moments and distractors by kind: a text table."""
    from collections import Counter

    lines = []
    for split in sorted({e.split for e in entries}):
        part = [e for e in entries if e.split == split]
        hours = Counter()
        kinds_m, kinds_d, parts = Counter(), Counter(), Counter()
        for e in part:
            hours[e.genre] += e.duration / 3600
            t = msgspec.json.decode((Path(out_dir) / f"{e.stem}.truth.json").read_bytes(), type=CorpusTruth)
            kinds_m.update("double" if "+" in m.kind else m.kind for m in t.moments)
            parts.update(p.kind for m in t.moments for p in m.parts)
            kinds_d.update(d.kind for d in t.distractors)
        lines.append(f"{split}: {len(part)} broadcasts, {sum(hours.values()):.2f} h: "
                     + ", ".join(f"{g} {h:.2f} h" for g, h in sorted(hours.items())))
        lines.append(f"  loudness: {dict(Counter(e.loudness for e in part))}")
        lines.append(f"  moments {sum(kinds_m.values())}: {dict(sorted(kinds_m.items()))}")
        lines.append(f"  parts: {dict(sorted(parts.items()))}")
        lines.append(f"  distractors {sum(kinds_d.values())}: {dict(sorted(kinds_d.items()))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder for the broadcasts and corpus.json")
    p.add_argument("--split", default="all", choices=SPLITS + ("all",))
    p.add_argument("--genres", default=",".join(CORPUS_GENRES))
    p.add_argument("--hours-scale", type=float, default=1.0, help="scales the number of broadcasts (min 1 per genre)")
    p.add_argument("--duration", type=float, default=DEFAULT_DURATION)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--loudness", choices=LOUDNESS_MODES, default=None, help="override every broadcast's mode")
    a = p.parse_args(argv)
    genres = tuple(g for g in a.genres.split(",") if g)
    for g in genres:
        if g not in CORPUS_GENRES:
            p.error(f"unknown genre {g!r}")
    paths = make_corpus(a.out, a.split, scale=a.hours_scale, genres=genres, loudness=a.loudness, jobs=a.jobs,
                        duration=a.duration)
    entries = [_entry(p) for p in paths]
    print(composition(entries, a.out))


if __name__ == "__main__":
    main()
