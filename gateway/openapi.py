"""The OpenAPI document: what every route takes and answers, with links between them.

FastAPI documents the parameters it parses itself; our handlers decode bodies with msgspec
and answer with msgspec-encoded structs, so the bodies, the answers and the error shape are
described here, from the same msgspec types the handlers use. Client generators read this,
and the fuzzer (tests/test_api_fuzz.py) generates requests from it and checks every answer
against it.

One table, ``OPERATIONS``, keyed by (method, path): its operation id, what it answers on
success, and links from its answer to the operations that take the id it returns.
"""
from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from fastapi import FastAPI

from records.key_store import ApiKey, NewApiKey
from records.wire import ChannelView, ClipNotification, ClipTranscript, ExportView, VodJob

T = TypeVar("T")


class ErrorDetail(msgspec.Struct):
    code: str  # machine-readable: "invalid_request", "not_found", "forbidden", ...
    message: str  # for people; names the offending field where there is one


class ErrorBody(msgspec.Struct):
    """Every failure, of every route: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next: str | None = None  # pass as ``before`` for the next page; null on the last one


class Items(msgspec.Struct, Generic[T]):
    items: list[T]


class EventView(msgspec.Struct):
    id: int
    channel_id: str
    kind: str  # "moment", "clip_lost", "disk_low", ...
    stream_time: float
    score: float
    signals: dict[str, Any]
    detail: str
    clip_id: str | None
    created_at: str


def json_schema(type_: Any, *, closed: bool = False) -> dict:
    """A msgspec type's JSON schema with every ``$ref`` inlined (OpenAPI cannot point into
    msgspec's ``$defs``). ``closed``: objects take no other keys (request bodies, whose
    structs forbid unknown fields)."""
    schema = msgspec.json.schema(type_)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            out = {k: inline(v) for k, v in node.items()}
            if closed and out.get("type") == "object" and "properties" in out:
                out.setdefault("additionalProperties", False)
            return out
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def _settings_schema(kind: str | None) -> dict:
    """Channel settings as a JSON schema; ``source`` takes the options of the plugins of
    ``kind`` (None: a VOD job, which takes none)."""
    import stream_actor.sources  # noqa: F401 (registers the plugins)
    from detectors.genres import PROFILES
    from stream_actor.settings import ChannelSettings
    from stream_actor.sources.base import OPERATOR_OPTIONS, registry

    settings = json_schema(ChannelSettings, closed=True)
    settings["properties"]["profile"] = {"enum": sorted(PROFILES), "default": settings["properties"]["profile"].get("default")}
    options = []
    for plugin in registry():
        if plugin.kind == kind:
            schema = json_schema(plugin.options_type, closed=True)
            for name in OPERATOR_OPTIONS:
                schema.get("properties", {}).pop(name, None)
            options.append(schema)
    if not options:
        settings["properties"]["source"] = {"type": "object", "maxProperties": 0}
    else:
        settings["properties"]["source"] = options[0] if len(options) == 1 else {"anyOf": options}
    return settings


_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
NAME = {"type": "string", "minLength": 1, "maxLength": 200,
        "pattern": f"^{_PRINTABLE}*[^\\s\\x00-\\x1f\\x7f-\\x9f]{_PRINTABLE}*$"}


def _url(schemes: str, description: str) -> dict:
    """A URL of one of ``schemes`` (a regex alternation): an ASCII host name, a port, a path
    of printable ASCII (IDN hosts and escapes are accepted too, but this is what is described)."""
    pattern = rf"^({schemes})://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:[0-9]{{1,5}})?(/[!-~]*)?$"
    return {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": pattern, "description": description}


def channel_create_schema() -> dict:
    """``POST /api/channels``: an RTMP/WHIP channel, or a URL channel with its URL; either
    way its settings, whose ``source`` takes the options of the plugins of that kind."""
    url = _url("https?|hls|rtsps?",
               "HTTP(S) media or HLS, a page streamlink knows (Twitch, YouTube, Kick...), or an RTSP camera")
    return {"oneOf": [
        {"title": "PushChannel", "type": "object", "additionalProperties": False, "required": ["name", "source"],
         "properties": {"name": NAME, "source": {"const": "rtmp"}, "settings": _settings_schema("rtmp")}},
        {"title": "UrlChannel", "type": "object", "additionalProperties": False, "required": ["name", "source", "url"],
         "properties": {"name": NAME, "source": {"const": "url"}, "url": url, "settings": _settings_schema("url")}},
    ]}


def vod_submit_schema() -> dict:
    """``POST /api/vods``: a batch of items, or one bare item; an item is a URL or a finished
    upload, with the settings of a channel (no source options)."""
    url = _url("https?|hls", "HTTP(S) media, an HLS VOD playlist, or a page yt-dlp or streamlink knows")
    upload = {"type": "string", "minLength": 1, "maxLength": 64, "description": "the id of a finished tus upload"}
    settings = _settings_schema(None)
    item = {"oneOf": [
        {"title": "UrlItem", "type": "object", "additionalProperties": False, "required": ["url"],
         "properties": {"url": url, "name": NAME, "settings": settings}},
        {"title": "UploadItem", "type": "object", "additionalProperties": False, "required": ["upload_id"],
         "properties": {"upload_id": upload, "name": NAME, "settings": settings}},
    ]}
    batch = {"title": "VodBatch", "type": "object", "additionalProperties": False, "required": ["items"],
             "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 100, "items": item}}}
    return {"anyOf": [batch, item]}


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: Any = None  # a msgspec type, or a tuple of them (any of); None: no body
    media: str | None = None  # a binary media type instead of JSON (video/mp4, image/jpeg)
    description: str = ""


class Operation(msgspec.Struct, frozen=True):
    id: str
    answers: tuple[Answer, ...] = ()
    # link name -> (operation id, {parameter: runtime expression})
    links: dict[str, tuple[str, dict[str, str]]] = {}


def _id_links(*ops: str, pointer: str = "/id", param: str) -> dict[str, tuple[str, dict[str, str]]]:
    return {op[0].upper() + op[1:]: (op, {param: f"$response.body#{pointer}"}) for op in ops}


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("post", "/api/channels"): Operation(
        "createChannel",
        (Answer(201, ChannelView, description="the channel, with its ingest URL and stream key"),),
        {**_id_links("getChannel", "deleteChannel", "channelEvents", "rotateStreamKey", "pauseChannel", "resumeChannel",
                     param="channel_id"),
         "ListChannelClips": ("listClips", {"channel_id": "$response.body#/id"})},
    ),
    ("get", "/api/channels"): Operation(
        "listChannels", (Answer(200, Items[ChannelView]),),
        _id_links("getChannel", pointer="/items/0/id", param="channel_id"),
    ),
    ("get", "/api/channels/{channel_id}"): Operation("getChannel", (Answer(200, ChannelView),)),
    ("delete", "/api/channels/{channel_id}"): Operation("deleteChannel", (Answer(204, description="deleted"),)),
    ("get", "/api/channels/{channel_id}/events"): Operation("channelEvents", (Answer(200, Items[EventView]),)),
    ("post", "/api/channels/{channel_id}/stream-key/rotate"): Operation(
        "rotateStreamKey", (Answer(200, ChannelView, description="the channel with its new stream key"),)
    ),
    ("post", "/api/channels/{channel_id}/pause"): Operation(
        "pauseChannel", (Answer(200, ChannelView, description="the channel, paused"),),
        _id_links("resumeChannel", param="channel_id"),
    ),
    ("post", "/api/channels/{channel_id}/resume"): Operation(
        "resumeChannel", (Answer(200, ChannelView, description="the channel, resumed (status waiting)"),),
        _id_links("pauseChannel", param="channel_id"),
    ),
    ("get", "/api/clips"): Operation(
        "listClips", (Answer(200, Page[ClipNotification]),),
        _id_links("getClip", "clipVideo", "clipThumbnail", "deleteClip", pointer="/items/0/id", param="clip_id"),
    ),
    ("get", "/api/clips/{clip_id}"): Operation(
        "getClip", (Answer(200, ClipNotification),),
        _id_links("clipVideo", "clipThumbnail", "clipTranscript", "deleteClip", param="clip_id"),
    ),
    ("delete", "/api/clips/{clip_id}"): Operation("deleteClip", (Answer(204, description="deleted, files too"),)),
    ("get", "/api/clips/{clip_id}/video"): Operation(
        "clipVideo", (Answer(200, media="video/mp4"), Answer(206, media="video/mp4", description="a byte range"))
    ),
    ("get", "/api/clips/{clip_id}/thumbnail"): Operation("clipThumbnail", (Answer(200, media="image/jpeg"),)),
    ("get", "/api/clips/{clip_id}/transcript.json"): Operation("clipTranscript", (Answer(200, ClipTranscript),)),
    ("get", "/api/clips/{clip_id}/transcript.srt"): Operation(
        "clipCaptionsSrt", (Answer(200, media="application/x-subrip"),)
    ),
    ("get", "/api/clips/{clip_id}/transcript.vtt"): Operation("clipCaptionsVtt", (Answer(200, media="text/vtt"),)),
    ("post", "/api/clips/{clip_id}/exports"): Operation(
        "createExport", (Answer(202, ExportView, description="queued; rendered by a Ray task"),),
        {"GetExport": ("getExport", {"clip_id": "$response.body#/clip_id", "export_id": "$response.body#/id"})},
    ),
    ("get", "/api/clips/{clip_id}/exports"): Operation("listExports", (Answer(200, Items[ExportView]),)),
    ("get", "/api/clips/{clip_id}/exports/{export_id}"): Operation("getExport", (Answer(200, ExportView),)),
    ("get", "/api/clips/{clip_id}/exports/{export_id}/video"): Operation(
        "exportVideo", (Answer(200, media="video/mp4"), Answer(206, media="video/mp4", description="a byte range"))
    ),
    ("post", "/api/vods"): Operation(
        "submitVods",
        (Answer(201, (VodJob, Items[VodJob]), description="one job for one item, else {items: [...]} in order"),),
        {**_id_links("getVod", "cancelVod", param="vod_id"),
         "ListVodClips": ("listClips", {"vod_id": "$response.body#/id"})},
    ),
    ("get", "/api/vods"): Operation(
        "listVods", (Answer(200, Page[VodJob]),), _id_links("getVod", pointer="/items/0/id", param="vod_id")
    ),
    ("post", "/api/keys"): Operation(
        "createKey", (Answer(201, NewApiKey, description="the key; its secret is shown here only"),),
        _id_links("revokeKey", param="key_id"),
    ),
    ("get", "/api/keys"): Operation("listKeys", (Answer(200, Items[ApiKey]),)),
    ("delete", "/api/keys/{key_id}"): Operation("revokeKey", (Answer(200, ApiKey, description="the revoked key"),)),
    ("get", "/api/vods/{vod_id}"): Operation("getVod", (Answer(200, VodJob),)),
    ("delete", "/api/vods/{vod_id}"): Operation("cancelVod", (Answer(200, VodJob, description="the cancelled job"),)),
}

TRANSPORT_HEADERS = {"content-length", "transfer-encoding", "host"}
ERROR = {"description": "an error", "content": {"application/json": {"schema": json_schema(ErrorBody)}}}


def _responses(op: Operation, generated: dict) -> dict:
    responses: dict[str, Any] = {}
    for answer in op.answers:
        entry: dict[str, Any] = {"description": answer.description or "success"}
        if answer.media:
            entry["content"] = {answer.media: {"schema": {"type": "string", "format": "binary"}}}
        elif isinstance(answer.body, tuple):
            entry["content"] = {"application/json": {"schema": {"anyOf": [json_schema(t) for t in answer.body]}}}
        elif answer.body is not None:
            entry["content"] = {"application/json": {"schema": json_schema(answer.body)}}
        responses[str(answer.status)] = entry
    for code, entry in generated.items():  # anything the route declared that the table does not
        if code not in responses and not code.startswith(("4", "5")):
            responses[code] = entry
    responses["4XX"] = ERROR
    responses["5XX"] = ERROR
    return responses


def _links(op: Operation, by_id: set[str]) -> dict:
    return {
        name: {"operationId": target, "parameters": params}
        for name, (target, params) in op.links.items()
        if target in by_id
    }


def describe(spec: dict) -> dict:
    """Fill in ``spec`` (FastAPI's generated document) from ``OPERATIONS``; every other
    operation (tus uploads, WHIP, keys added later) keeps what it declared plus the error
    shape."""
    present = {
        (method, path): op for path, ops in spec.get("paths", {}).items() for method, op in ops.items()
    }
    by_id = {OPERATIONS[k].id for k in present if k in OPERATIONS}
    for key, generated in present.items():
        # Content-Length is the HTTP client's to set (tus routes declare it as a parameter).
        if params := generated.get("parameters"):
            generated["parameters"] = [p for p in params if p.get("name", "").lower() not in TRANSPORT_HEADERS]
        op = OPERATIONS.get(key)
        if op is None:
            generated["responses"] = {
                **{c: e for c, e in generated.get("responses", {}).items() if not c.startswith(("4", "5"))},
                "4XX": ERROR,
                "5XX": ERROR,
            }
            continue
        generated["operationId"] = op.id
        generated["responses"] = _responses(op, generated.get("responses", {}))
        if links := _links(op, by_id):
            first = str(op.answers[0].status)
            generated["responses"][first]["links"] = links
    return spec


def install(app: FastAPI) -> None:
    """Serve the described document at ``app.openapi_url`` (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = describe(generate())
        return app.openapi_schema

    app.openapi = openapi  # FastAPI's documented way to customise the schema
