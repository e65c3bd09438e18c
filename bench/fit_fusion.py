"""Fit each genre profile's fusion (weights, bias, threshold) on the TRAIN part of the corpus.

Reads the stored analyses of the train broadcasts only (``bench.corpus_signals``; a test
broadcast is refused, so nothing here can look at the test part) and, per profile:

1. Candidates: the detectors' signals grouped as fusion groups them (a trigger opens a
   ``window``; the strongest signal of each name inside it; context such as ``music`` within
   ``context_window`` of it). A candidate is positive when it falls in a planted moment's scoring
   window (bench.quality's rules), negative otherwise.
2. Logistic regression over the capped per-name values, class-balanced, L2-regularised
   (strongly: the corpus is synthetic, and a model that leans on one generator's habits will
   not generalise). Triggers and modifiers get weights >= 0, context <= 0. ``default`` is
   fitted on every genre; each genre's fit is shrunk towards it.
3. The threshold: the real ``Fusion`` (as the VOD path runs it) over every train broadcast
   at each threshold of a grid; the one kept maximises moment F1 with at most
   ``MAX_FALSE_PER_HOUR`` false clips per hour of distractor broadcasts, and is the middle of
   the best plateau rather than its edge.

Writes ``detectors/fitted/<profile>.json`` (``detectors.genres.FittedFusion``).

    .venv/bin/python -m bench.fit_fusion CORPUS_DIR [--out detectors/fitted] [--l2 1.0]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from bench.corpus_signals import Analysis, corpus_broadcasts, detector_version, load_analysis, recorded_split
from bench.genres import GenreTruth, load_genre_truth
from bench.quality import AFTER, BEFORE, score
from detectors.fusion import DEFAULT_MODIFIERS
from detectors.genres import FITTED_DIR, FITTED_VERSION, MANUAL_PROFILES, FittedFusion, merge
from records.wire import Signal

# speech_rate is left out: its word timings differ between live (streaming) and VOD (whole
# utterance) ASR, and the corpus is analysed the VOD way; it keeps its small hand-written weight.
FEATURES = ("loudness", "arousal", "keyword", "crowd", "laughter", "hud", "sentiment", "scene_rate", "scene", "music")
CONTEXT = frozenset({"music"})  # lowers the score, never raises it
PROFILE_GENRES = {
    "gaming": ("gaming",),
    "just_chatting": ("just_chatting",),
    "sports": ("sports",),
    "podcast": ("podcast",),
    "default": ("gaming", "just_chatting", "sports", "podcast"),
}
DISTRACTOR_GENRE = "distractors"  # distractor-only broadcasts train every profile
MAX_FALSE_PER_HOUR = 0.5  # on the train part: half the target, a margin for the unseen
BALANCED = True  # each class counts half (unbalanced fits gave the same held-out F1 on the train folds)
THRESHOLDS = tuple(round(float(x), 3) for x in np.arange(0.2, 0.951, 0.025))


@dataclass
class Broadcast:
    truth: GenreTruth
    analysis: Analysis


def load_train(folder: Path) -> list[Broadcast]:
    """The analysed train broadcasts of ``folder``; refuses to read anything else."""
    version = detector_version()
    out = []
    for mp4 in corpus_broadcasts(folder, "train"):
        if recorded_split(mp4.with_name(f"{mp4.stem}.truth.json")) != "train":
            raise RuntimeError(f"{mp4.name} is not in the train part")
        analysis = load_analysis(mp4, version)
        if analysis is None:
            raise RuntimeError(f"{mp4.name} has no analysis by today's detectors: run bench.corpus_signals first")
        out.append(Broadcast(load_genre_truth(mp4), analysis))
    if not out:
        raise RuntimeError(f"no train broadcasts in {folder}")
    return out


# --- candidates -------------------------------------------------------------------------------


def candidates(signals: list[Signal], window: float, cap: float, context_window: float,
               ) -> list[tuple[float, float, dict[str, float]]]:
    """(first t, last t, capped strongest value per name) of each group fusion would judge."""
    triggers = sorted((s for s in signals if s.name in FEATURES and s.name not in CONTEXT), key=lambda s: s.t)
    context = sorted((s for s in signals if s.name in CONTEXT), key=lambda s: s.t)
    out = []
    i = 0
    while i < len(triggers):
        j = i
        while j < len(triggers) and triggers[j].t <= triggers[i].t + window:
            j += 1
        members = triggers[i:j]
        i = j
        if all(s.name in DEFAULT_MODIFIERS for s in members):
            continue  # fusion never starts a moment from modifiers alone
        lo, hi = members[0].t - context_window, members[-1].t + context_window
        values: dict[str, float] = {}
        for s in [*members, *(c for c in context if lo <= c.t <= hi)]:
            values[s.name] = max(values.get(s.name, 0.0), min(max(s.value, 0.0), cap))
        out.append((members[0].t, members[-1].t, values))
    return out


def labelled(broadcasts: list[Broadcast], window: float, cap: float, context_window: float,
             ) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for b in broadcasts:
        spans = [(m.t - BEFORE, m.end + AFTER) for m in b.truth.moments]
        for first, last, values in candidates(b.analysis.signals, window, cap, context_window):
            rows.append([values.get(name, 0.0) for name in FEATURES])
            labels.append(1.0 if any(lo <= last and first <= hi for lo, hi in spans) else 0.0)
    return np.asarray(rows, float).reshape(-1, len(FEATURES)), np.asarray(labels)


# --- logistic regression ----------------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, prior: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Class-balanced, L2-regularised logistic regression with sign constraints (bias free).
    ``prior``: the weights the penalty pulls towards (a genre's fit is shrunk towards the
    ``default`` profile's, fitted on every genre: a genre has few broadcasts of its own)."""
    from scipy.optimize import minimize

    if y.min() == y.max():
        raise RuntimeError("the candidates are all of one class: nothing to fit")
    weight = np.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean())) if BALANCED else np.ones(len(y))
    n = len(y)
    centre = np.zeros(x.shape[1]) if prior is None else np.asarray(prior, float)

    def loss(theta):
        z = theta[0] + x @ theta[1:]
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(weight * (np.logaddexp(0.0, z) - y * z)) / n
        grad_z = weight * (p - y) / n
        reg = 0.5 * l2 * np.sum((theta[1:] - centre) ** 2) / n
        grad = np.concatenate([[grad_z.sum()], x.T @ grad_z + l2 * (theta[1:] - centre) / n])
        return nll + reg, grad

    bounds = [(None, None)] + [((None, 0.0) if name in CONTEXT else (0.0, None)) for name in FEATURES]
    result = minimize(loss, np.concatenate([[0.0], centre]), jac=True, method="L-BFGS-B", bounds=bounds)
    return float(result.x[0]), result.x[1:]


