"""Detection quality: precision, recall and F1 per signal and fused, on labelled broadcasts.

Generates one broadcast per genre and seed (bench.genres: planted moments + distractors,
a truth file, a chat log), then runs the detectors over it:

* offline (default): decoded with PyAV exactly as the stream actor decodes (16 kHz audio
  chunks; keyframes only, with a BGR copy when the channel has a HUD game profile), fed to
  a real ``DetectorPipeline`` built from the genre's channel settings (``{"profile":
  <genre>}``, plus ``{"hud": {"profile": ...}}`` for gaming; GENRE_SETTINGS and
  ``--settings`` lay more over them) as fast as the CPU allows: audio to ``on_audio`` and
  ``on_speech``, keyframes to ``on_frame``, the chat log to ``pipeline.on_chat`` if there
  is one, else, as the actor's chat thread does, to a ``ChatActivityDetector`` every 0.5 s
  of stream time with its signals handed to ``pipeline.on_signals``; ASR flushed at the end.
  Every raw signal (whatever reaches ``fusion.push``) and every fused ``MomentEvent`` (the
  latest per ``seq``: fusion re-emits a growing moment) is recorded; CPU seconds per
  stream-second are measured in total and per detector (model loading excluded);
* live (``--live``, ``--live-only``): a real ``livecut up`` (bench.stack), one RTMP channel
  per broadcast with the same settings, the broadcast pushed in real time, clips received
  over Socket.IO and scored (a clip's moment time is its strongest trigger's, as fusion's
  event ``t``); plus moment-to-notification latency p50/p95 (notification arrival minus the
  wall time the moment's first packet was pushed) and clip-end-to-notification. The chat
  log is not replayed live (the actor only reads Twitch's own IRC server).

Scoring (document of record; the test asserts on it):

* A fused event (or a live clip's moment) *matches* a planted moment when its time falls
  in [moment.t - 3 s, moment.end + 3 s] (``moment.end`` = when its last part ends: a chat
  burst lags ~2 s and lasts ~5 s, a replay follows a goal by ~6 s, ASR words are stamped
  at speech time but a fusion lead can be any contributing signal). Each event matches at
  most one moment and each moment at most one event (nearest onset first); an unmatched
  event is a false positive, reported with the distractor it hit, if any (an event within
  [d.t - 3 s, d.end + 6 s] of distractor d).
* Per signal: recall over the moments whose truth expects that signal (it fired within
  [part.t - 3 s, part.end + 3 s] of a part that lists it); precision over its firings,
  where a firing near any moment ([m.t - 3 s, m.end + 3 s]) counts as true, so a signal
  that corroborates another kind of moment is not penalised.

    .venv/bin/python -m bench.quality [--genres gaming,just_chatting,sports,podcast,distractors]
        [--duration 120] [--seeds 1] [--jobs 2] [--live | --live-only] [--out DIR] [--reuse]
        [--hard] [--settings JSON]

Takes about 0.5 CPU-s per stream-second (ASR is most of it): the five genres at 120 s are
~5 CPU-minutes, ~3 minutes of wall time with ``--jobs 2`` on two free cores.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from bench.genres import GENRES, ChatMessage, GenreTruth, load_chat, load_genre_truth, make_genre_broadcast, truth_path
from bench.live_replay import decoded_media, latest_events
from bench.stats import percentile
from records.wire import MomentEvent, Signal

BEFORE = 3.0  # s a detection may precede a moment's onset (fusion leads, onsets at hop grid)
AFTER = 3.0  # s a detection may follow the end of a moment's last part
DISTRACTOR_AFTER = 6.0  # s after a distractor's end that an event is still blamed on it

# Per-genre channel settings (a channel's ``settings`` JSON). Each broadcast's channel gets
# ``{"profile": <truth.profile>}`` when detectors.genres has that profile, with
# GENRE_SETTINGS[<profile>] laid over it, then --settings. Must validate against the current
# ChannelSettings (unknown keys are errors).
GENRE_SETTINGS: dict[str, dict] = {genre: {} for genre in GENRES}

# Signal names a detector may use for what the truth calls otherwise.
SIGNAL_ALIASES: dict[str, str] = {"laugh": "laughter", "emotes": "emote", "chat_burst": "chat", "scene_cut": "scene"}


def canonical(name: str) -> str:
    return SIGNAL_ALIASES.get(name, name)


def genre_settings(truth: GenreTruth, override: dict | None = None) -> dict:
    """The channel settings for a broadcast: its genre profile (and game profile for the HUD
    detector), then GENRE_SETTINGS[profile], then ``override``."""
    name = truth.profile or truth.genre
    base: dict = {}
    try:
        from detectors.genres import PROFILES

        if name in PROFILES:
            base = {"profile": name}
    except ImportError:  # no fusion profiles (yet)
        pass
    if truth.game_profile:  # the HUD detector's game profile, where channels can name one
        from stream_actor.settings import ChannelSettings

        if "hud" in ChannelSettings.__struct_fields__:
            base["hud"] = {"profile": truth.game_profile}
    return _merge(_merge(base, GENRE_SETTINGS.get(name, {})), override or {})


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --- running the detectors offline ----------------------------------------------------------


@dataclass
class Run:
    """One broadcast through the detectors: what fired, what fused, what it cost."""

    name: str
    truth: GenreTruth
    signals: list[Signal] = field(default_factory=list)
    events: list[MomentEvent] = field(default_factory=list)
    stream_seconds: float = 0.0
    cpu_seconds: float = 0.0  # the whole run (decode, detectors, fusion), model load excluded
    wall_seconds: float = 0.0
    cpu_by_stage: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # live only: moment -> notification
    end_latencies: list[float] = field(default_factory=list)  # live only: clip end -> notification


def run_offline(mp4: Path, model, settings: dict | None = None, truth: GenreTruth | None = None) -> Run:
    """Decode ``mp4`` like the actor and feed a DetectorPipeline as fast as possible."""
    from stream_actor.detection import DetectorPipeline
    from stream_actor.settings import channel_settings

    mp4 = Path(mp4)
    truth = truth or load_genre_truth(mp4)
    run = Run(name=mp4.stem, truth=truth)
    channel = channel_settings(settings)
    hud, note = _hud_detector(channel)
    if note:
        run.notes.append(note)
    pipeline = DetectorPipeline(channel, model, hud=hud) if hud is not None else DetectorPipeline(channel, model)
    color_size = (channel.hud.frame_width, channel.hud.frame_height) if hud is not None else None
    cpu_started, wall_started = time.process_time(), time.monotonic()  # models are loaded: not counted
    cost = run.cpu_by_stage
    _observe(pipeline, run, cost)
    chat = _ChatDriver(pipeline, channel, load_chat(mp4, truth), cost)
    if chat.note:
        run.notes.append(chat.note)
    events = run.events
    end_t = 0.0
    for t, kind, items in decoded_media(mp4, cost, color_size):
        events += chat.until(t)
        if kind == "audio":
            for t0, samples in items:
                events += pipeline.on_audio(t0, samples)
                events += pipeline.on_speech(t0, samples)
                end_t = max(end_t, t0 + len(samples) / 16000.0)
        elif kind == "frames":
            for tf, gray, color in items:
                events += pipeline.on_frame(tf, gray, color) if color is not None else pipeline.on_frame(tf, gray)
    events += chat.until(end_t + 10.0)
    events += pipeline.flush_speech()
    run.events = latest_events(events)
    run.stream_seconds = end_t or truth.duration
    run.cpu_seconds = time.process_time() - cpu_started
    run.wall_seconds = time.monotonic() - wall_started
    return run


def _hud_detector(channel) -> tuple[object | None, str]:
    """The HUD detector the stream actor would build for these settings (None without a
    game profile), made by the actor's own code so the models and options are the same."""
    hud_opts = getattr(channel, "hud", None)
    if hud_opts is None or not hud_opts.profile:
        return None, ""
    from types import SimpleNamespace

    from stream_actor.actor import StreamActor

    build = getattr(StreamActor, "_hud_detector", None)
    if build is None:
        return None, "HUD not run: the stream actor builds no HUD detector in this tree"
    return build(SimpleNamespace(settings=channel, config=SimpleNamespace(asset_dirs=None))), ""


