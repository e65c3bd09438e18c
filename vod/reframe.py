"""Where a vertical (or square) crop of a wider picture sits in each frame: a pure function of
the faces found on sampled frames (the functional core of ``reframe: speaker``).

Faces are sampled every ``sample_every`` seconds (``vod.export`` runs the detector). At each
sample the picture holds one speaker, nobody, or several people; a face much smaller than
the largest one is a bystander or a false detection and does not count. Then:

- one speaker: the crop follows the face's centre;
- nobody: the crop holds its last position for ``hold`` seconds (a detector misses faces
  that turn or blur), then the picture goes wide;
- several people (or nobody for longer): wide, i.e. the whole picture letterboxed over a
  blurred copy of itself (``vod.export`` draws it);
- a stretch of either mode shorter than ``min_mode`` takes its neighbours' mode, so one
  missed or spurious detection does not flash the picture between the two.

The crop moves like a camera operator: it stays still while the face is within
``dead_zone`` of its centre (detections jitter by a few pixels), pans at most ``max_speed``
with bounded acceleration, and, the whole clip being known in advance, aims ``lead``
seconds ahead so a walking speaker is not trailed.
"""
from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np

__all__ = ["CropPath", "ReframeOptions", "crop_path", "speakers"]


class ReframeOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sample_every: Annotated[float, msgspec.Meta(ge=0.1, le=1.0)] = 0.4  # seconds between detections
    detect_height: Annotated[int, msgspec.Meta(ge=120, le=720)] = 240  # frames are scaled to this for detection
    min_face: Annotated[float, msgspec.Meta(ge=0.05, le=0.5)] = 0.1  # smallest face found, of the frame height
    companion: Annotated[float, msgspec.Meta(ge=0.2, le=1.0)] = 0.6  # a second face this wide (of the largest) is a second person
    dead_zone: Annotated[float, msgspec.Meta(ge=0.0, le=0.3)] = 0.08  # of the crop width, either side of its centre
    max_speed: Annotated[float, msgspec.Meta(gt=0.0, le=5.0)] = 1.0  # crop widths per second
    max_accel: Annotated[float, msgspec.Meta(gt=0.0, le=20.0)] = 3.0  # crop widths per second, per second
    gain: Annotated[float, msgspec.Meta(gt=0.0, le=20.0)] = 4.0  # pan speed per unit of offset (1/s): eases in near the target
    lead: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.3  # seconds the crop aims ahead
    hold: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 1.5  # seconds a lost face's position is held
    min_mode: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 1.0  # shortest stretch of tracking or wide, seconds


class CropPath(msgspec.Struct, frozen=True):
    """Per output frame: the crop's left edge in source pixels, and whether the frame is wide."""

    x: np.ndarray  # float64, one per frame
    wide: np.ndarray  # bool, one per frame

    def __len__(self) -> int:
        return len(self.x)


def speakers(faces: np.ndarray, options: ReframeOptions) -> np.ndarray:
    """The faces that count as people: ``faces`` is (n, 4) boxes (x, y, w, h); those at least
    ``companion`` as wide as the largest one are kept."""
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    if len(faces) == 0:
        return faces
    return faces[faces[:, 2] >= options.companion * faces[:, 2].max()]


def _sample_modes(times: np.ndarray, centres: np.ndarray, counts: np.ndarray, o: ReframeOptions):
    """Per sample: tracking (and where), or wide."""
    track = np.zeros(len(times), dtype=bool)
    target = np.full(len(times), np.nan)
    last_seen, last_x = -np.inf, np.nan
    for i, (t, n) in enumerate(zip(times, counts)):
        if n == 1:
            last_seen, last_x = t, centres[i]
            track[i], target[i] = True, last_x
        elif n == 0 and t - last_seen <= o.hold:
            track[i], target[i] = True, last_x
        elif n > 1:
            last_seen = -np.inf  # after a group shot the crop does not jump back to an old position
    return _debounce(times, track, o.min_mode), target


