"""Webhook delivery: sends the webhook outbox (``records.webhook_store``) to the receivers.

One ``WebhookWorker`` runs in each ``livecut up`` process, beside the outbox relay. Several
may run against one database: each takes due deliveries with ``WebhookStore.claim`` (``FOR
UPDATE SKIP LOCKED`` and a lease), so a delivery is sent by one of them at a time.

* **Order**: per webhook and lane (a channel, a VOD job), deliveries go one at a time in
  commit order; a failing delivery holds the later ones of its lane until it is delivered or
  given up. Lanes are independent.
* **Signing**: Standard Webhooks (``standardwebhooks``): ``webhook-id`` is the event's id (the
  same on every retry and redelivery: receivers dedupe by it), ``webhook-timestamp`` the
  attempt's time, ``webhook-signature`` ``v1,<HMAC-SHA256 of id.timestamp.body>``.
* **Retries**: ``records.backoff.Backoff`` delays (``first_retry`` doubling up to
  ``max_retry``: 5 s, 10 s, ... 1 h) while the event is younger than ``give_up_after`` (24 h);
  then the delivery is failed. A 2xx answer delivers; anything else (3xx included: redirects
  are not followed), no answer or a timeout is retried.
* **Disabling**: a 410 answer disables the webhook at once; so does failing without a single
  success for ``disable_after`` (3 days). Its pending deliveries are failed with it.
* **URL safety**: every attempt checks the URL with ``records.url_policy.UrlPolicy`` again,
  resolves the name once, refuses it if any address is not allowed, and connects to a checked
  address (``Host`` and TLS SNI keep the name), so a DNS answer that changed since the webhook
  was created (rebinding) cannot send data to a private address.
* **Media**: a clip's video and thumbnail links are made absolute (``Settings.base_url``) and
  signed at each attempt (``gateway.signing``) for ``media_url_ttl`` (7 days), so a retry late
  in the 24 hours still carries working links.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import asyncpg
import httpx
import msgspec
from standardwebhooks import Webhook

from gateway.signing import URL_FIELDS, UrlSigner, load_secret
from records.backoff import Backoff
from records.pg_listen import listen
from records.settings import Settings
from records.url_policy import UnsafeUrl, UrlPolicy
from records.webhook_store import WEBHOOKS_CHANNEL, WebhookStore

__all__ = ["WebhookOptions", "WebhookWorker", "discord_body", "next_step", "payload", "webhook_worker"]

log = logging.getLogger(__name__)

USER_AGENT = "livecut-webhooks/1"
MEDIA_URL_TTL = 7 * 24 * 3600.0  # a receiver may post the link later than the feed would
DISCORD_TEXT = 4096  # longest embed description Discord takes


class WebhookOptions(msgspec.Struct, frozen=True, kw_only=True):
    base_url: str  # clip media links are absolute: this gateway's public address
    timeout: float = 10.0  # seconds one attempt may take, connect to answer
    first_retry: float = 5.0  # the first retry's delay; each next one doubles...
    max_retry: float = 3600.0  # ...up to this
    give_up_after: float = 24 * 3600.0  # an event older than this is not retried any more
    disable_after: float = 3 * 24 * 3600.0  # failing this long without a success disables the webhook
    max_in_flight: int = 16  # attempts at once (each a different lane)
    poll_interval: float = 1.0  # due retries are found within this; new events wake the worker at once

    @property
    def lease(self) -> float:
        """How long a claimed delivery is another sender's to leave alone (then it is retried)."""
        return self.timeout + 60.0


# -- what is sent (pure) -------------------------------------------------------------------

def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def payload(delivery: dict, *, base_url: str, signer: UrlSigner) -> dict:
    """``{"type", "timestamp", "data"}``; a clip's media links absolute and freshly signed."""
    data = dict(delivery["data"])
    for name in URL_FIELDS:
        if isinstance(data.get(name), str) and data[name]:
            url = data[name]
            data[name] = signer.sign(base_url.rstrip("/") + url if url.startswith("/") else url)
    return {"type": delivery["type"], "timestamp": _iso(delivery["occurred_at"]), "data": data}