# --- threshold --------------------------------------------------------------------------------


@dataclass
class Figures:
    threshold: float
    tp: int
    fired: int
    expected: int
    false_on_distractors: int
    distractor_hours: float

    @property
    def precision(self) -> float:
        return self.tp / self.fired if self.fired else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.expected if self.expected else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_per_hour(self) -> float:
        return self.false_on_distractors / self.distractor_hours if self.distractor_hours else 0.0


def profile_settings(profile: str, fusion: dict):
    """ChannelSettings of ``profile``'s hand-written profile with ``fusion`` laid over it."""
    from stream_actor.settings import ChannelSettings

    base = merge(MANUAL_PROFILES[profile], {"fusion": fusion})
    return msgspec.convert(base, ChannelSettings)


def evaluate(broadcasts: list[Broadcast], settings) -> Figures:
    """Moments found by the VOD path's fusion with ``settings``, scored as bench.quality scores."""
    from vod.plan import fuse

    tp = fired = expected = false_d = 0
    d_hours = 0.0
    for b in broadcasts:
        events = fuse(b.analysis.signals, settings)
        sc = score(b.truth, [(e.t, e.signals) for e in events], [])
        tp += sc.fused.tp_fired
        fired += sc.fused.fired
        expected += sc.fused.expected
        if b.truth.genre == DISTRACTOR_GENRE:
            false_d += sc.fused.fired - sc.fused.tp_fired
            d_hours += b.truth.duration / 3600.0
    return Figures(settings.fusion.threshold, tp, fired, expected, false_d, d_hours)


