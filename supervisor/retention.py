"""The retention sweeper of ``livecut up``, and the removal of ring folders left behind.

Every ``interval`` seconds it finishes interrupted file removals, measures clips whose size
is not known yet (rows from before migration 006, and new ones), reads the limits (the
global ones from Postgres on every pass, so a change made in the console applies at the
next pass), asks ``records.retention.select_expired`` which clips they no longer allow, and
deletes those oldest first through ``records.clip_removal`` (row, then files).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import msgspec

from records.clip_removal import finish_pending_removals, remove_clips
from records.retention import ClipUsage, RetentionLimits, channel_limits, select_expired
from records.store import Store

__all__ = ["RetentionSweeper", "apply_start_limits", "file_sizes", "remove_orphan_rings"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0
MEASURE_BATCH = 500  # clips measured per pass: a big backlog of old rows is spread over passes


def file_sizes(rows: list[dict]) -> dict[str, int]:
    """Bytes on disk of each row's video and thumbnail (a missing file counts 0). Blocking."""
    sizes = {}
    for row in rows:
        total = 0
        for path in (row["video_path"], row["thumbnail_path"]):
            try:
                total += os.stat(path).st_size
            except OSError:
                pass
        sizes[row["id"]] = total
    return sizes


async def apply_start_limits(store: Store, max_age_days: float | None, max_bytes: int | None) -> RetentionLimits:
    """``livecut up --retention-days/--retention-bytes``: a limit given replaces the stored one
    of its kind (the flags win at start; the console may change them afterwards), one not
    given (None) leaves the stored one standing. Returns the limits in force."""
    limits = await store.retention_limits()
    given = {k: v for k, v in (("max_age_days", max_age_days), ("max_bytes", max_bytes)) if v is not None}
    if given:
        limits = msgspec.convert({**msgspec.to_builtins(limits), **given}, RetentionLimits)  # bounds checked
        await store.set_retention_limits(limits)
    return limits


class RetentionSweeper:
    def __init__(self, store: Store, interval: float = SWEEP_INTERVAL) -> None:
        self.store = store
        self.interval = interval

    async def sweep(self) -> dict[str, str]:
        """One pass; returns the clips deleted, with why."""
        await finish_pending_removals(self.store)
        while rows := await self.store.unmeasured_clips(MEASURE_BATCH):
            await self.store.set_clip_bytes(await asyncio.to_thread(file_sizes, rows))
            if len(rows) < MEASURE_BATCH:
                break
        clips, channels = await self.store.retention_usage()
        expired = select_expired(
            [ClipUsage(c["id"], c["channel_id"], c["age_seconds"], c["bytes"]) for c in clips],
            await self.store.retention_limits(),
            channel_limits(channels),
        )
        if expired:
            deleted = set(await remove_clips(self.store, expired))
            expired = {k: v for k, v in expired.items() if k in deleted}
            log.info("retention: deleted %d clip(s)", len(expired))
        return expired

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # Postgres down, say: try again next time
                log.exception("retention sweep failed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass


def remove_orphan_rings(data_dir: str | Path, active_channel_ids: set[str]) -> list[str]:
    """Delete the ring folders (``DATA_DIR/ring/<channel id>``) of channels that no longer
    exist or are deleted; their segments are never read again. Blocking: run it in a thread.
    Returns the channel ids whose folders were removed."""
    root = Path(data_dir, "ring")
    removed = []
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink() and entry.name not in active_channel_ids:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed
