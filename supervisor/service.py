"""``livecut up``: everything on one machine, started in order and stopped in reverse.

PostgreSQL and Redis are the user's (``DATABASE_URL``, ``REDIS_URL``) or embedded ones in the
data dir; Ray is local or the cluster at ``--ray-address``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import ray
import redis.asyncio as aioredis
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
import uvicorn

from gateway.api import StreamLimit
from gateway.app import create_app
from gateway.uploads import Uploads
from gateway.rtmp.server import RtmpServer
from gateway.whip import WhipIngest, WhipOptions
from records.embedded import EmbeddedRedis, start_postgres
from records.outbox import OutboxRelay
from records.settings import Settings
from records.store import Store
from supervisor.demo import DemoPublisher, ensure_demo_channel, sample_path
from supervisor.edge import PublishRouter
from supervisor.retention import RetentionSweeper, apply_start_limits, remove_orphan_rings
from supervisor.webhook_delivery import webhook_worker
from vod.jobs import VodOptions, VodScheduler
from vod.export_jobs import ExportScheduler, ExportSchedulerOptions
from stream_actor.asr_server import AsrServerOptions
from supervisor.supervisor import NAMESPACE, STREAM_SLOT, SUPERVISOR_NAME, Supervisor, SupervisorConfig

log = logging.getLogger("livecut")


class SupervisorControl:
    """What the gateway asks of the cluster: a nudge when channels change, and admission."""

    def __init__(self, supervisor, settings: Settings):
        self.supervisor = supervisor
        self.settings = settings

    async def channels_changed(self) -> None:
        self.supervisor.reconcile.remote()

    async def stream_limit(self) -> StreamLimit:
        slots = (await asyncio.to_thread(ray.cluster_resources)).get(STREAM_SLOT)
        if slots is not None and int(slots) < self.settings.max_streams:
            return StreamLimit(int(slots), f"{int(slots)} stream slots in the Ray cluster; each node's "
                                           f"--streams-per-node or its {STREAM_SLOT} resource sets them")
        return StreamLimit(self.settings.max_streams, f"--max-streams {self.settings.max_streams}")


class _Server(uvicorn.Server):
    def capture_signals(self):  # we own SIGINT/SIGTERM: stop the whole stack, not only uvicorn
        return contextlib.nullcontext()


async def run_service(settings: Settings, *, demo: bool = False) -> None:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        dsn = settings.database_url
        if not dsn:
            dsn, _pg = await asyncio.to_thread(start_postgres, data_dir)
            log.info("embedded PostgreSQL running in %s", data_dir / "postgres")
        store = await Store.connect(dsn, max_size=8)
        stack.push_async_callback(store.close)
        if applied := await store.migrate():
            log.info("applied migrations: %s", ", ".join(applied))

        redis_url = settings.redis_url
        if not redis_url:
            embedded_redis = EmbeddedRedis(data_dir)
            stack.callback(embedded_redis.stop)
            redis_url = embedded_redis.url
        redis = aioredis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)

        local = not settings.ray_address
        if not local:
            _prepare_cluster_auth()
            if not settings.database_url:
                log.warning("--ray-address without DATABASE_URL: the embedded PostgreSQL listens on a unix "
                            "socket here, which stream actors on other nodes cannot reach (deploy/cluster.md)")
        ray.init(
            address=settings.ray_address or "local",
            namespace=NAMESPACE,
            include_dashboard=False,
            logging_level=logging.WARNING,
            resources={STREAM_SLOT: settings.streams_per_node} if local else None,
        )
        stack.callback(ray.shutdown)
        config = SupervisorConfig(
            dsn=dsn,
            data_dir=str(data_dir),
            allow_private_urls=settings.allow_private_urls,
            profiles_dir=settings.profiles_dir,
            models_dir=settings.models_dir,
            actor_gpus=settings.actor_gpus,
            asr=None if settings.asr == "actor" else AsrServerOptions(cpu_threads=settings.asr_threads, workers=settings.asr_workers, gpus=settings.asr_gpus),
            # on a cluster whose nodes advertise no slots, placement falls back to CPU requests alone
            use_stream_slots=STREAM_SLOT in ray.cluster_resources(),
            heartbeat_timeout=settings.heartbeat_timeout,
            min_free_bytes=settings.min_free_bytes,
        )
        supervisor = (
            ray.remote(Supervisor)
            .options(
                name=SUPERVISOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                max_restarts=-1, num_cpus=0,
                # beside livecut up when it can be: a worker node that dies should not take it along
                scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
            )
            .remote(config)
        )
        await supervisor.start.remote()
        watchdog = asyncio.create_task(_keep_supervisor_running(supervisor))
        stop_streams = _StreamsStop(supervisor, watchdog)
        stack.push_async_callback(stop_streams)  # if starting fails from here on

        stop_relay = asyncio.Event()
        relay = asyncio.create_task(OutboxRelay(store, redis, dsn).run(stop_relay))
        stack.push_async_callback(_stop_task, relay, stop_relay)
        stop_webhooks = asyncio.Event()
        webhooks = asyncio.create_task(webhook_worker(settings, store.pool, dsn).run(stop_webhooks))
        stack.push_async_callback(_stop_task, webhooks, stop_webhooks)

        # ring folders of channels deleted while livecut was down (or whose actor did not answer)
        active = {c["id"] for c in await store.list_channels()}
        if removed := await asyncio.to_thread(remove_orphan_rings, data_dir, active):
            log.info("removed the ring folders of %d deleted channel(s)", len(removed))
        limits = await apply_start_limits(store, settings.retention_days, settings.retention_bytes)
        log.info("retention, global: %r (0: no limit of that kind)", limits)
        sweeper = RetentionSweeper(store)
        stop_sweeper = asyncio.Event()
        sweeper_task = asyncio.create_task(sweeper.run(stop_sweeper))
        stack.push_async_callback(_stop_task, sweeper_task, stop_sweeper)

        router = PublishRouter(store, supervisor)
        rtmp = RtmpServer(
            settings.host, settings.rtmp_port, router,
            max_connections_per_ip=settings.rtmp_connections_per_ip, publish_rate=settings.rtmp_publish_rate,
        )
        await rtmp.start()
        stack.push_async_callback(rtmp.stop)
        whip = WhipIngest(router.open_for_whip, WhipOptions(public_ip=settings.public_ip or None))

        uploads = Uploads(settings)
        vods = VodScheduler(store, VodOptions(
            data_dir=str(data_dir),
            max_jobs=settings.max_vod_jobs or max(1, int(ray.cluster_resources().get("CPU", 1))),
            shard_seconds=settings.vod_shard_seconds,
            gpus=settings.actor_gpus,
            allow_private_urls=settings.allow_private_urls,
            profiles_dir=settings.profiles_dir,
            models_dir=settings.models_dir,
        ), uploads=uploads)
        stop_vods = asyncio.Event()
        vod_task = asyncio.create_task(vods.run(stop_vods))
        stack.push_async_callback(_stop_task, vod_task, stop_vods)
        exports = ExportScheduler(store, ExportSchedulerOptions(
            data_dir=str(data_dir),
            max_running=max(1, int(ray.cluster_resources().get("CPU", 1)) // 2),  # leave the rest to streams and VODs
        ))
        stop_exports = asyncio.Event()
        export_task = asyncio.create_task(exports.run(stop_exports))
        stack.push_async_callback(_stop_task, export_task, stop_exports)

        app = create_app(settings, store, redis, SupervisorControl(supervisor, settings), whip=whip,
                         vods=vods, uploads=uploads, exports=exports)
        server = _Server(uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning", lifespan="on",
            timeout_graceful_shutdown=3,  # a long-polling Socket.IO client must not hold up Ctrl-C
        ))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))

        demo_line = ""
        if demo:
            channel = await ensure_demo_channel(store)
            await supervisor.reconcile.remote()
            publisher = DemoPublisher(sample_path(), f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{channel['stream_key']}")
            publisher.start()
            stack.callback(publisher.stop)
            demo_line = f"\n  demo:     channel {channel['id']} fed by the bundled sample; clips appear within a minute"
        # Registered last, so it runs first on exit: stream actors finish the clips in progress
        # while the RTMP ingest, the demo publisher and the outbox relay still run.
        stack.push_async_callback(stop_streams)

        print(
            f"\nlivecut is up\n"
            f"  feed:     {settings.base_url}/#key={settings.api_key}\n"
            f"  RTMP:     {settings.rtmp_url}/<stream key>   (keys: POST /api/channels)\n"
            f"  WHIP:     {settings.base_url}/whip/<channel id>   (Bearer: the stream key)\n"
            f"  API key:  {settings.api_key}   (admin; scoped keys: livecut keys create --scope read){demo_line}\n"
            f"  data:     {data_dir}\n"
            f"Ctrl-C stops everything.\n",
            flush=True,
        )
        await server.serve()
        log.info("stopping livecut")


def _prepare_cluster_auth() -> None:
    """Ray turns token auth on only for clusters it starts; joining one needs the mode set."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            Path("~/.ray/auth_token").expanduser().exists():
        os.environ["RAY_AUTH_MODE"] = "token"


async def _keep_supervisor_running(supervisor) -> None:
    """Ray restarts a crashed supervisor; this starts its reconcile loop again (idempotent)."""
    while True:
        await asyncio.sleep(5.0)
        try:
            await asyncio.wait_for(supervisor.start.remote(), 30)
        except Exception as exc:
            log.warning("supervisor not answering: %s", exc)


class _StreamsStop:
    """Stops the watchdog, then the supervisor and its stream actors, gracefully; once."""

    def __init__(self, supervisor, watchdog: asyncio.Task) -> None:
        self.supervisor, self.watchdog, self.done = supervisor, watchdog, False

    async def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        self.watchdog.cancel()  # it would start the reconcile loop again
        try:
            await asyncio.wait_for(self.supervisor.shutdown.remote(), 45)
        except Exception as exc:
            log.warning("supervisor shutdown: %s", exc)
        ray.kill(self.supervisor, no_restart=True)


async def _stop_task(task: asyncio.Task, stop: asyncio.Event) -> None:
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