def _observe(pipeline, run: Run, cost: dict[str, float]) -> None:
    """Record every signal that reaches fusion, and time each detector's ``push``.

    Instance-level wrappers only (nothing in stream_actor is changed): ``fusion.push`` is
    the one door every signal goes through, whichever detector made it.
    """
    fusion = pipeline.fusion
    fusion_push = fusion.push

    def observed_push(signals, *args, **kwargs):
        run.signals.extend(signals)
        started = time.process_time()
        try:
            return fusion_push(signals, *args, **kwargs)
        finally:
            cost["fusion"] = cost.get("fusion", 0.0) + time.process_time() - started

    fusion.push = observed_push
    for attr, obj in list(vars(pipeline).items()):
        push = getattr(obj, "push", None)
        if obj is fusion or not callable(push) or attr.startswith("_"):
            continue
        label = "speech (ASR)" if attr == "transcriber" else attr

        def timed(*args, _push=push, _label=label, **kwargs):
            started = time.process_time()
            try:
                return _push(*args, **kwargs)
            finally:
                cost[_label] = cost.get(_label, 0.0) + time.process_time() - started

        setattr(obj, "push", timed)


class _ChatDriver:
    """Feeds the broadcast's chat log the way the stream actor's chat thread does.

    ``pipeline.on_chat(message)`` if the pipeline has one; otherwise, as the actor does now,
    a ``detectors.chat.ChatActivityDetector(settings.chat)`` fed in batches every
    ``interval`` s of stream time (``push(batch) + advance(now)``), its signals handed to
    ``pipeline.on_signals``. ``until(t)`` feeds everything sent up to stream time ``t``.
    """

    def __init__(self, pipeline, settings, messages: list[ChatMessage], cost: dict[str, float], interval: float = 0.5):
        self.pipeline, self.messages, self.cost, self.interval = pipeline, messages, cost, interval
        self.next = 0
        self.fed_to = 0.0
        self.note = ""
        self.detector = None
        self.convert = None
        on_chat = getattr(pipeline, "on_chat", None)
        if not messages:
            self.mode = None
        elif on_chat is not None:
            self.mode = "on_chat"
        else:
            try:
                from detectors.chat import ChatActivityDetector, ChatMessage as DetectorMessage
            except ImportError:
                DetectorMessage = None
            if DetectorMessage is None or not hasattr(pipeline, "on_signals"):
                self.mode = None
                self.note = f"{len(messages)} chat messages not fed: no chat detector in this tree"
            else:
                self.mode = "detector"
                self.detector = ChatActivityDetector(getattr(settings, "chat", None))
                self.convert = lambda m: msgspec.convert(msgspec.to_builtins(m), DetectorMessage)

    def until(self, t: float) -> list[MomentEvent]:
        if self.mode is None:
            return []
        events: list[MomentEvent] = []
        while self.fed_to + self.interval <= t:
            now = self.fed_to + self.interval
            batch = []
            while self.next < len(self.messages) and self.messages[self.next].t <= now:
                batch.append(self.messages[self.next])
                self.next += 1
            self.fed_to = now
            if self.mode == "on_chat":
                for m in batch:
                    events += self.pipeline.on_chat(m) or []
                continue
            started = time.process_time()
            signals = self.detector.push([self.convert(m) for m in batch]) + self.detector.advance(now)
            self.cost["chat"] = self.cost.get("chat", 0.0) + time.process_time() - started
            if signals:
                events += self.pipeline.on_signals(signals)
        return events


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class Counts:
    tp_fired: int = 0  # firings near a moment
    fired: int = 0
    hit: int = 0  # moments expecting it where it fired
    expected: int = 0

    def add(self, other: "Counts") -> None:
        self.tp_fired += other.tp_fired
        self.fired += other.fired
        self.hit += other.hit
        self.expected += other.expected

    @property
    def precision(self) -> float | None:
        return self.tp_fired / self.fired if self.fired else None

    @property
    def recall(self) -> float | None:
        return self.hit / self.expected if self.expected else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@dataclass
