"""Game-HUD events (banners, kill icons, detected objects) from a game profile.

A *game profile* is a small JSON (or TOML) file that says where to look on screen and what
counts as an event. Example (``detectors/profiles/example_shooter/profile.json``)::

    {
      "name": "example_shooter",
      "frame_width": 640, "frame_height": 360,
      "regions": {"banner": [0.1, 0.28, 0.8, 0.25], "killfeed": [0.35, 0.04, 0.3, 0.2]},
      "templates": [{"region": "killfeed", "file": "templates/kill_icon.png",
                     "threshold": 0.75, "event": "kill", "weight": 0.5}],
      "ocr": [{"region": "banner", "pattern": "ELIMINATED", "event": "eliminated", "weight": 1.0},
              {"region": "banner", "pattern": "VICTORY", "event": "victory", "weight": 2.0},
              {"region": "banner", "pattern": "\\d+\\s*KILLS", "event": "multikill", "weight": 1.5}],
      "cooldown": 3.0, "cooldowns": {"victory": 30.0},
      "ocr_scale": 0.6,
      "change_threshold": 0.06, "change_area": 0.25, "gate_size": 32
    }

Fields (unknown fields are an error):

* ``name``; ``description`` (optional, free text).
* ``frame_width``, ``frame_height``: the frame size the profile (and its templates) was made
  for. Regions are fractions of the frame, so any resolution works, and work is done at this
  size at most: on bigger frames regions are shrunk to it, on smaller ones the templates are
  shrunk to the frame instead (never enlarging either: no blur, cost set by the profile).
* ``regions``: ``{name: [x, y, w, h]}``, fractions (0..1) of the frame width/height.
* ``templates``: ``{region, file, event, threshold=0.8, weight=1.0}``. ``file`` is a PNG
  (at most 2 MiB, at most the profile's frame size) relative to the profile file, inside its
  folder; its alpha channel, if any, masks the match (only opaque
  pixels count, so an icon over moving gameplay matches). OpenCV ``TM_CCOEFF_NORMED`` on
  gray; fires when the best score in the region reaches ``threshold`` (-1..1). Runs on
  every frame (cheap: about a millisecond).
* ``ocr``: ``{region, pattern, event, weight=1.0, min_confidence=0.0}``. ``pattern`` is a
  case-insensitive Python regex searched in the text easyocr reads in the region (its
  pieces joined by spaces; pieces below ``min_confidence`` dropped). Needs the ``ocr`` extra.
  ``ocr_scale`` (default 1): OCR reads a region shrunk to this times its size at the
  profile's frame size (never enlarged): cost grows with the area, mostly in easyocr's
  text detector. ``ocr_detect`` (default true): false skips that detector and reads each
  region as a single line of text, about 6x cheaper, for tight one-line regions.
* ``yolo`` (optional): ``{weights, classes, region="", iou=0.45}``. ``weights``: an ONNX
  export of a YOLO model by ultralytics (at most 256 MiB), relative to the profile file and
  inside its folder; ``region``: "" for
  the whole frame; ``classes``: ``{class name or id: {event, weight=1.0, min_confidence=0.5}}``.
* ``cooldown`` (seconds, default 5) and ``cooldowns`` (``{event: seconds}``): an event fires
  again only once it has been off screen that long (or, for new text while on, that long
  after it last fired).
* ``change_threshold`` (default 0.06), ``change_area`` (default 0.25), ``gate_size``
  (default 32): OCR and YOLO run on a region only when it changed since they last ran on
  it. The region is shrunk to ``gate_size`` cells across (fine texture and small motion
  average out), each cell's change is its mean absolute difference over B, G, R (as a
  fraction of 255), and the region changed when the mean over its most-changed
  ``change_area`` of cells exceeds ``change_threshold`` (``change_area`` 1 is the plain mean
  over the region). The first frame is always processed.

Channels name a profile (``hud.profile: "example_shooter"``): :func:`load_profile` looks the
name up in the operator's ``--profiles-dir`` and then in ``detectors/profiles`` (see
:mod:`detectors.assets`: names only, files inside the profile's folder, size caps, no reads
that can block). :func:`load_profile_file` loads a file by path, for the operator's tools.

Events are edge-triggered: a rule fires when it starts matching (for OCR: when the matched
text changes, so "2 KILLS" then "3 KILLS" are two events) and not again while it keeps
matching, so a banner that stays up for seconds, or the permanent HUD, fires at most once.
Each event is ``Signal("hud", t, value=weight, detail="<event>: <what matched>")``, e.g.
``detail="multikill: 3 KILLS"`` or ``"kill: template kill_icon.png 0.99"``.

:class:`HudDetector` takes the models from :mod:`detectors.hud_models` (loaded lazily: this
module imports, and template matching runs, without torch), or injected ones. Feed it uint8
BGR frames (gray works, but loses the colour contrast the gate and OCR use), e.g. 640x360
keyframes every 1-2 s.

Measured CPU (one thread, 640x360): templates + gate about 0.6-0.9 ms per frame; easyocr
about 0.2 s per call on the example's 307x54 OCR input (0.07 s with ``ocr_detect: false``,
0.4 s at 512x90); YOLOv8n ONNX at 320 about 23 ms per call.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import cv2
import msgspec
import numpy as np

from detectors.assets import (
    BUNDLED_PROFILES,
    PROFILE_MAX_BYTES,
    TEMPLATE_MAX_BYTES,
    WEIGHTS_MAX_BYTES,
    AssetDirs,
    AssetError,
    asset_path,
    check_file,
    profile_file,
    read_file,
)
from detectors.assets import bundled_profiles as bundled_profiles
from records.wire import Signal

PROFILES_DIR = BUNDLED_PROFILES
MAX_FRAME_WIDTH, MAX_FRAME_HEIGHT = 3840, 2160  # 4K: what a profile (and its templates) may be made at
MAX_RULES = 64  # regions, templates, OCR rules, YOLO classes: each at most this many
Weight = Annotated[float, msgspec.Meta(ge=-10.0, le=10.0)]
Text = Annotated[str, msgspec.Meta(max_length=200)]


class ProfileError(ValueError):
    """A game profile that cannot be used, with the reason (and the file, when loaded)."""


class TemplateRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    region: Text
    file: Text  # PNG, relative to the profile file (load_profile makes it absolute)
    event: Text
    threshold: float = 0.8  # TM_CCOEFF_NORMED score, -1..1
    weight: Weight = 1.0


class OcrRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    region: Text
    pattern: Annotated[str, msgspec.Meta(max_length=500)]  # regex, case-insensitive
    event: Text
    weight: Weight = 1.0
    min_confidence: float = 0.0  # easyocr confidence below which a piece of text is ignored


class YoloClass(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    event: Text
    weight: Weight = 1.0
    min_confidence: float = 0.5


class YoloConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    weights: Text  # .onnx, relative to the profile file (load_profile makes it absolute)
    classes: Annotated[dict[str, YoloClass], msgspec.Meta(max_length=MAX_RULES)]  # class name (model metadata) or id
    region: Text = ""  # "" = the whole frame
    iou: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.45  # NMS overlap


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ProfileError(message)


class GameProfile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where to look and what counts as an event; see the module docstring."""

    name: Text
    frame_width: Annotated[int, msgspec.Meta(le=MAX_FRAME_WIDTH)]
    frame_height: Annotated[int, msgspec.Meta(le=MAX_FRAME_HEIGHT)]
    # x, y, w, h: fractions of the frame
    regions: Annotated[dict[str, tuple[float, float, float, float]], msgspec.Meta(max_length=MAX_RULES)]
    templates: Annotated[list[TemplateRule], msgspec.Meta(max_length=MAX_RULES)] = []
    ocr: Annotated[list[OcrRule], msgspec.Meta(max_length=MAX_RULES)] = []
    yolo: YoloConfig | None = None
    cooldown: Annotated[float, msgspec.Meta(le=3600.0)] = 5.0  # seconds an event must be off screen before it fires again
    cooldowns: Annotated[dict[str, float], msgspec.Meta(max_length=MAX_RULES)] = {}  # per event, overriding ``cooldown``
    ocr_scale: float = 1.0  # OCR reads regions shrunk to this times their size at frame_width x frame_height
    ocr_detect: bool = True  # False: read each OCR region as one line (no text detector: ~6x cheaper)
    change_threshold: float = 0.06  # region-change gate for OCR and YOLO (|diff| / 255, see below)
    change_area: float = 0.25  # ...averaged over this most-changed fraction of the region
    gate_size: Annotated[int, msgspec.Meta(le=256)] = 32  # cells across that the gate shrinks a region to
    description: Annotated[str, msgspec.Meta(max_length=4000)] = ""

    def __post_init__(self) -> None:
        _check(bool(self.name), "name must not be empty")
        _check(self.frame_width > 0 and self.frame_height > 0, "frame_width and frame_height must be positive")
        for rname, (x, y, w, h) in self.regions.items():
            _check(
                w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 1.0 + 1e-9 and y + h <= 1.0 + 1e-9,
                f"region {rname!r} = {[x, y, w, h]} must lie inside the frame: x, y >= 0, w, h > 0, "
                "x + w <= 1, y + h <= 1 (fractions of the frame)",
            )
        used = [("templates", r.region) for r in self.templates] + [("ocr", r.region) for r in self.ocr]
        if self.yolo is not None and self.yolo.region:
            used.append(("yolo", self.yolo.region))
        for where, rname in used:
            _check(rname in self.regions, f"{where} uses region {rname!r}, which is not in regions {sorted(self.regions)}")
        for r in self.templates:
            _check(bool(r.event), "a template rule has an empty event")
            _check(-1.0 <= r.threshold <= 1.0, f"template {r.file!r}: threshold {r.threshold} is outside -1..1")
        for r in self.ocr:
            _check(bool(r.event), "an ocr rule has an empty event")
            try:
                re.compile(r.pattern, re.IGNORECASE)
            except re.error as e:
                raise ProfileError(f"ocr pattern {r.pattern!r} is not a valid regex: {e}") from None
        if self.yolo is not None:
            _check(bool(self.yolo.classes), "yolo.classes must name at least one class")
            for key, c in self.yolo.classes.items():
                _check(bool(c.event), f"yolo class {key!r} has an empty event")
                _check(0.0 <= c.min_confidence <= 1.0, f"yolo class {key!r}: min_confidence outside 0..1")
        _check(self.cooldown >= 0 and all(v >= 0 for v in self.cooldowns.values()), "cooldowns must be >= 0")
        _check(0 < self.ocr_scale <= 1, "ocr_scale must be in (0, 1]")
        _check(self.change_threshold >= 0, "change_threshold must be >= 0")
        _check(0 < self.change_area <= 1, "change_area must be in (0, 1]")
        _check(self.gate_size >= 2, "gate_size must be >= 2")

    def region_box(self, name: str, width: int, height: int) -> tuple[int, int, int, int]:
        """A region in pixels of a ``width`` x ``height`` frame: (x0, y0, x1, y1)."""
        x, y, w, h = self.regions[name]
        x0, y0 = int(round(x * width)), int(round(y * height))
        x1, y1 = int(round((x + w) * width)), int(round((y + h) * height))
        return x0, y0, max(x0 + 1, min(x1, width)), max(y0 + 1, min(y1, height))


