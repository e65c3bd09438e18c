"""The supervisor: a named Ray actor that reconciles Postgres (desired) with stream actors (actual).

Each active channel gets exactly one stream actor, named by channel id, so a duplicate
cannot arise; actors whose channel is gone are stopped.
"""
from __future__ import annotations

import asyncio
import logging

import msgspec
import ray

from records.store import Store
from stream_actor.actor import ActorConfig, StreamActor

log = logging.getLogger(__name__)

NAMESPACE = "livecut"
SUPERVISOR_NAME = "supervisor"
RECONCILE_INTERVAL = 3.0
CALL_TIMEOUT = 30.0


def stream_actor_name(channel_id: str) -> str:
    return f"stream-{channel_id}"


class SupervisorConfig(msgspec.Struct, kw_only=True):
    dsn: str
    data_dir: str
    base_url: str = ""
    actor_cpus: float = 0.25  # Ray CPU request per stream actor


class Supervisor:
    def __init__(self, config: SupervisorConfig):
        self.config = config
        self.actors: dict[str, ray.actor.ActorHandle] = {}
        self.store: Store | None = None
        self._loop_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

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
        """Start missing actors, (re)start restarted ones, stop those without a channel."""
        async with self._lock:
            channels = {c["id"]: c for c in await self.store.list_channels()}
            started, stopped = [], []
            for channel_id, channel in channels.items():
                handle = self.actors.get(channel_id) or self._create(channel)
                self.actors[channel_id] = handle
                try:  # idempotent; also starts an actor Ray restarted after a crash
                    await asyncio.wait_for(handle.start.remote(), CALL_TIMEOUT)
                    started.append(channel_id)
                except Exception as exc:
                    log.warning("stream actor %s did not start: %s", channel_id, exc)
                    await self.store.set_status(channel_id, "error", f"actor failed to start: {exc}")
            for channel_id in set(self.actors) - set(channels):
                await self._stop(channel_id)
                stopped.append(channel_id)
            return {"running": sorted(started), "stopped": stopped}

    def _create(self, channel: dict) -> ray.actor.ActorHandle:
        actor_config = ActorConfig(dsn=self.config.dsn, data_dir=self.config.data_dir, base_url=self.config.base_url)
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
            )
            .remote(channel, actor_config)
        )

    async def _stop(self, channel_id: str) -> None:
        handle = self.actors.pop(channel_id)
        try:
            await asyncio.wait_for(handle.stop.remote(), CALL_TIMEOUT)
        except Exception as exc:
            log.warning("stream actor %s did not stop cleanly: %s", channel_id, exc)
        ray.kill(handle, no_restart=True)

    async def shutdown(self) -> None:
        """Graceful stop of every stream actor (pending clips are finished first)."""
        if self._loop_task:
            self._loop_task.cancel()
        async with self._lock:
            await asyncio.gather(*(self._stop(cid) for cid in list(self.actors)), return_exceptions=True)

    async def channel_health(self) -> dict[str, dict]:
        async def one(handle):
            try:
                return await asyncio.wait_for(handle.health.remote(), 5)
            except Exception as exc:
                return {"status": "error", "status_reason": str(exc)}

        ids = list(self.actors)
        results = await asyncio.gather(*(one(self.actors[i]) for i in ids))
        return dict(zip(ids, results))