class Score:
    fused: Counts
    signals: dict[str, Counts]
    matched: list[tuple[int, float]]  # (moment index, event t)
    missed: list[int]  # moment indices
    false_positives: list[tuple[float, dict, str]]  # (event t, its signals, distractor hit or "")


def _window(m) -> tuple[float, float]:
    return m.t - BEFORE, m.end + AFTER


def score(truth: GenreTruth, events: list[tuple[float, dict]], signals: list[Signal]) -> Score:
    """Score fused ``events`` ((t, signals)) and raw ``signals`` against the truth."""
    moments = truth.moments
    # Fused: each moment takes the nearest-onset unmatched event in its window.
    order = sorted(range(len(events)), key=lambda i: events[i][0])
    taken: set[int] = set()
    matched: list[tuple[int, float]] = []
    missed: list[int] = []
    for mi, m in sorted(enumerate(moments), key=lambda x: x[1].t):
        lo, hi = _window(m)
        candidates = [i for i in order if i not in taken and lo <= events[i][0] <= hi]
        if not candidates:
            missed.append(mi)
            continue
        best = min(candidates, key=lambda i: abs(events[i][0] - m.t))
        taken.add(best)
        matched.append((mi, events[best][0]))
    fps = []
    for i in order:
        if i in taken:
            continue
        t, sig = events[i]
        hit = next((d.kind for d in truth.distractors if d.t - BEFORE <= t <= d.end + DISTRACTOR_AFTER), "")
        fps.append((t, sig, hit))
    fused = Counts(tp_fired=len(matched), fired=len(events), hit=len(matched), expected=len(moments))
    # Per signal.
    per: dict[str, Counts] = defaultdict(Counts)
    by_name: dict[str, list[float]] = defaultdict(list)
    for s in signals:
        by_name[canonical(s.name)].append(s.t)
    for name, times in by_name.items():
        c = per[name]
        c.fired = len(times)
        c.tp_fired = sum(1 for t in times if any(_window(m)[0] <= t <= _window(m)[1] for m in moments))
    for m in moments:
        for name in m.expected_signals:
            c = per[canonical(name)]
            c.expected += 1
            parts = [p for p in m.parts if name in p.signals] or [m]
            if any(p.t - BEFORE <= t <= p.end + AFTER for p in parts for t in by_name.get(canonical(name), ())):
                c.hit += 1
    return Score(fused=fused, signals=dict(per), matched=matched, missed=missed, false_positives=fps)


