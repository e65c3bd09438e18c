"""What a crash can leave in a channel's clip folder, found at the actor's start.

- part files (``stream_actor.clipper.part_path``): a cut interrupted mid-write;
- clip files (video, thumbnail) that no clip row points at and no journaled commit names: a
  crash between the cut and its journal entry, or a commit judged impossible.

Both only when older than a grace period, so a file being written now is never taken.
"""
from __future__ import annotations

import time
from pathlib import Path

from stream_actor.clipper import PART_SUFFIX

PART_GRACE = 60.0  # seconds: a cut writes its part files within seconds
ORPHAN_GRACE = 600.0  # seconds: an unreferenced clip file younger than this is left alone
CLIP_SUFFIXES = (".mp4", ".jpg")


def _old_files(folder: Path, now: float, grace: float):
    try:
        entries = list(Path(folder).iterdir())
    except FileNotFoundError:
        return
    for path in entries:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file() and now - stat.st_mtime >= grace:
            yield path


def remove_files(paths) -> None:
    """Delete what a sweep found (a file gone meanwhile is fine)."""
    for path in paths:
        path.unlink(missing_ok=True)


def stale_parts(folder: Path, now: float | None = None, grace: float = PART_GRACE) -> list[Path]:
    now = time.time() if now is None else now
    return [p for p in _old_files(folder, now, grace) if p.name.startswith(".") and p.name.endswith(PART_SUFFIX)]


def unjournaled_clip_files(
    folder: Path, journaled: set[str], now: float | None = None, grace: float = ORPHAN_GRACE
) -> list[Path]:
    """Old clip files whose name (the commit key) no pending commit holds: orphans unless a row
    points at them (the caller asks Postgres)."""
    now = time.time() if now is None else now
    return [
        p for p in _old_files(folder, now, grace)
        if p.suffix in CLIP_SUFFIXES and not p.name.startswith(".") and p.stem not in journaled
    ]
