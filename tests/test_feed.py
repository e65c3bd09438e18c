"""The Socket.IO feed end to end: uvicorn serving the app, a real client, Postgres and Redis."""
from __future__ import annotations

import asyncio
import secrets
from contextlib import asynccontextmanager

import msgspec
import pytest
import redis.asyncio as aioredis
import socketio
import uvicorn

from conftest import free_port
from gateway.app import create_app
from gateway.feed import Feed, Follow, room_of
from records.outbox import OutboxRelay
from records.settings import Settings
from records.wire import ChannelCreate, ClipRecord, MomentEvent, new_commit_key

KEY = "feed-key-91c2"
WAIT = 5.0


class NullControl:
    async def channels_changed(self) -> None:
        pass

    async def stream_limit(self):
        return None


@asynccontextmanager
async def serving(app):
    """uvicorn serving ``app`` (lifespan included) on a free port, in this event loop."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class Client:
    """A Socket.IO client that records the clips it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.clips: list[dict] = []
        self.signed: list[dict] = []
        self.arrived = asyncio.Event()
        self.connect_error = None

        @self.sio.on("clip")
        async def on_clip(data):
            self.signed.append(data)  # as sent: media URLs signed at each emit
            self.clips.append({k: v.split("?")[0] if k.endswith("_url") else v for k, v in data.items()})
            self.arrived.set()

        @self.sio.on("connect_error")
        async def on_connect_error(data):
            self.connect_error = data

    async def connect(self, url: str, token: str | None = KEY) -> "Client":
        auth = {"token": token} if token is not None else None
        await self.sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=WAIT)
        return self

    async def subscribe(self, channel_id, last_clip_id: str | None = None) -> dict:
        msg = {"channel_id": channel_id}
        if last_clip_id is not None:
            msg["last_clip_id"] = last_clip_id
        return await self.sio.call("subscribe", msg, timeout=WAIT)

    async def wait_for(self, clip_id: str) -> None:
        async def until() -> None:
            while not any(c["id"] == clip_id for c in self.clips):
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(until(), WAIT)

    def ids(self) -> list[str]:
        return [c["id"] for c in self.clips]


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url, client_name=f"livecut-feed-test-{secrets.token_hex(4)}")
    yield client
    await client.aclose()


@pytest.fixture
async def gateway(tmp_path, store, redis):
    app = create_app(Settings(data_dir=str(tmp_path), api_key=KEY), store, redis, NullControl())
    feed = app.other_asgi_app.state.feed
    async with serving(app) as url:
        assert feed.running  # lifespan started the relay
        yield url, feed
    assert not feed.running  # ... and stopping the app stopped it


@pytest.fixture
def relay(store, redis, pg_dsn) -> OutboxRelay:
    return OutboxRelay(store, redis, pg_dsn)


async def new_channel(store, name: str = "a") -> str:
    return (await store.create_channel(ChannelCreate(name=name, source="rtmp"), {}))["id"]


async def commit(store, channel_id: str, start: float = 0.0) -> ClipRecord:
    clip = ClipRecord(
        id=new_commit_key(), channel_id=channel_id, stream_start=start, stream_end=start + 12.5, score=1.75,
        signals={"loudness": 1.4, "keyword": 0.9}, transcript=f"moment at {start}", video_path="/v.mp4",
        thumbnail_path="/t.jpg", duration=12.5, created_at="",
    )
    return await store.commit_clip(clip, MomentEvent(t=start + 8, score=1.75, signals=clip.signals))


async def test_bad_token_is_refused(gateway):
    url, feed = gateway
    for token in ("wrong", None, ""):
        client = Client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url, token=token)
        assert client.connect_error["message"] == "unauthorized"
        assert client.connect_error["data"]["code"] == "unauthorized"
        assert not client.sio.connected
    assert feed.subscriber_count() == 0


