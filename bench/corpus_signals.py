"""A labelled corpus (bench.corpus) through the VOD path's detectors, once per broadcast.

Each broadcast is analysed as the VOD path analyses a recording: one shard
(``vod.shard.analyse_shard``: the stream actor's decoders and audio/video detectors, and
whole-utterance ASR), then the transcript signals of ``vod.plan.merge`` over its words.
Fusion is *not* applied: its weights are what ``bench.fit_fusion`` fits, so the raw signals
are stored beside the broadcast (``<stem>.signals.json``) and fused again, cheaply, with any
profile. A stored analysis is reused while the detectors' code and settings are unchanged
(``detector_version``); when only the detectors after ASR changed, its words are reused
(``asr_version``) and only the rest runs again (ASR is most of the cost).

    .venv/bin/python -m bench.corpus_signals CORPUS_DIR [--split train|test|all] [--jobs 2]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import msgspec

from bench.genres import GenreTruth, load_genre_truth
from records.wire import Signal, Word

ROOT = Path(__file__).resolve().parent.parent
# The code that turns media into signals; a change in any of it invalidates stored analyses.
DETECTOR_SOURCES = (
    "detectors/loudness.py", "detectors/crowd.py", "detectors/arousal.py", "detectors/music.py",
    "detectors/keywords.py", "detectors/sentiment.py", "detectors/speech_rate.py", "detectors/scene.py", "detectors/hud.py",
    "detectors/speech.py", "detectors/transcribe.py", "stream_actor/decode.py", "stream_actor/detection.py",
    "vod/shard.py",
)
ASR_SOURCES = ("detectors/speech.py", "detectors/transcribe.py", "stream_actor/decode.py")


class Analysis(msgspec.Struct, kw_only=True):
    """One broadcast's raw signals (detectors' and transcript's) and words."""

    stem: str
    detectors: str  # detector_version() at analysis time
    asr: str = ""  # asr_version() at analysis time
    signals: list[Signal]
    words: list[Word]
    media_seconds: float
    cpu: dict[str, float]  # CPU seconds per stage (vod.shard's stages)


def detector_settings(truth: GenreTruth):
    """The detectors' settings for a broadcast: defaults, plus its HUD game profile (gaming).
    Genre profiles change fusion and clip lengths only, so the signals serve every profile."""
    from stream_actor.settings import channel_settings

    return channel_settings({"hud": {"profile": truth.game_profile}} if truth.game_profile else {})


def _version(sources: tuple[str, ...], settings) -> str:
    digest = hashlib.sha256()
    for rel in sources:
        path = ROOT / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes() if path.exists() else b"-")
    digest.update(msgspec.json.encode(settings))
    return digest.hexdigest()[:16]


NOT_DETECTORS = ("profile", "fusion", "clip", "ring", "retention", "chat_login", "source")  # what signals never depend on


def detector_version() -> str:
    from stream_actor.settings import channel_settings

    settings = msgspec.structs.asdict(channel_settings({}))
    return _version(DETECTOR_SOURCES, {k: v for k, v in settings.items() if k not in NOT_DETECTORS})


def asr_version() -> str:
    from stream_actor.settings import channel_settings

    return _version(ASR_SOURCES, channel_settings({}).speech)


def analysis_path(mp4: Path) -> Path:
    return Path(mp4).with_name(f"{Path(mp4).stem}.signals.json")


def load_analysis(mp4: Path, version: str | None = None) -> Analysis | None:
    """The stored analysis of ``mp4`` (None: none, or made by other detector code)."""
    path = analysis_path(mp4)
    if not path.exists():
        return None
    analysis = msgspec.json.decode(path.read_bytes(), type=Analysis)
    if version is not None and analysis.detectors != version:
        return None
    return analysis


