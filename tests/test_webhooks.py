"""Signed webhooks: the API, the Postgres outbox and the delivery worker, against real Postgres,
a real HTTP receiver that verifies every request with ``standardwebhooks``, and the real
``Store.commit_clip`` path the stream actors use. Nothing of ours is mocked."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
from standardwebhooks import Webhook

from conftest import free_port
from gateway.app import create_app
from gateway.signing import URL_FIELDS, UrlSigner
from records.key_store import KeyStore
from records.settings import Settings
from records.url_policy import UrlPolicy
from records.vod_store import NewVod, VodStore, vod_view
from records.webhook_store import WebhookStore
from records.wire import ChannelCreate, ClipRecord, MomentEvent, VodError, new_commit_key
from supervisor.webhook_delivery import MEDIA_URL_TTL, WebhookOptions, WebhookWorker, next_step

KEY = "test-key-webhooks"
AUTH = {"Authorization": f"Bearer {KEY}"}
SIGNING_KEY = "test-signing-key"
LOOPBACK = UrlPolicy(allow_networks=("127.0.0.0/8",))  # the operator allow-listed the receiver's network


# -- a real receiver -------------------------------------------------------------------------

class Receiver:
    """An HTTP server on loopback, in a thread: verifies every request with
    ``standardwebhooks.Webhook(secret).verify`` and answers ``answer``. ``stop`` and ``start``
    take it down and bring it back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secrets: dict[str, str] = {}  # path → the webhook's secret
        self.answer = 204
        self.received: list[dict] = []  # verified requests: path, headers, body, event
        self.unverified: list[str] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = dict(self.headers.items())
                try:
                    event = Webhook(receiver.secrets[self.path]).verify(body, headers)
                except Exception as exc:
                    with receiver.lock:
                        receiver.unverified.append(f"{self.path}: {exc!r}")
                else:
                    with receiver.lock:
                        receiver.received.append({"path": self.path, "headers": headers, "body": body, "event": event})
                self.send_response(receiver.answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self, path: str = "/hook") -> list[dict]:
        with self.lock:
            return [r for r in self.received if r["path"] == path]


@pytest.fixture
def receiver():
    r = Receiver()
    r.start()
    yield r
    r.stop()
    assert not r.unverified, r.unverified  # every request the receiver got was signed right


# -- the gateway and the worker --------------------------------------------------------------

class NoControl:
    async def channels_changed(self) -> None:
        pass

    async def stream_limit(self):
        return None


def gateway_settings(tmp_path, *, allow_private: bool = True) -> Settings:
    return Settings(data_dir=str(tmp_path), api_key=KEY, port=8123, public_host="clips.example",
                    signing_key=SIGNING_KEY, allow_private_urls=allow_private, rate_limit=100_000)


def client_for(settings: Settings, store, redis) -> httpx.AsyncClient:
    app = create_app(settings, store, redis, NoControl())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
async def client(tmp_path, store, redis):
    async with client_for(gateway_settings(tmp_path), store, redis) as c:
        yield c


def worker_for(store, dsn: str | None = None, policy: UrlPolicy = LOOPBACK, **options) -> WebhookWorker:
    """A worker as ``livecut up`` runs it; ``first_retry`` is a minute unless given, so that
    ``drain`` makes one attempt per delivery."""
    opts = WebhookOptions(base_url="http://clips.example:8123", **{"first_retry": 60.0, "timeout": 5.0, **options})
    return WebhookWorker(WebhookStore(store.pool), dsn, opts, policy=policy,
                         signer=UrlSigner(SIGNING_KEY.encode(), MEDIA_URL_TTL))


async def create_webhook(client, url: str, events=("clip.created",), **extra) -> dict:
    resp = await client.post("/api/webhooks", json={"url": url, "events": list(events), **extra}, headers=AUTH)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def channel(store, name: str = "cam") -> str:
    return (await store.create_channel(ChannelCreate(name=name, source="rtmp"), {}))["id"]


