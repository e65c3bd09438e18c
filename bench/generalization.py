"""Detection quality on the TEST part of the corpus: the figures of record (README).

Every test broadcast's stored analysis (``bench.corpus_signals``: the VOD path's detectors)
is fused with its genre's profile as shipped (fitted, ``detectors/fitted``) and, as the
baseline measured in the same run, with the hand-written profile (``<genre>-manual``) and with
``default`` (what a channel gets when it names no profile). Scored as ``bench.quality``
scores: per genre, P/R/F1 of each signal and of the fused moments; on the distractor-only
broadcasts, false clips per hour. ``--flattened DIR``: the same test part rendered with its
loudness flattened (``bench.corpus --loudness flattened``), reported beside it.

    .venv/bin/python -m bench.generalization CORPUS_DIR [--flattened DIR] [--jobs 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from bench.corpus_signals import analyse_corpus, corpus_broadcasts
from bench.fit_fusion import DISTRACTOR_GENRE
from bench.genres import load_genre_truth
from bench.quality import Counts, score

GENRE_ORDER = ("gaming", "just_chatting", "sports", "podcast")
SIGNAL_ORDER = ("arousal", "keyword", "loudness", "crowd", "laughter", "hud", "scene_rate", "sentiment", "speech_rate",
                "music")


def fused_events(signals, profile: str):
    from stream_actor.settings import channel_settings
    from vod.plan import fuse

    return fuse(signals, channel_settings({"profile": profile}))


def evaluate_folder(folder: Path, jobs: int, log=lambda m: None) -> dict:
    """{variant: {genre: {"fused": Counts, "signals": {name: Counts}, "hours": h, "false": n}}}."""
    analyses = analyse_corpus(folder, "test", jobs, log=log)
    out: dict = {}
    for variant in ("fitted", "manual", "default"):
        per: dict = defaultdict(lambda: {"fused": Counts(), "signals": defaultdict(Counts), "hours": 0.0, "false": 0})
        for mp4, analysis in zip(corpus_broadcasts(folder, "test"), analyses):
            truth = load_genre_truth(mp4)
            genre = truth.genre  # a distractor-only broadcast is judged under its style's profile
            own = truth.profile or genre
            profile = {"fitted": own, "manual": f"{own}-manual", "default": "default"}[variant]
            events = fused_events(analysis.signals, profile)
            sc = score(truth, [(e.t, e.signals) for e in events], analysis.signals)
            row = per[genre]
            row["fused"].add(sc.fused)
            for name, counts in sc.signals.items():
                row["signals"][name].add(counts)
            row["hours"] += truth.duration / 3600.0
            row["false"] += sc.fused.fired - sc.fused.tp_fired
        out[variant] = {g: {**v, "signals": dict(v["signals"])} for g, v in per.items()}
    out["cpu"] = _cpu(analyses)
    return out


def _cpu(analyses) -> dict[str, float]:
    media = sum(a.media_seconds for a in analyses) or 1e-9
    total: dict[str, float] = defaultdict(float)
    for a in analyses:
        for stage, seconds in a.cpu.items():
            total[stage] += seconds
    return {stage: round(seconds / media, 5) for stage, seconds in total.items()}


def _f(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def _rate(row) -> str:
    return f"{row['false'] / row['hours']:.2f}" if row["hours"] else "–"


def markdown(results: dict[str, dict]) -> str:
    """The README tables: fused per genre (shipped, hand-written, default), signals per genre."""
    lines = ["| test part | genre | hours | moments | P | R | F1 | hand-written P / R | `default` P / R |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        for genre in GENRE_ORDER:
            row = res["fitted"].get(genre)
            if row is None:
                continue
            c, base, dflt = row["fused"], res["manual"][genre]["fused"], res["default"][genre]["fused"]
            lines.append(f"| {label} | {genre} | {row['hours']:.2f} | {c.expected} | {_f(c.precision)} | "
                         f"{_f(c.recall)} | {_f(c.f1)} | {_f(base.precision)} / {_f(base.recall)} | "
                         f"{_f(dflt.precision)} / {_f(dflt.recall)} |")
        row = res["fitted"].get(DISTRACTOR_GENRE)
        if row is not None:
            lines.append(f"| {label} | **distractors only**: false clips per hour | {row['hours']:.2f} | – | "
                         f"**{_rate(row)}** | | | {_rate(res['manual'][DISTRACTOR_GENRE])} | "
                         f"{_rate(res['default'][DISTRACTOR_GENRE])} |")
    lines += ["", "| test part | genre | " + " | ".join(SIGNAL_ORDER) + " |",
              "|---|---|" + "---|" * len(SIGNAL_ORDER)]
    for label, res in results.items():
        for genre in GENRE_ORDER:
            row = res["fitted"].get(genre)
            if row is None:
                continue
            cells = []
            for name in SIGNAL_ORDER:
                c = row["signals"].get(name)
                cells.append("–" if c is None or (not c.fired and not c.expected)
                             else f"{_f(c.precision)} / {_f(c.recall)}")
            lines.append(f"| {label} | {genre} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_json(results: dict[str, dict]) -> dict:
    def counts(c: Counts) -> dict:
        return {"precision": c.precision, "recall": c.recall, "f1": c.f1, "fired": c.fired, "near": c.tp_fired,
                "expected": c.expected, "hit": c.hit}

    out = {}
    for label, res in results.items():
        out[label] = {"cpu_per_stream_second": res["cpu"]}
        for variant in ("fitted", "manual", "default"):
            out[label][variant] = {
                genre: {"fused": counts(row["fused"]), "hours": round(row["hours"], 3),
                        "false_clips_per_hour": round(row["false"] / row["hours"], 3) if row["hours"] else None,
                        "signals": {n: counts(c) for n, c in row["signals"].items()}}
                for genre, row in res[variant].items()
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--flattened", type=Path, help="the test part rendered with --loudness flattened")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    results = {"as made": evaluate_folder(args.corpus, args.jobs, log)}
    if args.flattened:
        results["flattened"] = evaluate_folder(args.flattened, args.jobs, log)
    if args.json:
        print(json.dumps(as_json(results), indent=2))
    else:
        print(markdown(results))
        for label, res in results.items():
            print(f"\n{label}: CPU-s per stream-second by stage: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in sorted(res["cpu"].items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
