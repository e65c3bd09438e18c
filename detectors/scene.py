"""Scene cuts between consecutive low-rate frames (the actor feeds keyframes only).

Two measures, combined so that both must agree (a geometric mean: a soft AND):
  * histogram distance: a cut changes *what* is on screen, motion mostly does not;
  * mean pixel difference: a cut changes *where* things are, a fade or exposure drift
    changes the histogram but moves nothing.
Frames are ~0.5-2 s apart, so ordinary motion already moves pixels a lot between two of
them; the histogram term is what keeps that from looking like a cut.
"""
from __future__ import annotations

import math
from typing import Annotated

import msgspec
import numpy as np

from records.wire import Signal


class SceneOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`SceneChangeDetector` (frames: small grayscale uint8, e.g. 64x36)."""

    bins: Annotated[int, msgspec.Meta(ge=2, le=256)] = 32  # histogram bins over 0..255: coarse, so noise and grain do not count
    hist_trigger: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.35  # histogram distance (0..1, half the L1) of a clear cut
    pixel_trigger: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.15  # mean |difference| / 255 of a clear cut
    min_value: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 1.0  # fire at this combined value (1.0 = both at their trigger)
    rate_window: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 8.0  # seconds: cuts this close together are a burst (replays, montages)
    rate_cuts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3  # cuts within rate_window that make a "scene_rate" signal (value 1.0)


class SceneChangeDetector:
    """Feed frames in stream order with :meth:`push`; get ``Signal("scene")`` on a hard cut.

    ``value`` = sqrt(hist_distance / hist_trigger * pixel_difference / pixel_trigger).

    Also ``Signal("scene_rate")`` once per burst of rapid cuts: ``rate_cuts`` or more within
    ``rate_window`` (``t`` = the burst's first cut, ``value`` = cuts / rate_cuts). One cut
    is a streamer switching scenes; several in a row are a replay or a montage.
    """

    def __init__(self, opts: SceneOptions | None = None) -> None:
        self.opts = opts or SceneOptions()
        self._prev: np.ndarray | None = None  # previous frame, float32
        self._prev_hist: np.ndarray | None = None
        self._cuts: list[float] = []  # times of recent cuts (within rate_window)
        self._burst_fired = False  # the current run of cuts already made its scene_rate signal

    def push(self, t: float, gray: np.ndarray) -> list[Signal]:
        o = self.opts
        frame = np.asarray(gray)
        if frame.ndim == 3:  # tolerate (h, w, 1)
            frame = frame[..., 0]
        frame = frame.astype(np.float32)
        hist = np.bincount(np.clip(frame, 0, 255).astype(np.int64).ravel() * o.bins // 256, minlength=o.bins)
        hist = hist / max(1, frame.size)
        prev, prev_hist = self._prev, self._prev_hist
        self._prev, self._prev_hist = frame, hist
        if prev is None or prev.shape != frame.shape:
            return []  # first frame, or the resolution changed: nothing to compare with
        hist_d = 0.5 * float(np.abs(hist - prev_hist).sum())
        pixel_d = float(np.abs(frame - prev).mean()) / 255.0
        value = math.sqrt((hist_d / o.hist_trigger) * (pixel_d / o.pixel_trigger))
        self._cuts = [c for c in self._cuts if c > t - o.rate_window]
        if not self._cuts:
            self._burst_fired = False  # a quiet window ends the burst
        if value < o.min_value:
            return []
        out = [Signal("scene", t=float(t), value=round(value, 3), detail=f"hist {hist_d:.2f} pixels {pixel_d:.2f}")]
        self._cuts.append(float(t))
        if len(self._cuts) >= o.rate_cuts and not self._burst_fired:
            self._burst_fired = True
            out.append(Signal("scene_rate", t=self._cuts[0], value=round(len(self._cuts) / o.rate_cuts, 3),
                              detail=f"{len(self._cuts)} cuts in {t - self._cuts[0]:.1f}s"))
        return out
