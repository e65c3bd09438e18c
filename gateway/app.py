"""The gateway's one ASGI app: FastAPI (REST, feed page, health, metrics) inside Socket.IO.

``create_app`` wires the pieces; uvicorn serves the result and runs its lifespan, which
starts and stops the feed's Redis relay.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
import socketio
from fastapi import FastAPI, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from gateway import errors, metrics, openapi
from gateway.api import ChannelControl, build_router
from gateway.auth import Authenticator
from gateway.keys import build_key_router
from gateway.rate_limit import RateLimiter, RateLimits
from gateway.signing import UrlSigner, load_secret
from gateway.feed import Feed
from gateway.uploads import Uploads
from gateway.exports import ExportControl, build_export_router
from gateway.vods import VodControl, build_vod_router
from gateway.webhooks import build_webhook_router
from gateway.retention import build_retention_router
from records.key_store import KeyStore
from records.settings import Settings
from records.store import Store

if TYPE_CHECKING:
    from gateway.whip import WhipIngest

__all__ = ["ChannelControl", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
HEALTH_TIMEOUT = 2.0


def create_app(
    settings: Settings,
    store: Store,
    redis: aioredis.Redis,
    control: ChannelControl,
    *,
    whip: "WhipIngest | None" = None,
    vods: "VodControl | None" = None,
    uploads: Uploads | None = None,
    exports: "ExportControl | None" = None,
) -> ASGIApp:
    """``whip``, when given, mounts the WHIP ingest (``POST /whip/{channel_id}``); its
    sessions end when the app shuts down. ``vods`` (the VOD scheduler) mounts ``/api/vods``;
    ``exports`` (the export scheduler) mounts ``/api/clips/{clip_id}/exports``."""
    auth = Authenticator(settings.api_key, KeyStore(store.pool))
    signer = UrlSigner(
        settings.signing_key.encode("utf-8") or load_secret(settings.data_dir), settings.media_url_ttl
    )
    limiter = RateLimiter(redis, RateLimits(
        api=settings.rate_limit, media=settings.media_rate_limit, connect=settings.connect_rate_limit
    ))
    feed = Feed(auth, store, redis, signer=signer, limiter=limiter)
    uploads = uploads or Uploads(settings)  # tus at /api/uploads; its sweeper runs in the lifespan

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await feed.start()
        try:
            async with uploads.sweeping():
                yield
        finally:
            try:
                if whip is not None:
                    await whip.close()
            finally:
                await feed.stop()

    api = FastAPI(
        title="livecut",
        summary="Cuts the best moments of live streams into clips, in real time.",
        lifespan=lifespan,
        docs_url=None,  # the bundled docs page loads assets from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.state.feed = feed
    api.state.settings = settings
    api.state.uploads = uploads
    api.state.auth = auth  # gateway.auth's route dependencies find these on the app
    api.state.signer = signer
    api.state.limiter = limiter
    errors.install(api)
    openapi.install(api)
    api.include_router(build_router(settings, store, control))
    api.include_router(uploads.router)
    api.include_router(build_key_router(store))
    api.include_router(build_webhook_router(settings, store))
    api.include_router(build_retention_router(store))
    if vods is not None:
        api.include_router(build_vod_router(settings, store, vods, uploads))
    if exports is not None:
        api.include_router(build_export_router(store, exports))
    if whip is not None:
        api.include_router(whip.router)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        async def postgres() -> bool:
            await store.pool.fetchval("SELECT 1")
            return True

        async def redis_ping() -> bool:
            return bool(await redis.ping())

        async def check(probe) -> bool:
            try:
                return await asyncio.wait_for(probe(), HEALTH_TIMEOUT)
            except Exception:
                return False

        pg_ok, redis_ok = await asyncio.gather(check(postgres), check(redis_ping))
        ok = pg_ok and redis_ok
        return JSONResponse({"ok": ok, "postgres": pg_ok, "redis": redis_ok}, status_code=200 if ok else 503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics_route(request: Request) -> Response:
        metrics.check_token(request, settings.metrics_token)
        try:
            snap = await metrics.snapshot(store, feed, data_dir=settings.data_dir)
        except Exception as exc:
            log.warning("metrics: cannot read Postgres: %s", exc)
            return errors.error_response(503, "unavailable", "the database is unavailable")
        return Response(metrics.render(snap), media_type=metrics.CONTENT_TYPE)

    @api.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # No on_startup/on_shutdown here: the wrapper then hands lifespan events to FastAPI.
    return socketio.ASGIApp(feed.sio, other_asgi_app=api, socketio_path="socket.io")