def load_profile(name: str, dirs: AssetDirs | None = None) -> GameProfile:
    """The game profile called ``name`` (as a channel's ``hud.profile`` names it): from the
    operator's ``dirs.profiles_dir``, else bundled. Template and weight paths come back
    absolute and checked (inside the profile's folder, regular files, size caps). Every
    problem raises :class:`ProfileError` naming the profile, never a path on this host."""
    try:
        path = profile_file(name, dirs or AssetDirs())
    except AssetError as e:
        raise ProfileError(str(e)) from None
    return _load(path, f"game profile {name!r}")


def load_profile_file(path: str | Path) -> GameProfile:
    """A profile file by path (``.json``, or ``.toml`` by its suffix), for the operator's own
    tools and tests: the same checks as :func:`load_profile`, relative to the file's folder."""
    p = Path(path).resolve()
    return _load(p, str(path))


def _load(path: Path, label: str) -> GameProfile:
    try:
        raw = read_file(path, PROFILE_MAX_BYTES, label)
        if path.suffix.lower() == ".toml":
            profile = msgspec.toml.decode(raw, type=GameProfile)
        else:
            profile = msgspec.json.decode(raw, type=GameProfile)
    except AssetError as e:
        raise ProfileError(str(e)) from None
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise ProfileError(f"{label}: {e}") from None
    root = path.parent
    try:
        templates = []
        for rule in profile.templates:
            f = asset_path(root, rule.file, f"{label}: template file {rule.file!r}")
            check_file(f, TEMPLATE_MAX_BYTES, f"{label}: template file {rule.file!r}")
            templates.append(msgspec.structs.replace(rule, file=str(f)))
        yolo = profile.yolo
        if yolo is not None:
            w = asset_path(root, yolo.weights, f"{label}: yolo weights {yolo.weights!r}")
            check_file(w, WEIGHTS_MAX_BYTES, f"{label}: yolo weights {yolo.weights!r}")
            yolo = msgspec.structs.replace(yolo, weights=str(w))
    except AssetError as e:
        raise ProfileError(str(e)) from None
    return msgspec.structs.replace(profile, templates=templates, yolo=yolo)


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, before anything is decoded."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class _Template:
    def __init__(self, rule: TemplateRule, profile: GameProfile) -> None:
        name = Path(rule.file).name
        try:
            data = read_file(Path(rule.file), TEMPLATE_MAX_BYTES, f"template {name!r}")
        except AssetError as e:
            raise ProfileError(str(e)) from None
        size = _png_size(data)
        if size is None:
            raise ProfileError(f"template {name!r} is not a PNG")
        if size[0] > profile.frame_width or size[1] > profile.frame_height:  # no decompression bombs
            raise ProfileError(f"template {name!r} ({size[0]}x{size[1]}) is bigger than the profile's frame")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ProfileError(f"cannot decode template {name!r} (a PNG, relative to the profile file)")
        mask = None
        if image.ndim == 3 and image.shape[2] == 4:
            alpha = image[..., 3]
            if (alpha < 255).any():
                mask = np.where(alpha >= 128, 255, 0).astype(np.uint8)
            image = image[..., :3]
        self.gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        self.mask = mask
        self.rule = rule
        x0, y0, x1, y1 = profile.region_box(rule.region, profile.frame_width, profile.frame_height)
        th, tw = self.gray.shape
        if tw > x1 - x0 or th > y1 - y0:
            raise ProfileError(
                f"template {rule.file!r} ({tw}x{th}) is bigger than region {rule.region!r} "
                f"({x1 - x0}x{y1 - y0} at {profile.frame_width}x{profile.frame_height})"
            )
        self._scaled: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = {}

    def at(self, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray | None]:
        """The template (and mask) scaled for a frame ``sx``/``sy`` times the profile's size."""
        th, tw = self.gray.shape
        size = (max(1, int(round(tw * sx))), max(1, int(round(th * sy))))
        if size not in self._scaled:
            if size == (tw, th):
                self._scaled[size] = (self.gray, self.mask)
            else:
                interp = cv2.INTER_AREA if size[0] < tw else cv2.INTER_LINEAR
                gray = cv2.resize(self.gray, size, interpolation=interp)
                mask = None if self.mask is None else cv2.resize(self.mask, size, interpolation=cv2.INTER_NEAREST)
                self._scaled[size] = (gray, mask)
        return self._scaled[size]


