"""Labelled synthetic broadcasts of several genres, for the quality harness (bench.quality).

Each genre is a realistic mix of planted *moments* (what a viewer would clip) and
*distractors* (what must not become a clip), on top of calm talk and the genre's picture:

=============  ==========================================================================
genre          moments (and the signals each should light up)
=============  ==========================================================================
gaming         HUD banner ("ELIMINATED", "VICTORY", "3 KILLS"; a kill-feed skull with the
               kills) with a shout and a chat burst; a HUD banner alone with chat; a laugh
               at a funny death; a kill-cam replay montage (rapid cuts). The HUD is laid
               out for detectors/profiles/example_shooter (truth.game_profile)
just_chatting  laughter; a shouted "oh my god, no way!"; a yelled one (loud as well);
               a chat-only burst (a raid); the chat is busy all along
sports         a goal: crowd roar + commentator shout + replay montage + chat burst; a big
               chance: roar + chat; a save: roar + shout; a crowd bed under everything
podcast        group laughter (several voices); an exclamation followed by laughter
distractors    nothing but distractors: no moment at all
=============  ==========================================================================

Distractors, in every genre (and alone in ``distractors``): loud music (chords and drums
that ramp in slowly over ~12 s, like a music break, never a spike), a hype word said calmly
in the middle of calm talk ("that was insane, but..."; with ``hard=True`` also phrases that
are hype on their own: "let's go to the next map"), and a single hard scene cut (the
streamer switches scene, the director cuts to another camera).

Moments are at least 30 s apart (separate highlights: a clip each, whatever the genre's
cooldown) and a distractor comes 10 s or more after a moment's last part, so each is judged
on its own. A 120 s broadcast holds 3 moments and 2-3 distractors; 180 s, 5 and 3.

Media are made like a live encoder makes them: x264 zerolatency, a fixed 2 s GOP and no
scene-cut keyframes (``-sc_threshold 0``), AAC. The stream actor decodes keyframes only, so
a montage ("rapid cuts") changes scene every ~0.6-1.4 s for ~5 s, arranged so that each
keyframe inside it shows a different scene than the one before. A chat log (Twitch-like:
stream time, user, text, emote count) is written beside the MP4, as is the truth.

Files: ``<stem>.mp4``, ``<stem>.truth.json`` (:class:`GenreTruth`), ``<stem>.chat.json``.
Deterministic: the same genre, duration and seed give the same media, chat and truth.

    python -m bench.genres OUT_DIR [--genres gaming,sports] [--duration 120] [--seed 1]
"""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import msgspec
import numpy as np

from bench.broadcast import SAMPLE_RATE, SPEECH_DBFS, db, live_encoder_args, roar, speak, write_wav

GENRES = ("gaming", "just_chatting", "sports", "podcast", "distractors")

WIDTH, HEIGHT, FPS, GOP_SECONDS = 640, 360, 15, 2.0

# Which signals each planted element should light up (detector names; bench.quality maps
# aliases). A moment's expected_signals is the union over its parts.
PART_SIGNALS: dict[str, list[str]] = {
    "crowd_roar": ["loudness", "crowd"],
    "shouted_keyword": ["keyword", "sentiment"],
    "yelled_keyword": ["keyword", "sentiment", "loudness"],  # a shout > 10 dB over the talk
    "laughter": ["laughter"],
    "hud_banner": ["hud"],
    "rapid_cuts": ["scene_rate", "scene"],
    "chat_burst": ["chat", "emote"],
}

# The HUD detector's game profile this genre's HUD is laid out for: its "banner" region
# ([0.1, 0.28, 0.8, 0.25]) holds the banners, its "killfeed" region ([0.35, 0.04, 0.3, 0.2])
# the kill icon; the permanent HUD (health, ammo, minimap) lies outside both.
PROFILE_DIR = Path(__file__).resolve().parent.parent / "detectors" / "profiles"
GAME_PROFILE = "example_shooter"


# --- truth --------------------------------------------------------------------------------


class Part(msgspec.Struct, frozen=True):
    """One planted element of a moment: it starts at ``t`` and is over at ``end``."""

    kind: str  # a key of PART_SIGNALS
    t: float
    end: float
    signals: list[str]
    text: str = ""  # the words said, the banner shown, the chat's emotes...


class GenreMoment(msgspec.Struct, frozen=True):
    """A planted moment: ``t`` is its onset (the earliest part), ``end`` when its last part ends."""

    t: float
    kind: str  # the recipe, e.g. "goal", "elimination", "group_laugh"
    expected_signals: list[str]
    end: float
    text: str = ""
    parts: list[Part] = []


class Distractor(msgspec.Struct, frozen=True):
    """Something that must not become a clip, over [t, end]."""

    t: float
    kind: str  # "loud_music", "calm_keyword", "scene_cut"
    end: float
    text: str = ""


class GenreTruth(msgspec.Struct):
    genre: str
    duration: float
    seed: int
    moments: list[GenreMoment]
    distractors: list[Distractor]
    hard: bool = False  # calm keywords may be strong hype phrases (make_genre_broadcast)
    chat_log: str | None = None  # file name of the chat log, beside the truth file
    profile: str = ""  # the fusion/genre profile the channel should use (= genre)
    game_profile: str | None = None  # HUD game profile name (detectors/profiles/<name>/profile.json)
    width: int = WIDTH
    height: int = HEIGHT
    fps: int = FPS
    gop_seconds: float = GOP_SECONDS


class ChatMessage(msgspec.Struct, frozen=True):
    t: float  # stream time the message was sent
    user: str
    text: str
    emotes: int = 0  # how many emote tokens the text holds (Twitch's emotes tag)


class ChatLog(msgspec.Struct):
    channel: str
    emotes: list[str]  # the emote names used (a detector may take them as its emote set)
    messages: list[ChatMessage]


def truth_path(mp4: Path) -> Path:
    mp4 = Path(mp4)
    return mp4.with_name(f"{mp4.stem}.truth.json")


def load_genre_truth(mp4: Path) -> GenreTruth:
    return msgspec.json.decode(truth_path(mp4).read_bytes(), type=GenreTruth)


def load_chat(mp4: Path, truth: GenreTruth | None = None) -> list[ChatMessage]:
    """The broadcast's chat messages in time order ([] when it has no chat log)."""
    truth = truth or load_genre_truth(mp4)
    if not truth.chat_log:
        return []
    path = Path(mp4).with_name(truth.chat_log)
    return msgspec.json.decode(path.read_bytes(), type=ChatLog).messages


def game_profile_path(name: str | None) -> Path | None:
    return None if not name else PROFILE_DIR / name / "profile.json"


# --- genre recipes ------------------------------------------------------------------------

