"""The supervisor: a named Ray actor that reconciles Postgres (desired) with stream actors (actual).

Each active channel gets exactly one stream actor, named by channel id, so a duplicate
cannot arise; actors whose channel is gone or paused are stopped. An actor whose heartbeat
(its health row in Postgres) goes stale, or that falls too far behind, is restarted and the
reason is written to the channel's event log. Ray restarts crashed actors (``max_restarts``); the
reconcile loop starts them again and covers what Ray does not (a lost node, a stuck process).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
import ray

from records.store import Store
from stream_actor.actor import ActorConfig, StreamActor
from stream_actor.asr_server import ASR_SERVER_PREFIX, AsrServerOptions

log = logging.getLogger(__name__)

NAMESPACE = "livecut"
SUPERVISOR_NAME = "supervisor"
RECONCILE_INTERVAL = 3.0
CALL_TIMEOUT = 30.0
STREAM_SLOT = "livecut_stream_slot"  # custom Ray resource: one per stream a node may run


def stream_actor_name(channel_id: str) -> str:
    return f"stream-{channel_id}"


class SupervisorConfig(msgspec.Struct, kw_only=True):
    dsn: str
    data_dir: str
    base_url: str = ""
    allow_private_urls: bool = False
    profiles_dir: str = ""  # the operator's named HUD profiles and whisper models (ActorConfig)
    models_dir: str = ""
    actor_cpus: float = 0.25  # Ray CPU request per stream actor
    actor_gpus: float = 0.0  # e.g. 0.25: four stream actors share one GPU
    asr: AsrServerOptions | None = None  # each node's shared ASR server; None: every actor loads whisper
    use_stream_slots: bool = True  # request one STREAM_SLOT per actor (nodes advertise how many they take)
    heartbeat_timeout: float = 20.0  # seconds without a health report before the actor is restarted
    max_ingest_lag: float = 30.0  # seconds behind the source before the actor is restarted
    max_detector_lag: float = 60.0  # seconds the detectors may trail the ring buffer
    min_free_bytes: int = 1024**3  # free space on the data dir's disk below which actors refuse new clips


class Supervisor:
    def __init__(self, config: SupervisorConfig):
        self.config = config
        self.actors: dict[str, ray.actor.ActorHandle] = {}
        self.started_at: dict[str, float] = {}  # monotonic time of the last (re)start: heartbeat grace
        self._store_down = False  # actors cannot report while Postgres is down: no heartbeat verdicts then
        self.store: Store | None = None
        self._loop_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._stopping: dict[str, asyncio.Task] = {}  # graceful stops of removed channels' actors

    async def start(self) -> None:
        if self._loop_task is None:
            self.store = await Store.connect(self.config.dsn, max_size=2)
            self._loop_task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconcile failed")
            await asyncio.sleep(RECONCILE_INTERVAL)

    async def reconcile(self) -> dict[str, list[str]]:
        """Start missing actors, (re)start restarted ones, stop those without an active channel."""
        async with self._lock:
            try:
                listed = {c["id"]: c for c in await self.store.list_channels()}
            except Exception:
                self._store_down = True
                raise
            if self._store_down:  # Postgres is back: every actor gets a full grace to report again
                self._store_down = False
                self.started_at = dict.fromkeys(self.started_at, time.monotonic())
            await self._adopt()
            channels = {cid: c for cid, c in listed.items() if c["paused_at"] is None}  # those that get actors
            started, stopped = [], []
            for channel_id, channel in channels.items():
                if channel_id in self._stopping:
                    continue  # resumed while its actor still stops (same name): started on a later pass
                if channel_id not in self.actors:
                    self.actors[channel_id] = self._create(channel)
                    self.started_at[channel_id] = time.monotonic()
                elif reason := self._unhealthy(channel):
                    await self._restart(channel_id, reason)
                try:  # idempotent; also starts an actor Ray restarted after a crash
                    await asyncio.wait_for(self.actors[channel_id].start.remote(), CALL_TIMEOUT)
                    started.append(channel_id)
                except Exception as exc:
                    log.warning("stream actor %s did not start: %s", channel_id, exc)
                    if isinstance(exc, ray.exceptions.ActorUnavailableError):
                        # Ray is recreating it (node loss, crash): judge its heartbeat from now on.
                        # Not on a timeout: a frozen actor must still meet the heartbeat check.
                        self.started_at[channel_id] = time.monotonic()
                    await self.store.set_status(channel_id, "error", f"actor failed to start: {exc!r}")
            for channel_id in set(self.actors) - set(channels):
                # in the background: a graceful stop waits for the clip in progress, and
                # other channels must not wait for it.
                # A deleted channel's ring folder goes with the actor (clips stay); a paused
                # one's stays for its resume.
                deleted = channel_id not in listed
                task = self._stopping[channel_id] = asyncio.create_task(self._stop(channel_id, discard=deleted))
                task.add_done_callback(lambda _, cid=channel_id: self._stopping.pop(cid, None))
                stopped.append(channel_id)
            return {"running": sorted(started), "stopped": stopped}

    async def _adopt(self) -> None:
        """After a supervisor restart, take over the stream actors that kept running."""
        for name in await asyncio.to_thread(ray.util.list_named_actors):  # our namespace only
            if name.startswith("stream-"):
                channel_id = name.removeprefix("stream-")
                if channel_id not in self.actors and channel_id not in self._stopping:
                    try:
                        self.actors[channel_id] = await asyncio.to_thread(ray.get_actor, name, NAMESPACE)
                        self.started_at[channel_id] = time.monotonic()
                    except ValueError:  # gone meanwhile
                        continue

    def _unhealthy(self, channel: dict) -> str:
        """Why the channel's actor must be restarted, or "" when it is fine."""
        cfg = self.config
        if time.monotonic() - self.started_at.get(channel["id"], 0.0) < cfg.heartbeat_timeout:
            return ""  # still starting (loading models, probing)
        age = channel.get("health_age")
        if age is None or age > cfg.heartbeat_timeout:
            return f"no heartbeat for {cfg.heartbeat_timeout:.0f}s"
        health = channel.get("health") or {}
        if channel["status"] == "live" and health.get("ingest_lag", 0.0) > cfg.max_ingest_lag:
            return f"ingest lag {health['ingest_lag']:.0f}s over the {cfg.max_ingest_lag:.0f}s limit"
        if channel["status"] == "live" and health.get("detector_lag", 0.0) > cfg.max_detector_lag:
            return f"detector lag {health['detector_lag']:.0f}s over the {cfg.max_detector_lag:.0f}s limit"
        return ""

    async def _restart(self, channel_id: str, reason: str) -> None:
        log.warning("restarting stream actor %s: %s", channel_id, reason)
        ray.kill(self.actors[channel_id], no_restart=False)  # Ray brings it back; start() follows
        self.started_at[channel_id] = time.monotonic()
        await self.store.set_status(channel_id, "error", f"restarted: {reason}")
        await self.store.log_event(channel_id, "actor_restarted", reason)

    def _create(self, channel: dict) -> ray.actor.ActorHandle:
        actor_config = ActorConfig(
            dsn=self.config.dsn, data_dir=self.config.data_dir, base_url=self.config.base_url,
            allow_private_urls=self.config.allow_private_urls, min_free_bytes=self.config.min_free_bytes,
            profiles_dir=self.config.profiles_dir, models_dir=self.config.models_dir,
            asr=None if self.config.asr is None else msgspec.structs.replace(
                self.config.asr, profiles_dir=self.config.profiles_dir, models_dir=self.config.models_dir),
        )
        return (
            ray.remote(StreamActor)
            .options(
                name=stream_actor_name(channel["id"]),
                namespace=NAMESPACE,
                get_if_exists=True,
                lifetime="detached",  # survives a supervisor restart; the supervisor stops it
                max_restarts=-1,
                max_concurrency=16,
                num_cpus=self.config.actor_cpus,
                num_gpus=self.config.actor_gpus,
                resources={STREAM_SLOT: 1} if self.config.use_stream_slots else {},
            )
            .remote(channel, actor_config)
        )

    async def _stop(self, channel_id: str, discard: bool = False) -> None:
        """Stop the actor gracefully; ``discard``: its channel was deleted, so it also removes
        its ring folder (on its own node) once stopped. A folder left by an actor that did not
        answer goes at the next start (``supervisor.retention.remove_orphan_rings``)."""
        handle = self.actors.pop(channel_id)
        self.started_at.pop(channel_id, None)
        try:
            await asyncio.wait_for(handle.stop.remote(), CALL_TIMEOUT)
            if discard:
                await asyncio.wait_for(handle.discard_ring.remote(), CALL_TIMEOUT)
        except Exception as exc:
            log.warning("stream actor %s did not stop cleanly: %s", channel_id, exc)
        ray.kill(handle, no_restart=True)

    async def shutdown(self) -> None:
        """Graceful stop of every stream actor (pending clips are finished first)."""
        if self._loop_task:
            self._loop_task.cancel()
        async with self._lock:
            await asyncio.gather(*(self._stop(cid) for cid in list(self.actors)), *self._stopping.values(),
                                 return_exceptions=True)
            for name in await asyncio.to_thread(ray.util.list_named_actors):  # the nodes' ASR servers
                if name.startswith(ASR_SERVER_PREFIX):
                    with contextlib.suppress(Exception):
                        ray.kill(await asyncio.to_thread(ray.get_actor, name, NAMESPACE), no_restart=True)

    async def channel_health(self) -> dict[str, dict]:
        async def one(handle):
            try:
                return await asyncio.wait_for(handle.health.remote(), 5)
            except Exception as exc:
                return {"status": "error", "status_reason": str(exc)}

        ids = list(self.actors)
        results = await asyncio.gather(*(one(self.actors[i]) for i in ids))
        return dict(zip(ids, results))
