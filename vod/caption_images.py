"""Caption images for burned-in captions: each cue of ``records.captions`` drawn with Pillow
and blended into the frames in numpy (PyAV's FFmpeg has neither libass nor drawtext).

The cues, and so the line breaks on phrase boundaries, are the ones the clip's SRT and WebVTT
have; only ``max_chars`` is fitted to the frame width. Text is Pillow's bundled scalable font
(Aileron) in white with a black outline, readable on any picture. ``karaoke`` draws the word
being spoken in the highlight colour: from its start until the next word starts.

A cue's image is drawn once per highlighted word and kept, so a frame costs one alpha blend
over the caption's rectangle.
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from records.captions import CaptionLayout, Cue, cues
from records.wire import Word

__all__ = ["CaptionStyle", "CaptionTrack", "Overlay", "active_word", "blend", "render_cue"]

CaptionMode = Literal["none", "burned", "karaoke"]
Level = Annotated[int, msgspec.Meta(ge=0, le=255)]
Colour = tuple[Level, Level, Level]  # RGB


class CaptionStyle(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    size: Annotated[float, msgspec.Meta(ge=0.02, le=0.15)] = 0.06  # font size, of the frame's shorter side
    max_width: Annotated[float, msgspec.Meta(ge=0.5, le=1.0)] = 0.9  # of the frame width
    tall_centre: Annotated[float, msgspec.Meta(ge=0.1, le=0.95)] = 0.76  # caption centre, of the height (9:16, 1:1)
    wide_centre: Annotated[float, msgspec.Meta(ge=0.1, le=0.95)] = 0.85  # ... in a wide frame (16:9)
    colour: Colour = (255, 255, 255)
    highlight: Colour = (255, 214, 0)
    outline: Colour = (0, 0, 0)
    stroke: Annotated[float, msgspec.Meta(ge=0.0, le=0.3)] = 0.12  # outline width, of the font size
    line_gap: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.2  # of the font size


class Overlay(msgspec.Struct, frozen=True):
    """A caption ready to blend: premultiplied colour and alpha (0..255), at (x, y)."""

    colour: np.ndarray  # (h, w, 3) uint32: rgb * alpha
    alpha: np.ndarray  # (h, w, 1) uint32
    x: int
    y: int


def active_word(cue: Cue, t: float) -> int | None:
    """Index (in ``cue.words``) of the word being spoken at ``t``: the last one started."""
    started = [i for i, w in enumerate(cue.words) if w.start <= t]
    return started[-1] if started else None


def render_cue(cue: Cue, font: ImageFont.FreeTypeFont, style: CaptionStyle, highlight: int | None = None) -> np.ndarray:
    """The cue's lines, centred, as an RGBA image (h, w, 4) uint8; word ``highlight`` (an index
    into ``cue.words``) in the highlight colour."""
    size = font.size
    stroke = round(style.stroke * size)
    space = font.getlength(" ")
    ascent, descent = font.getmetrics()
    line_h = ascent + descent + 2 * stroke
    widths = [sum(font.getlength(w.text) for w in line) + space * (len(line) - 1) for line in cue.lines]
    width = int(max(widths) + 2 * stroke + 2)
    height = int(line_h * len(cue.lines) + round(style.line_gap * size) * (len(cue.lines) - 1))
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    index = 0
    for row, (line, line_w) in enumerate(zip(cue.lines, widths)):
        x = (width - line_w) / 2
        y = row * (line_h + round(style.line_gap * size)) + stroke
        for word in line:
            fill = style.highlight if index == highlight else style.colour
            draw.text((x, y), word.text, font=font, fill=fill, stroke_width=stroke, stroke_fill=style.outline)
            x += font.getlength(word.text) + space
            index += 1
    return np.asarray(image)


def blend(frame: np.ndarray, overlay: Overlay) -> None:
    """Alpha-blend ``overlay`` into ``frame`` (h, w, 3 uint8, RGB) in place, clipped to it."""
    h, w = overlay.alpha.shape[:2]
    x0, y0 = max(0, overlay.x), max(0, overlay.y)
    x1, y1 = min(frame.shape[1], overlay.x + w), min(frame.shape[0], overlay.y + h)
    if x1 <= x0 or y1 <= y0:
        return
    sub = (slice(y0 - overlay.y, y1 - overlay.y), slice(x0 - overlay.x, x1 - overlay.x))
    region = frame[y0:y1, x0:x1]
    mixed = (region.astype(np.uint32) * (255 - overlay.alpha[sub]) + overlay.colour[sub] + 127) // 255
    region[...] = mixed.astype(np.uint8)


class CaptionTrack:
    """The captions of one export: ``track.at(t)`` is the overlay to draw at clip time ``t``."""

    def __init__(self, words: list[Word], width: int, height: int, mode: CaptionMode, style: CaptionStyle | None = None):
        self.style = style or CaptionStyle()
        self.mode = mode
        self.width, self.height = width, height
        base = max(10, round(self.style.size * min(width, height)))
        self.font = ImageFont.load_default(size=base)
        # about half an em per character in this font
        max_chars = int(np.clip(self.style.max_width * width / (0.52 * base), 8, 80))
        self.cues = cues(words, CaptionLayout(max_chars=max_chars)) if mode != "none" else []
        self._cache: dict[tuple[int, int | None], Overlay] = {}

    def at(self, t: float) -> Overlay | None:
        for i, cue in enumerate(self.cues):
            if cue.start <= t < cue.end:
                highlight = active_word(cue, t) if self.mode == "karaoke" else None
                key = (i, highlight)
                if key not in self._cache:
                    self._cache[key] = self._overlay(cue, highlight)
                return self._cache[key]
        return None

    def _overlay(self, cue: Cue, highlight: int | None) -> Overlay:
        font = self.font
        image = render_cue(cue, font, self.style, highlight)
        if image.shape[1] > self.style.max_width * self.width:  # a long word: shrink this cue to fit
            fitted = max(8, int(font.size * self.style.max_width * self.width / image.shape[1]))
            image = render_cue(cue, ImageFont.load_default(size=fitted), self.style, highlight)
        centre = self.style.tall_centre if self.height > self.width * 0.9 else self.style.wide_centre
        h, w = image.shape[:2]
        x = (self.width - w) // 2
        y = int(np.clip(centre * self.height - h / 2, 0, max(0, self.height - h)))
        alpha = image[:, :, 3:4].astype(np.uint32)
        return Overlay(colour=image[:, :, :3].astype(np.uint32) * alpha, alpha=alpha, x=x, y=y)
