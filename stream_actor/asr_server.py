"""One whisper model per node, shared by the node's stream actors (a Ray actor).

Stream actors keep their streaming state (VAD, the LocalAgreement commit policy, the word
timeline: :class:`detectors.speech.StreamingTranscriber`) and send each whisper call here
(:class:`stream_actor.asr_client.RemoteWhisper`). The server collects the calls that arrive
within ``gather`` seconds of the first and runs them as one CTranslate2 batch
(:func:`detectors.whisper_batch.transcribe_batch`), each with its stream's prompt. When the
server falls behind (a batch's oldest call waited ``pack_after`` seconds), it packs instead:
the calls laid end to end in 30 s windows (:func:`detectors.whisper_batch.transcribe_packed`),
one encoder pass for several, which is the CPU's big saving (``bench.asr_quality --streams 8``
with packing always on: CPU x0.70, WER x1.13; the packed windows have no prompts). Up to
``workers`` batches decode at once (CTranslate2's inter-threads), each on ``cpu_threads``
threads; while all are busy, calls queue, and the next batch takes more of them. One thread
per batch measured cheapest (``bench.asr_quality --streams``): a lightly loaded server then
costs no more than the calls, and a loaded one fills every worker.

* **One model, loaded once.** A stream actor no longer loads whisper (~80 MiB of weights
  and CTranslate2 buffers each). On a node with a GPU the operator gives the server a GPU
  share (``livecut up --asr-gpus``); every stream of the node then runs on it.
* **Found by node.** The server of a node is a named, detached actor (``asr-<node>-<model>``)
  pinned to that node (``NodeAffinitySchedulingStrategy``, not soft); the first stream actor
  there creates it, the others get it by name. Ray restarts it if its process dies.
* **Load, in this order.** (1) While every worker is busy, calls queue, and the next batch
  takes more of them. (2) A batch whose oldest call waited ``pack_after`` seconds is packed.
  (3) Each stream actor makes one call at a time (its ASR thread waits for the answer), so a
  slow server makes every stream's ASR backlog grow alike, and each transcriber sheds in its
  own documented order (fewer calls, no agreement pass, audio dropped unheard:
  ``detectors.speech``). (4) A call that has waited ``max_wait`` seconds is answered
  undecoded (``Answer.shed``; ``stats()["shed"]`` counts them): its stream hears nothing for
  that stretch rather than every stream falling further behind. Fair throughout: a batch
  takes at most one call per stream (its oldest), streams in the order they have waited, so
  no stream starves.
* **Losing it costs seconds of transcript, never a clip.** The client retries a failed call
  (with the one backoff) while Ray restarts the server, for at most a few seconds, and then
  goes on without those words.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from typing import Annotated, NamedTuple

import msgspec
import numpy as np

from detectors.assets import AssetDirs
from detectors.speech import SpeechOptions, load_whisper_model, resolve_device
from detectors.whisper_batch import Job, Segment, check_model_api, transcribe_batch, transcribe_packed

log = logging.getLogger(__name__)


class AsrServerOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The operator's settings of every node's model server (``livecut up --asr-*``)."""

    model: str = ""  # as SpeechOptions.model: "" is the bundled tiny.en
    device: str = "auto"  # "auto": CUDA when the server was given a GPU share
    compute_type: str = "auto"
    cpu_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1  # CTranslate2 threads for one batch
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2  # batches decoded at once (while calls wait)
    gpus: Annotated[float, msgspec.Meta(ge=0.0, le=8.0)] = 0.0  # Ray GPU request (e.g. 0.5)
    gather: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.1  # seconds a batch waits for more calls
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8  # calls taken at once (one per stream)
    # behind by this much (the batch's oldest call waited that long), lay its calls end to end in
    # 30 s windows: one encoder pass for several (CPU x0.70, WER x1.13 at 8 streams); None: never
    pack_after: Annotated[float, msgspec.Meta(ge=0.0, le=120.0)] | None = 1.0
    max_wait: Annotated[float, msgspec.Meta(gt=0.0, le=120.0)] = 15.0  # a call waiting longer is shed
    profiles_dir: str = ""
    models_dir: str = ""


ASR_SERVER_PREFIX = "asr-"


def server_name(node_id: str, model: str) -> str:
    return f"{ASR_SERVER_PREFIX}{node_id}-{model or 'tiny.en'}"


class Answer(NamedTuple):
    """What a call gets back: its segment (None: no words), whether it was shed undecoded,
    and the server's queue as the call's batch left it."""

    segment: Segment | None
    shed: bool = False
    waiting: int = 0  # calls still queued (all streams) when this one's batch was taken


class _Call:
    __slots__ = ("job", "language", "queued_at", "future")

    def __init__(self, job: Job, language: str, future: asyncio.Future) -> None:
        self.job, self.language, self.queued_at, self.future = job, language, time.monotonic(), future