async def commit_clip(store, channel_id: str, tmp_path, start: float, transcript: str = "what a shot") -> ClipRecord:
    """A clip committed the way a stream actor commits it (``Store.commit_clip``)."""
    key = new_commit_key()
    (tmp_path / f"{key}.mp4").write_bytes(bytes(range(256)) * 4)
    (tmp_path / f"{key}.jpg").write_bytes(b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9")
    clip = ClipRecord(
        id=key, channel_id=channel_id, stream_start=start, stream_end=start + 15, score=0.8,
        signals={"loudness": 1.2}, transcript=transcript, video_path=str(tmp_path / f"{key}.mp4"),
        thumbnail_path=str(tmp_path / f"{key}.jpg"), duration=15.0, created_at="",
    )
    return await store.commit_clip(clip, MomentEvent(t=start + 10, score=0.8, signals=clip.signals))


async def until(condition, what: str, timeout: float = 45.0) -> None:
    """Wait for ``condition()`` (a bound against hanging, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def assert_error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    assert set(resp.json()) == {"error"} and resp.json()["error"]["code"] == code, resp.text
    return resp.json()["error"]["message"]


# -- tests -----------------------------------------------------------------------------------

async def test_a_clip_reaches_the_receiver_signed_with_the_feeds_clip_object(store, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url())
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["clip.created"] and hook["enabled"]
    receiver.secrets["/hook"] = hook["secret"]
    listed = (await client.get("/api/webhooks", headers=AUTH)).json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]  # shown on create only
    assert "secret" not in (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()

    clip = await commit_clip(store, await channel(store), tmp_path, 30.0)
    assert await worker_for(store).drain() == 1
    [got] = receiver.events()
    assert got["headers"]["webhook-id"].startswith("msg_")
    event = got["event"]
    assert event["type"] == "clip.created"
    assert dt.datetime.fromisoformat(event["timestamp"]).tzinfo is not None
    # the Socket.IO clip object, media links absolute and signed for days
    expected = msgspec.to_builtins(clip.notification())
    assert {k: v for k, v in event["data"].items() if k not in URL_FIELDS} == \
        {k: v for k, v in expected.items() if k not in URL_FIELDS}
    signer = UrlSigner(SIGNING_KEY.encode())
    for name in ("video_url", "thumbnail_url"):
        link = urlsplit(event["data"][name])
        assert (link.scheme, link.netloc, link.path) == ("http", "clips.example:8123", expected[name])
        query = {k: v[0] for k, v in parse_qs(link.query).items()}
        assert signer.verify(link.path, query["exp"], query["sig"])
        assert int(query["exp"]) > time.time() + 6 * 86400
        media = await client.get(f"{link.path}?{link.query}")  # no API key: the signature opens it
        assert media.status_code == 200, media.text

    [delivery] = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
    assert delivery["status"] == "delivered" and delivery["type"] == "clip.created"
    assert delivery["event_id"] == got["headers"]["webhook-id"]
    assert [(a["status_code"], a["error"]) for a in delivery["attempts"]] == [(204, "")]


async def test_receiver_down_during_a_push_every_clip_arrives_once_in_order(store, pg_dsn, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    channels = [await channel(store, "a"), await channel(store, "b")]
    # two senders, as with two gateways on one database, retrying fast
    workers = [worker_for(store, pg_dsn, first_retry=0.05, max_retry=0.3) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    committed: dict[str, list[str]] = {c: [] for c in channels}
    t = 0.0

    async def push(n: int) -> None:
        nonlocal t
        for i in range(n):
            ch = channels[i % 2]
            committed[ch].append((await commit_clip(store, ch, tmp_path, t)).id)
            t += 20.0

    async def failed_attempts() -> int:
        log = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
        return sum(1 for d in log for a in d["attempts"] if a["status_code"] is None and a["error"])

    try:
        await push(4)
        await until(lambda: len(receiver.events()) == 4, "the first clips")
        receiver.stop()  # the receiver goes down in the middle of the push
        await push(4)
        deadline = time.monotonic() + 45
        while await failed_attempts() < 4:  # the senders tried and failed, and keep retrying
            assert time.monotonic() < deadline, "no failed attempts while the receiver was down"
            await asyncio.sleep(0.1)
        assert len(receiver.events()) == 4
        receiver.start()
        await push(4)
        await until(lambda: len(receiver.events()) >= 12, "every clip after the outage")
        await asyncio.sleep(0.5)  # a duplicate, if a sender were to send one, would show up now
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    got = receiver.events()
    ids = [r["headers"]["webhook-id"] for r in got]
    assert len(ids) == len(set(ids)) == 12  # exactly once by webhook-id, with two senders
    for ch in channels:
        arrived = [r["event"]["data"]["id"] for r in got if r["event"]["data"]["channel_id"] == ch]
        assert arrived == committed[ch]  # every clip, in commit order per channel
    log = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
    assert {d["status"] for d in log} == {"delivered"} and len(log) == 12
    assert any(a["error"] and a["status_code"] is None for d in log for a in d["attempts"])
    assert (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()["failing_since"] is None


async def test_a_410_disables_the_webhook_and_nothing_more_is_sent(store, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    receiver.answer = 410
    ch = await channel(store)
    worker = worker_for(store)
    await commit_clip(store, ch, tmp_path, 0.0)
    await commit_clip(store, ch, tmp_path, 20.0)  # queued behind the first
    assert await worker.drain() == 1
    shown = (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()
    assert not shown["enabled"] and "410" in shown["disabled_reason"] and shown["disabled_at"]

    receiver.answer = 204
    await commit_clip(store, ch, tmp_path, 40.0)  # after the webhook was disabled
    assert await worker.drain() == 0
    assert len(receiver.events()) == 1
    log = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
    assert [d["status"] for d in log] == ["failed", "failed"]  # the held one too; none for the third clip
    assert log[1]["attempts"][0]["status_code"] == 410
    assert_error(await client.post(f"/api/webhooks/{hook['id']}/ping", headers=AUTH), 409, "conflict")
    assert_error(await client.post(f"/api/webhooks/{hook['id']}/deliveries/{log[1]['id']}/redeliver", headers=AUTH),
                 409, "conflict")


async def test_a_disabled_webhook_enabled_again_sends_new_events_and_can_redeliver_what_it_missed(
        store, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    receiver.answer = 410
    ch = await channel(store)
    worker = worker_for(store)
    await commit_clip(store, ch, tmp_path, 0.0)
    assert await worker.drain() == 1
    assert not (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()["enabled"]
    await commit_clip(store, ch, tmp_path, 20.0)  # missed: nothing is queued while disabled
    assert await worker.drain() == 0

    receiver.answer = 204
    enabled = await client.post(f"/api/webhooks/{hook['id']}/enable", headers=AUTH)
    assert enabled.status_code == 200
    shown = enabled.json()
    assert shown["enabled"] and shown["disabled_at"] is None and shown["disabled_reason"] == ""
    assert shown["failing_since"] is None and "secret" not in shown
    again = await client.post(f"/api/webhooks/{hook['id']}/enable", headers=AUTH)
    assert again.status_code == 200 and again.json() == shown  # idempotent

    await commit_clip(store, ch, tmp_path, 40.0)
    assert await worker.drain() == 1
    (log_new, log_first) = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
    assert log_new["status"] == "delivered" and log_first["status"] == "failed"
    redone = await client.post(f"/api/webhooks/{hook['id']}/deliveries/{log_first['id']}/redeliver", headers=AUTH)
    assert redone.status_code == 202
    assert await worker.drain() == 1
    ids = [e["headers"].get("webhook-id") or e["headers"].get("Webhook-Id") for e in receiver.events()]
    assert len(ids) == 3 and ids[2] == ids[0] != ids[1], ids  # the 410'd one, the new clip, the first again
    assert_error(await client.post("/api/webhooks/nope/enable", headers=AUTH), 404, "not_found")


async def test_three_days_of_failures_disable_a_webhook_and_a_success_clears_them(store, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    ch = await channel(store)
    receiver.answer = 500
    await commit_clip(store, ch, tmp_path, 0.0)
    assert await worker_for(store).drain() == 1
    shown = (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()
    assert shown["enabled"] and shown["failing_since"]  # one failure: retried, not disabled
    [delivery] = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
    assert delivery["status"] == "pending" and delivery["attempts"][0]["status_code"] == 500

    receiver.answer = 204
    await store.pool.execute("UPDATE webhook_deliveries SET next_attempt_at = now()")  # the minute has passed
    assert await worker_for(store).drain() == 1  # the retry succeeds
    assert (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()["failing_since"] is None

    receiver.answer = 503
    await commit_clip(store, ch, tmp_path, 20.0)
    # the webhook has been failing for three days (set on the database's clock)
    await store.pool.execute("UPDATE webhooks SET failing_since = now() - interval '3 days 1 minute'")
    assert await worker_for(store).drain() == 1
    shown = (await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH)).json()
    assert not shown["enabled"] and "3 days" in shown["disabled_reason"]


def test_retry_schedule_doubles_to_an_hour_and_gives_up_after_a_day():
    opts = WebhookOptions(base_url="http://x")
    delays = [next_step(500, n, 0.0, opts)[1] for n in range(1, 13)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert next_step(None, 3, 0.0, opts) == ("retry", 20)  # no answer: retried like a 5xx
    assert next_step(302, 1, 0.0, opts) == ("retry", 5)  # redirects are not followed
    assert next_step(200, 9, 0.0, opts) == ("delivered", None)
    assert next_step(410, 1, 0.0, opts) == ("gone", None)
    assert next_step(500, 20, 24 * 3600 - 3600, opts) == ("retry", 3600)  # the last retry is within 24 h
    assert next_step(500, 20, 24 * 3600 - 3599, opts) == ("failed", None)


async def test_a_loopback_webhook_is_refused_without_the_operator_flag(store, redis, tmp_path, receiver):
    async with client_for(gateway_settings(tmp_path, allow_private=False), store, redis) as strict:
        for url in (receiver.url(), "http://localhost:8080/hook", "http://[::1]/hook", "http://2130706433/x",
                    "http://10.1.2.3/hook", "https://169.254.169.254/latest"):
            resp = await strict.post("/api/webhooks", json={"url": url, "events": ["clip.created"]}, headers=AUTH)
            message = assert_error(resp, 422, "invalid_request")
            assert message.startswith("url:") and "--allow-private-urls" in message, (url, message)
        assert (await strict.get("/api/webhooks", headers=AUTH)).json()["items"] == []
    async with client_for(gateway_settings(tmp_path, allow_private=True), store, redis) as lenient:
        hook = await create_webhook(lenient, receiver.url())  # the operator allows it
    receiver.secrets["/hook"] = hook["secret"]

    # at send time the worker checks again, by the operator's policy of that moment
    await commit_clip(store, await channel(store), tmp_path, 0.0)
    assert await worker_for(store, policy=UrlPolicy()).drain() == 1
    assert receiver.events() == []  # nothing connected to the loopback receiver
    [delivery] = await WebhookStore(store.pool).deliveries(hook["id"])
    [attempt] = delivery.attempts
    assert attempt.status_code is None and "refused by the url policy" in attempt.error
    assert "loopback" in attempt.error and delivery.status == "pending"


BAD_BODIES = [
    (b"", "request body must be a JSON object"),
    (b"{not json", "invalid JSON"),
    (b"[]", "Expected `object`"),
    (json.dumps({"events": ["clip.created"]}).encode(), "missing required field `url`"),
    (json.dumps({"url": "https://example.com/h", "events": []}).encode(), "$.events"),
    (json.dumps({"url": "https://example.com/h", "events": ["clip.deleted"]}).encode(), "$.events[0]"),
    (json.dumps({"url": "https://example.com/h", "events": ["clip.created", "clip.created"]}).encode(), "once"),
    (json.dumps({"url": "ftp://example.com/h", "events": ["clip.created"]}).encode(), "http:// or https://"),
    (json.dumps({"url": "example.com/h", "events": ["clip.created"]}).encode(), "http:// or https://"),
    (json.dumps({"url": "https://", "events": ["clip.created"]}).encode(), "url: the url has no host"),
    (json.dumps({"url": "https://example.com/" + "a" * 2100, "events": ["clip.created"]}).encode(), "$.url"),
    (json.dumps({"url": "https://example.com/h", "events": ["clip.created"], "format": "slack"}).encode(), "$.format"),
    (json.dumps({"url": "https://example.com/h", "events": ["clip.created"], "secret": "mine"}).encode(),
     "unknown field `secret`"),
    (json.dumps({"url": "https://ex ample.com/h", "events": ["clip.created"]}).encode(), "whitespace"),
    (json.dumps({"url": "https://example.com/h", "events": ["clip.created"], "channel_id": "nope"}).encode(),
     "channel_id: no channel 'nope'"),
]


@pytest.mark.parametrize("body,message", BAD_BODIES)
async def test_bad_input_is_refused_with_a_clear_message(client, body, message):
    resp = await client.post("/api/webhooks", content=body, headers={**AUTH, "content-type": "application/json"})
    assert message in assert_error(resp, 422, "invalid_request")
    assert (await client.get("/api/webhooks", headers=AUTH)).json()["items"] == []


async def test_only_admin_keys_manage_webhooks(store, client, receiver):
    hook = await create_webhook(client, receiver.url())
    body = {"url": receiver.url(), "events": ["clip.created"]}
    for scope in ("read", "ingest"):
        key = {"Authorization": f"Bearer {(await KeyStore(store.pool).create(scope)).key}"}
        assert "needs admin" in assert_error(await client.post("/api/webhooks", json=body, headers=key), 403, "forbidden")
        assert_error(await client.get("/api/webhooks", headers=key), 403, "forbidden")
        assert_error(await client.delete(f"/api/webhooks/{hook['id']}", headers=key), 403, "forbidden")
        assert_error(await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=key), 403, "forbidden")
        assert_error(await client.post(f"/api/webhooks/{hook['id']}/enable", headers=key), 403, "forbidden")
    assert_error(await client.post("/api/webhooks", json=body), 401, "unauthorized")
    assert len((await client.get("/api/webhooks", headers=AUTH)).json()["items"]) == 1


async def test_discord_format_posts_an_embed_with_the_thumbnail_and_the_clip_link(store, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url("/discord"), format="discord")
    receiver.secrets["/discord"] = hook["secret"]  # Discord ignores the signature; it is sent anyway
    clip = await commit_clip(store, await channel(store), tmp_path, 0.0, transcript="@everyone what a shot")
    assert await worker_for(store).drain() == 1
    [got] = receiver.events("/discord")
    body = got["event"]
    assert body["allowed_mentions"] == {"parse": []}  # the transcript pings nobody
    [embed] = body["embeds"]
    assert embed["description"] == "@everyone what a shot"
    assert embed["title"] and clip.channel_id in embed["title"]
    assert embed["url"].startswith(f"http://clips.example:8123/api/clips/{clip.id}/video?exp=")
    thumb = f"http://clips.example:8123/api/clips/{clip.id}/thumbnail?exp="
    assert embed["image"]["url"].startswith(thumb) and embed["thumbnail"]["url"].startswith(thumb)


async def test_channel_status_and_vod_events_are_queued_with_their_writes(store, client, receiver):
    a, b = await channel(store, "a"), await channel(store, "b")
    every = await create_webhook(client, receiver.url("/all"), events=["channel.status", "vod.finished", "vod.failed"])
    only_b = await create_webhook(client, receiver.url("/b"), events=["channel.status"], channel_id=b)
    receiver.secrets.update({"/all": every["secret"], "/b": only_b["secret"]})

    await store.set_status(a, "live")
    await store.set_status(a, "live", "still live")  # not a status change
    await store.set_status(a, "error", "restarted: actor died")
    await store.set_status(b, "live")
    vods = VodStore(store.pool)
    done, failed = await vods.create_jobs([NewVod(name="ok", url="https://example.com/a.mp4", upload_id=None, settings={}),
                                           NewVod(name="bad", url="https://example.com/b.mp4", upload_id=None, settings={})])
    await vods.start(done["id"])
    finished = await vods.finish(done["id"], "done")
    failed_row = await vods.finish(failed["id"], "failed", VodError(code="not_media", message="not a media file"))
    assert await worker_for(store).drain() == 6  # 5 to /all, 1 to /b

    got = [(r["event"]["type"], r["event"]["data"]) for r in receiver.events("/all")]
    status = [d for t, d in got if t == "channel.status"]
    assert [(d["channel_id"], d["status"], d["status_reason"]) for d in status if d["channel_id"] == a] == \
        [(a, "live", ""), (a, "error", "restarted: actor died")]
    assert [(d["channel_id"], d["status"]) for d in status if d["channel_id"] == b] == [(b, "live")]
    vod_events = {t: d for t, d in got if t.startswith("vod.")}
    assert vod_events["vod.finished"] == msgspec.to_builtins(vod_view(finished))
    assert vod_events["vod.failed"] == msgspec.to_builtins(vod_view(failed_row))
    assert vod_events["vod.failed"]["error"]["message"] == "not a media file"
    assert [(r["event"]["data"]["channel_id"], r["event"]["data"]["status"]) for r in receiver.events("/b")] == [(b, "live")]


async def test_ping_delivery_log_redeliver_and_delete(store, client, receiver):
    hook = await create_webhook(client, receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    resp = await client.post(f"/api/webhooks/{hook['id']}/ping", headers=AUTH)
    assert resp.status_code == 202, resp.text
    ping = resp.json()
    assert await worker_for(store).drain() == 1
    [got] = receiver.events()
    assert got["event"]["type"] == "webhook.ping" and got["event"]["data"] == {"webhook_id": hook["id"]}
    assert got["headers"]["webhook-id"] == ping["event_id"]

    resp = await client.post(f"/api/webhooks/{hook['id']}/deliveries/{ping['delivery_id']}/redeliver", headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert resp.json()["event_id"] == ping["event_id"] and resp.json()["status"] == "pending"
    assert await worker_for(store).drain() == 1
    assert [r["headers"]["webhook-id"] for r in receiver.events()] == [ping["event_id"]] * 2  # receivers dedupe it
    log = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", params={"limit": 1}, headers=AUTH)).json()
    assert len(log["items"]) == 1 and log["next"] == str(log["items"][0]["id"])
    older = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", params={"before": log["next"]},
                              headers=AUTH)).json()["items"]
    assert [d["id"] for d in older] == [ping["delivery_id"]]
    assert_error(await client.post(f"/api/webhooks/{hook['id']}/deliveries/999999/redeliver", headers=AUTH),
                 404, "not_found")

    assert (await client.delete(f"/api/webhooks/{hook['id']}", headers=AUTH)).status_code == 204
    assert_error(await client.get(f"/api/webhooks/{hook['id']}", headers=AUTH), 404, "not_found")
    assert_error(await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH), 404, "not_found")
    assert_error(await client.delete(f"/api/webhooks/{hook['id']}", headers=AUTH), 404, "not_found")


async def test_a_clip_deleted_before_its_event_went_out_is_not_announced(store, client, receiver, tmp_path):
    hook = await create_webhook(client, receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    ch = await channel(store)
    gone = await commit_clip(store, ch, tmp_path, 0.0)
    kept = await commit_clip(store, ch, tmp_path, 20.0)
    assert (await client.delete(f"/api/clips/{gone.id}", headers=AUTH)).status_code == 204
    assert await worker_for(store).drain() == 1
    assert [r["event"]["data"]["id"] for r in receiver.events()] == [kept.id]
    log = (await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=AUTH)).json()["items"]
    assert [(d["status"], len(d["attempts"])) for d in log] == [("delivered", 1), ("failed", 0)]


@pytest.mark.e2e
def test_livecut_up_sends_webhooks(livecut_stack, receiver):
    """The worker runs in the `livecut up` process: a ping and a real status change arrive."""
    stack = livecut_stack
    created = stack.api("POST", "/api/channels", json={"name": "webhook e2e", "source": "rtmp"})
    assert created.status_code == 201, created.text
    ch = created.json()["id"]
    resp = stack.api("POST", "/api/webhooks", json={"url": receiver.url(), "events": ["channel.status"], "channel_id": ch})
    assert resp.status_code == 201, resp.text
    hook = resp.json()
    receiver.secrets["/hook"] = hook["secret"]
    assert stack.api("POST", f"/api/webhooks/{hook['id']}/ping").status_code == 202
    assert stack.api("DELETE", f"/api/channels/{ch}").status_code == 204  # the channel goes offline

    def arrived() -> tuple[list[dict], list[dict]]:
        events = [r["event"] for r in receiver.events()]
        return ([e for e in events if e["type"] == "webhook.ping"],
                [e["data"] for e in events if e["type"] == "channel.status"])

    deadline = time.monotonic() + 60
    while not (arrived()[0] and any(d["status"] == "offline" for d in arrived()[1])):
        assert time.monotonic() < deadline, f"webhooks not delivered: {arrived()}\n{stack.log_tail()}"
        time.sleep(0.1)
    pings, status = arrived()
    assert pings[0]["data"] == {"webhook_id": hook["id"]}
    assert {d["channel_id"] for d in status} == {ch} and status[-1]["status"] == "offline"
    assert stack.api("DELETE", f"/api/webhooks/{hook['id']}").status_code == 204