CALM_TALK: dict[str, tuple[str, ...]] = {
    "gaming": (
        "Okay, we are dropping near the river this time.",
        "I want to check the loadout before the next round starts.",
        "This rifle has a little less recoil since the last patch.",
        "Let me reload and wait for the team on the left side.",
        "The minimap shows two players near the bridge.",
        "I am going to hold this corner for a moment.",
        "We need more armor before we push the building.",
        "The sound in this game is really good with headphones.",
        "Thanks for the follow, welcome to the stream.",
        "I think the zone is closing toward the mountains.",
        "Chat, remind me to change the sensitivity later.",
        "This map has a lot of long sight lines.",
    ),
    "just_chatting": (
        "So today I wanted to talk about my trip last weekend.",
        "The train was late again, which is normal at this point.",
        "I tried a new recipe for dinner and it was pretty good.",
        "Somebody in chat asked about my camera, it is a cheap one.",
        "We might play a game later, but first some stories.",
        "I read most of the messages, even when I do not answer.",
        "My neighbour started learning the piano this month.",
        "The schedule for next week is on the website.",
        "I should really drink some water right now.",
        "Thank you for the kind messages, everyone.",
        "The weather has been grey and rainy all week.",
        "Let me read a few questions from the chat.",
    ),
    "sports": (
        "The home side keep the ball in midfield.",
        "A long pass out to the right wing, but it is cleared.",
        "They have had most of the possession in this half.",
        "The defender steps up and plays it back to the keeper.",
        "Both teams are being careful in the opening minutes.",
        "A throw in for the visitors near the halfway line.",
        "The coach is calling instructions from the touchline.",
        "That is a yellow card for the late challenge.",
        "The crowd here is in good voice this evening.",
        "A corner kick, headed away at the near post.",
        "They will want to keep their shape now.",
        "The striker drops deep to collect the ball.",
    ),
    "podcast": (
        "Welcome back to the show, this is episode forty two.",
        "Today we are talking about habits and how to keep them.",
        "I read a book about that last year, actually.",
        "The hard part is the first two weeks, in my opinion.",
        "Do you remember when we recorded the first episode?",
        "I think most people underestimate how much sleep matters.",
        "Our guest next week works on electric trains.",
        "We got a lot of mail about the last episode.",
        "That reminds me of a story from my first job.",
        "Let us take a short break and then answer some questions.",
        "I am not sure I agree with that, to be honest.",
        "The research on this is still quite new.",
    ),
}
CALM_TALK["distractors"] = CALM_TALK["gaming"][:6] + CALM_TALK["just_chatting"][:6]

# A hype word in an ordinary sentence, said at the normal level in the normal voice.
CALM_KEYWORDS = (
    "That was insane, but let us move on to the next topic.",
    "There is no way to know that before the update.",
    "Honestly the new patch notes are unbelievable, they changed so much.",
    "I think that part was insane, the way they planned it.",
)
# Harder (``hard=True``): a phrase that is hype on its own, used in ordinary talk. Text alone
# cannot tell these from a real moment; the voice (level, pitch, pace) or context must.
CALM_STRONG_KEYWORDS = (
    "Okay, let's go to the next map and see how it plays.",
    "Oh my god, I almost forgot to mention the schedule.",
    "Let's go over the questions from last week first.",
)

SHOUTS: dict[str, tuple[str, ...]] = {  # phrases tiny.en hears reliably from espeak-ng
    "gaming": ("Let's go, let's go!", "No way! Let's go!", "What a play!", "Oh my god, no way!"),
    "just_chatting": ("Oh my god, no way!", "No way! Let's go!", "Let's go, let's go!"),
    "sports": ("Oh my god, what a shot!", "What a play!", "Oh my god, no way!"),
    "podcast": ("Oh my god, no way!", "No way! Let's go!"),
}

# espeak-ng voices: the streamer / commentator first; podcasts alternate between hosts.
VOICES: dict[str, tuple[str, ...]] = {
    "gaming": ("en-us+m3",),
    "just_chatting": ("en-gb+m5",),
    "sports": ("en-gb+m3",),
    "podcast": ("en-us+m3", "en-gb+m5", "en+m1"),
    "distractors": ("en-us+m3",),
}
LAUGH_VOICES = ("en-us+m3", "en-gb+m5", "en+m1", "en+f2", "en-us+m7", "en+f4")

# Moment recipes per genre: each entry is a recipe name (see _plant_moment).
RECIPES: dict[str, tuple[str, ...]] = {
    "gaming": ("elimination", "victory", "hud_only", "funny_death", "killcam"),
    "just_chatting": ("laugh", "hype_shout", "yell", "raid"),
    "sports": ("goal", "big_chance", "save"),
    "podcast": ("group_laugh", "exclaim_laugh", "group_laugh"),
    "distractors": (),
}
DISTRACTORS: dict[str, tuple[str, ...]] = {
    "gaming": ("calm_keyword", "scene_cut", "loud_music"),
    "just_chatting": ("calm_keyword", "scene_cut", "loud_music"),
    "sports": ("calm_keyword", "scene_cut", "loud_music"),
    "podcast": ("calm_keyword", "scene_cut", "loud_music"),
    # in this order, as many as fit; the music break early (no moment after it to protect)
    "distractors": ("scene_cut", "calm_keyword", "loud_music") + ("calm_keyword", "scene_cut") * 8,
}
CHAT_RATE = {"gaming": 1.0, "just_chatting": 3.5, "sports": 1.5, "podcast": 0.6, "distractors": 1.0}
BASE_SCENES = {
    "gaming": ("game_forest", "game_desert"),
    "just_chatting": ("facecam", "screenshare"),
    "sports": ("pitch_main", "pitch_wide"),
    "podcast": ("podcast_wide", "podcast_close"),
    "distractors": ("facecam", "game_forest"),
}

FIRST_EVENT = 10.0  # s: the loudness baseline and the chat baseline need some warm-up
MOMENT_GAP = 30.0  # s at least between two moments' onsets: separate highlights, a clip each
MOMENT_NEEDS = 13.0  # s from a moment's onset to the end of its parts, at most (a goal's replay)
AFTER_MOMENT = 10.0  # s of talk between a moment's last part and the next distractor
DISTRACTOR_SPAN = {"calm_keyword": 10.0, "scene_cut": 9.0, "loud_music": 36.0}  # music: when not last
DISTRACTOR_NEEDS = {"calm_keyword": 4.0, "scene_cut": 1.0, "loud_music": 20.0}  # s it must have to fit
MUSIC_SECONDS = 30.0  # a music break in the middle: ramp-in, full level, 3 s fade-out
MUSIC_MIN = 17.0  # s a music break needs at the end: ramp-in, then at least 5 s at full level
END_MARGIN = 5.0  # s of calm after the last moment's parts

HYPE_EMOTES = ("PogChamp", "Pog", "POGGERS", "PogU", "EZ", "Clap", "HYPERS", "LETSGO")
LAUGH_EMOTES = ("KEKW", "LUL", "OMEGALUL", "LULW", "ICANT")
SHOCK_EMOTES = ("monkaS", "WutFace", "D:", "PogChamp", "Pog")
CALM_EMOTES = ("Kappa", "SeemsGood", "catJAM", "FeelsGoodMan", "4Head", "BibleThump")
ALL_EMOTES = tuple(dict.fromkeys(HYPE_EMOTES + LAUGH_EMOTES + SHOCK_EMOTES + CALM_EMOTES))
CHAT_LINES = (
    "hi chat", "what rank is he", "gg", "first time here", "what song is this", "nice",
    "how long have you been streaming", "hello from germany", "this map again", "W streamer",
    "anyone else lagging", "what settings do you use", "good morning", "is this live",
    "what is the schedule", "love the stream", "how old is the channel", "who is winning",
    "can you say hi to my friend", "just got here", "what game is next", "the audio is fine",
    "wait what happened", "lol", "true", "same", "that makes sense", "agreed",
)
BURST_LINES = {
    "hype": ("LETS GOOO", "CLIP IT", "no way", "WHAT", "insane", "HOLY", "W", "GG"),
    "laugh": ("LMAO", "im dead", "HAHAHA", "lmaooo", "bro", "CLIP IT"),
    "shock": ("WHAT", "no way", "did that just happen", "HOLY", "bro what"),
    "raid": ("raid hype", "hi from the raid", "RAID", "hello everyone", "raiders here"),
}