class AsrServer:
    """The Ray actor. ``transcribe`` is what stream actors call; ``stats`` feeds /metrics."""

    def __init__(self, options: AsrServerOptions) -> None:
        self.options = options
        self.model = None
        self.queues: OrderedDict[str, deque[_Call]] = OrderedDict()  # per stream, in the order streams waited
        self.wake = asyncio.Event()
        self.counters = {"calls": 0, "batches": 0, "packed_calls": 0, "shed": 0, "seconds": 0.0, "busy_seconds": 0.0}
        self.batch_sizes: deque[int] = deque(maxlen=200)
        self._loop_task: asyncio.Task | None = None
        self._ready = asyncio.Lock()
        self._workers = asyncio.Semaphore(options.workers)
        self._decoding: set[asyncio.Task] = set()

    async def _start(self) -> None:
        async with self._ready:
            if self.model is not None:
                return
            o = self.options
            opts = SpeechOptions(model=o.model, device=o.device, compute_type=o.compute_type, cpu_threads=o.cpu_threads)  # type: ignore[arg-type]
            dirs = AssetDirs(profiles_dir=o.profiles_dir, models_dir=o.models_dir)
            model = await asyncio.to_thread(load_whisper_model, opts, dirs, o.workers)
            check_model_api(model)  # before anyone is served: a changed faster-whisper fails here, loudly
            self.model = model
            self._loop_task = asyncio.create_task(self._batches())
            log.info("ASR server on pid %d: %s on %s", os.getpid(), o.model or "tiny.en", resolve_device(o.device))

    async def transcribe(self, stream_id: str, audio: np.ndarray, prompt: str | None, language: str = "en") -> Answer:
        """Whisper on one call's audio."""
        await self._start()
        future = asyncio.get_running_loop().create_future()
        self.queues.setdefault(stream_id, deque()).append(_Call(Job(audio, prompt), language, future))
        self.wake.set()
        return await future

    async def stats(self) -> dict:
        waiting = sum(len(q) for q in self.queues.values())
        sizes = list(self.batch_sizes)
        return {**self.counters, "pid": os.getpid(), "waiting": waiting, "streams_waiting": sum(1 for q in self.queues.values() if q),
                "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else 0.0}  # fmt: skip

    async def ready(self) -> int:
        """Load the model now (the first call would); the server's pid."""
        await self._start()
        return os.getpid()

    # -- batching -------------------------------------------------------------------------
    def _take(self) -> list[_Call]:
        """The next batch: the oldest call of each stream, streams in the order they waited;
        calls that waited past max_wait are answered undecoded instead."""
        now = time.monotonic()
        batch: list[_Call] = []
        for stream_id in list(self.queues):
            queue = self.queues[stream_id]
            while queue and now - queue[0].queued_at > self.options.max_wait:
                call = queue.popleft()
                self.counters["shed"] += 1
                if not call.future.done():
                    call.future.set_result(Answer(None, shed=True))
            if queue and len(batch) < self.options.max_batch:
                batch.append(queue.popleft())
                self.queues.move_to_end(stream_id)  # served: to the back of the line
            if not queue:
                del self.queues[stream_id]
        return batch

    async def _batches(self) -> None:
        while True:
            try:
                await self._next_batch()
            except Exception:  # the loop must outlive any one batch: callers wait on it
                log.exception("ASR batch loop")
                await asyncio.sleep(0.1)

    async def _next_batch(self) -> None:
        """Wait for calls and a free worker, take a batch and start decoding it."""
        if not any(self.queues.values()):
            self.wake.clear()
            await self.wake.wait()
            await asyncio.sleep(self.options.gather)  # let the other streams' calls join
        await self._workers.acquire()  # while every worker is busy, calls queue up: bigger batches
        batch = self._take()
        if not batch:
            self._workers.release()
            return
        task = asyncio.create_task(self._decode(batch, waiting=sum(len(q) for q in self.queues.values())))
        self._decoding.add(task)
        task.add_done_callback(self._decoding.discard)

    async def _decode(self, batch: list[_Call], waiting: int) -> None:
        try:
            by_language: dict[str, list[_Call]] = {}
            for call in batch:
                by_language.setdefault(call.language, []).append(call)
            started = time.monotonic()
            after = self.options.pack_after
            pack = after is not None and len(batch) > 1 and started - min(c.queued_at for c in batch) >= after
            decode = transcribe_packed if pack else transcribe_batch
            self.counters["packed_calls"] += len(batch) if pack else 0
            for language, calls in by_language.items():
                try:
                    results = await asyncio.to_thread(decode, self.model, [c.job for c in calls], language)
                except Exception as exc:  # one bad batch must not stop the server
                    log.exception("ASR batch failed")
                    for c in calls:
                        if not c.future.done():
                            c.future.set_exception(exc)
                    continue
                for c, result in zip(calls, results):
                    if not c.future.done():
                        c.future.set_result(Answer(result, waiting=waiting))
            self.counters["calls"] += len(batch)
            self.counters["batches"] += 1
            self.counters["seconds"] += sum(len(c.job.audio) for c in batch) / 16000.0
            self.counters["busy_seconds"] += time.monotonic() - started
            self.batch_sizes.append(len(batch))
        finally:
            self._workers.release()
