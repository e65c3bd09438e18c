"""``/api/webhooks``: signed webhooks to the user's own tools and Discord.

Every route needs an ``admin`` key: a webhook sends the deployment's data to an address the
caller chooses, and its secret is in the create response. A webhook URL passes the one URL
policy (``records.url_policy``) as a source URL does, when it is created and again on every
attempt (``supervisor.webhook_delivery``). Events are queued in the transaction of what
caused them (``records.webhook_store``); the ``livecut up`` process sends them.
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from gateway.api import MsgspecResponse
from gateway.auth import require
from gateway.errors import ApiError, bounded_body, decoded_body, invalid, not_found
from gateway.openapi import json_schema
from records.settings import Settings
from records.store import Store
from records.url_policy import UnsafeUrl, UrlPolicy
from records.webhook_store import DeliveryView, NewWebhook, WebhookStore, WebhookView, webhook_view

MAX_BODY = 8 * 1024
MAX_URL = 2048
MAX_WEBHOOKS = 100  # per deployment: each one is a sender's lane per channel

EventType = Literal["clip.created", "vod.finished", "vod.failed", "channel.status"]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/webhooks``."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]  # http(s), by the URL policy
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=4)]
    channel_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None  # only this channel's events
    format: Literal["standard", "discord"] = "standard"  # discord: a Discord webhook message (an embed)


class WebhookList(msgspec.Struct):
    items: list[WebhookView]


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryView]
    next: str | None  # pass as ``before`` for the next (older) page


class PingQueued(msgspec.Struct):
    delivery_id: int
    event_id: str  # the webhook-id the ping is sent with


def _answer(status: int, type_, description: str) -> dict:
    """A ``responses=`` entry: the route's JSON body, described by its msgspec type."""
    return {status: {"description": description, "content": {"application/json": {"schema": json_schema(type_)}}}}


def webhook_create_schema() -> dict:
    schema = json_schema(WebhookCreate, closed=True)
    schema["properties"]["url"] = {
        "type": "string", "minLength": 1, "maxLength": MAX_URL,
        "pattern": r"^https?://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{1,5})?(/[!-~]*)?$",
        "description": "where events are POSTed: http(s), a public address unless the operator allows private ones",
    }
    return schema


def check_webhook_url(url: str, allow_private: bool) -> None:
    """``invalid_request`` unless ``url`` is an http(s) URL the URL policy allows, its host
    resolved (blocking: run it off the event loop). A name that does not resolve now is
    accepted: every attempt checks it again."""
    try:
        UrlPolicy(allow_private=allow_private).check_resolved(url, ("http",))
    except UnsafeUrl as exc:
        raise invalid(f"url: {exc}") from None
    except OSError:
        pass


def parse_webhook_create(body: bytes) -> WebhookCreate:
    create = decoded_body(body, WebhookCreate)
    if not create.url.lower().startswith(("http://", "https://")):
        raise invalid("url: a webhook url must start with http:// or https://")
    if len(set(create.events)) != len(create.events):
        raise invalid("events: each event may be named once")
    return create


