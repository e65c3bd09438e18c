"""Deleting clips: the row first, then the files.

``Store.delete_clips`` removes the rows and records each deletion in one transaction, so from
then on nothing points a subscriber at the files; the files go next, off the event loop. A
removal cut short (a crash between the two) is finished by ``finish_pending_removals``, which
the retention sweeper runs on every pass. Used by ``DELETE /api/clips/{id}`` and by the
sweeper (``supervisor.retention``).
"""
from __future__ import annotations

import asyncio
import logging
import os

from records.store import Store

__all__ = ["remove_clips", "finish_pending_removals", "unlink_files"]

log = logging.getLogger(__name__)


def unlink_files(rows: list[dict]) -> list[str]:
    """Remove each row's video and thumbnail (already gone is fine); the ids whose files are
    gone now. Blocking: run it in a thread."""
    done = []
    for row in rows:
        ok = True
        for path in (row["video_path"], row["thumbnail_path"]):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # kept for the next sweep
                log.warning("clip %s: cannot remove %s: %s", row["id"], path, exc)
                ok = False
        if ok:
            done.append(row["id"])
    return done


async def remove_clips(store: Store, reasons: dict[str, str]) -> list[str]:
    """Delete these clips (id → why): rows, then files. Returns the ids that were clips."""
    if not reasons:
        return []
    rows = await store.delete_clips(reasons)
    if rows:
        if done := await asyncio.to_thread(unlink_files, rows):
            await store.files_removed(done)
    return [r["id"] for r in rows]


async def finish_pending_removals(store: Store) -> int:
    """Remove the files of deletions a crash interrupted; returns how many were finished."""
    rows = await store.pending_file_removals()
    if not rows:
        return 0
    done = await asyncio.to_thread(unlink_files, rows)
    if done:
        await store.files_removed(done)
    return len(done)
