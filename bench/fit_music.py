"""Fit detectors.music's logistic on the labelled corpus's TRAIN part (never the test part).

    python -m bench.fit_music /work/corpus/main [--cache DIR] [--l2 0.01]

Decodes each ``train-*.mp4`` at 16 kHz mono (ffmpeg), runs the music detector's own frames and
features on its fixed 1 s decision grid, labels each 3 s window from ``train-*.truth.json``
(:func:`label`), fits an L2, class-balanced logistic regression, validates it by whole
broadcasts (fit on even-indexed seeds, check on odd, and the reverse), then fits on all of
train and prints the constants to paste into detectors/music.py. Figures are accuracy,
precision and recall of p >= 0.5 for music, overall and per loudness mode, for the shipped
constants and for the fit.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from detectors import music

NAMES = ("held", "pulse", "sustain", "noisy", "gaps", "syllabic")
EDGE = 1.5  # seconds: a window this close to a label boundary is skipped
BED_MUSIC_DB, BED_SPEECH_DB = -7.0, -9.0  # a bed at least this loud vs the talk is music; this quiet, speech
SWELL_S, CHORUS_S = 8.0, 8.0  # the shortest swell (rise + hold + fall) and chorus (two sung lines) last this long


def decode(mp4: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp4), "-vn", "-ac", "1", "-ar", str(music.RATE),
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.float32)


class _Recorder(music.MusicDetector):
    """The detector, recording every judged window's features instead of reporting."""

    def __init__(self) -> None:
        super().__init__(music.MusicOptions(report_min=0.0))
        self.rows: list[tuple[float, list[float]]] = []

    def _judge(self, end: int):  # noqa: ANN202 - same grid and features as MusicDetector._judge
        a = end - self._win
        lv = self._lv[a:end]
        if lv.max() < self.opts.silence_db:
            return None
        f = music.features(lv, self._st[max(0, a - music._HELD_FRAMES - 3) : end], self._bands[a:end],
                           self._flat[a:end])
        self.rows.append((float(self._t[end - 1]) + music._FRAME_S, [f[k] for k in NAMES]))
        return None