def build_webhook_router(settings: Settings, store: Store) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["webhooks"])
    admin = [Depends(require("admin"))]
    hooks = WebhookStore(store.pool)

    async def webhook_or_404(webhook_id: str) -> dict:
        row = await hooks.get(webhook_id)
        if row is None:
            raise not_found(f"no webhook {webhook_id!r}")
        return row

    @router.post(
        "/webhooks",
        status_code=201,
        dependencies=admin,
        response_class=MsgspecResponse,
        responses=_answer(201, NewWebhook, "the webhook, with its signing secret (shown here only)"),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": webhook_create_schema()}},
            }
        },
    )
    async def create_webhook(request: Request) -> Response:
        """A webhook; the response carries its signing secret, shown this once."""
        body = bounded_body(await request.body(), MAX_BODY)
        create = parse_webhook_create(body)
        await asyncio.to_thread(check_webhook_url, create.url, settings.allow_private_urls)
        if create.channel_id is not None and await store.get_channel(create.channel_id) is None:
            raise invalid(f"channel_id: no channel {create.channel_id!r}")
        if await hooks.count() >= MAX_WEBHOOKS:
            raise ApiError(409, "limit_exceeded", f"at most {MAX_WEBHOOKS} webhooks; delete one first")
        row = await hooks.create(create.url, list(create.events), create.channel_id, create.format)
        return MsgspecResponse(webhook_view(row, reveal_secret=True), status_code=201)

    @router.get("/webhooks", dependencies=admin, response_class=MsgspecResponse,
                responses=_answer(200, WebhookList, "every webhook, oldest first"))
    async def list_webhooks() -> Response:
        return MsgspecResponse(WebhookList([webhook_view(r) for r in await hooks.list()]))

    @router.get("/webhooks/{webhook_id}", dependencies=admin, response_class=MsgspecResponse,
                responses=_answer(200, WebhookView, "the webhook"))
    async def get_webhook(webhook_id: str) -> Response:
        return MsgspecResponse(webhook_view(await webhook_or_404(webhook_id)))

    @router.post("/webhooks/{webhook_id}/enable", dependencies=admin, response_class=MsgspecResponse,
                 responses=_answer(200, WebhookView, "the webhook, enabled"))
    async def enable_webhook(webhook_id: str) -> Response:
        """Enable a webhook that a 410 or days of failures disabled (idempotent). New events are
        sent from now on; those it missed stay failed in its log, each can be redelivered."""
        row = await hooks.enable(webhook_id)
        if row is None:
            raise not_found(f"no webhook {webhook_id!r}")
        return MsgspecResponse(webhook_view(row))

    @router.delete("/webhooks/{webhook_id}", status_code=204, dependencies=admin)
    async def delete_webhook(webhook_id: str) -> Response:
        """The webhook, its undelivered events and its delivery log."""
        if not await hooks.delete(webhook_id):
            raise not_found(f"no webhook {webhook_id!r}")
        return Response(status_code=204)

    @router.post("/webhooks/{webhook_id}/ping", status_code=202, dependencies=admin, response_class=MsgspecResponse,
                 responses=_answer(202, PingQueued, "the ping is queued"))
    async def ping_webhook(webhook_id: str) -> Response:
        """Queue a signed ``webhook.ping`` event; its outcome shows in the delivery log."""
        row = await webhook_or_404(webhook_id)
        delivery = await hooks.ping(webhook_id)
        if delivery is None:
            raise ApiError(409, "conflict", f"webhook {webhook_id!r} is disabled ({row['disabled_reason']})")
        return MsgspecResponse(PingQueued(delivery["id"], delivery["event_id"]), status_code=202)

    @router.get("/webhooks/{webhook_id}/deliveries", dependencies=admin, response_class=MsgspecResponse,
                responses=_answer(200, DeliveryPage, "the delivery log, newest first"))
    async def list_deliveries(
        webhook_id: str,
        limit: int = Query(50, ge=1, le=200),
        before: int | None = Query(None, ge=1, le=2**62),
    ) -> Response:
        """The delivery log, newest first: each event's status and every attempt's time, status
        code or error."""
        await webhook_or_404(webhook_id)
        items = await hooks.deliveries(webhook_id, before=before, limit=limit + 1)
        page = items[:limit]
        return MsgspecResponse(DeliveryPage(page, str(page[-1].id) if len(items) > limit else None))

    @router.post(
        "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        status_code=202,
        dependencies=admin,
        response_class=MsgspecResponse,
        responses=_answer(202, DeliveryView, "the new delivery of the same event"),
    )
    async def redeliver(webhook_id: str, delivery_id: int) -> Response:
        """Send a delivery's event again, with the same ``webhook-id`` (receivers dedupe it),
        after the webhook's other pending events of the same channel."""
        row = await webhook_or_404(webhook_id)
        if row["disabled_at"] is not None:
            raise ApiError(409, "conflict", f"webhook {webhook_id!r} is disabled ({row['disabled_reason']})")
        if not 1 <= delivery_id < 2**63:
            raise not_found(f"no delivery {delivery_id} of webhook {webhook_id!r}")
        delivery = await hooks.redeliver(webhook_id, delivery_id)
        if delivery is None:
            raise not_found(f"no delivery {delivery_id} of webhook {webhook_id!r}")
        return MsgspecResponse(delivery, status_code=202)

    return router
