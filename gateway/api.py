"""The REST API under ``/api``: channels, events, clips and clip media.

The gateway relays; it does not compute. Every handler is a thin layer over ``Store``.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from typing import Any, Protocol

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import FileResponse, Response
from starlette.types import Message, Receive, Scope, Send

from gateway.auth import require, require_media
from gateway.errors import ApiError, bounded_body, decoded_body, error_body, invalid, not_found
from gateway.openapi import channel_create_schema
from records.captions import cues, srt, vtt
from records.clip_removal import remove_clips
from records.settings import Settings
from records.store import Store, StreamLimitReached, channel_view, iso
from records.url_policy import UnsafeUrl, UrlPolicy
from records.wire import CaptionCue, ChannelCreate, ClipTranscript
from records.redact import redact_url

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_URL = 2048
MAX_BODY = 64 * 1024
SOURCE_URL_KINDS = ("http", "rtsp", "rtmp")  # the URL kinds a channel may pull (records.url_policy.SCHEMES)


class StreamLimit(msgspec.Struct):
    limit: int  # most active channels allowed now
    why: str  # which setting sets it, for the error message


class ChannelControl(Protocol):
    async def channels_changed(self) -> None:  # pokes the supervisor to reconcile now
        ...

    async def stream_limit(self) -> StreamLimit | None:  # admission control; None: unlimited
        ...


class MsgspecResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


# -- channel validation ------------------------------------------------------------------

def validate_source_url(url: str, allow_private: bool) -> None:
    """Raise ``invalid_request`` unless ``url`` is one the stream actor may open, by the one
    URL policy (``records.url_policy``): static checks, then its host resolved (blocking:
    callers run this off the event loop). A name that does not resolve now is accepted:
    the source checks it again when it connects."""
    if len(url) > MAX_URL:
        raise invalid(f"url is longer than {MAX_URL} characters")
    try:
        UrlPolicy(allow_private=allow_private).check_resolved(url, SOURCE_URL_KINDS)
    except UnsafeUrl as exc:
        raise invalid(f"url: {exc}") from None
    except OSError:
        pass


def _validate_settings(raw: dict, kind: str | None, url: str | None, settings: Settings) -> dict:
    """The channel's settings, checked against its source plugin's options and the named
    assets (``--profiles-dir``, ``--models-dir``). Reads files: runs off the event loop."""
    try:
        from detectors.assets import AssetDirs
        from stream_actor.settings import validate_channel_settings
    except ModuleNotFoundError as exc:
        if exc.name not in ("stream_actor", "stream_actor.settings", "detectors", "detectors.assets"):
            raise
        # No validator in this installation: accept only the defaults rather than storing
        # settings nothing has checked.
        if raw:
            raise invalid("channel settings cannot be validated by this installation; omit them") from None
        return {}
    dirs = AssetDirs(profiles_dir=settings.profiles_dir, models_dir=settings.models_dir)
    try:
        return validate_channel_settings(raw, kind, url, dirs)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise invalid(f"settings: {exc}") from None


def parse_channel_create(body: bytes, settings: Settings) -> tuple[ChannelCreate, dict]:
    """The new channel and its settings, or ``invalid_request``. Blocking (it may read a named
    HUD profile): the route calls it in a worker thread."""
    create = decoded_body(body, ChannelCreate)
    name = create.name.strip()
    if not name:
        raise invalid("name must not be empty")
    if len(name) > MAX_NAME:
        raise invalid(f"name is longer than {MAX_NAME} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise invalid("name contains control characters")
    if create.source == "rtmp":
        if create.url is not None:
            raise invalid("url is not allowed for rtmp sources: they push to the ingest URL instead")
    else:
        if create.url is None:
            raise invalid("url is required for url sources")
        validate_source_url(create.url, settings.allow_private_urls)
    channel_settings = _validate_settings(create.settings, create.source, create.url, settings)
    return msgspec.structs.replace(create, name=name), channel_settings


# -- media -------------------------------------------------------------------------------

class MediaResponse(FileResponse):
    """A ``FileResponse`` (which does Range requests itself) whose 400/416 answers are JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced: dict[str, Any] = {}

        async def send_json_errors(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                status = message["status"]
                code, text = (
                    ("range_not_satisfiable", "requested range is outside the file")
                    if status == 416
                    else ("invalid_request", "malformed Range header")
                )
                body = msgspec.json.encode(error_body(code, text))
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() == b"content-range"]
                headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                replaced["body"] = body
                await send({"type": "http.response.start", "status": status, "headers": headers})
                return
            if replaced and message["type"] == "http.response.body":
                if "body" in replaced:
                    await send({"type": "http.response.body", "body": replaced.pop("body")})
                return
            await send(message)

        await super().__call__(scope, receive, send_json_errors)


