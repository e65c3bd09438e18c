"""The VOD routes under ``/api/vods``: submit a batch, list, read and cancel jobs.

A batch is validated whole before anything is queued: one malformed item (wrong shape, an
unknown or unfinished upload, bad settings, a URL the policy refuses) answers 422 naming
its index, and no job is created. Problems only running can find (a host that does not
answer, a file that is not media) fail that job alone, later.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from urllib.parse import unquote, urlsplit

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from gateway.openapi import vod_submit_schema
from gateway.auth import require
from gateway.errors import bounded_body, invalid, not_found
from records.settings import Settings
from records.store import Store
from records.url_policy import UnsafeUrl
from records.vod_store import NewVod, VodStore, vod_view
from records.wire import VodBatch, VodItem, VodJob
from vod.sources import check_submitted_url

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_BODY = 1024 * 1024
STATUSES = ("queued", "running", "done", "failed", "cancelled")


class VodControl(Protocol):
    def poke(self) -> None:  # a batch was queued: the scheduler looks now
        ...

    async def cancel(self, vod_id: str) -> None:  # the job's row says cancelled: stop its tasks
        ...


class _Json(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return msgspec.json.encode(content)


def parse_batch(body: bytes, settings: Settings, uploads) -> tuple[list[NewVod], bool]:
    """The batch's jobs, and whether it came as one bare item (answered with one job)."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid(f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise invalid('the body must be a JSON object: {"items": [...]} or one item')
    single = "items" not in raw
    try:  # shape and bounds; a problem inside an item is reported at `$.items[i]`
        items = [msgspec.convert(raw, VodItem)] if single else msgspec.convert(raw, VodBatch).items
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    return [_item(i, item, settings, uploads, single) for i, item in enumerate(items)], single


def _item(index: int, item: VodItem, settings: Settings, uploads, single: bool) -> NewVod:
    where = "" if single else f"items[{index}]: "
    if (item.url is None) == (item.upload_id is None):
        raise invalid(f"{where}give exactly one of url and upload_id")
    name = (item.name or "").strip()
    if item.url is not None:
        try:
            check_submitted_url(item.url, allow_private=settings.allow_private_urls)
        except UnsafeUrl as exc:
            raise invalid(f"{where}url: {exc}") from None
        name = name or unquote(urlsplit(item.url).path.rstrip("/").rsplit("/", 1)[-1]) or item.url
    else:
        info = uploads.info(item.upload_id) if uploads is not None else None
        if info is None:
            raise invalid(f"{where}upload_id {item.upload_id[:100]!r} is not a known upload")
        if not info.complete:
            raise invalid(f"{where}upload {item.upload_id!r} is not finished ({info.offset} of {info.size} bytes)")
        name = name or info.filename or item.upload_id
    try:
        from detectors.assets import AssetDirs
        from stream_actor.settings import validate_channel_settings

        # a VOD job reads its recording through vod.sources, no source plugin: kind None
        validate_channel_settings(item.settings, None, None, AssetDirs(profiles_dir=settings.profiles_dir,
                                                                       models_dir=settings.models_dir))
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise invalid(f"{where}settings: {exc}") from None
    return NewVod(name=name[:MAX_NAME], url=item.url, upload_id=item.upload_id, settings=item.settings)


def build_vod_router(settings: Settings, store: Store, control: VodControl, uploads=None) -> APIRouter:
    router = APIRouter(prefix="/api")
    read = [Depends(require("read"))]
    ingest = [Depends(require("ingest"))]  # submitting and cancelling jobs
    vods = VodStore(store.pool)

    def shown(row: dict) -> dict:
        return msgspec.to_builtins(vod_view(row))

    @router.post(
        "/vods",
        status_code=201,
        dependencies=ingest,
        response_class=_Json,
        openapi_extra={
            "requestBody": {
                "required": True,
                # a batch, or one bare item (answered with one job)
                "content": {"application/json": {"schema": vod_submit_schema()}},
            }
        },
    )
    async def submit(request: Request) -> Response:
        body = bounded_body(await request.body(), MAX_BODY)
        jobs, single = await asyncio.to_thread(parse_batch, body, settings, uploads)  # reads files (profiles)
        rows = await vods.create_jobs(jobs)
        control.poke()
        if single:
            return _Json(shown(rows[0]), status_code=201)
        return _Json({"items": [shown(r) for r in rows]}, status_code=201)

    @router.get("/vods", dependencies=read, response_class=_Json)
    async def list_vods(
        status: str | None = Query(None, pattern="^(" + "|".join(STATUSES) + ")$"),
        limit: int = Query(50, ge=1, le=200),
        before: int | None = Query(None, ge=1),
    ) -> Response:
        rows = await vods.list(status=status, before=before, limit=limit + 1)
        page = rows[:limit]
        next_cursor = str(page[-1]["seq"]) if len(rows) > limit else None
        return _Json({"items": [shown(r) for r in page], "next": next_cursor})

    @router.get("/vods/{vod_id}", dependencies=read, response_class=_Json)
    async def get_vod(vod_id: str) -> Response:
        row = await vods.get(vod_id)
        if row is None:
            raise not_found(f"no VOD job {vod_id!r}")
        return _Json(shown(row))

    @router.delete("/vods/{vod_id}", dependencies=ingest, response_class=_Json)
    async def cancel_vod(vod_id: str) -> Response:
        """Cancel a queued or running job and stop its tasks; a finished job stays as it is."""
        row = await vods.cancel(vod_id)
        if row is None:
            raise not_found(f"no VOD job {vod_id!r}")
        if row["status"] == "cancelled":
            await control.cancel(vod_id)
        return _Json(shown(row))

    return router


__all__ = ["VodControl", "VodJob", "build_vod_router", "parse_batch"]