def _debounce(times: np.ndarray, mode: np.ndarray, min_len: float) -> np.ndarray:
    """``mode`` with every run shorter than ``min_len`` seconds flipped, shortest first, so
    that runs only ever merge into longer ones."""
    mode = mode.copy()
    if len(mode) < 2 or min_len <= 0:
        return mode
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    while True:
        edges = np.flatnonzero(np.diff(mode.astype(np.int8))) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [len(mode)]))
        if len(starts) < 2:
            return mode
        lengths = times[ends - 1] - times[starts] + step
        shortest = int(np.argmin(lengths))
        if lengths[shortest] >= min_len:
            return mode
        mode[starts[shortest]:ends[shortest]] = not mode[starts[shortest]]


def _follow(targets: np.ndarray, dt: np.ndarray, crop_w: float, lo: float, hi: float, o: ReframeOptions) -> np.ndarray:
    """A camera centre that follows ``targets`` (one per frame) with a dead zone, a speed limit
    and an acceleration limit; it starts on the first target."""
    out = np.empty(len(targets))
    cam, velocity, moving = float(np.clip(targets[0], lo, hi)), 0.0, False
    zone, vmax, amax = o.dead_zone * crop_w, o.max_speed * crop_w, o.max_accel * crop_w
    for i, (target, step) in enumerate(zip(targets, dt)):
        error = float(np.clip(target, lo, hi)) - cam
        if abs(error) > zone:
            moving = True
        elif abs(error) < zone * 0.25:
            moving = False  # hysteresis: once moving, it settles on the face, not on the zone's edge
        wanted = float(np.clip(error * o.gain, -vmax, vmax)) if moving else 0.0
        velocity += float(np.clip(wanted - velocity, -amax * step, amax * step))
        cam = float(np.clip(cam + velocity * step, lo, hi))
        if cam in (lo, hi):
            velocity = 0.0
        out[i] = cam
    return out


def crop_path(
    frame_times: np.ndarray,
    samples: list[tuple[float, np.ndarray]],
    frame_w: float,
    crop_w: float,
    options: ReframeOptions | None = None,
) -> CropPath:
    """The crop's left edge and wide flag for each frame at ``frame_times`` (seconds), from
    ``samples``: (time, faces as (n, 4) boxes in source pixels) in time order."""
    o = options or ReframeOptions()
    frame_times = np.asarray(frame_times, dtype=np.float64)
    n = len(frame_times)
    lo, hi = crop_w / 2, frame_w - crop_w / 2
    if n == 0:
        return CropPath(np.zeros(0), np.zeros(0, dtype=bool))
    if not samples or crop_w >= frame_w:
        return CropPath(np.full(n, max(0.0, (frame_w - crop_w) / 2)), np.full(n, not samples and crop_w < frame_w))
    times = np.array([t for t, _ in samples], dtype=np.float64)
    people = [speakers(f, o) for _, f in samples]
    counts = np.array([len(p) for p in people])
    centres = np.array([p[0, 0] + p[0, 2] / 2 if len(p) == 1 else np.nan for p in people])
    track, target = _sample_modes(times, centres, counts, o)

    # each frame takes the mode of the latest sample at or before it (the first sample's before it)
    at = np.clip(np.searchsorted(times, frame_times, side="right") - 1, 0, len(times) - 1)
    wide = ~track[at]
    x = np.full(n, (frame_w - crop_w) / 2)
    dt = np.diff(frame_times, prepend=frame_times[0])
    run_edges = np.flatnonzero(np.diff(wide.astype(np.int8))) + 1
    for start, end in zip(np.concatenate(([0], run_edges)), np.concatenate((run_edges, [n]))):
        if wide[start]:
            continue
        # the targets of this run's samples, interpolated at each frame's time plus the lead
        first, last = at[start], at[end - 1]
        ts, xs = times[first:last + 1], target[first:last + 1]
        known = ~np.isnan(xs)
        if not known.any():
            continue
        aims = np.interp(frame_times[start:end] + o.lead, ts[known], xs[known])
        x[start:end] = _follow(aims, dt[start:end], crop_w, lo, hi, o) - crop_w / 2
    return CropPath(x, wide)
