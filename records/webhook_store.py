"""Postgres access for webhooks (008_webhooks.sql): the webhooks, their outbox of deliveries
and the delivery log.

An event is queued by ``enqueue_webhook_event`` in the transaction of what caused it (a clip's
commit, a VOD job's end; a channel's status change by a trigger), so it is sent if and only if
that commit happened. Senders (``supervisor.webhook_delivery``) take due deliveries with
``claim``: each lane's oldest pending delivery only, under a lease, with ``FOR UPDATE SKIP
LOCKED``, so two gateways never send the same row and a lane stays in order.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets

import asyncpg
import msgspec

__all__ = [
    "PING", "DeliveryView", "NewWebhook", "WebhookStore", "WebhookView",
    "cancel_clip_webhooks", "enqueue_webhook_event", "new_secret",
]

WEBHOOKS_CHANNEL = "livecut_webhooks"  # pg_notify channel that wakes the senders (webhook_enqueue)
PING = "webhook.ping"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


async def enqueue_webhook_event(
    conn: asyncpg.Connection, event_type: str, data: dict, *, channel_id: str | None, lane: str
) -> int:
    """Queue ``event_type`` for every enabled webhook that wants it, in the caller's
    transaction, and wake the senders; returns how many deliveries were queued. ``lane``
    orders deliveries (a channel id, ``vod:<id>``); ``channel_id`` None reaches only webhooks
    without a channel filter."""
    return await conn.fetchval("SELECT webhook_enqueue($1, $2, $3, $4)", event_type, channel_id, lane, data)


async def cancel_clip_webhooks(conn: asyncpg.Connection, clip_ids: list[str]) -> None:
    """In the transaction that deletes these clips: their ``clip.created`` events not sent yet
    are not sent (they would announce a clip that is gone, with dead links)."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', finished_at = now() "
        "WHERE status = 'pending' AND type = 'clip.created' AND data->>'id' = ANY($1::text[])",
        clip_ids,
    )


def _iso(ts: dt.datetime | None) -> str | None:
    return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if ts else None


class WebhookView(msgspec.Struct):
    """A webhook as the API shows it (never its secret)."""

    id: str
    url: str
    events: list[str]
    channel_id: str | None  # only this channel's events; None: every channel and VOD job
    format: str  # "standard" | "discord"
    created_at: str
    enabled: bool
    disabled_at: str | None
    disabled_reason: str  # "" while enabled
    failing_since: str | None  # the first failed attempt since the last success


class NewWebhook(WebhookView):
    """A webhook just created: the only time its secret is shown."""

    secret: str


class Attempt(msgspec.Struct):
    at: str
    status_code: int | None  # None: no answer (the error says why)
    error: str


class DeliveryView(msgspec.Struct):
    """One event for one webhook, and its attempts (the delivery log)."""

    id: int
    event_id: str  # the webhook-id header
    type: str
    status: str  # "pending" | "delivered" | "failed"
    created_at: str
    next_attempt_at: str | None  # while pending
    finished_at: str | None
    attempts: list[Attempt]


def webhook_view(row: dict, *, reveal_secret: bool = False) -> WebhookView:
    """A webhook as the API shows it; its secret only in the create response."""
    fields = dict(
        id=row["id"],
        url=row["url"],
        events=list(row["events"]),
        channel_id=row["channel_id"],
        format=row["format"],
        created_at=_iso(row["created_at"]),
        enabled=row["disabled_at"] is None,
        disabled_at=_iso(row["disabled_at"]),
        disabled_reason=row["disabled_reason"],
        failing_since=_iso(row["failing_since"]),
    )
    return NewWebhook(**fields, secret=row["secret"]) if reveal_secret else WebhookView(**fields)