async def test_subscribe_then_a_committed_clip_arrives(gateway, store, relay):
    url, feed = gateway
    channel_id = await new_channel(store)
    first, second = await Client().connect(url), await Client().connect(url)
    try:
        assert await first.subscribe(channel_id) == {"ok": True}
        assert await second.subscribe(channel_id) == {"ok": True}
        assert list(feed.follows) == [room_of(channel_id)]

        stored = await commit(store, channel_id, start=30.0)
        assert await relay.drain() == 1
        await first.wait_for(stored.id)
        await second.wait_for(stored.id)

        row = await store.get_clip(stored.id)  # what Postgres holds
        expected = msgspec.to_builtins(row.notification())
        assert first.clips == [expected] and second.clips == [expected]
        assert expected["video_url"] == f"/api/clips/{stored.id}/video"
        assert all(c["video_url"].startswith(f"/api/clips/{stored.id}/video?exp=") and "&sig=" in c["video_url"]
                   for c in first.signed + second.signed)
        assert expected["signals"] == {"loudness": 1.4, "keyword": 0.9}
    finally:
        await first.sio.disconnect()
        await second.sio.disconnect()


async def test_resume_delivers_exactly_the_missed_clips_once(gateway, store, relay):
    url, feed = gateway
    channel_id = await new_channel(store)
    before = await Client().connect(url)
    assert await before.subscribe(channel_id) == {"ok": True}
    c1 = await commit(store, channel_id, 0.0)
    await relay.drain()
    await before.wait_for(c1.id)
    await before.sio.disconnect()

    # while away: two clips are cut and relayed
    c2 = await commit(store, channel_id, 20.0)
    c3 = await commit(store, channel_id, 40.0)
    assert await relay.drain() == 2

    after = await Client().connect(url)
    try:
        assert await after.subscribe(channel_id, last_clip_id=c1.id) == {"ok": True}
        assert after.ids() == [c2.id, c3.id]  # caught up from Postgres before the ack

        # the outbox delivers at least once: replay everything, plus a new clip
        c4 = await commit(store, channel_id, 60.0)
        await store.pool.execute("UPDATE outbox SET delivered_at = NULL")
        assert await relay.drain() == 4  # c1..c3 again, c4 for the first time
        await store.pool.execute("UPDATE outbox SET delivered_at = NULL")
        assert await relay.drain() == 4  # and all of them once more
        c5 = await commit(store, channel_id, 80.0)
        await relay.drain()
        await after.wait_for(c5.id)  # stream order: every duplicate was relayed before c5

        assert after.ids() == [c2.id, c3.id, c4.id, c5.id]
        assert after.clips[0] == msgspec.to_builtins((await store.get_clip(c2.id)).notification())
    finally:
        await after.sio.disconnect()


async def test_resume_while_clips_keep_coming(gateway, store, relay):
    """Catch-up from Postgres overlaps the live relay: every clip once, in order."""
    url, feed = gateway
    channel_id = await new_channel(store)
    seen = await commit(store, channel_id, 0.0)
    produced = [(await commit(store, channel_id, i * 20.0)).id for i in range(1, 31)]  # missed while away
    await relay.drain()

    async def producer() -> None:
        for i in range(31, 61):
            produced.append((await commit(store, channel_id, i * 20.0)).id)
            await relay.drain()

    client = await Client().connect(url)
    try:
        task = asyncio.create_task(producer())
        await asyncio.sleep(0.01)
        assert await client.subscribe(channel_id, last_clip_id=seen.id) == {"ok": True}
        await task
        await store.pool.execute("UPDATE outbox SET delivered_at = NULL")
        await relay.drain()  # and the whole history again, as duplicates
        last = await commit(store, channel_id, 9999.0)
        await relay.drain()
        await client.wait_for(last.id)
        assert client.ids() == produced + [last.id]
    finally:
        await client.sio.disconnect()