def window_features(mp4: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(window end times, features [n, 6]) of one broadcast, cached as .npz."""
    hit = cache / (mp4.stem + ".npz") if cache else None
    if hit and hit.exists():
        z = np.load(hit)
        return z["t"], z["x"]
    audio = decode(mp4)
    det = _Recorder()
    step = 10 * music.RATE
    for i in range(0, len(audio), step):
        det.push(i / music.RATE, audio[i : i + step])
    t = np.array([r[0] for r in det.rows])
    x = np.array([r[1] for r in det.rows]).reshape(-1, len(NAMES))
    if hit:
        hit.parent.mkdir(parents=True, exist_ok=True)
        np.savez(hit, t=t, x=x)
    return t, x


def anchors(seeds: range, seconds: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Generated anchor windows the corpus lacks in the clear (its talk never stops): a bed and
    sung lyrics over a bed 6 dB under them are music; calm and shouted talk alone or over a bed
    10 dB under it, and a crowd roar, are not (a shout over a quiet bed must stay speech; the corpus's sung lyrics
    sit up to 14 dB under the talk, which alone would pull such a shout towards music)."""
    from bench import genres, voices
    from bench.broadcast import roar

    xs, ys = [], []
    level = -26.0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        bed = genres._music(seconds, 0.1, seed)
        spk = voices.speakers(rng, 1)[0]
        song = np.concatenate([voices.sing("let's go let's go we are the champions tonight oh yeah", rng,
                                           tempo_bpm=float(rng.uniform(90, 130)), key_hz=float(rng.uniform(150, 260)))
                               for _ in range(4)])

        def over(v: np.ndarray, bed_db: float) -> np.ndarray:
            n = min(len(v), len(bed))
            return voices.at_dbfs(v[:n], level) + voices.at_dbfs(bed[:n], level + bed_db)

        cases = [(voices.at_dbfs(bed, level), 1), (over(song, -6.0), 1),
                 (voices.at_dbfs(voices.talk(spk, seconds, rng), level), 0),
                 (voices.at_dbfs(voices.talk(spk, seconds, rng, "shouted"), level), 0),
                 (over(voices.talk(spk, seconds, rng, "shouted"), -10.0), 0),
                 (over(voices.talk(spk, seconds, rng), -10.0), 0),
                 (voices.at_dbfs(roar(seconds, seed), level), 0)]
        for audio, y in cases:
            det = _Recorder()
            det.push(0.0, voices.to_16k(audio))
            xs += [r[1] for r in det.rows]
            ys += [y] * len(det.rows)
    return np.array(xs), np.array(ys)


def _db(text: str, pattern: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def label(truth: dict, t_end: np.ndarray, window: float = 3.0) -> np.ndarray:
    """Per window ending at ``t_end``: 1 music (foreground), 0 speech/other sound, -1 skipped.

    Music: loud music after its ramp-in, sung lyrics, a sung chorus while turned up, a swell
    while up, and a bed (or a swell's or chorus's bed) within ~6 dB of the talk. A bed 9 dB or
    more under the talk is background: speech. Windows within EDGE of a boundary, and beds of
    unknown or in-between level, are skipped."""
    music_iv: list[tuple[float, float]] = []
    skip_iv: list[tuple[float, float]] = []

    def bed(a: float, b: float, bed_db: float | None) -> None:
        if bed_db is None or BED_SPEECH_DB < bed_db < BED_MUSIC_DB:
            skip_iv.append((a, b))
        elif bed_db >= BED_MUSIC_DB:
            music_iv.append((a, b))
        else:  # background bed: speech, but its edges are boundaries all the same
            skip_iv.extend([(a - EDGE, a + EDGE), (b - EDGE, b + EDGE)])

    for d in truth["distractors"]:
        kind, a, b, text = d["kind"], d["t"], d["end"], d["text"]
        if kind == "loud_music":
            ramp = _db(text, r"(\d+(?:\.\d+)?) s ramp-in") or 0.0
            skip_iv.append((a, a + ramp))
            music_iv.append((a + ramp, b))
        elif kind == "sung_lyrics":
            music_iv.append((a, b))
        elif kind == "music_bed":
            bed(a, b, _db(text, r"([-+]\d+(?:\.\d+)?) dB under the talk"))
        elif kind == "music_swell":
            at = _db(text, r"at (\d+(?:\.\d+)?) s")
            bed_db = _db(text, r"bed ([-+]\d+(?:\.\d+)?) dB")
            bed(a, at, bed_db)
            music_iv.append((at, at + SWELL_S))
            skip_iv.append((at + SWELL_S, at + SWELL_S + 10.0))  # the swell's unknown rest and fall
            bed(at + SWELL_S + 10.0, b, bed_db)
        elif kind == "sung_chorus":
            at = _db(text, r"at (\d+(?:\.\d+)?) s")
            skip_iv.append((a, at))  # the bed's level is not in the truth
            music_iv.append((at, at + CHORUS_S))
            skip_iv.append((at + CHORUS_S, b))
    y = np.zeros(len(t_end), np.int8)
    start = t_end - window
    for a, b in music_iv:
        y[(start >= a) & (t_end <= b)] = 1
    for a, b in music_iv + skip_iv:
        for edge in (a, b):
            y[(start < edge + EDGE) & (t_end > edge - EDGE)] = -1
    for a, b in skip_iv:
        y[(t_end > a) & (start < b)] = -1
    return y


def fit(x: np.ndarray, y: np.ndarray, l2: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Logistic regression, classes weighted to equal total (of ``weight`` per window), L2 on
    the weights (not the bias). Returns [bias, w...]."""
    weight = np.ones(len(y)) if weight is None else weight
    w_cls = weight * np.where(y == 1, 0.5 / max(1e-9, weight[y == 1].sum()), 0.5 / max(1e-9, weight[y == 0].sum()))
    xb = np.hstack([np.ones((len(x), 1)), x])

    def loss(c: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ c
        nll = w_cls * (np.logaddexp(0, z) - y * z)
        p = 1.0 / (1.0 + np.exp(-z))
        reg = l2 * (c[1:] ** 2).sum()
        grad = xb.T @ (w_cls * (p - y))
        grad[1:] += 2 * l2 * c[1:]
        return float(nll.sum() + reg), grad

    return minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B").x


def prob(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(c[0] + x @ c[1:])))


def figures(p: np.ndarray, y: np.ndarray) -> str:
    hit = p >= 0.5
    tp, fp, fn = (hit & (y == 1)).sum(), (hit & (y == 0)).sum(), (~hit & (y == 1)).sum()
    acc = (hit == (y == 1)).mean() if len(y) else float("nan")
    return (f"acc {acc:.3f}  P {tp / max(1, tp + fp):.3f}  R {tp / max(1, tp + fn):.3f}  "
            f"(music {int((y == 1).sum())}, speech {int((y == 0).sum())})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "livecut" / "fit_music")
    ap.add_argument("--l2", type=float, default=0.001)
    ap.add_argument("--anchors", type=int, default=6, help="seeds of generated anchor examples (0: none)")
    ap.add_argument("--anchor-share", type=float, default=0.6, help="the anchors' total weight, as a share of the corpus's")
    args = ap.parse_args()
    shipped = np.array([music.BIAS, music.W_HELD, music.W_PULSE, music.W_SUSTAIN, music.W_NOISY, music.W_GAPS,
                        music.W_SYLLABIC])
    rows, kinds = [], []
    for k, mp4 in enumerate(sorted(args.corpus.glob("train-*.mp4"))):  # train only: never test-*
        truth = json.loads(mp4.with_name(mp4.stem + ".truth.json").read_text())
        assert truth["split"] == "train", mp4
        t, x = window_features(mp4, args.cache)
        y = label(truth, t)
        keep = y >= 0
        what = np.array(["bed under the talk" if truth.get("bed") else "talk"] * len(t), dtype=object)
        for d in truth["distractors"]:
            what[(t - 3.0 >= d["t"]) & (t <= d["end"])] = d["kind"]
        kinds.append(what[keep])
        rows.append((k, truth["loudness"], x[keep], y[keep]))
        print(f"{mp4.stem}: {keep.sum()} windows, {int((y == 1).sum())} music", flush=True)
    if args.anchors:
        xa, ya = anchors(range(11, 11 + args.anchors))
        rows.append((-1, "anchors", xa, ya))
        kinds.append(np.full(len(ya), "anchor", dtype=object))  # index -1: in both halves' training, scored apart
    x = np.vstack([r[2] for r in rows])
    y = np.concatenate([r[3] for r in rows])
    k = np.concatenate([np.full(len(r[3]), r[0]) for r in rows])
    mode = np.concatenate([np.full(len(r[3]), r[1]) for r in rows])

    def report(title: str, p: np.ndarray) -> None:
        corpus = k >= 0
        print(f"{title}: all      {figures(p[corpus], y[corpus])}")
        for m in sorted(set(mode)):
            print(f"{' ' * len(title)}  {m:<10} {figures(p[mode == m], y[mode == m])}")

    report("shipped constants", prob(shipped, x))
    # The anchors weigh as much as args.anchor_share of the corpus's windows.
    wt = np.where(k < 0, args.anchor_share * (k >= 0).sum() / max(1, (k < 0).sum()), 1.0)
    held_out = np.zeros(len(y))
    for part in (0, 1):  # whole broadcasts: fit on one parity of index (and the anchors), predict the other
        train = (k % 2 != part) | (k < 0)
        c = fit(x[train], y[train], args.l2, wt[train])
        held_out[(k % 2 == part) & (k >= 0)] = prob(c, x[(k % 2 == part) & (k >= 0)])
    held_out[k < 0] = prob(fit(x[k >= 0], y[k >= 0], args.l2), x[k < 0])  # anchors: from corpus-only fits
    report("fit, held-out broadcasts", held_out)
    c = fit(x, y, args.l2, wt)
    report("fit on all train (in-sample)", prob(c, x))
    kind = np.concatenate(kinds)
    print("share of windows with p >= 0.5, by what the window lies in (shipped -> fit on all train):")
    for w in sorted(set(kind)):
        for cls in (1, 0):
            s = (kind == w) & (y == cls)
            if s.any():
                print(f"  {w:<20} {'music ' if cls else 'speech'} {int(s.sum()):5d}  "
                      f"{(prob(shipped, x[s]) >= 0.5).mean():.2f} -> {(prob(c, x[s]) >= 0.5).mean():.2f}")
    print("constants:")
    for name, v in zip(("BIAS",) + tuple("W_" + n.upper() for n in NAMES), c):
        print(f"{name} = {v:.2f}")


if __name__ == "__main__":
    main()