class HudDetector:
    """Feed frames in stream order with :meth:`push`; get ``Signal("hud")`` per HUD event.

    ``ocr_reader``: an easyocr reader (:func:`detectors.hud_models.load_ocr_reader`, loaded
    here when the profile has OCR rules and none is given) or any callable
    ``image -> [(text, confidence)] | [str] | str``. ``yolo_session``: a
    :class:`detectors.hud_models.YoloOnnx`, an onnxruntime session, or a callable
    ``image -> [Detection]``; loaded from ``profile.yolo.weights`` when not given.

    Counters: ``frames``, ``ocr_calls``, ``yolo_calls``; wall seconds spent in
    ``template_seconds``, ``ocr_seconds``, ``yolo_seconds``.
    """

    def __init__(self, profile: GameProfile, ocr_reader: Any = None, yolo_session: Any = None) -> None:
        from . import hud_models

        self.profile = profile
        self._templates = [_Template(rule, profile) for rule in profile.templates]
        self._patterns = [re.compile(r.pattern, re.IGNORECASE) for r in profile.ocr]
        self._ocr_regions = list(dict.fromkeys(r.region for r in profile.ocr))
        self._ocr = None
        if profile.ocr:
            self._ocr = hud_models.as_ocr_reader(ocr_reader if ocr_reader is not None else hud_models.load_ocr_reader())
        self._yolo = None
        if profile.yolo is not None:
            model = yolo_session if yolo_session is not None else hud_models.load_yolo_onnx(profile.yolo.weights)
            self._yolo = hud_models.as_yolo(model)
        self._gate_ref: dict[tuple[str, str], np.ndarray] = {}
        self._active: dict[tuple, str | None] = {}  # rule -> what it matched when last evaluated
        self._rule_event: dict[tuple, str] = {}
        self._last_fire: dict[str, float] = {}  # event -> stream time it last fired
        self._last_seen: dict[str, float] = {}  # event -> last stream time a rule of it matched
        self.frames = 0
        self.ocr_calls = 0
        self.yolo_calls = 0
        self.template_seconds = 0.0
        self.ocr_seconds = 0.0
        self.yolo_seconds = 0.0
        self.last_change: dict[str, float] = {}  # gate key "ocr:banner" -> last measured difference

    # ------------------------------------------------------------------ the pipeline

    def push(self, t: float, frame: np.ndarray) -> list[Signal]:
        """One frame (uint8 BGR ``(h, w, 3)`` or gray ``(h, w)``) at stream time ``t``."""
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        if frame.dtype != np.uint8 or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
            raise ValueError(f"HudDetector wants uint8 BGR (h, w, 3) or gray (h, w) frames, got {frame.dtype} {frame.shape}")
        t = float(t)
        self.frames += 1
        out: list[Signal] = []
        if self._templates:
            out += self._match_templates(t, frame)
        for region in self._ocr_regions:
            out += self._read_region(t, frame, region)
        if self._yolo is not None:
            out += self._detect_objects(t, frame)
        for rule, hit in self._active.items():  # gated rules keep their last state
            if hit is not None:
                self._last_seen[self._rule_event[rule]] = t
        return out

    def _crop(self, frame: np.ndarray, region: str, min_size: tuple[int, int] = (1, 1)) -> np.ndarray:
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = self.profile.region_box(region, w, h)
        # Grow the crop (rounding at odd sizes) so that a scaled template still fits.
        if x1 - x0 < min_size[0]:
            x0 = max(0, min(x0, w - min_size[0]))
            x1 = min(w, x0 + min_size[0])
        if y1 - y0 < min_size[1]:
            y0 = max(0, min(y0, h - min_size[1]))
            y1 = min(h, y0 + min_size[1])
        return frame[y0:y1, x0:x1]

    def _work_scale(self, frame: np.ndarray) -> tuple[float, float]:
        """Scale of the frame vs the profile's size, capped at 1: regions bigger than at the
        profile's size are shrunk to it (cost set by the profile), smaller ones kept."""
        h, w = frame.shape[:2]
        sx, sy = w / self.profile.frame_width, h / self.profile.frame_height
        return (1.0, 1.0) if sx >= 1.0 and sy >= 1.0 else (min(sx, 1.0), min(sy, 1.0))

    def _region_at(self, frame: np.ndarray, region: str, scale: tuple[float, float], min_size: tuple[int, int] = (1, 1)) -> np.ndarray:
        """The region's pixels, resized (shrunk only) to ``scale`` x its size at the profile's size."""
        p = self.profile
        x0, y0, x1, y1 = p.region_box(region, p.frame_width, p.frame_height)
        size = (max(min_size[0], int(round((x1 - x0) * scale[0]))), max(min_size[1], int(round((y1 - y0) * scale[1]))))
        crop = self._crop(frame, region, size)
        if (crop.shape[1], crop.shape[0]) != size:
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        return crop

    def _match_templates(self, t: float, frame: np.ndarray) -> list[Signal]:
        start = time.perf_counter()
        scale = self._work_scale(frame)
        grays: dict[tuple[str, tuple[int, int]], np.ndarray] = {}
        out = []
        for k, tpl in enumerate(self._templates):
            gray_t, mask = tpl.at(*scale)
            th, tw = gray_t.shape
            key = (tpl.rule.region, (tw, th))
            if key not in grays:
                crop = self._region_at(frame, tpl.rule.region, scale, (tw, th))
                grays[key] = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
            gray = grays[key]
            if gray.shape[0] < th or gray.shape[1] < tw:
                continue  # a frame smaller than the template: nothing to match
            scores = cv2.matchTemplate(gray, gray_t, cv2.TM_CCOEFF_NORMED, mask=mask)
            # Flat patches (no variance) give NaN/inf: they match nothing.
            best = float(np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0).clip(-1, 1).max())
            hit = "match" if best >= tpl.rule.threshold else None
            name = Path(tpl.rule.file).name
            s = self._edge(("template", k), hit, tpl.rule.event, tpl.rule.weight, t, f"template {name} {best:.2f}")
            if s is not None:
                out.append(s)
        self.template_seconds += time.perf_counter() - start
        return out

    def _changed(self, kind: str, region: str, crop: np.ndarray) -> bool:
        """The region-change gate: True (and remember the crop) if it moved past the threshold.

        The region is shrunk to ``gate_size`` cells across (fine texture and small motion
        average out); each cell's change is its mean |difference| over the colour channels
        (a red banner on green-brown gameplay can be nearly invisible in gray); the measure
        is the mean of the most-changed ``change_area`` of the cells, so a banner covering a
        third of the region counts fully, while noise spread thinly over all of it does not.
        """
        gw = self.profile.gate_size
        gh = max(2, int(round(gw * crop.shape[0] / max(1, crop.shape[1]))))
        small = cv2.resize(crop, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float32)
        key = (kind, region)
        ref = self._gate_ref.get(key)
        if ref is None or ref.shape != small.shape:
            diff = float("inf")
        else:
            cells = np.abs(small - ref)
            cells = (cells.mean(axis=2) if cells.ndim == 3 else cells).ravel()
            k = max(1, int(np.ceil(self.profile.change_area * cells.size)))
            diff = float(np.partition(cells, cells.size - k)[cells.size - k :].mean()) / 255.0
        self.last_change[f"{kind}:{region}"] = diff
        if diff <= self.profile.change_threshold:
            return False
        self._gate_ref[key] = small
        return True

    def _read_region(self, t: float, frame: np.ndarray, region: str) -> list[Signal]:
        crop = self._crop(frame, region)
        if not self._changed("ocr", region, crop):
            return []
        # Read at (ocr_scale x) the profile's resolution at most: the cost is the profile's.
        p = self.profile
        x0, y0, x1, y1 = p.region_box(region, p.frame_width, p.frame_height)
        size = (max(8, int(round((x1 - x0) * p.ocr_scale))), max(8, int(round((y1 - y0) * p.ocr_scale))))
        if crop.shape[1] > size[0] and crop.shape[0] > size[1]:
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        start = time.perf_counter()
        pieces = self._ocr(np.ascontiguousarray(crop), detect=self.profile.ocr_detect)
        self.ocr_seconds += time.perf_counter() - start
        self.ocr_calls += 1
        out = []
        for k, (rule, pattern) in enumerate(zip(self.profile.ocr, self._patterns)):
            if rule.region != region:
                continue
            text = " ".join(txt for txt, conf in pieces if conf >= rule.min_confidence)
            m = pattern.search(text)
            hit = " ".join(m.group(0).split()).upper() if m else None
            s = self._edge(("ocr", k), hit, rule.event, rule.weight, t, hit or "")
            if s is not None:
                out.append(s)
        return out

    def _detect_objects(self, t: float, frame: np.ndarray) -> list[Signal]:
        cfg = self.profile.yolo
        assert cfg is not None and self._yolo is not None
        crop = self._crop(frame, cfg.region) if cfg.region else frame
        if not self._changed("yolo", cfg.region, crop):
            return []
        floor = min(c.min_confidence for c in cfg.classes.values())
        start = time.perf_counter()
        found = self._yolo(np.ascontiguousarray(crop), conf=floor, iou=cfg.iou)
        self.yolo_seconds += time.perf_counter() - start
        self.yolo_calls += 1
        out = []
        for key, c in cfg.classes.items():
            hits = [d for d in found if key in (d.name, str(d.cls)) and d.confidence >= c.min_confidence]
            best = max(hits, key=lambda d: d.confidence) if hits else None
            hit = key if best is not None else None
            detail = f"{best.name} {best.confidence:.2f} x{len(hits)}" if best is not None else ""
            s = self._edge(("yolo", key), hit, c.event, c.weight, t, detail)
            if s is not None:
                out.append(s)
        return out

    def _edge(self, rule: tuple, hit: str | None, event: str, weight: float, t: float, what: str) -> Signal | None:
        """Fire when a rule starts matching, or matches something new, outside the cooldown.

        Starting to match: the event must have been off screen for ``cooldown`` (so OCR
        missing a banner for a frame does not fire it twice). Matching new text while on
        (2 KILLS, then 3 KILLS): ``cooldown`` since the event last fired.
        """
        before = self._active.get(rule)
        self._active[rule] = hit
        self._rule_event[rule] = event
        if hit is None or hit == before:
            return None
        since = self._last_seen if before is None else self._last_fire
        last = since.get(event)
        cooldown = self.profile.cooldowns.get(event, self.profile.cooldown)
        if last is not None and 0.0 <= t - last < cooldown:
            return None
        self._last_fire[event] = self._last_seen[event] = t
        return Signal("hud", t=t, value=round(float(weight), 3), detail=f"{event}: {what}")


__all__ = [
    "GameProfile",
    "HudDetector",
    "OcrRule",
    "ProfileError",
    "TemplateRule",
    "YoloClass",
    "YoloConfig",
    "bundled_profiles",
    "load_profile",
    "load_profile_file",
]