def media_file(path: str, media_type: str, what: str, clip_id: str) -> Response:
    """A stored media file (Range supported), or 404 naming what is missing."""
    try:
        st = os.stat(path)
    except OSError:
        raise not_found(f"the {what} file of clip {clip_id} is missing") from None
    if not os.path.isfile(path):
        raise not_found(f"the {what} file of clip {clip_id} is missing")
    return MediaResponse(
        path, media_type=media_type, stat_result=st, headers={"Cache-Control": "private, max-age=3600"}
    )


def _search_cursor(value: str) -> tuple[float, str]:
    """A search page's cursor: ``<rank>:<last clip id>``."""
    rank, _, clip_id = value.partition(":")
    try:
        return float(rank), clip_id
    except ValueError:
        raise invalid("before: not a cursor this search gave") from None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _event(row: dict) -> dict:
    return {
        "id": row["id"],
        "channel_id": row["channel_id"],
        "kind": row["kind"],
        "stream_time": row["stream_time"],
        "score": row["score"],
        "signals": row["signals"],
        "detail": row["detail"],
        "clip_id": row["clip_id"],
        "created_at": iso(row["created_at"]),
    }


# -- routes ------------------------------------------------------------------------------

def build_router(settings: Settings, store: Store, control: ChannelControl) -> APIRouter:
    router = APIRouter(prefix="/api")
    read = [Depends(require("read"))]
    ingest = [Depends(require("ingest"))]  # channels and their stream keys
    media_auth = [Depends(require_media())]  # a signed URL, or a key with read scope

    def shown_clip(request: Request, clip) -> dict:
        """A clip's notification with its media URLs signed for this reader."""
        return request.app.state.signer.signed_clip(clip)

    async def poke() -> None:
        try:
            await control.channels_changed()
        except Exception:  # the supervisor also reconciles periodically; the change is stored
            log.warning("channels_changed failed; the supervisor will catch up on its next pass", exc_info=True)

    def limit_exceeded(limit: StreamLimit) -> ApiError:
        return ApiError(409, "limit_exceeded", f"stream limit reached: {limit.limit} active channels ({limit.why})")

    def view(row: dict, *, reveal_url: bool = False, reveal_stream_key: bool = False) -> dict:
        """A channel as shown; URL credentials appear only in the creator's own response, the
        stream key only there and in a rotation's."""
        shown = msgspec.to_builtins(channel_view(row, settings.rtmp_url, reveal_stream_key=reveal_stream_key))
        if shown["url"] and not reveal_url:
            shown["url"] = redact_url(shown["url"])
        return shown

    @router.post(
        "/channels",
        status_code=201,
        dependencies=ingest,
        response_class=MsgspecResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": channel_create_schema()}},
            }
        },
    )
    async def create_channel(request: Request) -> Response:
        body = bounded_body(await request.body(), MAX_BODY)
        create, channel_settings = await asyncio.to_thread(parse_channel_create, body, settings)
        limit = await control.stream_limit()
        row = await store.create_channel_within(create, channel_settings, limit.limit if limit else None)
        if row is None:  # refused before any actor exists: nothing half-started
            raise limit_exceeded(limit)
        await poke()
        return MsgspecResponse(view(row, reveal_url=True, reveal_stream_key=True), status_code=201)

    @router.get("/channels", dependencies=read, response_class=MsgspecResponse)
    async def list_channels() -> Response:
        return MsgspecResponse({"items": [view(r) for r in await store.list_channels()]})

    @router.get("/channels/{channel_id}", dependencies=read, response_class=MsgspecResponse)
    async def get_channel(channel_id: str) -> Response:
        row = await store.get_channel(channel_id)
        if row is None:
            raise not_found(f"no channel {channel_id!r}")
        return MsgspecResponse(view(row))

    @router.delete("/channels/{channel_id}", status_code=204, dependencies=ingest)
    async def delete_channel(channel_id: str) -> Response:
        if not await store.delete_channel(channel_id):
            raise not_found(f"no channel {channel_id!r}")
        await poke()
        return Response(status_code=204)

    @router.post("/channels/{channel_id}/stream-key/rotate", dependencies=ingest, response_class=MsgspecResponse)
    async def rotate_stream_key(channel_id: str) -> Response:
        """A new stream key for an RTMP/WHIP channel; the old one stops opening new publishes
        at once (a publish already running goes on until it ends)."""
        row = await store.get_channel(channel_id)
        if row is None:
            raise not_found(f"no channel {channel_id!r}")
        if row["source"] != "rtmp":
            raise ApiError(409, "conflict", f"channel {channel_id!r} pulls from a URL and has no stream key")
        row = await store.rotate_stream_key(channel_id)
        if row is None:
            raise not_found(f"no channel {channel_id!r}")
        return MsgspecResponse(view(row, reveal_stream_key=True))

    @router.post("/channels/{channel_id}/pause", dependencies=ingest, response_class=MsgspecResponse)
    async def pause_channel(channel_id: str) -> Response:
        """Stop the channel's stream actor (its clip in progress is finished; its ring buffer,
        settings and stream key stay) and refuse publishes until it is resumed; status
        ``paused``. A paused channel does not count against the stream limit. Idempotent."""
        row = await store.pause_channel(channel_id)
        if row is None:
            raise not_found(f"no channel {channel_id!r}")
        await poke()
        return MsgspecResponse(view(row))

    @router.post("/channels/{channel_id}/resume", dependencies=ingest, response_class=MsgspecResponse)
    async def resume_channel(channel_id: str) -> Response:
        """Start a paused channel's stream actor again; status ``waiting`` until it reports.
        Refused with ``limit_exceeded`` while the stream limit is reached. Idempotent."""
        limit = await control.stream_limit()
        try:
            row = await store.resume_channel(channel_id, limit.limit if limit else None)
        except StreamLimitReached:
            raise limit_exceeded(limit) from None
        if row is None:
            raise not_found(f"no channel {channel_id!r}")
        await poke()
        return MsgspecResponse(view(row))

    @router.get("/channels/{channel_id}/events", dependencies=read, response_class=MsgspecResponse)
    async def channel_events(channel_id: str, limit: int = Query(100, ge=1, le=1000)) -> Response:
        if await store.get_channel(channel_id) is None:
            raise not_found(f"no channel {channel_id!r}")
        return MsgspecResponse({"items": [_event(r) for r in await store.events(channel_id, limit)]})

    @router.get("/clips", dependencies=read, response_class=MsgspecResponse)
    async def list_clips(
        request: Request,
        channel_id: str | None = Query(None, max_length=100),
        vod_id: str | None = Query(None, max_length=100),
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = Query(50, ge=1, le=200),
        before: str | None = Query(None, min_length=1, max_length=100),
        q: str | None = Query(None, min_length=1, max_length=200, description="search the transcripts"),
    ) -> Response:
        """Newest first; with ``q``, the clips whose transcript matches, best match first
        (web-search syntax: words, "a phrase", -word, or). ``next`` is the cursor for
        ``before``."""
        filters = {"channel_id": channel_id, "vod_id": vod_id, "since": _utc(since), "until": _utc(until)}
        if q is None:
            clips = await store.list_clips(**filters, before=before, limit=limit + 1)
            page = clips[:limit]
            next_cursor = page[-1].id if len(clips) > limit else None
        else:
            after = _search_cursor(before) if before is not None else None
            ranked = await store.search_clips(q, **filters, after=after, limit=limit + 1)
            page = [clip for clip, _ in ranked[:limit]]
            next_cursor = f"{ranked[limit - 1][1]!r}:{page[-1].id}" if len(ranked) > limit else None
        return MsgspecResponse({"items": [shown_clip(request, c) for c in page], "next": next_cursor})

    async def clip_or_404(clip_id: str):
        clip = await store.get_clip(clip_id)
        if clip is None:
            raise not_found(f"no clip {clip_id!r}")
        return clip

    @router.get("/clips/{clip_id}", dependencies=read, response_class=MsgspecResponse)
    async def get_clip(clip_id: str, request: Request) -> Response:
        return MsgspecResponse(shown_clip(request, await clip_or_404(clip_id)))

    @router.delete("/clips/{clip_id}", status_code=204, dependencies=[Depends(require("admin"))])
    async def delete_clip(clip_id: str) -> Response:
        """The row (with a record of the deletion) first, then the video and thumbnail files."""
        if not await remove_clips(store, {clip_id: "deleted through the API"}):
            raise not_found(f"no clip {clip_id!r}")
        return Response(status_code=204)

    async def clip_video(clip_id: str) -> Response:
        clip = await clip_or_404(clip_id)
        return media_file(clip.video_path, "video/mp4", "video", clip_id)

    async def clip_thumbnail(clip_id: str) -> Response:
        clip = await clip_or_404(clip_id)
        return media_file(clip.thumbnail_path, "image/jpeg", "thumbnail", clip_id)

    async def clip_transcript(clip_id: str, form: str) -> Response:
        clip = await clip_or_404(clip_id)
        cue_list = cues(clip.words)
        if form == "vtt":
            return Response(vtt(cue_list), media_type="text/vtt; charset=utf-8")
        if form == "srt":
            return Response(srt(cue_list), media_type="application/x-subrip; charset=utf-8")
        return MsgspecResponse(ClipTranscript(
            clip.id, clip.transcript, clip.words, [CaptionCue(c.start, c.end, c.text) for c in cue_list]
        ))  # fmt: skip

    def transcript_route(form: str):
        async def route(clip_id: str) -> Response:
            return await clip_transcript(clip_id, form)

        route.__name__ = f"clip_transcript_{form}"
        return route

    media = [
        ("/clips/{clip_id}/video", clip_video),
        ("/clips/{clip_id}/thumbnail", clip_thumbnail),
        *((f"/clips/{{clip_id}}/transcript.{form}", transcript_route(form)) for form in ("json", "srt", "vtt")),
    ]
    for path, endpoint in media:
        router.add_api_route(path, endpoint, methods=["GET"], dependencies=media_auth)
        router.add_api_route(path, endpoint, methods=["HEAD"], dependencies=media_auth, include_in_schema=False)

    return router
