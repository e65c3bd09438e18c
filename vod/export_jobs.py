"""The export scheduler: runs queued clip exports as Ray tasks (the imperative shell of exports).

Postgres holds every export (``records.export_store``); the scheduler keeps nothing that
matters. Each pass first queues again any export Postgres says is running that no task here
runs (a stopped ``livecut up`` left it, or its outcome could not be stored), or fails it once
started ``MAX_ATTEMPTS`` times; then starts queued ones in creation order, up to
``max_running`` at once. An export's render (``vod.export.rendering``) runs as one Ray task
with ``cpus`` CPUs; its file is written under ``<data dir>/exports/<clip id>/``, which every
node shares, and appears whole. The task is a Ray streaming generator: it yields the render's
progress as it goes, which the row keeps (``ProgressGate``: about once a second at most, and
only when it moved by a percentage point; announced at each new tenth), then its result. The
row then says done (or failed, with the error), with its ``export`` notification in the same
transaction. A deleted clip's exports go with its row (``ON DELETE CASCADE``); a sweep every
``SWEEP_EVERY`` removes their files.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Annotated

import msgspec
import ray

from records.export_store import ExportStore
from records.store import Store
from records.wire import ExportOptions
from vod.errors import first_line
from vod.export import RenderResult, submit_export
from vod.passes import run_passes

log = logging.getLogger(__name__)

PASS_INTERVAL = 2.0  # seconds between passes; a new export wakes the scheduler sooner
SWEEP_EVERY = 60.0  # seconds between sweeps of the files of deleted clips' exports
STALE_PART = 3600.0  # a half-written export this old was left by a render that died
SAVE_RETRIES = 5  # tries to store a finished render's outcome while Postgres is away
SAVE_PAUSE = 2.0
PROGRESS_EVERY = 1.0  # seconds: the least time between two progress writes of an export
PROGRESS_MOVED = 0.01  # the least progress worth a write


class ExportSchedulerOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    data_dir: str
    max_running: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2  # exports rendering at once
    cpus: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1  # Ray CPUs (and encoder threads) per export
    gpus: Annotated[float, msgspec.Meta(ge=0.0, le=8.0)] = 0.0  # GPU share per export task (rendering is CPU-only)


class ProgressGate:
    """Which of a render's progress values to store: the first, then one that moved by
    ``PROGRESS_MOVED`` at least ``PROGRESS_EVERY`` seconds after the last one stored."""

    def __init__(self):
        self.stored = 0.0
        self.stored_at: float | None = None

    def admit(self, fraction: float, now: float) -> bool:
        if fraction - self.stored < PROGRESS_MOVED - 1e-9:
            return False
        if self.stored_at is not None and now - self.stored_at < PROGRESS_EVERY:
            return False
        self.stored, self.stored_at = fraction, now
        return True


class ExportScheduler:
    def __init__(self, store: Store, options: ExportSchedulerOptions):
        self.store = store
        self.exports = ExportStore(store.pool)
        self.options = options
        self.running: dict[str, asyncio.Task] = {}
        self.root = Path(options.data_dir, "exports")
        self._wake = asyncio.Event()
        self._next_sweep = 0.0

    def poke(self) -> None:
        self._wake.set()

    def path_for(self, clip_id: str, export_id: str) -> Path:
        return self.root / clip_id / f"{export_id}.mp4"

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await run_passes(self._pass, self._wake, stop, PASS_INTERVAL, "export scheduler")
        finally:
            # renders in flight stay "running" in Postgres: the next start queues them again
            for task in self.running.values():
                task.cancel()
            self.running.clear()

    async def _pass(self) -> None:
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_EVERY
            folders = await asyncio.to_thread(_clip_dirs, self.root)
            exists = await self.store.pool.fetch("SELECT id FROM clips WHERE id = ANY($1::text[])", folders)
            removed = await asyncio.to_thread(sweep, self.root, set(folders) - {r["id"] for r in exists})
            if removed:
                log.info("exports: removed %d file(s) of deleted clips or dead renders", removed)
        for export_id, task in list(self.running.items()):
            if task.done():
                del self.running[export_id]
        requeued, failed = await self.exports.recover(keep=list(self.running))
        if requeued or failed:
            log.info("exports: %d interrupted export(s) queued again, %d failed", requeued, failed)
        free = self.options.max_running - len(self.running)
        if free <= 0:
            return
        for row in await self.exports.queued(free + len(self.running)):
            if free <= 0:
                break
            if row["id"] in self.running:
                continue
            self.running[row["id"]] = asyncio.create_task(self._run(row), name=f"export-{row['id']}")
            free -= 1

    async def _run(self, row: dict) -> None:
        try:
            await self._render(row)
        except asyncio.CancelledError:
            raise
        except Exception:  # Postgres went away mid-way: a later pass queues it again
            log.exception("export %s: interrupted", row["id"])

    async def _render(self, row: dict) -> None:
        export_id, clip_id = row["id"], row["clip_id"]
        if await self.exports.start(export_id) is None:
            return  # taken or finished meanwhile
        clip = await self.store.get_clip(clip_id)
        if clip is None:
            await self.exports.fail(export_id, f"clip {clip_id} is gone")
            return
        dest = self.path_for(clip_id, export_id)
        options = msgspec.convert(row["options"], ExportOptions)
        items = submit_export(export_id, clip.video_path, str(dest), options, clip.words,
                              cpus=self.options.cpus, gpus=self.options.gpus)
        try:
            result = await self._follow(export_id, items)
        except asyncio.CancelledError:
            ray.cancel(items, force=True)
            raise
        except Exception as exc:  # Ray trouble: this export, not the scheduler
            if not isinstance(exc, (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError,
                                    ray.exceptions.NodeDiedError)):
                log.exception("export %s: the render did not answer", export_id)
            await self._save(self.exports.fail, export_id, _failure(exc))
            return
        await self._save(self.exports.finish, export_id, path=str(dest), width=result.width, height=result.height,
                         duration=result.duration, cpu=result.cpu)

    async def _follow(self, export_id: str, items: ray.ObjectRefGenerator) -> RenderResult:
        """Read the render's items as they come: store its progress (through a
        ``ProgressGate``), and return its result. Raises what the render raised."""
        gate = ProgressGate()
        async for ref in items:
            item = await ref
            if isinstance(item, RenderResult):
                return item
            if gate.admit(item, time.monotonic()):
                try:
                    await self.exports.progress(export_id, item)
                except Exception as exc:  # progress is for people watching: the render goes on
                    log.warning("export %s: cannot store its progress (%s)", export_id, exc)
        raise RuntimeError("the render ended without its result")

    async def _save(self, write, export_id: str, *args, **kwargs) -> None:
        """Store an outcome, retrying while Postgres is away; after that the export stays
        running in Postgres until a later pass queues it again."""
        for attempt in range(SAVE_RETRIES):
            try:
                await write(export_id, *args, **kwargs)
                return
            except Exception as exc:
                log.warning("export %s: cannot store its outcome (%s); try %d of %d",
                            export_id, exc, attempt + 1, SAVE_RETRIES)
                await asyncio.sleep(SAVE_PAUSE)


def _clip_dirs(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def sweep(root: Path, deleted: set[str], now: float | None = None) -> int:
    """Remove the export folders of the ``deleted`` clips (their rows went with the clip),
    and half-written files older than ``STALE_PART``; returns the files removed."""
    now = time.time() if now is None else now
    removed = 0
    for folder in (p for p in (root.iterdir() if root.is_dir() else ()) if p.is_dir()):
        gone = folder.name in deleted
        for f in folder.iterdir():
            if gone or (f.name.endswith(".part") and now - f.stat().st_mtime > STALE_PART):
                f.unlink(missing_ok=True)
                removed += 1
        if gone:
            shutil.rmtree(folder, ignore_errors=True)
    return removed


def _failure(exc: BaseException) -> str:
    """What an export's ``error`` says about a render that raised ``exc``."""
    if isinstance(exc, ray.exceptions.RayTaskError):  # the render itself raised: this input fails it
        return first_line(exc)
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"the render's worker kept dying: {first_line(exc)}"
    return f"internal: {first_line(exc)}"