# --- the plan: what happens when ------------------------------------------------------------


@dataclass
class _Plan:
    genre: str
    duration: float
    rng: np.random.Generator
    work: Path
    audio: np.ndarray
    keep_clear: list[tuple[float, float]] = field(default_factory=list)  # calm talk pauses here
    talk_inserts: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (t, voice) said as talk
    base_scenes: list[tuple[float, str]] = field(default_factory=list)  # (from t, scene)
    montages: list[tuple[float, float, str]] = field(default_factory=list)  # (t0, t1, scene)
    banners: list[tuple[float, float, str]] = field(default_factory=list)  # (t0, t1, text)
    kill_icons: list[tuple[float, float]] = field(default_factory=list)  # (t0, t1)
    bursts: list[tuple[float, float, float, str]] = field(default_factory=list)  # (t0, t1, rate, mood)
    moments: list[GenreMoment] = field(default_factory=list)
    distractors: list[Distractor] = field(default_factory=list)
    n_speech: int = 0
    hard: bool = False

    @property
    def speech_gain(self) -> float:
        return db(SPEECH_DBFS)

    def add(self, t: float, x: np.ndarray) -> None:
        start = int(round(t * SAMPLE_RATE))
        if start >= len(self.audio):
            return
        part = x[: len(self.audio) - start]
        self.audio[start : start + len(part)] += part

    def voice(self, text: str, **kw) -> np.ndarray:
        self.n_speech += 1
        return speak(text, self.work / f"s{self.n_speech}.wav", **kw)


def make_genre_broadcast(
    path: Path,
    genre: str,
    *,
    duration: float = 120.0,
    seed: int = 1,
    distractors: tuple[str, ...] | None = None,
    hard: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
    fps: int = FPS,
    gop_seconds: float = GOP_SECONDS,
    workdir: Path | None = None,
) -> GenreTruth:
    """Write ``path`` (MP4), ``<stem>.truth.json`` and ``<stem>.chat.json``; return the truth.

    ``distractors`` overrides the genre's distractor kinds (e.g. ``()`` for none, or
    ``("calm_keyword", "scene_cut")`` for a short broadcast without a music break).
    ``hard`` lets calm keywords be strong hype phrases said in passing ("let's go to the
    next map"), which a transcript alone cannot tell from a moment.
    """
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}; choose from {', '.join(GENRES)}")
    path = Path(path)
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix=f"genre-{genre}-")) if own_tmp else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, GENRES.index(genre)])
    plan = _Plan(genre, duration, rng, work, np.zeros(int(round(duration * SAMPLE_RATE)), np.float32), hard=hard)
    try:
        scenes = BASE_SCENES[genre]
        plan.base_scenes.append((0.0, scenes[0]))
        _schedule(plan, DISTRACTORS[genre] if distractors is None else tuple(distractors))
        _ambience(plan)
        _calm_talk(plan)
        np.clip(plan.audio, -1.0, 1.0, out=plan.audio)
        wav = work / f"{path.stem}.mix.wav"
        write_wav(wav, plan.audio)
        chat = _chat(plan, seed)
        encode_plan(path, wav, plan, width, height, fps, gop_seconds)
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    chat_name = f"{path.stem}.chat.json"
    path.with_name(chat_name).write_bytes(msgspec.json.encode(chat))
    truth = GenreTruth(
        genre=genre,
        duration=duration,
        seed=seed,
        hard=hard,
        moments=sorted(plan.moments, key=lambda m: m.t),
        distractors=sorted(plan.distractors, key=lambda d: d.t),
        chat_log=chat_name,
        profile=genre,
        game_profile=GAME_PROFILE if genre == "gaming" else None,
        width=width,
        height=height,
        fps=fps,
        gop_seconds=gop_seconds,
    )
    truth_path(path).write_bytes(msgspec.json.format(msgspec.json.encode(truth)))
    return truth