def score_run(run: Run) -> Score:
    return score(run.truth, [(e.t, e.signals) for e in run.events], run.signals)


# --- reporting --------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "    -" if x is None else f"{x:5.2f}"


def table(scores: dict[str, Counts], fused: Counts) -> str:
    lines = [f"  {'signal':<12} {'P':>5} {'R':>5} {'F1':>5} {'fired':>6} {'near':>5} {'expected':>8} {'hit':>4}"]
    for name in sorted(scores):
        c = scores[name]
        lines.append(f"  {name:<12} {_fmt(c.precision)} {_fmt(c.recall)} {_fmt(c.f1)} {c.fired:>6} {c.tp_fired:>5}"
                     f" {c.expected:>8} {c.hit:>4}")
    c = fused
    lines.append(f"  {'FUSED':<12} {_fmt(c.precision)} {_fmt(c.recall)} {_fmt(c.f1)} {c.fired:>6} {c.tp_fired:>5}"
                 f" {c.expected:>8} {c.hit:>4}")
    return "\n".join(lines)


def report_run(run: Run, sc: Score, live: bool = False) -> str:
    t = run.truth
    out = [f"\n== {run.name}  ({t.genre}, {t.duration:.0f} s, {len(t.moments)} moments, "
           f"{len(t.distractors)} distractors){'  [live]' if live else ''}"]
    out.append(table({} if live else sc.signals, sc.fused))
    fired = defaultdict(list)
    for s in run.signals:
        fired[canonical(s.name)].append(s.t)
    for mi in sc.missed:
        m = t.moments[mi]
        near = [n for n in m.expected_signals
                if any(m.t - BEFORE <= x <= m.end + AFTER for x in fired.get(canonical(n), ()))]
        before = [e for e in run.events if e.t < m.t]
        prev = ""
        if near and before:  # fired but not fused: often the cooldown of the event before
            e = max(before, key=lambda e: e.t)
            end = getattr(e, "end", None) or e.t
            prev = f"; event before at {e.t:.1f} s (span to {end:.1f} s, {m.t - end:.1f} s earlier)"
        out.append(f"  missed   {m.t:7.2f}s {m.kind:<14} expects {','.join(m.expected_signals)}; "
                   f"fired: {','.join(near) or 'none'}{prev}  {m.text}")
    for mi, et in sc.matched:
        m = t.moments[mi]
        out.append(f"  matched  {m.t:7.2f}s {m.kind:<14} at {et:7.2f}s ({et - m.t:+.2f} s)")
    for et, sig, hit in sc.false_positives:
        out.append(f"  FALSE+   {et:7.2f}s {json.dumps(sig)}  {('on distractor ' + hit) if hit else 'not near a distractor'}")
    if run.stream_seconds > 0:
        stages = ", ".join(f"{k} {v / run.stream_seconds:.4f}" for k, v in sorted(run.cpu_by_stage.items()))
        speed = run.stream_seconds / run.wall_seconds if run.wall_seconds else 0.0
        out.append(f"  CPU {run.cpu_seconds / run.stream_seconds:.4f} CPU-s per stream-s"
                   f"{' (actor process, model load included)' if live else ''}"
                   f"{(' [' + stages + ']') if stages else ''}; wall {run.wall_seconds:.1f} s ({speed:.1f}x real time)")
    if run.latencies:
        out.append(f"  latency moment->notification p50 {percentile(run.latencies, 0.5):.2f} s, "
                   f"p95 {percentile(run.latencies, 0.95):.2f} s; clip end->notification p50 "
                   f"{percentile(run.end_latencies, 0.5):.2f} s, p95 {percentile(run.end_latencies, 0.95):.2f} s")
    out += [f"  note: {n}" for n in run.notes]
    return "\n".join(out)


