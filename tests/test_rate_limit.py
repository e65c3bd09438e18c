"""Rate limits per key and per address, counted in a real Redis: 429 with Retry-After."""
from __future__ import annotations

import secrets

import httpx
import redis.asyncio as aioredis

from gateway.app import create_app
from records.key_store import KeyStore
from records.settings import Settings
from records.wire import ChannelCreate
from test_api import RecordingControl, assert_error, make_clip

KEY = "limit-key-3e9a"


def client_from(app, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (each test its own: Redis is shared)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://gw")


def fresh_address() -> str:
    return f"198.51.100.{secrets.randbelow(250) + 1}"


def assert_limited(resp: httpx.Response) -> int:
    assert_error(resp, 429, "rate_limited")
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= 60
    return retry


async def test_each_key_gets_its_own_budget(tmp_path, store, redis):
    app = create_app(Settings(data_dir=str(tmp_path), api_key=KEY, rate_limit=5), store, redis, RecordingControl())
    keys = KeyStore(store.pool)
    first, second = await keys.create("read"), await keys.create("read")
    async with client_from(app, fresh_address()) as c:
        for _ in range(5):
            assert (await c.get("/api/channels", headers={"Authorization": f"Bearer {first.key}"})).status_code == 200
        assert_limited(await c.get("/api/channels", headers={"Authorization": f"Bearer {first.key}"}))
        # the same address with another key is not held back
        assert (await c.get("/api/channels", headers={"Authorization": f"Bearer {second.key}"})).status_code == 200


async def test_unauthenticated_requests_are_limited_per_address(tmp_path, store, redis):
    app = create_app(Settings(data_dir=str(tmp_path), api_key=KEY, rate_limit=4), store, redis, RecordingControl())
    address = fresh_address()
    async with client_from(app, address) as c:
        for _ in range(4):  # guessing keys
            assert_error(await c.get("/api/channels", headers={"Authorization": "Bearer guess"}), 401, "unauthorized")
        assert_limited(await c.get("/api/channels", headers={"Authorization": "Bearer guess"}))
    other = next(a for a in iter(fresh_address, None) if a != address)
    async with client_from(app, other) as c:
        assert_error(await c.get("/api/channels"), 401, "unauthorized")


async def test_media_has_its_own_higher_limit(tmp_path, store, redis):
    settings = Settings(data_dir=str(tmp_path), api_key=KEY, rate_limit=2, media_rate_limit=6, signing_key="s")
    app = create_app(settings, store, redis, RecordingControl())
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = await make_clip(store, channel["id"], tmp_path)
    read = await KeyStore(store.pool).create("read")
    auth = {"Authorization": f"Bearer {read.key}"}
    async with client_from(app, fresh_address()) as c:
        url = (await c.get(f"/api/clips/{clip.id}", headers=auth)).json()["video_url"]
        for _ in range(6):  # past the REST limit of 2: media counts apart
            assert (await c.get(url, headers={"Range": "bytes=0-99"})).status_code == 206
        assert_limited(await c.get(url))
        assert (await c.get(f"/api/clips/{clip.id}", headers=auth)).status_code == 200  # REST: 2nd of 2


async def test_redis_down_lets_requests_through(tmp_path, store):
    from conftest import free_port

    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    app = create_app(Settings(data_dir=str(tmp_path), api_key=KEY, rate_limit=1), store, dead, RecordingControl())
    async with client_from(app, fresh_address()) as c:
        for _ in range(3):
            assert (await c.get("/api/channels", headers={"Authorization": f"Bearer {KEY}"})).status_code == 200
    await dead.aclose()


async def test_socketio_connects_have_their_own_limit(tmp_path, store, redis):
    import asyncio

    import socketio
    import uvicorn

    from conftest import free_port

    settings = Settings(data_dir=str(tmp_path), api_key=KEY, rate_limit=1, connect_rate_limit=3)
    app = create_app(settings, store, redis, RecordingControl())
    read = await KeyStore(store.pool).create("read")  # a fresh key: a budget of its own
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    refusals = []
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        for _ in range(4):
            client = socketio.AsyncClient(reconnection=False)
            client.on("connect_error", lambda data: refusals.append(data))
            try:
                await client.connect(f"http://127.0.0.1:{port}", auth={"token": read.key}, transports=["websocket"],
                                     wait_timeout=10)
            except socketio.exceptions.ConnectionError:
                continue
            await client.disconnect()
    finally:
        server.should_exit = True
        await task
    # three connections (past the REST limit of 1), then refused as rate limited
    assert [r["data"]["code"] for r in refusals] == ["rate_limited"], refusals
