"""The VOD scheduler: runs queued jobs as Ray tasks, durably (the imperative shell of ``vod``).

Postgres holds every job and every finished shard's output, so the scheduler keeps no state
that matters: at start (and on every pass) it takes the running jobs, then the queued ones in
submission order, up to ``max_jobs`` at once. A job:

1. resolves and probes its recording (``vod.sources``, ``vod.probe``): a failure there fails
   this job alone, with its code (``unreachable``, ``not_media``, ...);
2. plans shards (``vod.plan``) and submits those not done yet as Ray tasks;
3. as each shard returns, stores its output, merges the contiguous prefix of finished shards
   through the live fusion, and cuts and commits each moment that is final (stream copy from
   the source, then clip row + outbox in one transaction, idempotent on (job, moment));
4. is done when every shard is and every moment has its clip.

A restart of ``livecut up`` resumes running jobs from their stored shards; a clip already
committed is never committed again. ``cancel`` stops a job's Ray tasks.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import msgspec
import ray

from detectors.assets import AssetDirs
from detectors.speech import words_between
from records.store import Store
from records.vod_store import VodStore
from records.wire import ClipRecord, MomentEvent, VodError
from stream_actor.clip_sweep import remove_files, stale_parts
from stream_actor.settings import channel_settings
from vod import plan
from vod.errors import VodFailure, first_line
from vod.probe import MediaInfo, input_options, probe
from vod.sources import resolve
from vod.tasks import result_builtins, result_from_builtins, submit_shard
from vod.passes import run_passes

log = logging.getLogger(__name__)

PASS_INTERVAL = 1.0  # seconds between scheduler passes (a submit or cancel wakes it sooner)
RETRY_PAUSE = 2.0  # after a job's run broke on something that may pass (Postgres, Ray)
MAX_ATTEMPTS = 3  # runs of a job that break the same unexpected way before it fails as "internal"
CUT_SHARE = 0.05  # of a job's progress: cutting the last clips


class VodOptions(msgspec.Struct, kw_only=True):
    data_dir: str
    base_url: str = ""
    max_jobs: int = 2  # jobs running at once; the rest wait in submission order
    shard_seconds: float = 180.0
    gpus: float = 0.0  # GPU fraction per shard task
    allow_private_urls: bool = False
    profiles_dir: str = ""  # the operator's named HUD profiles (--profiles-dir)
    models_dir: str = ""  # the operator's named whisper models (--models-dir)


class VodScheduler:
    def __init__(self, store: Store, options: VodOptions, uploads=None):
        self.store = store
        self.vods = VodStore(store.pool)
        self.options = options
        self.uploads = uploads  # gateway.uploads.Uploads: finished uploads by id
        self._attempts: dict[str, int] = {}  # job id -> runs that broke unexpectedly in a row
        self.running: dict[str, asyncio.Task] = {}
        self.refs: dict[str, list] = {}  # job id -> its Ray tasks in flight
        self._wake = asyncio.Event()

    def poke(self) -> None:
        self._wake.set()

    async def cancel(self, vod_id: str) -> None:
        """Stop a job's tasks (its row says ``cancelled`` already)."""
        for ref in self.refs.pop(vod_id, []):
            try:
                ray.cancel(ref, force=True)
            except Exception as exc:  # already finished
                log.debug("cancel %s: %s", vod_id, exc)
        task = self.running.get(vod_id)
        if task is not None:
            task.cancel()
        self.poke()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await run_passes(self._pass, self._wake, stop, PASS_INTERVAL, "vod scheduler")
        finally:
            # Running jobs stay "running" in Postgres: the next `livecut up` resumes them.
            for task in self.running.values():
                task.cancel()
            self.running.clear()

    async def _pass(self) -> None:
        for vod_id, task in list(self.running.items()):
            if task.done():
                del self.running[vod_id]
        free = self.options.max_jobs - len(self.running)
        if free <= 0:
            return
        for row in await self.vods.runnable(self.options.max_jobs + len(self.running)):
            if free <= 0:
                break
            if row["id"] in self.running:
                continue
            self.running[row["id"]] = asyncio.create_task(self._run(row), name=f"vod-{row['id']}")
            free -= 1

    async def _run(self, row: dict) -> None:
        vod_id = row["id"]
        try:
            await Job(self, row).run()
            self._attempts.pop(vod_id, None)
        except asyncio.CancelledError:
            raise
        except VodFailure as exc:
            log.info("vod %s failed: %s: %s", vod_id, exc.code, exc.message)
            await self.vods.finish(vod_id, "failed", VodError(exc.code, exc.message))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), VodFailure) else None
            if cause is not None:
                await self.vods.finish(vod_id, "failed", VodError(cause.code, cause.message))
            else:
                log.error("vod %s: a shard failed: %s", vod_id, exc)
                await self.vods.finish(vod_id, "failed", VodError("internal", first_line(exc)))
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            log.error("vod %s: a shard's worker died more than %d times", vod_id, 3)
            await self.vods.finish(vod_id, "failed", VodError("internal", f"a shard's worker kept dying: {exc}"))
        except Exception as exc:
            # Postgres or Ray trouble: the job stays as it is and the next pass resumes it, unless
            # the same job keeps breaking (a bug, or an input nothing here can handle)
            attempts = self._attempts[vod_id] = self._attempts.get(vod_id, 0) + 1
            log.exception("vod %s: interrupted (%d of %d)", vod_id, attempts, MAX_ATTEMPTS)
            if attempts >= MAX_ATTEMPTS:
                self._attempts.pop(vod_id, None)
                await self.vods.finish(vod_id, "failed", VodError("internal", first_line(exc)))
            else:
                await asyncio.sleep(RETRY_PAUSE)
        finally:
            for ref in self.refs.pop(vod_id, []):
                ray.cancel(ref, force=True)
            await self._release_upload(row["upload_id"])

    async def _release_upload(self, upload_id: str | None) -> None:
        """An upload is removed once no unfinished job reads it (its clips are cut by then)."""
        if upload_id is None or self.uploads is None:
            return
        try:
            if not await self.vods.upload_in_use(upload_id):
                await self.uploads.discard(upload_id)
        except Exception as exc:  # kept for now; the next job to finish with it tries again
            log.warning("upload %s not removed: %s", upload_id, exc)