def _schedule(plan: _Plan, distractor_kinds: tuple[str, ...]) -> None:
    """Lay out moments and distractors, alternating, as many as fit.

    Two moments are at least MOMENT_GAP apart (separate highlights, a clip each, whatever
    a genre's cooldown); a distractor comes AFTER_MOMENT after a moment's last part, so it
    is judged on its own. A loud-music break goes last (the loudness baseline stays high for
    ~30 s after one), except in the distractor-only genre, and only where three moments fit
    before it. What does not fit is left out.
    """
    rng, duration = plan.rng, plan.duration
    recipes = list(RECIPES[plan.genre])
    rng.shuffle(recipes)
    want_music = "loud_music" in distractor_kinds and plan.genre != "distractors"
    others = [k for k in distractor_kinds if k != "loud_music" or not want_music]
    if plan.genre == "distractors" or not recipes:
        events = [("distractor", k) for k in others]
    else:
        moments = [("moment", recipes[i % len(recipes)]) for i in range(int(duration // MOMENT_GAP) + 1)]
        distractors = [("distractor", str(k)) for k in rng.permutation(others)] if others else []
        first, second = (moments, distractors) if rng.random() < 0.5 else (distractors, moments)
        events = [e for pair in zip(first, second) for e in pair]
        events += first[len(second):] + second[len(first):]
    jitter = [float(x) for x in rng.uniform(0.0, 1.0, len(events) + 1)]

    def place(music: bool, plant: bool) -> int:
        limit = duration - END_MARGIN - (MUSIC_MIN if music else 0.0)  # all must be over by then
        free, last_moment, placed, cuts = FIRST_EVENT, -math.inf, 0, 0
        for (what, kind), jit in zip(events, jitter):
            if what == "moment":
                t0 = round(max(free, last_moment + MOMENT_GAP) + jit, 2)
                if t0 + MOMENT_NEEDS > limit + 1e-6:
                    continue
                end = t0 + MOMENT_NEEDS
                if plant:
                    _plant_moment(plan, kind, t0)
                    end = plan.moments[-1].end
                last_moment, free, placed = t0, end + AFTER_MOMENT, placed + 1
            else:
                t0 = round(free + jit, 2)
                if t0 + DISTRACTOR_NEEDS[kind] > limit + 1e-6:
                    continue
                cuts += kind == "scene_cut"
                if plant:
                    _plant_distractor(plan, kind, t0, cuts)
                free = t0 + DISTRACTOR_SPAN[kind]
        if music and plant:
            t0 = round(max(free, duration - 30.0) + jitter[-1], 2)
            if t0 + MUSIC_MIN <= duration + 1e-6:
                _plant_distractor(plan, "loud_music", t0, cuts)
        return placed

    music = want_music and place(True, plant=False) >= 3
    place(music, plant=True)


# --- moments --------------------------------------------------------------------------------


def _part(kind: str, t: float, end: float, text: str = "", signals: list[str] | None = None) -> Part:
    return Part(kind=kind, t=round(t, 3), end=round(end, 3), signals=list(signals or PART_SIGNALS[kind]), text=text)


def _plant_moment(plan: _Plan, recipe: str, t: float) -> None:
    rng, genre = plan.rng, plan.genre
    parts: list[Part] = []
    shouts = SHOUTS.get(genre, SHOUTS["gaming"])

    def shout(at: float, gain_db: float | None = None) -> Part:
        text = shouts[int(rng.integers(len(shouts)))]
        gain = float(rng.uniform(3.0, 7.0)) if gain_db is None else gain_db
        voice = VOICES[genre][0]
        x = plan.voice(text, excited=True, voice=voice, pitch=int(rng.integers(70, 86)), speed=int(rng.integers(175, 200)))
        x = x * plan.speech_gain * db(gain)
        plan.add(at, x)
        end = at + len(x) / SAMPLE_RATE
        plan.keep_clear.append((at - 1.0, end + 1.0))
        return _part("yelled_keyword" if gain >= 10.0 else "shouted_keyword", at, end, text)

    def laugh(at: float, voices: int) -> Part:
        x = _laughter(plan, voices)
        plan.add(at, x)
        end = at + len(x) / SAMPLE_RATE
        plan.keep_clear.append((at - 0.8, end + 0.8))
        return _part("laughter", at, end, f"{voices} voices")

    def crowd(at: float, duck: Part | None = None) -> Part:
        """A roar; ducked by ~14 dB under a commentator's shout, as a broadcast mix does."""
        seconds = float(rng.uniform(2.5, 4.0))
        x = roar(seconds, seed=int(rng.integers(1 << 30))) * plan.speech_gain * db(float(rng.uniform(14.0, 17.0)))
        if duck is not None:
            tt = at + np.arange(len(x)) / SAMPLE_RATE
            inside = np.clip(np.minimum(tt - (duck.t - 0.15), (duck.end + 0.3) - tt) / 0.15, 0.0, 1.0)
            x = x * (1.0 - (1.0 - db(-14.0)) * inside)
        plan.add(at, x)
        return _part("crowd_roar", at, at + seconds)

    def banner(at: float, text: str, kill: bool = False) -> Part:
        seconds = float(rng.uniform(2.8, 3.5))
        plan.banners.append((at, at + seconds, text))
        if kill:  # the kill feed shows a skull for a few seconds too
            plan.kill_icons.append((at, at + float(rng.uniform(3.0, 4.5))))
        return _part("hud_banner", at, at + seconds, text)

    def burst(at: float, mood: str, seconds: float | None = None, rate: float | None = None) -> Part:
        delay = float(rng.uniform(1.5, 2.8))  # viewers react a couple of seconds late
        seconds = float(rng.uniform(4.0, 6.0)) if seconds is None else seconds
        rate = float(rng.uniform(10.0, 20.0)) if rate is None else rate
        if genre == "just_chatting":
            rate += 6.0  # on top of an already busy chat
        plan.bursts.append((at + delay, at + delay + seconds, rate, mood))
        return _part("chat_burst", at + delay, at + delay + seconds, mood)

    def montage(at: float, seconds: float, pool: tuple[str, ...]) -> Part:
        cuts = _montage(plan, at, at + seconds, pool)
        return _part("rapid_cuts", at, at + seconds, f"{cuts} cuts")

    if recipe == "elimination":
        text = ("ELIMINATED", "DOUBLE KILL", "3 KILLS")[int(rng.integers(3))]
        parts += [banner(t, text, kill=True), shout(t + float(rng.uniform(0.3, 0.8))), burst(t, "hype")]
    elif recipe == "victory":
        parts += [banner(t, "VICTORY"), shout(t + float(rng.uniform(0.4, 1.0))), burst(t, "hype", rate=18.0)]
    elif recipe == "hud_only":
        parts += [banner(t, ("3 KILLS", "ELIMINATED")[int(rng.integers(2))], kill=True), burst(t, "hype")]
    elif recipe == "funny_death":
        parts += [laugh(t, int(rng.integers(1, 3))), burst(t, "laugh")]
    elif recipe == "killcam":
        parts += [montage(t, float(rng.uniform(5.0, 6.5)), ("killcam_snow", "killcam_night", "killcam_red")),
                  burst(t, "hype")]
    elif recipe == "laugh":
        parts += [laugh(t, int(rng.integers(1, 3))), burst(t, "laugh")]
    elif recipe == "hype_shout":
        parts += [shout(t), burst(t, "shock")]
    elif recipe == "yell":
        parts += [shout(t, gain_db=float(rng.uniform(12.0, 14.0))), burst(t, "shock")]
    elif recipe == "raid":
        parts += [burst(t - 2.0, "raid", seconds=float(rng.uniform(6.0, 8.0)), rate=float(rng.uniform(15.0, 22.0)))]
    elif recipe == "goal":
        said = shout(t + float(rng.uniform(0.5, 0.9)), gain_db=float(rng.uniform(6.0, 9.0)))
        parts += [crowd(t, duck=said), said, burst(t, "hype"),
                  montage(t + float(rng.uniform(5.5, 6.5)), float(rng.uniform(5.0, 6.0)),
                          ("replay_closeup", "replay_net", "replay_crowd", "replay_aerial"))]
    elif recipe == "big_chance":
        parts += [crowd(t), burst(t, "shock")]
    elif recipe == "save":
        said = shout(t + float(rng.uniform(0.5, 0.9)), gain_db=float(rng.uniform(6.0, 9.0)))
        parts += [crowd(t, duck=said), said, burst(t, "hype")]
    elif recipe == "group_laugh":
        parts += [laugh(t, int(rng.integers(2, 4))), burst(t, "laugh", rate=float(rng.uniform(8.0, 12.0)))]
    elif recipe == "exclaim_laugh":
        first = shout(t)
        parts += [first, laugh(first.end + 0.3, 3), burst(t, "laugh", rate=float(rng.uniform(8.0, 12.0)))]
    else:
        raise ValueError(f"unknown moment recipe {recipe!r}")
    onset = min(p.t for p in parts)
    signals = list(dict.fromkeys(s for p in parts for s in p.signals))
    text = " / ".join(p.text for p in parts if p.kind in ("shouted_keyword", "yelled_keyword", "hud_banner"))
    plan.moments.append(GenreMoment(t=round(onset, 3), kind=recipe, expected_signals=signals,
                                    end=round(max(p.end for p in parts), 3), text=text,
                                    parts=sorted(parts, key=lambda p: p.t)))


def _laughter(plan: _Plan, voices: int) -> np.ndarray:
    """People laughing, ~2-3 s: one bout per voice, the first the loudest.

    A bout is a train of "ha" syllables (espeak-ng, one call each, so each has its own
    pitch) at 4-5.5 per second, slowing down, its pitch falling and its level fading as
    the breath runs out, as real laughs do; the others join a little later, softer.
    """
    rng = plan.rng
    bouts = []
    for k, v in enumerate(rng.choice(len(LAUGH_VOICES), size=voices, replace=False)):
        bout = _laugh_bout(plan, LAUGH_VOICES[int(v)], seconds=float(rng.uniform(1.8, 3.0)))
        gain = 1.0 if k == 0 else db(float(rng.uniform(-7.0, -3.0)))
        bouts.append((0.0 if k == 0 else float(rng.uniform(0.2, 0.8)), bout * gain))
    n = max(int(o * SAMPLE_RATE) + len(x) for o, x in bouts)
    out = np.zeros(n, np.float32)
    for o, x in bouts:
        s = int(o * SAMPLE_RATE)
        out[s : s + len(x)] += x
    return (out * plan.speech_gain * db(2.0)).astype(np.float32)  # laughs are a bit louder than talk


def _laugh_bout(plan: _Plan, voice: str, seconds: float) -> np.ndarray:
    rng = plan.rng
    rate = float(rng.uniform(4.0, 5.5))  # syllables per second at the start
    pitch = float(rng.uniform(75, 95))
    out = np.zeros(int((seconds + 1.0) * SAMPLE_RATE), np.float32)
    t, i = 0.0, 0
    while t < seconds:
        syl = plan.voice("ha", voice=voice, pitch=int(max(30, pitch - 4 * i)), speed=int(rng.integers(300, 380)))
        period = 1.0 / (rate * (1.0 - 0.15 * t / seconds))  # slowing down
        syl = syl[: int(0.6 * period * SAMPLE_RATE)]  # a burst, then a gap (the breath in)
        fade = np.minimum(1.0, np.arange(len(syl))[::-1] / (0.02 * SAMPLE_RATE))
        level = 1.0 - 0.5 * t / seconds  # running out of breath
        s = int(t * SAMPLE_RATE)
        out[s : s + len(syl)] += syl * fade * level
        t += period * float(rng.uniform(0.92, 1.08))
        i += 1
    voiced = np.flatnonzero(np.abs(out) > 1e-4)
    return out[: voiced[-1] + 1] if len(voiced) else out


def _montage(plan: _Plan, t0: float, t1: float, pool: tuple[str, ...]) -> int:
    """Hard cuts every 0.6-1.4 s over [t0, t1]; each keyframe in it sees a new scene."""
    rng = plan.rng
    gop = GOP_SECONDS
    base = _base_scene_at(plan, t0)
    prev_key_scene = base
    prev = base
    t, cuts = t0, 0
    while t < t1 - 0.3:
        end = min(t1, t + float(rng.uniform(0.6, 1.4)))
        has_key = math.ceil(t / gop - 1e-9) * gop < end  # a keyframe falls inside [t, end)
        choices = [s for s in pool if s != prev and (not has_key or s != prev_key_scene)]
        scene = choices[int(rng.integers(len(choices)))]
        plan.montages.append((t, end, scene))
        if has_key:
            prev_key_scene = scene
        prev = scene
        t = end
        cuts += 1
    return cuts + 1  # and the cut back to the programme


# --- distractors ----------------------------------------------------------------------------


def _plant_distractor(plan: _Plan, kind: str, t: float, cuts: int) -> None:
    rng = plan.rng
    if kind == "calm_keyword":
        used = {d.text for d in plan.distractors}
        pool = CALM_KEYWORDS + (CALM_STRONG_KEYWORDS if plan.hard else ())
        options = [s for s in pool if s not in used] or list(pool)
        text = options[int(rng.integers(len(options)))]
        voice = VOICES[plan.genre][0]
        x = plan.voice(text, voice=voice) * plan.speech_gain
        plan.talk_inserts.append((t, x))
        end = t + len(x) / SAMPLE_RATE
        plan.keep_clear.append((t - 0.6, end + 0.6))
        plan.distractors.append(Distractor(t=round(t, 3), kind=kind, end=round(end, 3), text=text))
    elif kind == "scene_cut":
        scenes = BASE_SCENES[plan.genre]
        scene = scenes[cuts % len(scenes)]
        plan.base_scenes.append((t, scene))
        plan.distractors.append(Distractor(t=round(t, 3), kind=kind, end=round(t + 0.1, 3), text=f"to {scene}"))
    elif kind == "loud_music":
        ramp = float(rng.uniform(11.0, 14.0))
        level = float(rng.uniform(5.0, 7.0))  # dB over the talk: loud, but a level, not a burst
        seconds = min(plan.duration - t - 2.0, MUSIC_SECONDS) if plan.genre == "distractors" else plan.duration - t
        x = _music(seconds, ramp, seed=int(rng.integers(1 << 30)))
        if seconds < plan.duration - t:  # a break that ends: 3 s fade-out
            x *= np.clip((seconds - np.arange(len(x)) / SAMPLE_RATE) / 3.0, 0.0, 1.0).astype(np.float32)
        plan.add(t, x * plan.speech_gain * db(level))
        plan.distractors.append(Distractor(t=round(t, 3), kind=kind, end=round(t + seconds, 3),
                                           text=f"+{level:.1f} dB over the talk, {ramp:.0f} s ramp-in"))
    else:
        raise ValueError(f"unknown distractor {kind!r}")


def _music(seconds: float, ramp: float, seed: int) -> np.ndarray:
    """Chords and drums at 120 bpm, unit RMS at full level, fading in over ``ramp`` s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n, np.float64)
    root = float(rng.choice([196.0, 220.0, 246.9, 261.6]))
    progression = [(0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)]  # I V vi IV
    bar = 2.0
    for i in range(int(math.ceil(seconds / bar))):
        a, b = int(i * bar * SAMPLE_RATE), min(n, int((i + 1) * bar * SAMPLE_RATE))
        tt = t[a:b] - i * bar
        env = np.minimum(1.0, tt / 0.05) * np.exp(-tt * 0.6)
        for semi in progression[i % 4]:
            f = root * 2 ** (semi / 12)
            for h, amp in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)):
                out[a:b] += amp * env * np.sin(2 * np.pi * f * h * tt)
        bass = root / 2 * 2 ** (progression[i % 4][0] / 12)
        out[a:b] += 0.8 * env * np.sin(2 * np.pi * bass * tt)
    beat = 0.5
    noise = rng.standard_normal(n)
    for k in range(int(seconds / beat)):
        s = int(k * beat * SAMPLE_RATE)
        ln = min(n - s, int(0.25 * SAMPLE_RATE))
        tt = np.arange(ln) / SAMPLE_RATE
        if k % 2 == 0:  # kick
            out[s : s + ln] += 2.5 * np.sin(2 * np.pi * (50 + 60 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 12)
        else:  # snare
            out[s : s + ln] += 1.2 * noise[s : s + ln] * np.exp(-tt * 18)
        h = s + int(0.25 * SAMPLE_RATE)  # off-beat hi-hat
        hl = min(n - h, int(0.05 * SAMPLE_RATE))
        if hl > 0:
            out[h : h + hl] += 0.4 * np.diff(noise[h : h + hl + 1]) * np.exp(-np.arange(hl) / SAMPLE_RATE * 60)
    out /= np.sqrt((out**2).mean()) + 1e-9
    fade = np.clip(t / ramp, 0.0, 1.0)  # linear in amplitude: slow in dB once it is audible
    return (out * fade).astype(np.float32)


# --- audio beds and talk ----------------------------------------------------------------------


def _ambience(plan: _Plan) -> None:
    """The genre's sound bed under the talk: a murmuring crowd at a match, game sounds."""
    rng = plan.rng
    n = len(plan.audio)
    if plan.genre == "sports":
        bed = roar(plan.duration, seed=int(rng.integers(1 << 30)))
        t = np.arange(n) / SAMPLE_RATE
        swell = 1.0 + 0.3 * np.sin(2 * np.pi * t / 23.0) + 0.15 * np.sin(2 * np.pi * t / 7.3 + 1.0)
        plan.audio += (bed * swell * plan.speech_gain * db(-12.0)).astype(np.float32)
    elif plan.genre == "gaming":
        plan.audio += (game_hum(n, rng) * plan.speech_gain * db(-20.0)).astype(np.float32)


def game_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of a game's low rumble (noise kept to 40-900 Hz), at unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum *= (freqs > 40) & (freqs < 900)
    hum = np.fft.irfft(spectrum, n)
    return hum / (np.sqrt((hum**2).mean()) + 1e-9)


def fill_talk(plan: _Plan, pick: Callable[[int], np.ndarray], pause: tuple[float, float]) -> None:
    """Lay talk over the whole broadcast except where ``plan.keep_clear`` asks for quiet (the
    talk pauses around reactions), plus ``plan.talk_inserts`` where they were put.
    ``pick(placed)`` gives the next clip (``placed``: clips laid so far); a clip that would
    run into a kept-clear span is dropped and the next one is picked after that span."""
    for t, x in plan.talk_inserts:
        plan.add(t, x)
    t, placed = 1.0, 0
    while t < plan.duration:
        clip = pick(placed)
        end = t + len(clip) / SAMPLE_RATE
        blocked = next((b for a, b in plan.keep_clear if t < b and end > a), None)
        if blocked is not None:
            t = blocked
            continue
        plan.add(t, clip)
        placed += 1
        t = end + float(plan.rng.uniform(*pause))


def _calm_talk(plan: _Plan) -> None:
    """Calm sentences everywhere except around shouts and laughter, in turn by the genre's voices."""
    rng = plan.rng
    voices = VOICES[plan.genre]
    sentences = list(CALM_TALK[plan.genre])
    cache: dict[tuple[int, int], np.ndarray] = {}

    def pick(placed: int) -> np.ndarray:
        who = int(rng.integers(len(voices))) if len(voices) > 1 else 0
        key = (placed % len(sentences), who)
        if key not in cache:
            cache[key] = plan.voice(sentences[key[0]], voice=voices[who]) * plan.speech_gain
        return cache[key]

    fill_talk(plan, pick, (0.4, 1.2))


# --- chat -------------------------------------------------------------------------------------


def _chat(plan: _Plan, seed: int) -> ChatLog:
    """A quiet baseline from many users, plus the planted bursts (emote-heavy)."""
    rng = np.random.default_rng([seed, GENRES.index(plan.genre), 7])
    users = [f"viewer_{i:03d}" for i in range(300)]
    weights = 1.0 / np.arange(1, len(users) + 1) ** 0.8  # a few regulars talk most
    weights /= weights.sum()
    messages: list[ChatMessage] = []

    def pick_user(burst: bool = False) -> str:
        if burst:  # a burst brings the lurkers out: anyone may type
            return users[int(rng.integers(len(users)))]
        return users[int(rng.choice(len(users), p=weights))]

    rate = CHAT_RATE[plan.genre]
    t = float(rng.exponential(1.0 / rate))
    while t < plan.duration:
        if rng.random() < (0.25 if plan.genre == "just_chatting" else 0.12):
            text = f"{CHAT_LINES[int(rng.integers(len(CHAT_LINES)))]} {CALM_EMOTES[int(rng.integers(len(CALM_EMOTES)))]}"
            emotes = 1
        else:
            text, emotes = CHAT_LINES[int(rng.integers(len(CHAT_LINES)))], 0
        messages.append(ChatMessage(t=round(t, 3), user=pick_user(), text=text, emotes=emotes))
        t += float(rng.exponential(1.0 / rate))
    for t0, t1, peak, mood in plan.bursts:
        emote_pool = {"hype": HYPE_EMOTES, "laugh": LAUGH_EMOTES, "shock": SHOCK_EMOTES, "raid": HYPE_EMOTES}[mood]
        t = t0
        while t < min(t1, plan.duration):
            x = (t - t0) / max(t1 - t0, 1e-6)
            r = peak * min(1.0, x / 0.15 + 0.3) * (1.0 - 0.6 * x)  # quick rise, slow decay
            t += float(rng.exponential(1.0 / max(r, 1.0)))
            if t >= min(t1, plan.duration):
                break
            if rng.random() < 0.7:
                e = emote_pool[int(rng.integers(len(emote_pool)))]
                k = int(rng.integers(1, 5))
                text, emotes = " ".join([e] * k), k
            else:
                lines = BURST_LINES[mood]
                text = lines[int(rng.integers(len(lines)))]
                emotes = 0
                if rng.random() < 0.5:
                    text += " " + emote_pool[int(rng.integers(len(emote_pool)))]
                    emotes = 1
            messages.append(ChatMessage(t=round(t, 3), user=pick_user(burst=True), text=text, emotes=emotes))
    messages.sort(key=lambda m: m.t)
    return ChatLog(channel=f"#synthetic_{plan.genre}", emotes=list(ALL_EMOTES), messages=messages)


# --- video ------------------------------------------------------------------------------------


def _base_scene_at(plan: _Plan, t: float) -> str:
    scene = plan.base_scenes[0][1]
    for at, name in plan.base_scenes:
        if at <= t:
            scene = name
    return scene


class _Renderer:
    """Draws the broadcast's frames: moving scenes, montages, the game HUD and banners."""

    def __init__(self, plan: _Plan, width: int, height: int):
        self.plan, self.w, self.h = plan, width, height
        rng = np.random.default_rng(int(plan.rng.integers(1 << 30)))
        self.rng = rng
        self.tex = {}
        w, h = width, height

        def texture(lo: float, hi: float, tint: tuple[float, float, float], scale: int, tw: int = 3 * w, th: int = 2 * h):
            small = rng.random((th // scale + 2, tw // scale + 2)).astype(np.float32)
            big = cv2.resize(small, (tw, th), interpolation=cv2.INTER_CUBIC)
            big = lo + (hi - lo) * np.clip(big, 0, 1)
            return np.clip(big[..., None] * np.array(tint, np.float32)[None, None, :], 0, 255).astype(np.uint8)

        self.tex["forest"] = texture(40, 120, (0.55, 1.0, 0.45), 24)
        self.tex["desert"] = texture(130, 210, (1.0, 0.8, 0.5), 30)
        self.tex["snow"] = texture(200, 255, (0.95, 0.97, 1.0), 20)
        self.tex["night"] = texture(10, 60, (0.5, 0.6, 1.0), 20)
        self.tex["red"] = texture(60, 160, (1.0, 0.3, 0.25), 12)
        self.tex["crowd"] = texture(30, 250, (1.0, 0.9, 0.85), 3)
        self.tex["room"] = texture(90, 130, (0.8, 0.7, 0.6), 60)
        self.players = rng.random((14, 4)).astype(np.float32)  # x, y, speed x, speed y
        icon = PROFILE_DIR / GAME_PROFILE / "templates" / "kill_icon.png"
        self.icon = cv2.imread(str(icon), cv2.IMREAD_UNCHANGED) if icon.exists() else None
        if self.icon is not None and (self.icon.ndim != 3 or self.icon.shape[2] != 4):
            self.icon = None

    # scenes: each a function of t -> (h, w, 3) uint8 (RGB)
    def scene(self, name: str, t: float) -> np.ndarray:
        return getattr(self, f"_{name}")(t)

    def _scroll(self, tex: np.ndarray, t: float, vx: float, vy: float = 0.0) -> np.ndarray:
        th, tw = tex.shape[:2]
        x = int(abs(vx * t) + 0.2 * self.w * math.sin(t / 5.0) + 0.2 * self.w) % (tw - self.w)
        y = int(abs(vy * t) + 0.2 * self.h * (1 + math.sin(t / 7.0))) % (th - self.h)
        return tex[y : y + self.h, x : x + self.w].copy()

    def _game(self, t: float, tex: str, sky: tuple[int, int, int]) -> np.ndarray:
        img = self._scroll(self.tex[tex], t, 40.0)
        horizon = int(self.h * (0.38 + 0.03 * math.sin(t / 3.0)))
        grad = np.linspace(1.0, 0.6, horizon)[:, None, None]
        img[:horizon] = (np.array(sky, np.float32)[None, None, :] * grad).astype(np.uint8)
        # the weapon, swaying at the bottom right
        sway = int(6 * math.sin(t * 2.1))
        pts = np.array([[self.w * 0.55 + sway, self.h], [self.w * 0.62 + sway, self.h * 0.72],
                        [self.w * 0.70 + sway, self.h * 0.70], [self.w * 0.75 + sway, self.h]], np.int32)
        cv2.fillPoly(img, [pts], (45, 45, 50))
        return img

    def _game_forest(self, t):
        return self._game(t, "forest", (120, 170, 230))

    def _game_desert(self, t):
        return self._game(t, "desert", (200, 210, 240))

    def _killcam(self, t: float, tex: str, sky: tuple[int, int, int]) -> np.ndarray:
        img = self._game(t * 0.5, tex, sky)
        cv2.putText(img, "KILLCAM", (20, 40), cv2.FONT_HERSHEY_DUPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
        return img

    def _killcam_snow(self, t):
        return self._killcam(t, "snow", (230, 235, 245))

    def _killcam_night(self, t):
        return self._killcam(t, "night", (10, 10, 30))

    def _killcam_red(self, t):
        return self._killcam(t, "red", (60, 20, 20))

    def _lobby(self, t):
        img = np.full((self.h, self.w, 3), (40, 20, 60), np.uint8)
        for i, label in enumerate(("PLAY", "LOADOUT", "STORE", "SETTINGS")):
            y = int(self.h * (0.25 + 0.15 * i))
            glow = 90 + int(40 * math.sin(t * 2 + i))
            cv2.rectangle(img, (40, y - 25), (260, y + 15), (glow, 60, 140), -1)
            cv2.putText(img, label, (55, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        return img

    def _person(self, img: np.ndarray, cx: float, cy: float, scale: float, t: float, shirt) -> None:
        sway = 6 * math.sin(t * 0.9) * scale
        x, y = int(cx + sway), int(cy + 3 * math.sin(t * 1.7))
        r = int(55 * scale)
        cv2.ellipse(img, (x, y + int(2.6 * r)), (int(1.9 * r), int(1.5 * r)), 0, 180, 360, shirt, -1)
        cv2.circle(img, (x, y), r, (225, 185, 160), -1)
        cv2.circle(img, (x, y - int(0.5 * r)), int(r * 0.95), (60, 40, 30), -1)  # hair
        cv2.circle(img, (x, y + int(0.15 * r)), int(r * 0.8), (225, 185, 160), -1)
        blink = (t % 4.0) < 0.15
        for dx in (-0.3, 0.3):
            cv2.circle(img, (int(x + dx * r), y), 1 if blink else 4, (30, 30, 30), -1)

    def _facecam(self, t):
        img = self._scroll(self.tex["room"], t, 0.0)
        cv2.rectangle(img, (int(self.w * 0.05), int(self.h * 0.15)), (int(self.w * 0.3), int(self.h * 0.75)),
                      (90, 60, 40), -1)  # shelf
        for i in range(6):
            cv2.rectangle(img, (int(self.w * (0.06 + 0.04 * i)), int(self.h * 0.2)),
                          (int(self.w * (0.09 + 0.04 * i)), int(self.h * 0.4)), (180 - 20 * i, 80 + 20 * i, 60), -1)
        self._person(img, self.w * 0.6, self.h * 0.45, 1.1, t, (50, 90, 160))
        return img

    def _screenshare(self, t):
        img = np.full((self.h, self.w, 3), 235, np.uint8)
        cv2.rectangle(img, (0, 0), (self.w, 28), (60, 60, 70), -1)
        off = int(t * 12) % 40
        for i in range(14):
            y = 50 + i * 24 - off
            if 35 < y < self.h - 10:
                cv2.rectangle(img, (30, y), (30 + int(self.w * (0.4 + 0.4 * ((i * 7) % 5) / 5)), y + 8), (120, 120, 130), -1)
        cv2.rectangle(img, (self.w - 170, self.h - 130), (self.w - 10, self.h - 10), (70, 60, 50), -1)
        self._person(img, self.w - 90, self.h - 85, 0.45, t, (50, 90, 160))
        return img

    def _pitch(self, t: float, wide: bool) -> np.ndarray:
        img = np.zeros((self.h, self.w, 3), np.uint8)
        top = int(self.h * (0.55 if wide else 0.12))
        img[:top] = self._scroll(self.tex["crowd"], t, 5.0)[:top] // (3 if wide else 2)
        pan = int(60 * math.sin(t / 6.0)) + (0 if wide else 2000)
        stripe = 50 if wide else 90
        cols = ((np.arange(self.w) + pan) // stripe) % 2
        img[top:, :, 1] = np.where(cols, 140, 120)[None, :]
        img[top:, :, 0] = 40
        img[top:, :, 2] = 40
        cv2.line(img, (self.w // 2 - pan % 200, top), (self.w // 2 - pan % 200 - 40, self.h), (230, 230, 230), 2)
        for i, (px, py, vx, vy) in enumerate(self.players):
            x = int(((px + 0.05 * vx * t) % 1.0) * self.w)
            y = top + int(((py + 0.03 * vy * t) % 1.0) * (self.h - top))
            color = (220, 30, 30) if i % 2 else (240, 240, 60)
            cv2.circle(img, (x, y), 4 if wide else 8, color, -1)
        cv2.rectangle(img, (10, 10), (190, 36), (20, 20, 60), -1)
        minute = 23 + int(t // 60)
        cv2.putText(img, f"HOM 1-0 AWY {minute:02d}:{int(t % 60):02d}", (16, 29), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        return img

    def _pitch_main(self, t):
        return self._pitch(t, wide=False)

    def _pitch_wide(self, t):
        return self._pitch(t, wide=True)

    def _replay_label(self, img):
        cv2.putText(img, "REPLAY", (self.w - 140, 40), cv2.FONT_HERSHEY_DUPLEX, 0.9, (255, 255, 0), 2, cv2.LINE_AA)
        return img

    def _replay_closeup(self, t):
        img = np.full((self.h, self.w, 3), (30, 120, 40), np.uint8)
        self._person(img, self.w * 0.5, self.h * 0.35, 2.0, t, (220, 30, 30))
        return self._replay_label(img)

    def _replay_net(self, t):
        img = np.full((self.h, self.w, 3), (10, 30, 15), np.uint8)
        for x in range(0, self.w, 24):
            cv2.line(img, (x + int(t * 4) % 24, 0), (x + int(t * 4) % 24, self.h), (200, 200, 200), 1)
        for y in range(0, self.h, 24):
            cv2.line(img, (0, y), (self.w, y), (200, 200, 200), 1)
        return self._replay_label(img)

    def _replay_crowd(self, t):
        return self._replay_label(self._scroll(self.tex["crowd"], t, 30.0))

    def _replay_aerial(self, t):
        img = np.full((self.h, self.w, 3), (110, 200, 110), np.uint8)
        cv2.circle(img, (self.w // 2, self.h // 2), 80, (255, 255, 255), 5)
        cv2.line(img, (self.w // 2, 0), (self.w // 2, self.h), (255, 255, 255), 5)
        return self._replay_label(img)

    def _podcast_wide(self, t):
        img = np.full((self.h, self.w, 3), (25, 35, 70), np.uint8)
        cv2.rectangle(img, (0, int(self.h * 0.72)), (self.w, self.h), (90, 60, 40), -1)  # desk
        self._person(img, self.w * 0.3, self.h * 0.42, 0.8, t, (150, 40, 40))
        self._person(img, self.w * 0.7, self.h * 0.42, 0.8, t + 3.0, (40, 120, 60))
        cv2.circle(img, (int(self.w * 0.5), int(self.h * 0.65)), 12, (20, 20, 20), -1)  # mic
        return img

    def _podcast_close(self, t):
        img = np.full((self.h, self.w, 3), (200, 120, 50), np.uint8)
        self._person(img, self.w * 0.45, self.h * 0.45, 1.6, t, (150, 40, 40))
        return img

    # overlays
    def hud(self, img: np.ndarray, t: float) -> None:
        """The permanent HUD: outside the profile's regions (see GAME_PROFILE)."""
        w, h = self.w, self.h
        health = 100 - int(35 * (0.5 + 0.5 * math.sin(t / 9.0)))
        x0, y0, x1, y1 = int(0.03 * w), int(0.90 * h), int(0.30 * w), int(0.95 * h)
        cv2.rectangle(img, (x0, y0), (x1, y1), (20, 20, 20), -1)
        cv2.rectangle(img, (x0 + 2, y0 + 2), (x0 + 2 + int((x1 - x0 - 4) * health / 100), y1 - 2), (40, 200, 60), -1)
        cv2.putText(img, f"{health}", (x0, y0 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        mag = 30 - int(t * 1.3) % 31
        cv2.putText(img, f"{mag}/90", (int(0.80 * w), int(0.95 * h)), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2,
                    cv2.LINE_AA)
        mx0, my0, mx1, my1 = int(0.82 * w), int(0.03 * h), int(0.97 * w), int(0.30 * h)
        cv2.rectangle(img, (mx0, my0), (mx1, my1), (30, 40, 30), -1)
        cv2.rectangle(img, (mx0, my0), (mx1, my1), (200, 200, 200), 1)
        cv2.line(img, (mx0 + 10, my1 - 20), (mx1 - 15, my0 + 15), (90, 110, 90), 2)
        px = mx0 + int((mx1 - mx0) * (0.5 + 0.3 * math.sin(t / 4.0)))
        py = my0 + int((my1 - my0) * (0.5 + 0.3 * math.cos(t / 5.0)))
        cv2.circle(img, (px, py), 3, (255, 220, 0), -1)

    def kill_icon(self, img: np.ndarray) -> None:
        """The profile's kill-feed skull (its template is the game's sprite), with a name beside it."""
        if self.icon is None:
            return
        icon = cv2.resize(self.icon, (int(28 * self.w / 640), int(28 * self.h / 360)), interpolation=cv2.INTER_AREA)
        ih, iw = icon.shape[:2]
        x, y = int(0.47 * self.w), int(0.09 * self.h)
        cv2.rectangle(img, (x - int(0.1 * self.w), y - 2), (x + iw + int(0.1 * self.w), y + ih + 2), (30, 30, 30), -1)
        cv2.putText(img, "you", (x - int(0.08 * self.w), y + ih - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 220, 80), 1,
                    cv2.LINE_AA)
        cv2.putText(img, "rival", (x + iw + 6, y + ih - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1, cv2.LINE_AA)
        a = icon[..., 3:4].astype(np.float32) / 255.0
        rgb = icon[..., 2::-1].astype(np.float32)  # the PNG is BGRA; frames here are RGB
        roi = img[y : y + ih, x : x + iw].astype(np.float32)
        img[y : y + ih, x : x + iw] = (rgb * a + roi * (1 - a)).astype(np.uint8)

    def banner(self, img: np.ndarray, text: str) -> None:
        w, h = self.w, self.h
        x0, y0, x1, y1 = int(0.22 * w), int(0.34 * h), int(0.78 * w), int(0.48 * h)
        region = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = (region * 0.3 + np.array([120, 10, 10], np.float32) * 0.7).astype(np.uint8)
        scale = 1.2 if len(text) <= 8 else 1.0
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, 2)
        cv2.putText(img, text, ((x0 + x1 - tw) // 2, (y0 + y1 + th) // 2), cv2.FONT_HERSHEY_DUPLEX, scale,
                    (255, 255, 255), 2, cv2.LINE_AA)

    def frame(self, t: float) -> np.ndarray:
        plan = self.plan
        name = next((s for a, b, s in plan.montages if a <= t < b), None)
        in_montage = name is not None
        if name is None:
            name = _base_scene_at(plan, t)
        img = self.scene(name, t)
        if plan.genre == "gaming" and not in_montage and name.startswith("game_"):
            self.hud(img, t)
            for a, b, text in plan.banners:
                if a <= t < b:
                    self.banner(img, text)
            if any(a <= t < b for a, b in plan.kill_icons):
                self.kill_icon(img)
        return img


def encode_plan(path: Path, wav: Path, plan: _Plan, width: int, height: int, fps: int, gop_seconds: float,
                preset: str | None = None) -> None:
    """Rendered frames (piped raw) + the mixed audio, encoded like a live encoder (``preset``:
    another x264 preset than the live encoder's, e.g. "ultrafast" for a large corpus)."""
    gop = max(1, int(round(gop_seconds * fps)))
    path.parent.mkdir(parents=True, exist_ok=True)
    args = live_encoder_args(wav, plan.duration, gop, path)
    if preset is not None:
        args = [preset if a == "veryfast" else a for a in args]
    cmd = [
        "ffmpeg", "-y", "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", *args,
    ]  # fmt: skip
    renderer = _Renderer(plan, width, height)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        for i in range(int(math.ceil(plan.duration * fps))):
            proc.stdin.write(renderer.frame(i / fps).tobytes())
    except BrokenPipeError:
        pass
    finally:
        proc.stdin.close()
        code = proc.wait()
        reader.join(5)
    if code != 0:
        raise RuntimeError(f"ffmpeg failed ({code}): {b''.join(errors).decode(errors='replace')[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.genres", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder for <genre>-s<seed>.mp4 and their truth/chat files")
    p.add_argument("--genres", default=",".join(GENRES))
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    for genre in a.genres.split(","):
        mp4 = a.out / f"{genre}-s{a.seed}.mp4"
        truth = make_genre_broadcast(mp4, genre, duration=a.duration, seed=a.seed)
        print(f"{mp4}: {len(truth.moments)} moments, {len(truth.distractors)} distractors")
        for m in truth.moments:
            print(f"  {m.t:7.2f}s  moment     {m.kind:<14} {','.join(m.expected_signals):<40} {m.text}")
        for d in truth.distractors:
            print(f"  {d.t:7.2f}s  distractor {d.kind:<14} {d.text}")


if __name__ == "__main__":
    main()
