"""The export routes under ``/api/clips/{clip_id}/exports``: queue an export, read it, list
a clip's exports, and download a finished one.

The gateway only stores the request (``records.export_store``) and nudges the scheduler
(``vod.export_jobs``), which renders it as a Ray task. A finished export's ``download_url``
is signed for the reader each time it is handed out, like a clip's media URLs, and opens
under the same media rule: a valid signature, or a key with ``read`` scope.
"""
from __future__ import annotations

from typing import Protocol

import msgspec
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.api import MsgspecResponse, media_file
from gateway.auth import require, require_media
from gateway.errors import bounded_body, decoded_body, not_found
from gateway.openapi import json_schema
from records.export_store import ExportStore, export_view
from records.store import Store
from records.wire import ExportOptions

__all__ = ["ExportControl", "build_export_router", "parse_export_options"]

MAX_BODY = 4096


class ExportControl(Protocol):
    def poke(self) -> None:  # an export was queued: the scheduler looks now
        ...


def parse_export_options(body: bytes) -> ExportOptions:
    """The request's options; an empty body takes every default."""
    return decoded_body(bounded_body(body, MAX_BODY), ExportOptions, empty=ExportOptions())


def build_export_router(store: Store, control: ExportControl) -> APIRouter:
    router = APIRouter(prefix="/api")
    exports = ExportStore(store.pool)
    read = [Depends(require("read"))]
    ingest = [Depends(require("ingest"))]  # an export costs CPU: as submitting a VOD does

    def shown(request: Request, row: dict) -> dict:
        view = msgspec.to_builtins(export_view(row))
        if view["download_url"]:
            view["download_url"] = request.app.state.signer.sign(view["download_url"])
        return view

    async def clip_or_404(clip_id: str) -> None:
        if await store.get_clip(clip_id) is None:
            raise not_found(f"no clip {clip_id!r}")

    @router.post(
        "/clips/{clip_id}/exports",
        status_code=202,
        dependencies=ingest,
        response_class=MsgspecResponse,
        openapi_extra={"requestBody": {
            "required": False,
            "content": {"application/json": {"schema": json_schema(ExportOptions, closed=True)}},
        }},
    )
    async def create_export(clip_id: str, request: Request) -> Response:
        """Queue a render of the clip: aspect, reframing, captions, height. 202: it runs later;
        GET the export (its ``progress`` goes 0 to 1 as it renders), or listen for the ``export``
        Socket.IO event (at each status and each tenth of progress), to see it done."""
        options = parse_export_options(await request.body())
        row = await exports.create(clip_id, options)
        if row is None:
            raise not_found(f"no clip {clip_id!r}")
        control.poke()
        return MsgspecResponse(shown(request, row), status_code=202)

    @router.get("/clips/{clip_id}/exports", dependencies=read, response_class=MsgspecResponse)
    async def list_exports(clip_id: str, request: Request) -> Response:
        """The clip's exports, newest first."""
        await clip_or_404(clip_id)
        return MsgspecResponse({"items": [shown(request, r) for r in await exports.list(clip_id)]})

    @router.get("/clips/{clip_id}/exports/{export_id}", dependencies=read, response_class=MsgspecResponse)
    async def get_export(clip_id: str, export_id: str, request: Request) -> Response:
        row = await exports.get(clip_id, export_id)
        if row is None:
            raise not_found(f"no export {export_id!r} of clip {clip_id!r}")
        return MsgspecResponse(shown(request, row))

    async def export_video(clip_id: str, export_id: str) -> Response:
        row = await exports.get(clip_id, export_id)
        if row is None or row["status"] != "done":
            raise not_found(f"no finished export {export_id!r} of clip {clip_id!r}")
        return media_file(row["path"], "video/mp4", "export", clip_id)

    path = "/clips/{clip_id}/exports/{export_id}/video"
    media_auth = [Depends(require_media())]
    router.add_api_route(path, export_video, methods=["GET"], dependencies=media_auth)
    router.add_api_route(path, export_video, methods=["HEAD"], dependencies=media_auth, include_in_schema=False)
    return router
