"""The gateway app alone (no Ray), served by uvicorn over real HTTP, in a thread with its own event loop,
on a real Store and Redis: for clients that need a URL (schemathesis, browsers)."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import redis.asyncio as aioredis
import uvicorn

from gateway.app import create_app
from records.settings import Settings
from records.store import Store


class NoCluster:
    """Channel, VOD and export control with no cluster behind it: changes are stored, nothing runs."""

    def __init__(self) -> None:
        self.pokes = 0

    async def channels_changed(self) -> None:
        self.pokes += 1

    async def stream_limit(self):
        return None

    def poke(self) -> None:
        self.pokes += 1

    async def cancel(self, vod_id: str) -> None:
        self.pokes += 1


@contextlib.contextmanager
def serve_gateway(settings: Settings, dsn: str, redis_url: str, *, vods: bool = True) -> Iterator[str]:
    """Serve ``create_app`` on ``settings.host:settings.port``; yields the base URL."""
    started = threading.Event()
    failure: list[BaseException] = []
    holder: dict = {}

    async def main() -> None:
        store = await Store.connect(dsn, max_size=4)
        await store.migrate()
        redis = aioredis.from_url(redis_url)
        control = NoCluster()
        app = create_app(settings, store, redis, control, vods=control if vods else None,
                         exports=control if vods else None)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning"))
        holder["server"] = server
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        started.set()
        try:
            await task
        finally:
            await redis.aclose()
            await store.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting test
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="gateway-server", daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        raise failure[0]
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        holder["server"].should_exit = True
        thread.join(30)
