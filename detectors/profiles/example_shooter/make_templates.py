"""Make the example profile's templates from the synthetic game in ``tests/hud_fixture.py``.

Run once from the repository root (the PNGs are committed; ``tests/test_hud.py`` checks they
are still what this script makes)::

    python detectors/profiles/example_shooter/make_templates.py

For a real game the recipe is the same by hand: take a screenshot at the profile's
``frame_width`` x ``frame_height``, crop the icon tightly, and make everything around it
transparent (alpha 0) so only the icon's own pixels are matched over moving gameplay.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def make(out: Path = HERE / "templates") -> list[Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    import hud_fixture  # the synthetic game: its kill icon at the reference size (640x360)

    out.mkdir(parents=True, exist_ok=True)
    path = out / "kill_icon.png"
    cv2.imwrite(str(path), hud_fixture.kill_icon(hud_fixture.ICON_SIZE), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return [path]


if __name__ == "__main__":
    for p in make(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "templates"):
        print(p, p.stat().st_size, "bytes")