def summary(runs: list[Run], scores: list[Score], live: bool = False) -> str:
    fused = Counts()
    per: dict[str, Counts] = defaultdict(Counts)
    for sc in scores:
        fused.add(sc.fused)
        for k, c in sc.signals.items():
            per[k].add(c)
    out = [f"\n== overall ({len(runs)} broadcasts, {sum(r.stream_seconds for r in runs):.0f} stream-s)",
           table({} if live else per, fused)]
    rows = [f"  {'broadcast':<22} {'P':>5} {'R':>5} {'F1':>5} {'FP':>3}  CPU-s/s"]
    for r, sc in zip(runs, scores):
        cpu = r.cpu_seconds / r.stream_seconds if r.stream_seconds else 0.0
        rows.append(f"  {r.name:<22} {_fmt(sc.fused.precision)} {_fmt(sc.fused.recall)} {_fmt(sc.fused.f1)} "
                    f"{len(sc.false_positives):>3}  {cpu:.4f}")
    out += rows
    dist = [(r, sc) for r, sc in zip(runs, scores) if not r.truth.moments]
    for r, sc in dist:
        out.append(f"  distractor-only {r.name}: {len(sc.false_positives)} false positive(s)"
                   + "".join(f"\n    {t:7.2f}s {json.dumps(s)} {h}" for t, s, h in sc.false_positives))
    lat = [x for r in runs for x in r.latencies]
    if lat:
        out.append(f"  latency moment->notification p50 {percentile(lat, 0.5):.2f} s, p95 {percentile(lat, 0.95):.2f} s "
                   f"over {len(lat)} clips")
    return "\n".join(out)


# --- generation and the offline driver ----------------------------------------------------------


def broadcast_path(out: Path, genre: str, duration: float, seed: int, hard: bool = False) -> Path:
    return Path(out) / f"{genre}-d{duration:g}-s{seed}{'-hard' if hard else ''}.mp4"


