"""``/api/settings/retention``: the workspace's global clip retention limits, what they weigh
on, and the channels with limits of their own.

Any key reads them (the console's Settings page shows them to every scope); an ``admin`` key
replaces them. Postgres holds them (``workspace_settings``); the retention sweeper of
``livecut up`` reads them on every pass, so a change applies within a minute, no restart.
``livecut up --retention-days/--retention-bytes``, when given, write them at start.
"""
from __future__ import annotations

import msgspec
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.api import MsgspecResponse
from gateway.auth import require
from gateway.errors import bounded_body, decoded_body
from gateway.openapi import json_schema
from records.retention import RetentionLimits, RetentionOptions, channel_limits
from records.store import Store

MAX_BODY = 1024


class RetentionUsage(msgspec.Struct):
    clips: int
    bytes: int  # measured: a new clip counts once the sweeper has measured it (within a minute)


class ChannelRetention(msgspec.Struct):
    id: str
    name: str
    limits: RetentionOptions  # besides the global ones; changed through the channel's settings


class RetentionView(msgspec.Struct):
    limits: RetentionLimits  # 0: no limit of that kind
    usage: RetentionUsage
    channels: list[ChannelRetention]  # channels with limits of their own


ANSWER = {200: {"description": "the global limits, the clips' count and size, the channels' own limits",
                "content": {"application/json": {"schema": json_schema(RetentionView)}}}}


def build_retention_router(store: Store) -> APIRouter:
    router = APIRouter(prefix="/api/settings", tags=["settings"])

    async def view() -> RetentionView:
        clips, size, channels = await store.retention_totals()
        own = channel_limits({c["id"]: c["retention"] for c in channels})
        return RetentionView(
            limits=await store.retention_limits(),
            usage=RetentionUsage(clips=clips, bytes=size),
            channels=[
                ChannelRetention(c["id"], c["name"], own[c["id"]]) for c in channels
                if c["id"] in own and (own[c["id"]].max_age_days or own[c["id"]].max_bytes)
            ],
        )

    @router.get("/retention", dependencies=[Depends(require("read"))], response_class=MsgspecResponse,
                responses=ANSWER)
    async def get_retention() -> Response:
        return MsgspecResponse(await view())

    @router.put(
        "/retention",
        dependencies=[Depends(require("admin"))],
        response_class=MsgspecResponse,
        responses=ANSWER,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": json_schema(RetentionLimits, closed=True)}},
            }
        },
    )
    async def put_retention(request: Request) -> Response:
        """Replace the global limits (a field left out is 0: no limit of that kind); the
        sweeper applies them at its next pass."""
        await store.set_retention_limits(decoded_body(bounded_body(await request.body(), MAX_BODY), RetentionLimits))
        return MsgspecResponse(await view())

    return router