def analyse_media(location: str, settings, model, words: list[Word] | None = None,
                  ) -> tuple[list[Signal], list[Word], dict[str, float], float]:
    """Media through the VOD path's detectors as one shard: (signals in time order, words,
    CPU seconds per stage, media seconds). ``words``: the recording's transcript, already
    made (ASR is skipped)."""
    from stream_actor.detection import DetectorPipeline
    from vod.plan import plan_shards, shard_lead
    from vod.probe import probe
    from vod.shard import analyse_shard

    info = probe(location)
    (shard,) = plan_shards(info.duration, info.duration + 1.0, shard_lead(settings))
    result = analyse_shard(location, shard, settings, model if words is None else None)
    words = result.words if words is None else words
    started = time.process_time()
    transcript = DetectorPipeline(settings, None).word_signals(words, until=info.duration)
    cpu = dict(result.cpu)
    cpu["transcript signals"] = round(time.process_time() - started, 4)
    signals = sorted([*result.signals, *transcript], key=lambda s: s.t)
    return signals, words, cpu, result.media_seconds


def analyse(mp4: Path, model, version: str, asr: str) -> Analysis:
    """A corpus broadcast through the VOD path's detectors (reusing its stored words when
    the ASR that made them is today's)."""
    truth = load_genre_truth(mp4)
    prior = load_analysis(mp4)
    reuse = prior is not None and prior.asr == asr
    signals, words, cpu, media = analyse_media(str(mp4), detector_settings(truth), model,
                                               words=prior.words if reuse else None)
    if reuse:
        cpu["asr"] = prior.cpu.get("asr", 0.0)  # what making those words cost
    return Analysis(stem=Path(mp4).stem, detectors=version, asr=asr, signals=signals, words=words,
                    media_seconds=media, cpu=cpu)


_MODEL = None


def _job(args: tuple[str, str, str]) -> tuple[str, float]:
    global _MODEL
    mp4, version, asr = Path(args[0]), args[1], args[2]
    if _MODEL is None:
        from detectors.speech import SpeechOptions, load_whisper_model

        _MODEL = load_whisper_model(SpeechOptions())
    started = time.monotonic()
    analysis = analyse(mp4, _MODEL, version, asr)
    analysis_path(mp4).write_bytes(msgspec.json.encode(analysis))
    return str(mp4), time.monotonic() - started


def corpus_broadcasts(folder: Path, split: str = "all") -> list[Path]:
    """The broadcasts of ``folder`` (every ``*.truth.json`` with its MP4) in ``split``."""
    out = []
    for truth in sorted(Path(folder).glob("*.truth.json")):
        mp4 = truth.with_name(truth.name[: -len(".truth.json")] + ".mp4")
        if mp4.exists() and split in ("all", recorded_split(truth)):
            out.append(mp4)
    return out


def recorded_split(truth_file: Path) -> str:
    """The split a truth file says its broadcast belongs to ("" for non-corpus broadcasts)."""
    return json.loads(Path(truth_file).read_bytes()).get("split", "")


def analyse_corpus(folder: Path, split: str = "all", jobs: int = 2, log=print) -> list[Analysis]:
    """Analyse (or reuse) every broadcast of ``split`` in ``folder``, ``jobs`` at a time."""
    version = detector_version()
    mp4s = corpus_broadcasts(folder, split)
    todo = [m for m in mp4s if load_analysis(m, version) is None]
    log(f"{len(mp4s)} broadcasts, {len(mp4s) - len(todo)} analysed already, {len(todo)} to go")
    if todo:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: ctranslate2 and onnxruntime threads must not be forked mid-state
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo))),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            work = [(str(m), version, asr_version()) for m in todo]
            for i, (mp4, seconds) in enumerate(pool.map(_job, work), 1):
                log(f"  [{i}/{len(todo)}] {Path(mp4).stem}: {seconds:.0f} s")
    return [load_analysis(m, version) for m in mp4s]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--split", default="all", choices=("train", "test", "all"))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    analyses = analyse_corpus(args.corpus, args.split, args.jobs, log=lambda m: print(m, file=sys.stderr, flush=True))
    media = sum(a.media_seconds for a in analyses)
    cpu: dict[str, float] = {}
    for a in analyses:
        for stage, seconds in a.cpu.items():
            cpu[stage] = cpu.get(stage, 0.0) + seconds
    print(f"{len(analyses)} broadcasts, {media / 3600:.2f} h; CPU-s per stream-second by stage:")
    for stage, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:20s} {seconds / max(media, 1e-9):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