def discord_body(event: dict) -> dict:
    """A Discord webhook message for ``event`` (a ``payload``): one embed."""
    kind, data = event["type"], event["data"]
    embed: dict = {"timestamp": event["timestamp"]}
    if kind == "clip.created":
        where = f"channel {data['channel_id']}" if data.get("channel_id") else f"VOD job {data.get('vod_id')}"
        embed.update(
            title=f"New clip on {where}",
            description=(data.get("transcript") or "(no speech)")[:DISCORD_TEXT],
            url=data["video_url"],
            image={"url": data["thumbnail_url"]},
            thumbnail={"url": data["thumbnail_url"]},
            fields=[
                {"name": "Score", "value": f"{data['score']:.0%}", "inline": True},
                {"name": "Length", "value": f"{data['stream_end'] - data['stream_start']:.0f} s", "inline": True},
            ],
        )
    elif kind in ("vod.finished", "vod.failed"):
        error = (data.get("error") or {}).get("message", "")
        embed.update(
            title=f"VOD job {'finished' if kind == 'vod.finished' else 'failed'}: {data.get('name', data.get('id'))}"[:256],
            description=(error if kind == "vod.failed" else f"{data.get('clips', 0)} clips")[:DISCORD_TEXT],
        )
    elif kind == "channel.status":
        embed.update(
            title=f"Channel {data['channel_id']} is {data['status']}",
            description=(data.get("status_reason") or "")[:DISCORD_TEXT],
        )
    else:
        embed.update(title="livecut test ping", description=f"webhook {data.get('webhook_id', '')}")
    # the transcript is the stream's speech: it must not ping anyone
    return {"username": "livecut", "embeds": [embed], "allowed_mentions": {"parse": []}}


def signed_headers(secret: str, event_id: str, body: bytes, now: dt.datetime) -> dict[str, str]:
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def next_step(status_code: int | None, attempts: int, age: float, options: WebhookOptions) -> tuple[str, float | None]:
    """What an attempt's answer means: ``("delivered"|"gone"|"failed", None)`` or ``("retry",
    delay)``. ``attempts`` counts this one; ``age`` is the event's age in seconds."""
    if status_code is not None and 200 <= status_code < 300:
        return "delivered", None
    if status_code == 410:
        return "gone", None
    delay = Backoff(options.first_retry, options.max_retry).nth(attempts - 1)
    if age + delay > options.give_up_after:
        return "failed", None
    return "retry", delay


# -- sending ---------------------------------------------------------------------------------