async def test_subscribe_errors_and_unsubscribe(gateway, store, relay):
    url, feed = gateway
    client = await Client().connect(url)
    try:
        missing = await client.subscribe("no-such-channel")
        assert missing["ok"] is False and missing["error"]["code"] == "not_found"
        bad = await client.sio.call("subscribe", {"channel": "x"}, timeout=WAIT)
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_request"
        bad = await client.sio.call("subscribe", "x", timeout=WAIT)
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_request"
        assert feed.follows == {}

        a, b = await new_channel(store, "a"), await new_channel(store, "b")
        assert await client.subscribe(a) == {"ok": True}
        assert await client.subscribe(b) == {"ok": True}
        assert set(feed.follows) == {room_of(a), room_of(b)}
        assert await client.sio.call("unsubscribe", {"channel_id": a}, timeout=WAIT) == {"ok": True}
        assert set(feed.follows) == {room_of(b)}  # its room emptied: the stream is no longer followed

        on_a = await commit(store, a, 0.0)
        on_b = await commit(store, b, 0.0)
        await relay.drain()
        await client.wait_for(on_b.id)
        assert on_a.id not in client.ids()
    finally:
        await client.sio.disconnect()
    for _ in range(100):  # the server sees the disconnect shortly after
        if not feed.follows:
            break
        await asyncio.sleep(0.02)
    assert feed.follows == {} and feed.subscriber_count() == 0


async def test_relay_survives_a_dropped_redis_connection(gateway, store, relay, redis):
    url, feed = gateway
    channel_id = await new_channel(store)
    client = await Client().connect(url)
    try:
        assert await client.subscribe(channel_id) == {"ok": True}
        c1 = await commit(store, channel_id, 0.0)
        await relay.drain()
        await client.wait_for(c1.id)

        # kill the gateway's own Redis connections (only those: they carry our client name)
        name = await redis.client_getname()
        name = name.decode() if isinstance(name, bytes) else name
        killed = 0
        for info in await redis.client_list():
            if info.get("name") == name and info.get("cmd", "").startswith("xread"):
                killed += await redis.client_kill_filter(_id=info["id"])
        assert killed >= 1
        c2 = await commit(store, channel_id, 20.0)
        await relay.drain()
        await client.wait_for(c2.id)
        assert client.ids() == [c1.id, c2.id]
    finally:
        await client.sio.disconnect()


async def test_resume_gets_a_clip_cut_on_a_host_whose_clock_is_behind(gateway, store, relay):
    """Ids come from Postgres at commit: a clip cut on a host whose clock is an hour behind,
    committed after the subscriber's last clip, still sorts after it and is caught up."""
    import time

    url, _ = gateway
    channel_id = await new_channel(store)
    seen = await commit(store, channel_id, 0.0)
    behind = ClipRecord(
        id=f"{(time.time_ns() // 1000 - 3600 * 10**6):014x}00c10c00",  # what that host's clock made
        channel_id=channel_id, stream_start=20.0, stream_end=32.5, score=1.5, signals={"loudness": 1.5},
        transcript="", video_path="/v.mp4", thumbnail_path="/t.jpg", duration=12.5, created_at="",
    )
    late = await store.commit_clip(behind, MomentEvent(t=28.0, score=1.5, signals=behind.signals))
    await relay.drain()
    client = await Client().connect(url)
    try:
        assert await client.subscribe(channel_id, last_clip_id=seen.id) == {"ok": True}
        assert client.ids() == [late.id]
    finally:
        await client.sio.disconnect()


class FlakyEmitFeed(Feed):
    """The feed with an emit that fails the first time (a send error), and a record of emits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.emitted: list[tuple[str, str]] = []
        self.failures = 1

    async def _emit(self, event: str, payload: dict, **to) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the emit failed")
        self.emitted.append((event, payload["id"]))
        await super()._emit(event, payload, **to)


async def test_the_relay_moves_past_an_entry_only_once_it_was_emitted(gateway, store, redis, relay):
    _, app_feed = gateway
    feed = FlakyEmitFeed(app_feed.auth, store, redis, signer=app_feed.signer, block_ms=200)
    channel_id = await new_channel(store)
    topic = room_of(channel_id)
    feed.subs[topic] = {}
    feed.follows[topic] = Follow("0-0")
    clip = await commit(store, channel_id)
    assert await relay.drain() == 1
    with pytest.raises(ConnectionResetError):
        await feed._relay_once()
    assert feed.follows[topic].last_id == "0-0" and feed.emitted == []  # not moved past it
    await feed._relay_once()  # the relay reads it again, and this emit works
    assert feed.emitted == [("clip", clip.id)]
    assert feed.follows[topic].last_id != "0-0"