def delivery_view(row: dict, attempts: list[dict]) -> DeliveryView:
    return DeliveryView(
        id=row["id"],
        event_id=row["event_id"],
        type=row["type"],
        status=row["status"],
        created_at=_iso(row["created_at"]),
        next_attempt_at=_iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        finished_at=_iso(row["finished_at"]),
        attempts=[Attempt(at=_iso(a["attempted_at"]), status_code=a["status_code"], error=a["error"])
                  for a in attempts],
    )


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    # -- webhooks -------------------------------------------------------------------------
    async def create(self, url: str, events: list[str], channel_id: str | None, format: str) -> dict:
        row = await self.pool.fetchrow(
            "INSERT INTO webhooks (id, url, events, channel_id, format, secret) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            secrets.token_hex(6), url, events, channel_id, format, new_secret(),
        )
        return dict(row)

    async def count(self) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM webhooks")

    async def list(self) -> list[dict]:
        return [dict(r) for r in await self.pool.fetch("SELECT * FROM webhooks ORDER BY created_at, id")]

    async def get(self, webhook_id: str) -> dict | None:
        row = await self.pool.fetchrow("SELECT * FROM webhooks WHERE id = $1", webhook_id)
        return dict(row) if row else None

    async def enable(self, webhook_id: str) -> dict | None:
        """Enable a disabled webhook again (an enabled one is left as it is): events are queued
        for it from now on and its failure clock starts afresh. What it missed while disabled
        stays failed in its log; redeliver an event to send it. None: no such webhook."""
        row = await self.pool.fetchrow(
            "UPDATE webhooks SET disabled_at = NULL, disabled_reason = '', failing_since = NULL "
            "WHERE id = $1 AND disabled_at IS NOT NULL RETURNING *",
            webhook_id,
        )
        return dict(row) if row else await self.get(webhook_id)

    async def delete(self, webhook_id: str) -> bool:
        """The webhook, its pending deliveries and its log."""
        return (await self.pool.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)).endswith(" 1")

    async def ping(self, webhook_id: str) -> dict | None:
        """Queue a ``webhook.ping`` for one enabled webhook (None: none such)."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, type, lane, data) "
                    "SELECT id, $2, $3, '', jsonb_build_object('webhook_id', id) FROM webhooks "
                    "WHERE id = $1 AND disabled_at IS NULL RETURNING *",
                    webhook_id, "msg_" + secrets.token_hex(16), PING,
                )
                if row is not None:
                    await conn.execute("SELECT pg_notify($1, '')", WEBHOOKS_CHANNEL)
        return dict(row) if row else None

    # -- the delivery log -----------------------------------------------------------------
    async def deliveries(self, webhook_id: str, *, before: int | None = None, limit: int = 50) -> list[DeliveryView]:
        """Newest first, each with its attempts (``delivery_view``)."""
        rows = await self.pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::bigint IS NULL OR id < $2) "
            "ORDER BY id DESC LIMIT $3",
            webhook_id, before, limit,
        )
        attempts: dict[int, list[dict]] = {r["id"]: [] for r in rows}
        for a in await self.pool.fetch(
            "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1::bigint[]) ORDER BY id", list(attempts)
        ):
            attempts[a["delivery_id"]].append(dict(a))
        return [delivery_view(dict(r), attempts[r["id"]]) for r in rows]

    async def redeliver(self, webhook_id: str, delivery_id: int) -> DeliveryView | None:
        """Queue a delivery's event again (same event id, so receivers dedupe it) at the end of
        its lane, for an enabled webhook. None: no such delivery, or the webhook is disabled."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, type, lane, occurred_at, data) "
                    "SELECT d.webhook_id, d.event_id, d.type, d.lane, d.occurred_at, d.data "
                    "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
                    "WHERE d.id = $2 AND d.webhook_id = $1 AND w.disabled_at IS NULL RETURNING *",
                    webhook_id, delivery_id,
                )
                if row is not None:
                    await conn.execute("SELECT pg_notify($1, $2)", WEBHOOKS_CHANNEL, row["lane"])
        return delivery_view(dict(row), []) if row else None

    # -- senders --------------------------------------------------------------------------
    async def claim(self, limit: int, lease: float) -> list[dict]:
        """Due deliveries, each the oldest pending one of its (webhook, lane), with the webhook's
        url, secret and format; each is leased for ``lease`` seconds (its ``next_attempt_at``),
        so no other sender takes it, and the rest of its lane waits for its outcome."""
        rows = await self.pool.fetch(
            """UPDATE webhook_deliveries d
               SET next_attempt_at = now() + make_interval(secs => $2), attempts = d.attempts + 1
               FROM webhooks w
               WHERE w.id = d.webhook_id AND d.id IN (
                   SELECT c.id FROM webhook_deliveries c JOIN webhooks cw ON cw.id = c.webhook_id
                   WHERE c.status = 'pending' AND c.next_attempt_at <= now() AND cw.disabled_at IS NULL
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = c.webhook_id
                                     AND e.lane = c.lane AND e.status = 'pending' AND e.id < c.id)
                   ORDER BY c.id LIMIT $1
                   FOR UPDATE OF c SKIP LOCKED)
               RETURNING d.*, w.url, w.secret, w.format,
                         extract(epoch FROM now() - d.created_at)::float8 AS age""",
            limit, lease,
        )
        return [dict(r) for r in rows]

    async def record_attempt(
        self,
        delivery: dict,
        *,
        status_code: int | None,
        error: str,
        outcome: str,
        retry_in: float | None = None,
        disable_after: float,
    ) -> None:
        """Log one attempt and act on it, in one transaction. ``outcome``:

        * ``delivered``: done; the webhook is not failing any more;
        * ``retry``: pending again in ``retry_in`` seconds; ``failed``: given up;
        * ``gone``: the receiver answered 410: the webhook is disabled.

        A webhook that has failed without a success for ``disable_after`` seconds is disabled.
        A disabled webhook's pending deliveries are marked failed: nothing more is sent. A
        delivery whose webhook was deleted meanwhile is not recorded."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                if not await conn.fetchval(
                    "SELECT true FROM webhook_deliveries WHERE id = $1 FOR UPDATE", delivery["id"]
                ):
                    return  # its webhook was deleted during the attempt
                await conn.execute(
                    "INSERT INTO webhook_attempts (delivery_id, status_code, error) VALUES ($1, $2, $3)",
                    delivery["id"], status_code, error[:1000],
                )
                if outcome == "retry":
                    await conn.execute(
                        "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2) "
                        "WHERE id = $1 AND status = 'pending'",
                        delivery["id"], retry_in,
                    )
                else:
                    await conn.execute(
                        "UPDATE webhook_deliveries SET status = $2, finished_at = now() WHERE id = $1",
                        delivery["id"], "delivered" if outcome == "delivered" else "failed",
                    )
                if outcome == "delivered":
                    await conn.execute("UPDATE webhooks SET failing_since = NULL WHERE id = $1", delivery["webhook_id"])
                    return
                reason = (
                    "the receiver answered 410 Gone" if outcome == "gone"
                    else f"every delivery failed for {disable_after / 86400:g} days"
                )
                disable = "($2 OR now() - coalesce(failing_since, now()) >= make_interval(secs => $3))"
                disabled = await conn.fetchval(
                    f"""UPDATE webhooks SET failing_since = coalesce(failing_since, now()),
                            disabled_at = CASE WHEN {disable} THEN now() END,
                            disabled_reason = CASE WHEN {disable} THEN $4 ELSE '' END
                        WHERE id = $1 AND disabled_at IS NULL RETURNING disabled_at IS NOT NULL""",
                    delivery["webhook_id"], outcome == "gone", disable_after, reason,
                )
                if disabled:
                    await conn.execute(
                        "UPDATE webhook_deliveries SET status = 'failed', finished_at = now() "
                        "WHERE webhook_id = $1 AND status = 'pending'",
                        delivery["webhook_id"],
                    )