def broadcast(out: Path, genre: str, duration: float, seed: int, reuse: bool = False, hard: bool = False) -> Path:
    """The broadcast's MP4 (generated unless ``reuse`` and one with the same truth is there)."""
    mp4 = broadcast_path(out, genre, duration, seed, hard)
    if reuse and mp4.exists() and truth_path(mp4).exists():
        t = load_genre_truth(mp4)
        if t.genre == genre and t.duration == duration and t.seed == seed and t.hard == hard:
            return mp4
    make_genre_broadcast(mp4, genre, duration=duration, seed=seed, hard=hard)
    return mp4


_MODEL = None


def _model():
    global _MODEL
    if _MODEL is None:
        from detectors.speech import SpeechOptions, load_whisper_model

        _MODEL = load_whisper_model(SpeechOptions())
    return _MODEL


def _offline_job(args: tuple[str, str, float, int, bool, dict, bool]) -> Run:
    out, genre, duration, seed, reuse, override, hard = args
    mp4 = broadcast(Path(out), genre, duration, seed, reuse, hard)
    truth = load_genre_truth(mp4)
    return run_offline(mp4, _model(), genre_settings(truth, override), truth)


def _path_job(args: tuple[str, dict]) -> Run:
    mp4, override = args
    truth = load_genre_truth(Path(mp4))
    return run_offline(Path(mp4), _model(), genre_settings(truth, override), truth)


def _map(fn, work: list, jobs: int) -> list:
    if jobs <= 1 or len(work) <= 1:
        return [fn(w) for w in work]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the parent may hold threads (ctranslate2, onnxruntime) that fork would copy mid-state
    with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, work))


def run_paths(mp4s: list[Path], jobs: int = 1, override: dict | None = None) -> list[Run]:
    """run_offline over existing broadcasts, ``jobs`` at a time in their own processes."""
    return _map(_path_job, [(str(m), override or {}) for m in mp4s], jobs)


def run_all_offline(out: Path, genres: list[str], duration: float, seeds: list[int], jobs: int = 1,
                    reuse: bool = False, override: dict | None = None, hard: bool = False) -> list[Run]:
    """Generate (or reuse) and run each genre x seed broadcast, ``jobs`` at a time."""
    work = [(str(out), g, duration, s, reuse, override or {}, hard) for s in seeds for g in genres]
    return _map(_offline_job, work, jobs)


# --- live ---------------------------------------------------------------------------------------


def run_live(mp4s: list[Path], override: dict | None = None, settle: float = 15.0) -> list[Run]:
    """Push each broadcast over RTMP to a real ``livecut up`` in real time, one after another."""
    import bisect

    from bench.stack import ClipSubscriber, LivecutProcess
    from stream_actor.settings import channel_settings
    from supervisor.demo import push_file

    work = Path(tempfile.mkdtemp(prefix="livecut-quality-"))
    stack = LivecutProcess(work / "data", database_url=os.environ.get("DATABASE_URL", ""),
                           redis_url=os.environ.get("REDIS_URL", "")).start()
    runs: list[Run] = []
    try:
        for mp4 in mp4s:
            truth = load_genre_truth(mp4)
            settings = genre_settings(truth, override)
            clip_opts = channel_settings(settings).clip
            run = Run(name=Path(mp4).stem, truth=truth)
            if truth.chat_log:
                run.notes.append("chat not sent live (no chat ingest to send it to from the bench yet)")
            channel = stack.api("POST", "/api/channels", json={"name": f"quality-{run.name}", "source": "rtmp",
                                                               "settings": settings}).json()
            stack.wait_channel(channel["id"], lambda c: c["health_at"] is not None)
            subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
            url = f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"
            pushed_t: list[float] = []
            pushed_wall: list[float] = []
            lock = threading.Lock()

            def record(t: float) -> None:
                with lock:
                    pushed_t.append(t)
                    pushed_wall.append(time.time())

            started = time.monotonic()
            push_file(Path(mp4), url, on_packet=record)
            # Clips still come for a while (post-roll, ASR, cut): wait until none came for `settle` s.
            seen, quiet_since = 0, time.monotonic()
            while time.monotonic() - quiet_since < settle:
                clips = subscriber.wait_for(seen + 1, timeout=1.0)
                if len(clips) > seen:
                    seen, quiet_since = len(clips), time.monotonic()
            run.wall_seconds = time.monotonic() - started
            health = stack.api("GET", f"/api/channels/{channel['id']}").json().get("health") or {}
            subscriber.close()
            stack.api("DELETE", f"/api/channels/{channel['id']}")
            run.stream_seconds = float(health.get("stream_time") or truth.duration)
            run.cpu_seconds = float(health.get("cpu_seconds") or 0.0)
            fusion_opts = channel_settings(settings).fusion
            events = [(clip_moment_time(clip, fusion_opts, clip_opts), clip["signals"]) for clip in subscriber.clips]
            sc = score(truth, events, [])
            arrivals = dict(zip((c["id"] for c in subscriber.clips), subscriber.arrivals))
            for mi, et in sc.matched:
                m = truth.moments[mi]
                clip = next(c for c, (t, _) in zip(subscriber.clips, events) if t == et)
                arrived = arrivals[clip["id"]]
                i = bisect.bisect_left(pushed_t, m.t)
                j = bisect.bisect_left(pushed_t, clip["stream_end"])
                if i < len(pushed_wall):
                    run.latencies.append(arrived - pushed_wall[i])
                if j < len(pushed_wall):
                    run.end_latencies.append(arrived - pushed_wall[j])
            run.events = [MomentEvent(t=t, score=0.0, signals=s) for t, s in events]
            runs.append(run)
    finally:
        stack.stop()
    return runs