async def post_checked(
    client: httpx.AsyncClient, policy: UrlPolicy, url: str, body: bytes, headers: dict[str, str]
) -> int:
    """POST ``body`` to ``url`` through ``policy``: checked, resolved once, every address
    allowed, connected by address (``Host`` and SNI keep the name). Returns the status code;
    raises ``UnsafeUrl`` before connecting anywhere refused, ``httpx.HTTPError`` otherwise."""
    target = policy.check(url, ("http",))
    if target is None:
        raise UnsafeUrl("a webhook url must be http(s)")
    addrs = await asyncio.to_thread(policy.resolve, target.host, target.port)
    original = httpx.URL(target.url)
    headers = {**headers, "host": original.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if original.scheme == "https" else {}
    last: Exception | None = None
    for addr in addrs:
        try:
            async with client.stream(
                "POST", original.copy_with(host=addr), content=body, headers=headers, extensions=extensions
            ) as response:
                return response.status_code  # the body is not read: a receiver cannot make us buffer it
        except httpx.ConnectError as exc:  # the next checked address, if there is one
            last = exc
    raise last or httpx.ConnectError(f"cannot connect to {target.host!r}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WebhookWorker:
    def __init__(
        self, store: WebhookStore, dsn: str | None, options: WebhookOptions, *, policy: UrlPolicy, signer: UrlSigner
    ) -> None:
        self.store = store
        self.dsn = dsn  # for LISTEN; None: poll only
        self.options = options
        self.policy = policy
        self.signer = signer
        self.sent = 0  # attempts made by this worker
        self._wake = asyncio.Event()

    def _client(self) -> httpx.AsyncClient:
        # no keep-alive: a pooled connection to one address would carry another name's requests
        return httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=self.options.timeout,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def drain(self) -> int:
        """Attempt every delivery due now, lane after lane, until none is due; returns how
        many attempts were made (tests, and a one-off flush)."""
        total = 0
        async with self._client() as client:
            while rows := await self.store.claim(self.options.max_in_flight, self.options.lease):
                await asyncio.gather(*(self.deliver(client, row) for row in rows))
                total += len(rows)
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop``: new events at once (LISTEN), due retries within ``poll_interval``."""
        listener = asyncio.create_task(self._listen(stop)) if self.dsn else None
        in_flight: set[asyncio.Task] = set()
        backoff = Backoff(0.5, 2.0)  # while Postgres is unreachable

        def finished(task: asyncio.Task) -> None:
            in_flight.discard(task)
            self._wake.set()  # the next delivery of its lane may be due now

        try:
            async with self._client() as client:
                while not stop.is_set():
                    self._wake.clear()
                    room = self.options.max_in_flight - len(in_flight)
                    try:
                        rows = await self.store.claim(room, self.options.lease) if room > 0 else []
                        backoff.reset()
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        delay = backoff.next()
                        log.warning("webhooks: %s; retrying in %.1fs", exc, delay)
                        await asyncio.sleep(delay)
                        continue
                    for row in rows:
                        task = asyncio.create_task(self.deliver(client, row))
                        in_flight.add(task)
                        task.add_done_callback(finished)
                    if rows and len(in_flight) < self.options.max_in_flight:
                        continue  # other lanes may have more due
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
        finally:
            if listener is not None:
                listener.cancel()
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)  # leases expire: retried later

    async def deliver(self, client: httpx.AsyncClient, delivery: dict) -> None:
        """One attempt of a claimed delivery, and its outcome recorded."""
        status_code: int | None = None
        try:
            event = payload(delivery, base_url=self.options.base_url, signer=self.signer)
            body = msgspec.json.encode(discord_body(event) if delivery["format"] == "discord" else event)
            headers = signed_headers(delivery["secret"], delivery["event_id"], body, dt.datetime.now(dt.timezone.utc))
            try:
                async with asyncio.timeout(self.options.timeout):
                    status_code = await post_checked(client, self.policy, delivery["url"], body, headers)
                error = "" if 200 <= status_code < 300 else f"the receiver answered HTTP {status_code}"
            except UnsafeUrl as exc:
                error = f"refused by the url policy: {exc}"
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                error = _describe(exc)
            self.sent += 1
            outcome, retry_in = next_step(status_code, delivery["attempts"], delivery["age"], self.options)
            if outcome != "delivered":
                log.info("webhook %s: delivery %s (%s) %s: %s", delivery["webhook_id"], delivery["id"],
                         delivery["type"], outcome, error)
            await self.store.record_attempt(
                delivery, status_code=status_code, error=error, outcome=outcome, retry_in=retry_in,
                disable_after=self.options.disable_after,
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # its lease runs out and it is attempted again
            log.exception("webhook delivery %s failed to complete", delivery.get("id"))

    async def _listen(self, stop: asyncio.Event) -> None:
        await listen(self.dsn, WEBHOOKS_CHANNEL, self._wake, stop)


def webhook_worker(settings: Settings, pool: asyncpg.Pool, dsn: str) -> WebhookWorker:
    """The worker ``livecut up`` runs: the operator's URL policy, the gateway's signing key."""
    signer = UrlSigner(settings.signing_key.encode("utf-8") or load_secret(settings.data_dir), MEDIA_URL_TTL)
    return WebhookWorker(
        WebhookStore(pool), dsn, WebhookOptions(base_url=settings.base_url),
        policy=UrlPolicy(allow_private=settings.allow_private_urls), signer=signer,
    )
