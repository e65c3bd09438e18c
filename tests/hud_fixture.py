"""A synthetic shooter, drawn with OpenCV, for the HUD detector tests (and its templates).

Frames look like gameplay under a HUD, at any resolution (everything is laid out for
640x360 and scaled):

* a moving textured background (fine-grained noise panning sideways, under a fixed sky to
  ground gradient); ``scene`` picks another palette, like a cut to another place;
* the permanent HUD, on every frame: a health bar (bottom left, slowly draining), the ammo
  counter "30/90" (bottom right, counting down), a minimap (top right, with a moving dot);
* planted events: a centred banner ("ELIMINATED", "VICTORY", "3 KILLS") drawn straight over
  the gameplay with ``cv2.putText``, and a skull kill icon in the kill feed (top centre),
  alpha-blended like a game sprite.

``detectors/profiles/example_shooter/make_templates.py`` cuts its template from
:func:`kill_icon`, and ``profile.json`` there names regions that fit this layout.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

REF_W, REF_H = 640, 360  # the layout's reference size (the example profile's frame size)
ICON_SIZE = 28  # kill icon side at the reference size
ICON_POS = (306, 34)  # its top-left corner at the reference size (inside the kill feed)
BANNER_Y = 160  # banner baseline at the reference size
BANNER_SCALE, BANNER_THICK, BANNER_TRACK = 1.6, 3, 5  # font scale, stroke, letter spacing
BANNER_OUTLINE = [(0, 1), (0, -1), (1, 0), (-1, 0)]  # offsets (x outline width) of dark copies under it
PAN = 7  # background pan per frame, reference pixels

PALETTES = [((70, 110, 60), (40, 90, 140)), ((120, 80, 60), (60, 60, 70))]  # (sky, ground) BGR
BANNER_COLOURS = {"ELIMINATED": (130, 130, 255), "VICTORY": (40, 200, 240)}  # BGR; others white


def kill_icon(size: int = ICON_SIZE) -> np.ndarray:
    """The kill-feed skull as BGRA (alpha 0 around it), ``size`` pixels square.

    Drawn once large and shrunk, like a game scaling its sprite to the screen.
    """
    big = 8 * ICON_SIZE
    bgr = np.full((big, big, 3), 235, np.uint8)  # skull white; the alpha gives the shape
    alpha = np.zeros((big, big), np.uint8)
    hole = (20, 20, 20)

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * 8)), int(round(y * 8))

    cv2.circle(alpha, p(14, 12), 80, 255, -1, cv2.LINE_AA)
    cv2.rectangle(alpha, p(8, 17), p(20, 25), 255, -1)
    cv2.circle(bgr, p(10, 12), 24, hole, -1, cv2.LINE_AA)  # eyes: dark, opaque
    cv2.circle(bgr, p(18, 12), 24, hole, -1, cv2.LINE_AA)
    for x in (11, 14, 17):  # teeth
        cv2.line(bgr, p(x, 21), p(x, 25), hole, 8)
    out = np.dstack([bgr, alpha])
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)


@functools.cache
def _texture(width: int, height: int, scene: int) -> np.ndarray:
    """Background for one scene, twice the frame width (it pans), float32 BGR."""
    rng = np.random.default_rng(1000 + scene)
    s = width / REF_W
    noise = rng.normal(0.0, 45.0, (height, 2 * width)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 1.2 * s)
    sky, ground = (np.array(c, np.float32) for c in PALETTES[scene % len(PALETTES)])
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    base = sky * (1 - ramp) + ground * ramp
    return np.clip(base + noise[..., None] * np.array([1.0, 0.9, 0.8], np.float32), 0, 255)


def _blend(frame: np.ndarray, bgra: np.ndarray, x: int, y: int) -> None:
    h, w = bgra.shape[:2]
    a = bgra[..., 3:4].astype(np.float32) / 255.0
    roi = frame[y : y + h, x : x + w].astype(np.float32)
    frame[y : y + h, x : x + w] = (bgra[..., :3] * a + roi * (1 - a)).astype(np.uint8)


def _draw_banner(frame: np.ndarray, text: str, baseline: int, s: float) -> None:
    """Centred banner text with wide tracking and a dark outline, as games draw them."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, BANNER_SCALE * s, max(1, int(round(BANNER_THICK * s)))
    track = max(1, int(round(BANNER_TRACK * s)))  # extra space between letters
    widths = [cv2.getTextSize(ch if ch != " " else "n", font, scale, thick)[0][0] for ch in text]
    x = (frame.shape[1] - (sum(widths) + track * (len(text) - 1))) // 2
    colour = BANNER_COLOURS.get(text, (250, 250, 250))
    r = max(1, int(round(2 * s)))  # outline width
    for ch, w in zip(text, widths):
        if ch != " ":
            for dx, dy in BANNER_OUTLINE:
                cv2.putText(frame, ch, (x + dx * r, baseline + dy * r), font, scale, (15, 15, 15), thick, cv2.LINE_AA)
            cv2.putText(frame, ch, (x, baseline), font, scale, colour, thick, cv2.LINE_AA)
        x += w + track


