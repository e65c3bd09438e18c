"""The gateway's REST API against real Postgres and Redis, through httpx's ASGI transport."""
from __future__ import annotations

import datetime as dt

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from gateway.api import StreamLimit
from gateway.app import create_app
from records.settings import Settings
from records.store import Store
from records.wire import ChannelCreate, ClipRecord, Health, MomentEvent, new_commit_key
from conftest import free_port

KEY = "test-key-7f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}


class RecordingControl:
    def __init__(self) -> None:
        self.calls = 0
        self.limit: StreamLimit | None = None

    async def channels_changed(self) -> None:
        self.calls += 1

    async def stream_limit(self) -> StreamLimit | None:
        return self.limit


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=str(tmp_path), api_key=KEY, port=8123, rtmp_port=1936, public_host="clips.example",
                    rate_limit=100_000)  # the same key across the run's apps: keep the shared budget out of the way


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl()


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
async def client(settings, store, redis, control):
    async with client_for(create_app(settings, store, redis, control)) as c:
        yield c


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def make_clip(store, channel_id: str, tmp_path, start: float = 0.0, video: bytes = b"", **kw) -> ClipRecord:
    clip_id = new_commit_key()
    video_path = tmp_path / f"{clip_id}.mp4"
    thumb_path = tmp_path / f"{clip_id}.jpg"
    video_path.write_bytes(video or bytes(range(256)) * 4)
    thumb_path.write_bytes(b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9")
    clip = ClipRecord(
        id=clip_id, channel_id=channel_id, stream_start=start, stream_end=start + 15, score=kw.get("score", 1.5),
        signals=kw.get("signals", {"loudness": 1.2, "keyword": 0.8}), transcript=kw.get("transcript", "what a shot"),
        video_path=str(video_path), thumbnail_path=str(thumb_path), duration=15.0, created_at="",
        words=kw.get("words", []),
    )
    return await store.commit_clip(clip, MomentEvent(t=start + 10, score=1.5, signals=clip.signals))


# -- auth ----------------------------------------------------------------------------------

async def test_missing_or_wrong_key_is_401_json(client):
    assert_error(await client.get("/api/channels"), 401, "unauthorized")
    assert_error(await client.get("/api/channels", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    assert_error(await client.get("/api/channels", headers={"Authorization": KEY}), 401, "unauthorized")
    assert_error(await client.get("/api/clips", params={"token": KEY}), 401, "unauthorized")  # no key in URLs
    assert_error(await client.post("/api/channels", json={"name": "a", "source": "rtmp"}), 401, "unauthorized")
    assert (await client.get("/api/channels", headers=AUTH)).status_code == 200


async def test_media_wants_a_signed_url_or_a_key(client, store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = await make_clip(store, channel["id"], tmp_path)
    url = f"/api/clips/{clip.id}/video"
    assert_error(await client.get(url), 401, "unauthorized")
    assert_error(await client.get(url, params={"token": "wrong"}), 401, "unauthorized")
    # the API key in the URL no longer opens media (it leaked into history and logs)
    assert_error(await client.get(url, params={"token": KEY}), 401, "unauthorized")
    signed = (await client.get(f"/api/clips/{clip.id}", headers=AUTH)).json()
    ok = await client.get(signed["video_url"])
    assert ok.status_code == 200 and ok.content == bytes(range(256)) * 4
    assert (await client.get(signed["thumbnail_url"])).status_code == 200
    assert (await client.get(url, headers=AUTH)).status_code == 200


async def test_empty_configured_key_authorises_nobody(tmp_path, store, redis, control):
    app = create_app(Settings(data_dir=str(tmp_path), api_key=""), store, redis, control)
    async with client_for(app) as c:
        assert_error(await c.get("/api/channels", headers={"Authorization": "Bearer "}), 401, "unauthorized")


# -- validation ----------------------------------------------------------------------------

BAD_BODIES = [
    (b'{"name": "a", "source": ', "invalid JSON"),
    (b"", "JSON object"),
    (b'{"name": "a", "source": "rtmp", "colour": "red"}', "colour"),
    (b'{"name": 5, "source": "rtmp"}', "$.name"),
    (b'{"name": "a", "source": "webcam"}', "$.source"),
    (b'{"name": "   ", "source": "rtmp"}', "name"),
    (b'{"name": "' + b"x" * 201 + b'", "source": "rtmp"}', "200"),
    (b'{"name": "a", "source": "rtmp", "url": "rtmp://example.com/live"}', "not allowed for rtmp"),
    (b'{"name": "a", "source": "url"}', "required"),
    (b'{"name": "a", "source": "url", "url": "ftp://example.com/x.ts"}', "scheme"),
    (b'{"name": "a", "source": "url", "url": "javascript:alert(1)"}', "scheme"),
    (b'{"name": "a", "source": "url", "url": "https://"}', "host"),
    (b'{"name": "a", "source": "url", "url": "http://127.0.0.1:8080/x.m3u8"}', "private"),
    (b'{"name": "a", "source": "url", "url": "rtsp://192.168.1.20/cam"}', "private"),
    (b'{"name": "a", "source": "url", "url": "hls://http://localhost/x.m3u8"}', "private"),
    (b'{"name": "a", "source": "url", "url": "/srv/videos/match.mp4"}', "local"),
    (b'{"name": "a", "source": "url", "url": "file:///srv/videos/match.mp4"}', "local"),
    # addresses in the forms the C library (and so FFmpeg) reads as loopback: judged as that
    (b'{"name": "a", "source": "url", "url": "rtsp://127.1/cam"}', "private"),
    (b'{"name": "a", "source": "url", "url": "rtsp://2130706433/cam"}', "private"),
    (b'{"name": "a", "source": "url", "url": "rtsp://0x7f.1/cam"}', "private"),
    (b'{"name": "a", "source": "url", "url": "rtsp://[::ffff:127.0.0.1]/cam"}', "private"),
    (b'{"name": "a", "source": "url", "url": "http://127.1:8080/x.ts"}', "private"),
    (b'{"name": "a", "source": "url", "url": "http://2130706433/x.ts"}', "private"),
    (b'{"name": "a", "source": "url", "url": "http://0177.0.0.1/x.ts"}', "private"),
    (b'{"name": "a", "source": "url", "url": "https://[::ffff:127.0.0.1]/x.m3u8"}', "private"),
    (b'{"name": "a", "source": "url", "url": "rtsps://[::ffff:7f00:1]:322/cam"}', "private"),
    (b'{"name": "a", "source": "rtmp", "settings": {"definitely_not_a_setting": true}}', "settings"),
    (b'{"name": "a", "source": "rtmp", "settings": []}', "settings"),
    (b'{"name": "a", "source": "rtmp", "settings": {"profile": "opera"}}', "unknown profile 'opera'"),
    (b'{"name": "a", "source": "rtmp", "settings": {"profile": "sports", "clip": {"pre_roll": 200}}}', "fit"),
]


async def test_bad_channel_bodies_are_invalid_request(client, control):
    for body, fragment in BAD_BODIES:  # one database for all cases keeps this fast
        resp = await client.post("/api/channels", content=body, headers={**AUTH, "Content-Type": "application/json"})
        err = assert_error(resp, 422, "invalid_request")
        assert fragment.lower() in err["message"].lower(), (body, err)
    assert control.calls == 0
    assert (await client.get("/api/channels", headers=AUTH)).json() == {"items": []}


@pytest.mark.parametrize("url", ["rtsp://cam.loopback.test/live", "http://cdn.loopback.test/x.ts",
                                 "hls://https://cdn.loopback.test/x.m3u8"])
async def test_a_name_resolving_to_loopback_is_refused(client, control, monkeypatch, url):
    """The API resolves the host (once, off the event loop) and refuses a name with any
    non-public address; the resolver is the URL policy's seam."""
    from records import url_policy

    def resolver(host, port, **kwargs):
        assert host.endswith("loopback.test"), host
        return [(2, 1, 6, "", ("93.184.216.34", port)), (2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(url_policy, "system_resolver", resolver)
    resp = await client.post("/api/channels", json={"name": "a", "source": "url", "url": url}, headers=AUTH)
    err = assert_error(resp, 422, "invalid_request")
    assert "resolves to a loopback" in err["message"] and "127.0.0.1" not in err["message"], err
    assert control.calls == 0


async def test_private_and_local_urls_allowed_when_configured(tmp_path, store, redis, control):
    settings = Settings(data_dir=str(tmp_path), api_key=KEY, allow_private_urls=True)
    async with client_for(create_app(settings, store, redis, control)) as c:
        for url in ("http://127.0.0.1:8080/x.m3u8", "file:///srv/match.mp4", "/srv/match.mp4"):
            resp = await c.post("/api/channels", json={"name": "a", "source": "url", "url": url}, headers=AUTH)
            assert resp.status_code == 201, resp.text
            assert resp.json()["url"] == url


async def test_query_validation_uses_the_error_shape(client):
    assert_error(await client.get("/api/clips", params={"limit": 0}, headers=AUTH), 422, "invalid_request")
    assert_error(await client.get("/api/clips", params={"limit": 201}, headers=AUTH), 422, "invalid_request")
    err = assert_error(await client.get("/api/clips", params={"since": "yesterday"}, headers=AUTH), 422, "invalid_request")
    assert "since" in err["message"]


async def test_unknown_routes_and_methods(client):
    assert_error(await client.get("/api/nope", headers=AUTH), 404, "not_found")
    assert_error(await client.get("/static/nope.js"), 404, "not_found")
    assert_error(await client.put("/api/channels", headers=AUTH), 405, "method_not_allowed")
    assert_error(await client.get("/api/channels/nope", headers=AUTH), 404, "not_found")
    assert_error(await client.delete("/api/channels/nope", headers=AUTH), 404, "not_found")
    assert_error(await client.get("/api/channels/nope/events", headers=AUTH), 404, "not_found")
    assert_error(await client.get("/api/clips/nope", headers=AUTH), 404, "not_found")
    assert_error(await client.get("/api/clips/nope/video", headers=AUTH), 404, "not_found")
    assert_error(await client.get("/api/clips/nope/thumbnail", headers=AUTH), 404, "not_found")


# -- channels ------------------------------------------------------------------------------

async def test_channel_lifecycle(client, control, settings, store, tmp_path):
    resp = await client.post("/api/channels", json={"name": " Match day ", "source": "rtmp"}, headers=AUTH)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert control.calls == 1
    assert created["name"] == "Match day"
    assert created["status"] == "waiting"
    assert created["ingest"]["rtmp_url"] == settings.rtmp_url == "rtmp://clips.example:1936/live"
    assert len(created["ingest"]["stream_key"]) >= 16
    assert {"id", "source", "url", "status_reason", "settings", "health", "health_at", "created_at"} <= set(created)

    url_resp = await client.post(
        "/api/channels", json={"name": "Web", "source": "url", "url": "https://example.com/live.m3u8"}, headers=AUTH
    )
    assert url_resp.status_code == 201 and url_resp.json()["ingest"] is None
    assert url_resp.json()["url"] == "https://example.com/live.m3u8"
    assert control.calls == 2

    got = await client.get(f"/api/channels/{created['id']}", headers=AUTH)
    assert got.status_code == 200
    # the stream key is shown to its creator only (and on rotation), never in reads
    assert got.json() == {**created, "ingest": {"rtmp_url": created["ingest"]["rtmp_url"]}}
    listed = (await client.get("/api/channels", headers=AUTH)).json()["items"]
    assert [c["id"] for c in listed] == [created["id"], url_resp.json()["id"]]

    await store.report_health(created["id"], "live", Health(seconds_buffered=30.0, ingest_lag=0.4, detector_lag=1.1))
    live = (await client.get(f"/api/channels/{created['id']}", headers=AUTH)).json()
    assert live["status"] == "live"
    assert live["health"]["seconds_buffered"] == 30.0 and live["health"]["detector_lag"] == 1.1
    assert live["health_at"].endswith("Z")

    await make_clip(store, created["id"], tmp_path, start=12.0)
    events = (await client.get(f"/api/channels/{created['id']}/events", params={"limit": 5}, headers=AUTH)).json()
    assert [(e["kind"], e["stream_time"]) for e in events["items"]] == [("moment", 22.0)]
    assert events["items"][0]["created_at"].endswith("Z")

    deleted = await client.delete(f"/api/channels/{created['id']}", headers=AUTH)
    assert deleted.status_code == 204 and deleted.content == b""
    assert control.calls == 3
    assert_error(await client.get(f"/api/channels/{created['id']}", headers=AUTH), 404, "not_found")
    assert_error(await client.delete(f"/api/channels/{created['id']}", headers=AUTH), 404, "not_found")
    assert control.calls == 3
    listed = (await client.get("/api/channels", headers=AUTH)).json()["items"]
    assert [c["id"] for c in listed] == [url_resp.json()["id"]]


async def test_validated_settings_are_stored(client):
    # an empty settings object is always valid (validated by stream_actor.settings when installed)
    resp = await client.post("/api/channels", json={"name": "a", "source": "rtmp", "settings": {}}, headers=AUTH)
    assert resp.status_code == 201, resp.text
    assert isinstance(resp.json()["settings"], dict)


# -- clips ---------------------------------------------------------------------------------

async def test_clip_pages_walk_with_the_cursor(client, store, tmp_path):
    a = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    b = await store.create_channel(ChannelCreate(name="b", source="rtmp"), {})
    a_ids = []
    for i in range(5):
        a_ids.append((await make_clip(store, a["id"], tmp_path, start=i * 20.0)).id)
        if i < 2:
            await make_clip(store, b["id"], tmp_path, start=i * 20.0)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"channel_id": a["id"], "limit": 2, **({"before": cursor} if cursor else {})}
        body = (await client.get("/api/clips", params=params, headers=AUTH)).json()
        pages += 1
        assert len(body["items"]) <= 2
        seen += [c["id"] for c in body["items"]]
        assert all(c["channel_id"] == a["id"] for c in body["items"])
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == a_ids[::-1]
    assert pages == 3

    exact = (await client.get("/api/clips", params={"channel_id": a["id"], "limit": 5}, headers=AUTH)).json()
    assert len(exact["items"]) == 5 and exact["next"] is None  # no empty last page

    everything = (await client.get("/api/clips", headers=AUTH)).json()
    assert len(everything["items"]) == 7 and everything["next"] is None
    ids = [c["id"] for c in everything["items"]]
    assert ids == sorted(ids, reverse=True)


async def test_clip_time_filters(client, store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    ids = [(await make_clip(store, channel["id"], tmp_path, start=i * 20.0)).id for i in range(4)]
    for day, clip_id in enumerate(ids, start=1):
        await store.pool.execute(
            "UPDATE clips SET created_at = $2 WHERE id = $1", clip_id, dt.datetime(2024, 3, day, 12, tzinfo=dt.timezone.utc)
        )
    params = {"since": "2024-03-02T00:00:00Z", "until": "2024-03-04T00:00:00Z"}
    body = (await client.get("/api/clips", params=params, headers=AUTH)).json()
    assert [c["id"] for c in body["items"]] == [ids[2], ids[1]]
    assert body["items"][0]["created_at"] == "2024-03-03T12:00:00Z"
    naive = (await client.get("/api/clips", params={"since": "2024-03-03T12:00:00"}, headers=AUTH)).json()
    assert [c["id"] for c in naive["items"]] == [ids[3], ids[2]]  # naive times are UTC
    other = (await client.get("/api/clips", params={"channel_id": "nope"}, headers=AUTH)).json()
    assert other == {"items": [], "next": None}


async def test_get_clip_is_the_notification(client, store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = await make_clip(store, channel["id"], tmp_path, start=40.0, transcript="goal!")
    body = (await client.get(f"/api/clips/{clip.id}", headers=AUTH)).json()
    unsigned = {k: v.split("?")[0] if k.endswith("_url") else v for k, v in body.items()}
    assert unsigned == msgspec.to_builtins(clip.notification())  # with its media URLs signed
    assert body["video_url"].startswith(f"/api/clips/{clip.id}/video?exp=")
    assert body["thumbnail_url"].startswith(f"/api/clips/{clip.id}/thumbnail?exp=")
    assert body["transcript"] == "goal!" and body["stream_start"] == 40.0


async def test_video_range_requests(client, store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    data = bytes((i * 7) % 256 for i in range(10_000))
    clip = await make_clip(store, channel["id"], tmp_path, video=data)
    url = f"/api/clips/{clip.id}/video"

    full = await client.get(url, headers=AUTH)
    assert full.status_code == 200
    assert full.headers["content-type"] == "video/mp4"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.content == data

    part = await client.get(url, headers={**AUTH, "Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == "bytes 100-1099/10000"
    assert part.headers["content-type"] == "video/mp4"
    assert part.content == data[100:1100]

    tail = await client.get(url, headers={**AUTH, "Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    open_ended = await client.get(url, headers={**AUTH, "Range": "bytes=9990-"})
    assert open_ended.status_code == 206 and open_ended.content == data[9990:]

    beyond = await client.get(url, headers={**AUTH, "Range": "bytes=20000-"})
    assert_error(beyond, 416, "range_not_satisfiable")
    assert beyond.headers["content-range"] == "bytes */10000"
    assert_error(await client.get(url, headers={**AUTH, "Range": "pages=1-2"}), 400, "invalid_request")

    head = await client.head(url, headers=AUTH)
    assert head.status_code == 200 and head.headers["content-length"] == "10000"


async def test_thumbnail_and_missing_media(client, store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = await make_clip(store, channel["id"], tmp_path)
    thumb = await client.get(f"/api/clips/{clip.id}/thumbnail", headers=AUTH)
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content.startswith(b"\xff\xd8")
    (tmp_path / clip.video_path).unlink()  # (files are named before the commit gives the id)
    err = assert_error(await client.get(f"/api/clips/{clip.id}/video", headers=AUTH), 404, "not_found")
    assert "missing" in err["message"]


# -- health, metrics and the page ---------------------------------------------------------

async def test_healthz(client, settings, store, control):
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "postgres": True, "redis": True}

    dead_redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.5)
    try:
        async with client_for(create_app(settings, store, dead_redis, control)) as c:
            down = await c.get("/healthz")
        assert down.status_code == 503
        assert down.json() == {"ok": False, "postgres": True, "redis": False}
    finally:
        await dead_redis.aclose()


async def test_database_down_gives_internal_and_503(settings, pg_dsn, redis, control):
    broken = await Store.connect(pg_dsn)
    await broken.close()
    app = create_app(settings, broken, redis, control)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        err = assert_error(await c.get("/api/channels", headers=AUTH), 500, "internal")
        assert "pool" not in err["message"]  # no internals leak
        health = await c.get("/healthz")
        assert health.status_code == 503 and health.json() == {"ok": False, "postgres": False, "redis": True}
        assert_error(await c.get("/metrics"), 503, "unavailable")


async def test_metrics_report_channels_and_totals(client, store, tmp_path):
    live = await store.create_channel(ChannelCreate(name="Live one", source="rtmp"), {})
    idle = await store.create_channel(ChannelCreate(name="Idle", source="rtmp"), {})
    await store.report_health(live["id"], "live", Health(seconds_buffered=42.5, ingest_lag=1.25, detector_lag=0.75))
    await make_clip(store, live["id"], tmp_path)
    await make_clip(store, live["id"], tmp_path, start=30.0)

    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    ch = (("channel_id", live["id"]),)
    assert samples[("livecut_ingest_lag_seconds", ch)] == 1.25
    assert samples[("livecut_detector_lag_seconds", ch)] == 0.75
    assert samples[("livecut_seconds_buffered", ch)] == 42.5
    assert samples[("livecut_channel_status", (("channel_id", live["id"]), ("status", "live")))] == 1
    assert samples[("livecut_channel_status", (("channel_id", live["id"]), ("status", "waiting")))] == 0
    assert samples[("livecut_channel_status", (("channel_id", idle["id"]), ("status", "waiting")))] == 1
    assert ("livecut_ingest_lag_seconds", (("channel_id", idle["id"]),)) not in samples  # never reported
    assert samples[("livecut_clips_total", ())] == 2
    assert samples[("livecut_events_total", ())] == 2
    assert samples[("livecut_outbox_pending", ())] == 2
    # a second scrape starts from scratch (no state carried between scrapes)
    await store.mark_delivered([r["id"] for r in await store.pending_notifications()])
    again = (await client.get("/metrics")).text
    assert "livecut_outbox_pending 0.0" in again


async def test_feed_page_and_static_files(client):
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/socket.io.min.js"></script>' in page.text
    assert '<script src="/static/feed.js"></script>' in page.text
    assert "//cdn" not in page.text and "https://" not in page.text
    sio_js = await client.get("/static/socket.io.min.js")
    assert sio_js.status_code == 200 and "Socket.IO v4" in sio_js.text[:200]
    feed_js = await client.get("/static/feed.js")
    assert feed_js.status_code == 200 and 'socket.emit("subscribe"' in feed_js.text
    spec = (await client.get("/openapi.json")).json()
    assert {"/api/channels", "/api/clips", "/api/clips/{clip_id}/video"} <= set(spec["paths"])


async def test_registering_past_the_stream_limit_is_refused_with_a_clear_error(client, store, control):
    control.limit = StreamLimit(limit=2, why="--streams-per-node 2 on 1 node")
    created = [await client.post("/api/channels", json={"name": f"c{i}", "source": "rtmp"}, headers=AUTH) for i in range(2)]
    assert [r.status_code for r in created] == [201, 201]
    calls = control.calls
    error = assert_error(await client.post("/api/channels", json={"name": "c3", "source": "rtmp"}, headers=AUTH),
                         409, "limit_exceeded")
    assert "2" in error["message"] and "--streams-per-node" in error["message"]
    assert control.calls == calls  # nothing half-started: the supervisor was not even asked
    assert len(await store.list_channels()) == 2
    assert (await client.delete(f"/api/channels/{created[0].json()['id']}", headers=AUTH)).status_code == 204
    assert (await client.post("/api/channels", json={"name": "c3", "source": "rtmp"}, headers=AUTH)).status_code == 201


async def test_concurrent_registrations_never_overshoot_the_limit(client, store, control):
    import asyncio

    control.limit = StreamLimit(limit=3, why="--max-streams 3")
    responses = await asyncio.gather(*(
        client.post("/api/channels", json={"name": f"c{i}", "source": "rtmp"}, headers=AUTH) for i in range(8)
    ))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * 5
    assert len(await store.list_channels()) == 3


async def test_pause_and_resume_a_channel(client, control, store):
    created = (await client.post("/api/channels", json={"name": "cam", "source": "rtmp"}, headers=AUTH)).json()
    assert created["paused"] is False
    path = f"/api/channels/{created['id']}"
    await store.report_health(created["id"], "live", Health(seconds_buffered=5.0))
    await store.pool.execute(  # a receiver of channel.status webhooks, from here on
        "INSERT INTO webhooks (id, url, events, secret) VALUES ('wh', 'https://hooks.example/in', '{channel.status}', 'whsec_x')"
    )
    calls = control.calls

    for _ in range(2):  # idempotent
        paused = await client.post(f"{path}/pause", headers=AUTH)
        assert paused.status_code == 200, paused.text
        assert (paused.json()["status"], paused.json()["paused"]) == ("paused", True)
        assert paused.json()["status_reason"] == "paused through the API"
        assert "stream_key" not in paused.json()["ingest"]  # shown on create and rotation only
    assert control.calls == calls + 2  # the supervisor is told: it stops the actor
    # the stopping actor's last heartbeat and the supervisor's verdicts do not un-pause the look of it
    await store.report_health(created["id"], "offline", Health(seconds_buffered=5.0))
    await store.set_status(created["id"], "error", "restarted: no heartbeat for 20s")
    got = (await client.get(path, headers=AUTH)).json()
    assert (got["status"], got["paused"], got["status_reason"]) == ("paused", True, "paused through the API")
    assert (await client.get("/api/channels", headers=AUTH)).json()["items"][0]["paused"] is True
    metrics = (await client.get("/metrics")).text
    assert f'livecut_channel_status{{channel_id="{created["id"]}",status="paused"}} 1.0' in metrics

    for _ in range(2):
        resumed = await client.post(f"{path}/resume", headers=AUTH)
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["status"], resumed.json()["paused"]) == ("waiting", False)
    assert control.calls == calls + 4
    await store.report_health(created["id"], "live", Health(seconds_buffered=1.0))  # its new actor reports
    assert (await client.get(path, headers=AUTH)).json()["status"] == "live"
    # both changes were announced like any other status change (008_webhooks.sql)
    announced = await store.pool.fetch("SELECT data FROM webhook_deliveries WHERE type = 'channel.status' ORDER BY id")
    assert [(r["data"]["previous_status"], r["data"]["status"]) for r in announced] == [
        ("live", "paused"), ("paused", "waiting"), ("waiting", "live")]

    for action in ("pause", "resume"):
        assert_error(await client.post(f"/api/channels/nope/{action}", headers=AUTH), 404, "not_found")
    assert (await client.delete(path, headers=AUTH)).status_code == 204
    for action in ("pause", "resume"):  # a deleted channel is unknown too
        assert_error(await client.post(f"{path}/{action}", headers=AUTH), 404, "not_found")


async def test_a_read_key_cannot_pause_or_resume(client, store):
    made = await client.post("/api/keys", json={"scope": "read", "name": "viewer"}, headers=AUTH)
    assert made.status_code == 201, made.text
    read = {"Authorization": f"Bearer {made.json()['key']}"}
    channel = await store.create_channel(ChannelCreate(name="cam", source="rtmp"), {})
    for action in ("pause", "resume"):
        error = assert_error(await client.post(f"/api/channels/{channel['id']}/{action}", headers=read), 403, "forbidden")
        assert "ingest" in error["message"]
    assert (await store.get_channel(channel["id"]))["paused_at"] is None


async def test_a_paused_channel_frees_its_stream_slot_and_resuming_needs_one(client, store, control):
    control.limit = StreamLimit(limit=2, why="--max-streams 2")
    first, second = [(await client.post("/api/channels", json={"name": f"c{i}", "source": "rtmp"}, headers=AUTH)).json()
                     for i in range(2)]
    assert_error(await client.post("/api/channels", json={"name": "c3", "source": "rtmp"}, headers=AUTH),
                 409, "limit_exceeded")
    assert (await client.post(f"/api/channels/{first['id']}/pause", headers=AUTH)).status_code == 200
    third = await client.post("/api/channels", json={"name": "c3", "source": "rtmp"}, headers=AUTH)
    assert third.status_code == 201, third.text  # the paused channel does not count

    calls = control.calls
    error = assert_error(await client.post(f"/api/channels/{first['id']}/resume", headers=AUTH), 409, "limit_exceeded")
    assert error["message"] == "stream limit reached: 2 active channels (--max-streams 2)"
    assert control.calls == calls  # refused: nothing to start
    assert (await client.get(f"/api/channels/{first['id']}", headers=AUTH)).json()["status"] == "paused"
    # an active channel resumed is a no-op, full or not
    assert (await client.post(f"/api/channels/{second['id']}/resume", headers=AUTH)).status_code == 200

    assert (await client.delete(f"/api/channels/{third.json()['id']}", headers=AUTH)).status_code == 204
    resumed = await client.post(f"/api/channels/{first['id']}/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["status"] == "waiting", resumed.text


async def test_url_credentials_are_shown_only_to_the_creator_once(client, settings):
    settings.allow_private_urls = True
    url = "rtsp://admin:hunter2@10.0.0.7/stream1?token=s3cret"
    created = await client.post("/api/channels", json={"name": "cam", "source": "url", "url": url}, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["url"] == url  # the owner sees what they registered
    for response in (await client.get(f"/api/channels/{created.json()['id']}", headers=AUTH),
                     await client.get("/api/channels", headers=AUTH),
                     await client.get("/metrics")):
        assert "hunter2" not in response.text and "s3cret" not in response.text
    assert (await client.get(f"/api/channels/{created.json()['id']}", headers=AUTH)).json()["url"] == \
        "rtsp://admin:***@10.0.0.7/stream1?token=***"


async def test_a_channel_cannot_grant_itself_private_url_access(client):
    resp = await client.post("/api/channels", headers=AUTH, json={
        "name": "sneaky", "source": "url", "url": "https://example.com/live.m3u8",
        "settings": {"source": {"allow_private": True}},
    })
    error = assert_error(resp, 422, "invalid_request")
    assert "allow_private" in error["message"]


async def test_values_postgres_or_dns_cannot_take_are_invalid_requests(client, control):
    """Found by the API fuzzer (both were 500s): a host name IDNA cannot encode, and a NUL
    character reaching Postgres through a query parameter."""
    body = {"name": "idna", "source": "url", "url": "rtsp://\U0010def0i/stream"}
    assert_error(await client.post("/api/channels", json=body, headers=AUTH), 422, "invalid_request")
    for params in ({"vod_id": "a\x00b"}, {"channel_id": "\x00"}):
        assert_error(await client.get("/api/clips", params=params, headers=AUTH), 422, "invalid_request")
    assert control.calls == 0