class Job:
    """One run of one job (a restart makes a new one that resumes from Postgres)."""

    def __init__(self, scheduler: VodScheduler, row: dict):
        self.scheduler = scheduler
        self.vods = scheduler.vods
        self.row = row
        self.id: str = row["id"]
        self.raw_settings: dict = row["settings"] or {}
        self.settings = channel_settings(self.raw_settings)
        self.clip_dir = Path(scheduler.options.data_dir, "clips", f"vod-{self.id}")
        self.progress = float(row["progress"])
        self.cut_cpu = float(row["cut_cpu"])

    async def run(self) -> None:
        opts = self.scheduler.options
        if self.row["status"] == "queued" and await self.vods.start(self.id) is None:
            return  # cancelled meanwhile
        # a cut the previous run was writing when it died (this run is the folder's only writer)
        await asyncio.to_thread(lambda: remove_files(stale_parts(self.clip_dir, grace=0.0)))
        uploads = self.scheduler.uploads
        upload = uploads.path_of(self.row["upload_id"]) if self.row["upload_id"] and uploads else None
        if self.row["upload_id"] and upload is None:
            raise VodFailure("not_found", f"upload {self.row['upload_id']} is gone (expired or deleted)")
        location = await asyncio.to_thread(
            resolve, self.row["url"], upload, allow_private=opts.allow_private_urls
        )
        info: MediaInfo = await asyncio.to_thread(probe, location)
        if await self.vods.update(self.id, duration=info.duration, cut_mode=info.cut_mode) is None:
            return
        shards = plan.plan_shards(info.duration, opts.shard_seconds, plan.shard_lead(self.settings))
        results = {i: result_from_builtins(r) for i, r in (await self.vods.shards(self.id)).items()}
        committed = await self.vods.committed_moments(self.id)
        await self._advance(shards, results, committed, location, info)
        dirs = AssetDirs(profiles_dir=opts.profiles_dir, models_dir=opts.models_dir)
        refs = {
            submit_shard(location, s, self.raw_settings, info.origin, gpus=opts.gpus, dirs=dirs): s
            for s in shards if s.index not in results
        }
        self.scheduler.refs[self.id] = list(refs)
        waiting = {asyncio.ensure_future(_result(ref)): shard for ref, shard in refs.items()}
        try:
            while waiting:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    shard = waiting.pop(task)
                    result = task.result()  # raises the shard's error
                    await self.vods.save_shard(self.id, shard.index, result_builtins(result), result.cpu)
                    results[shard.index] = result
                if await self.vods.status_of(self.id) != "running":
                    return  # cancelled
                await self._advance(shards, results, committed, location, info)
        finally:
            for task in waiting:
                task.cancel()
        cpu = await self.vods.shard_cpu(self.id)
        stages = {
            "decode": cpu.get("decode audio", 0.0) + cpu.get("decode video", 0.0),
            "asr": cpu.get("asr", 0.0),
            "detectors": cpu.get("detect audio", 0.0) + cpu.get("detect video", 0.0),
            "load": cpu.get("load", 0.0),
            "cut": self.cut_cpu,
        }
        await self.vods.finish(self.id, "done", cut_cpu=round(self.cut_cpu, 4),
                               cpu={k: round(v, 3) for k, v in stages.items()})

    async def _advance(self, shards, results, committed: set[int], location: str, info: MediaInfo) -> None:
        """Cut the moments that are final now, then report progress."""
        if results:
            merged = await asyncio.to_thread(plan.merge, shards, results, self.settings, duration=info.duration)
            for moment in merged.moments:
                if moment.seq not in committed:
                    await self._cut_and_commit(moment, merged.words, location, info)
                    committed.add(moment.seq)
        progress = round(len(results) / len(shards) * (1 - CUT_SHARE), 4)
        if progress != self.progress:
            self.progress = progress
            await self.vods.update(self.id, progress=progress, cut_cpu=round(self.cut_cpu, 4))

    async def _cut_and_commit(self, moment: MomentEvent, words, location: str, info: MediaInfo) -> None:
        from stream_actor.clipper import cut_media, transcode_media

        start, end = plan.clip_range(moment, words, self.settings, info.duration)
        video = self.clip_dir / f"{moment.seq}.mp4"
        thumb = self.clip_dir / f"{moment.seq}.jpg"
        cut = cut_media if info.cut_mode != "reencode" else transcode_media
        def timed_cut():
            started = time.thread_time()
            try:
                return cut(location, start, end, video, thumb, origin=info.origin, options=input_options(location))
            finally:
                self.cut_cpu += time.thread_time() - started

        clip = await asyncio.to_thread(timed_cut)
        clip_words = words_between(words, clip.start, clip.end)
        record = ClipRecord(
            id="",  # given by Postgres at commit, in the job's commit order (like a channel's)
            channel_id=None,
            vod_id=self.id,
            moment_seq=moment.seq,
            stream_start=round(clip.start, 3),
            stream_end=round(clip.end, 3),
            score=round(moment.score, 3),
            signals={k: round(v, 3) for k, v in moment.signals.items()},
            transcript=" ".join(w.text for w in clip_words),
            words=clip_words,
            video_path=str(video),
            thumbnail_path=str(thumb),
            duration=round(clip.duration, 3),
            created_at="",
            triggers=list(moment.triggers),
        )
        await self.scheduler.store.commit_clip(record, moment, self.scheduler.options.base_url)


async def _result(ref):
    return await ref