def render(
    i: int,
    width: int = REF_W,
    height: int = REF_H,
    banner: str | None = None,
    icon: bool = False,
    scene: int = 0,
) -> np.ndarray:
    """Frame ``i`` of the game as uint8 BGR (``height``, ``width``, 3)."""
    s = width / REF_W

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * s)), int(round(y * height / REF_H))

    tex = _texture(width, height, scene)
    off = int(round(i * PAN * s)) % width
    frame = tex[:, off : off + width].astype(np.uint8).copy()

    # Permanent HUD: health bar, ammo counter, minimap.
    health = max(0.2, 1.0 - 0.02 * i)
    cv2.rectangle(frame, p(18, 326), p(222, 346), (20, 20, 20), -1)
    cv2.rectangle(frame, p(20, 328), p(20 + 200 * health, 344), (60, 200, 60), -1)
    cv2.rectangle(frame, p(18, 326), p(222, 346), (230, 230, 230), max(1, int(s)))
    ammo = f"{30 - i % 30}/90"
    cv2.putText(frame, ammo, p(540, 346), cv2.FONT_HERSHEY_DUPLEX, 0.9 * s, (240, 240, 240), max(1, int(2 * s)), cv2.LINE_AA)
    cv2.rectangle(frame, p(530, 10), p(630, 110), (40, 40, 40), -1)
    cv2.rectangle(frame, p(530, 10), p(630, 110), (200, 200, 200), max(1, int(s)))
    cv2.circle(frame, p(560 + (i * 3) % 60, 60), max(2, int(3 * s)), (60, 220, 240), -1)

    if icon:
        x, y = p(*ICON_POS)
        _blend(frame, kill_icon(int(round(ICON_SIZE * s))), x, y)
    if banner:
        _draw_banner(frame, banner, p(0, BANNER_Y)[1], s)
    return frame


class Planted:
    """What was drawn on one frame (the truth the tests compare with)."""

    __slots__ = ("banner", "icon", "scene")

    def __init__(self, banner: str | None = None, icon: bool = False, scene: int = 0) -> None:
        self.banner, self.icon, self.scene = banner, icon, scene


def sequence(
    plan: dict[int, Planted], n: int, fps: float = 2.0, width: int = REF_W, height: int = REF_H, scene_from: dict[int, int] | None = None
) -> list[tuple[float, np.ndarray, Planted]]:
    """``n`` frames ``(t, frame, planted)`` at ``fps``; ``plan`` maps frame index to what is planted.

    ``scene_from`` maps a frame index to the scene (palette) used from there on.
    """
    scene = 0
    out = []
    for i in range(n):
        scene = (scene_from or {}).get(i, scene)
        what = plan.get(i, Planted())
        what = Planted(what.banner, what.icon, scene)
        out.append((i / fps, render(i, width, height, what.banner, what.icon, scene), what))
    return out


if __name__ == "__main__":  # look at it: python tests/hud_fixture.py /tmp/hud
    import sys
    from pathlib import Path

    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    cv2.imwrite(str(out / "hud_plain.png"), render(0))
    cv2.imwrite(str(out / "hud_eliminated.png"), render(4, banner="ELIMINATED", icon=True))
    cv2.imwrite(str(out / "hud_victory_720p.png"), render(9, 1280, 720, banner="VICTORY", scene=1))