def pick_threshold(broadcasts: list[Broadcast], profile: str, fusion: dict) -> tuple[Figures, list[Figures]]:
    grid = [evaluate(broadcasts, profile_settings(profile, {**fusion, "threshold": t})) for t in THRESHOLDS]
    allowed = [f for f in grid if f.false_per_hour <= MAX_FALSE_PER_HOUR] or grid
    best = max(f.f1 for f in allowed)
    plateau = [f for f in allowed if f.f1 >= best - 0.005]
    return plateau[len(plateau) // 2], grid


def fit_profile(profile: str, broadcasts: list[Broadcast], l2: float, prior: FittedFusion | None = None) -> FittedFusion:
    genres = set(PROFILE_GENRES[profile]) | {DISTRACTOR_GENRE}
    mine = [b for b in broadcasts if b.truth.genre in genres]
    opts = profile_settings(profile, {}).fusion
    x, y = labelled(mine, opts.window, opts.cap, opts.context_window)
    centre = None if prior is None else np.array([prior.weights[name] for name in FEATURES])
    bias, w = fit_logistic(x, y, l2, centre)
    weights = {name: round(float(v), 4) for name, v in zip(FEATURES, w)}
    chosen, grid = pick_threshold(mine, profile, {"bias": round(bias, 4), "weights": weights})
    hours = sum(b.truth.duration for b in mine) / 3600.0
    return FittedFusion(
        version=FITTED_VERSION, profile=profile, features=list(FEATURES), bias=round(bias, 4), weights=weights,
        threshold=chosen.threshold, cap=opts.cap, detectors=detector_version(),
        fitted_on={
            "part": "train", "genres": sorted(genres), "broadcasts": len(mine), "hours": round(hours, 2),
            "seeds": sorted({b.truth.seed for b in mine}), "candidates": len(y), "positives": int(y.sum()),
            "l2": l2, "shrunk_towards": prior.profile if prior is not None else None, "precision": round(chosen.precision, 4), "recall": round(chosen.recall, 4),
            "false_per_distractor_hour": round(chosen.false_per_hour, 3),
        },
    )


def choose_l2(broadcasts: list[Broadcast], grid: tuple[float, ...] = (0.5, 2.0, 10.0, 50.0)) -> float:
    """The L2 strength of ``default`` with the best moment F1 on held-out train broadcasts
    (two folds by seed parity: fitted, thresholded on one, scored on the other)."""
    folds = [[b for b in broadcasts if b.truth.seed % 2 == k] for k in (0, 1)]
    best = (-1.0, grid[0])
    for l2 in grid:
        f1 = []
        for k in (0, 1):
            fitted = fit_profile("default", folds[1 - k], l2)
            settings = profile_settings("default", {"bias": fitted.bias, "weights": fitted.weights,
                                                    "threshold": fitted.threshold})
            f1.append(evaluate(folds[k], settings).f1)
        print(f"l2 {l2:g}: held-out F1 {f1[0]:.3f} / {f1[1]:.3f}", file=sys.stderr)
        best = max(best, (sum(f1) / 2, l2))
    return best[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--out", type=Path, default=FITTED_DIR)
    ap.add_argument("--l2", type=float, default=None,
                    help="L2 penalty, in candidates' worth (towards 0 for default, towards default for a genre); "
                         "default: chosen by two-fold cross-validation on the train part")
    ap.add_argument("--profiles", default=",".join(PROFILE_GENRES))
    args = ap.parse_args(argv)
    broadcasts = load_train(args.corpus)
    l2 = args.l2 if args.l2 is not None else choose_l2(broadcasts)
    args.out.mkdir(parents=True, exist_ok=True)
    profiles = args.profiles.split(",")
    prior = None
    for profile in sorted(profiles, key=lambda p: p != "default"):  # default first: the others shrink towards it
        fitted = fit_profile(profile, broadcasts, l2, prior)
        if profile == "default":
            prior = fitted
        (args.out / f"{profile}.json").write_bytes(msgspec.json.format(msgspec.json.encode(fitted), indent=2) + b"\n")
        f = fitted.fitted_on
        print(f"{profile:14s} threshold {fitted.threshold:.3f}  P {f['precision']:.3f}  R {f['recall']:.3f}  "
              f"false/h {f['false_per_distractor_hour']:.2f}  bias {fitted.bias:+.2f}  "
              + " ".join(f"{k}={v:+.2f}" for k, v in fitted.weights.items() if v), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