def clip_moment_time(clip: dict, fusion_opts, clip_opts) -> float:
    """The moment time of a clip notification: its strongest trigger (fusion's event ``t``),
    or, for a notification without triggers, its end less the post-roll."""
    triggers = clip.get("triggers") or []
    if triggers:
        def contribution(s: dict) -> float:
            return fusion_opts.weights.get(s["name"], 0.0) * min(max(s["value"], 0.0), fusion_opts.cap)

        return min(triggers, key=lambda s: (-contribution(s), s["t"]))["t"]
    t = clip["stream_end"] - clip_opts.post_roll
    return t if t >= clip["stream_start"] else clip["stream_start"] + clip_opts.pre_roll


# --- CLI ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genres", default=",".join(GENRES))
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--seeds", type=int, default=1, help="seeds 1..N per genre")
    p.add_argument("--seed-base", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="offline: broadcasts run in parallel processes")
    p.add_argument("--live", action="store_true", help="also push each broadcast over RTMP to a real livecut up")
    p.add_argument("--live-only", action="store_true", help="--live without the offline run (broadcasts still made)")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "livecut-quality")
    p.add_argument("--reuse", action="store_true", help="reuse broadcasts already generated in --out")
    p.add_argument("--settings", default="{}", help="JSON channel settings laid over every genre's")
    p.add_argument("--hard", action="store_true",
                   help="calm keywords may be strong hype phrases said in passing (\"let's go to the next map\")")
    a = p.parse_args(argv)
    genres = [g for g in a.genres.split(",") if g]
    seeds = list(range(a.seed_base, a.seed_base + a.seeds))
    override = json.loads(a.settings)
    a.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if a.live_only:
        for s in seeds:
            for g in genres:
                broadcast(a.out, g, a.duration, s, a.reuse, a.hard)
    else:
        runs = run_all_offline(a.out, genres, a.duration, seeds, jobs=a.jobs, reuse=a.reuse, override=override,
                               hard=a.hard)
        scores = [score_run(r) for r in runs]
        print("\n# offline (as fast as possible)")
        for r, sc in zip(runs, scores):
            print(report_run(r, sc))
        print(summary(runs, scores))
        print(f"\noffline: {time.monotonic() - started:.0f} s wall for generation and detection ({a.jobs} job(s))")
    if a.live or a.live_only:
        mp4s = [broadcast_path(a.out, g, a.duration, s, a.hard) for s in seeds for g in genres]
        live = run_live(mp4s, override)
        live_scores = [score(r.truth, [(e.t, e.signals) for e in r.events], []) for r in live]
        print("\n# live (RTMP, real time, clips over Socket.IO; fused only)")
        for r, sc in zip(live, live_scores):
            print(report_run(r, sc, live=True))
        print(summary(live, live_scores, live=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
