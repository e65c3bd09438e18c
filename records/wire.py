"""The one wire schema (msgspec) for signals, events, clips and notifications.

Everything here is plain data: no I/O. Detectors, actors, the store and the gateway
all speak these types, so a clip looks the same in Postgres, Redis and Socket.IO.
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class Signal(msgspec.Struct, frozen=True):
    """One detector observation at a point of stream time."""

    name: str  # "loudness", "keyword", "scene", ...
    t: float  # seconds of stream time
    value: float  # strength; 1.0 means "clearly fired" for that detector
    detail: str = ""  # e.g. the keyword heard


class Word(msgspec.Struct, frozen=True):
    """A recognised word with stream-time bounds."""

    start: float
    end: float
    text: str
    probability: float = 1.0


class MomentEvent(msgspec.Struct, frozen=True):
    """Fusion output: the score crossed the threshold at stream time ``t``."""

    t: float  # the strongest signal's time
    score: float  # probability (0..1) that a person would clip this moment (detectors.fusion)
    signals: dict[str, float]  # contribution of each signal name to the score's logit (context < 0)
    start: float | None = None  # the span of the moment's signals (None: just ``t``)
    end: float | None = None
    seq: int = 0  # fusion re-emits a growing moment with the same seq
    triggers: list[Signal] = []  # the strongest signal of each name, with its detail

    def span(self) -> tuple[float, float]:
        return (self.t if self.start is None else self.start, self.t if self.end is None else self.end)


class ClipNotification(msgspec.Struct, frozen=True):
    """What subscribers receive as the Socket.IO ``clip`` event (the public contract).

    A live clip has ``channel_id`` and no ``vod_id``; a VOD job's clip the other way round."""

    id: str
    channel_id: str | None
    stream_start: float
    stream_end: float
    score: float  # probability (0..1) that a person would clip this moment
    signals: dict[str, float]  # each signal's contribution to the score's logit
    transcript: str
    video_url: str
    thumbnail_url: str
    created_at: str  # ISO 8601, UTC
    triggers: list[Signal] = []  # the signals that fired (strongest per name), with their detail
    vod_id: str | None = None
    captions_url: str = ""  # WebVTT of the transcript, timed to the clip (empty: no words)


class CaptionCue(msgspec.Struct, frozen=True):
    start: float  # seconds from the clip's first frame
    end: float
    text: str  # lines separated by "\n"


class ClipTranscript(msgspec.Struct, frozen=True):
    """``GET /api/clips/{id}/transcript.json``."""

    clip_id: str
    text: str
    words: list[Word]  # timed from the clip's first frame
    cues: list[CaptionCue]  # as in the .srt and .vtt


# degraded: disk low; paused: through the API, no actor until resumed (010_channel_pause.sql)
ChannelStatus = Literal["waiting", "live", "offline", "error", "degraded", "paused"]
SourceKind = Literal["rtmp", "url"]


class ChannelCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/channels``."""

    name: str
    source: SourceKind
    url: str | None = None
    settings: dict = {}


class Health(msgspec.Struct):
    """What a stream actor reports about itself every few seconds."""

    seconds_buffered: float = 0.0
    ingest_lag: float = 0.0  # wall-clock seconds the ring buffer is behind the source
    detector_lag: float = 0.0  # stream seconds the detectors are behind the ring buffer
    stream_time: float = 0.0  # newest stream time buffered
    clips: int = 0
    events: int = 0
    cpu_seconds: float = 0.0  # process CPU seconds since the actor started
    rss_bytes: int = 0
    pid: int = 0  # the actor's process, for operators (and fault tests)
    asr_shed_seconds: float = 0.0  # audio dropped, oldest first, while ASR was too slow to keep up
    commits_pending: int = 0  # clips cut and journaled, waiting for Postgres
    # the node's shared ASR server, as this stream sees it (zeros when the actor runs its own model)
    asr_call_seconds: float = 0.0  # the last whisper call: the server's queue plus its batch
    asr_server_queue: int = 0  # calls queued at the server, all streams, at the last answer
    asr_calls_shed: int = 0  # calls the overloaded server answered undecoded
    asr_calls_failed: int = 0  # calls given up on while the server was down


class Ingest(msgspec.Struct, omit_defaults=True):
    rtmp_url: str
    stream_key: str | None = None  # shown on create and on rotation only


class ChannelView(msgspec.Struct):
    """A channel as the API shows it."""

    id: str
    name: str
    source: SourceKind
    url: str | None
    status: ChannelStatus
    status_reason: str
    settings: dict
    health: Health | None
    health_at: str | None
    created_at: str
    ingest: Ingest | None = None
    paused: bool = False  # POST /api/channels/{id}/pause until /resume: no actor, no publish


class ClipRecord(msgspec.Struct):
    """A stored clip: the Postgres row, as a struct."""

    id: str
    channel_id: str | None
    stream_start: float
    stream_end: float
    score: float
    signals: dict[str, float]
    transcript: str
    video_path: str
    thumbnail_path: str
    duration: float
    created_at: str
    triggers: list[Signal] = []
    vod_id: str | None = None
    moment_seq: int | None = None  # VOD clips: the fused moment's seq, unique per job (idempotent commit)
    commit_key: str | None = None  # live clips: unique per channel (idempotent commit), names the files
    words: list[Word] = []  # the transcript's words, timed from the clip's first frame

    def notification(self, base_url: str = "") -> ClipNotification:
        return ClipNotification(
            id=self.id,
            channel_id=self.channel_id,
            stream_start=self.stream_start,
            stream_end=self.stream_end,
            score=self.score,
            signals=self.signals,
            transcript=self.transcript,
            video_url=f"{base_url}/api/clips/{self.id}/video",
            thumbnail_url=f"{base_url}/api/clips/{self.id}/thumbnail",
            created_at=self.created_at,
            triggers=self.triggers,
            vod_id=self.vod_id,
            captions_url=f"{base_url}/api/clips/{self.id}/transcript.vtt" if self.words else "",
        )


def clip_id_from_seq(seq: int) -> str:
    """A clip's id from the number Postgres gave its commit (``records.store.Store.commit_clip``):
    14 hex digits, so text order is number order (feed resume and list cursors compare ids as
    text), then 8 random ones, unique across channels that got the same number."""
    import secrets

    return f"{seq:014x}{secrets.token_hex(4)}"


def new_commit_key() -> str:
    """A clip's name before it has an id: its files are named by it and its commit is keyed by
    it (a replayed commit finds the first one). Random: it orders nothing."""
    import secrets

    return secrets.token_hex(10)




def clip_stream_key(channel_id: str) -> str:
    """The Redis stream that carries a channel's clip notifications."""
    return f"livecut:clips:{channel_id}"


def vod_stream_key(vod_id: str) -> str:
    """The Redis stream that carries a VOD job's ``clip`` and ``vod`` notifications."""
    return f"livecut:vod:{vod_id}"


# -- VOD jobs ------------------------------------------------------------------------------

VodStatus = Literal["queued", "running", "done", "failed", "cancelled"]
VOD_FINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class VodItem(msgspec.Struct, forbid_unknown_fields=True):
    """One recording of ``POST /api/vods``: a URL or a finished upload, never both."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    upload_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    settings: dict = {}  # channel settings (stream_actor.settings), validated as for channels


class VodBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/vods``: all of it queued, or nothing."""

    items: Annotated[list[VodItem], msgspec.Meta(min_length=1, max_length=100)]


class VodError(msgspec.Struct):
    code: str  # "unreachable", "not_media", "unsupported", "internal", ...
    message: str


class VodJob(msgspec.Struct):
    """A VOD job as the API and the ``vod`` Socket.IO event show it."""

    id: str
    name: str
    status: VodStatus
    progress: float  # 0..1: shards analysed and clips cut
    duration: float | None  # seconds of the recording, once probed
    clips: int
    error: VodError | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    source: str  # the URL (credentials redacted) or "upload:<id>"
    cut_mode: str | None = None  # "copy" (MP4 stream copy), "remux" (stream copy into MP4), "reencode"
    settings: dict = {}
    cpu: dict[str, float] | None = None  # when done: CPU seconds per stage (decode, asr, detectors, cut)


# -- clip exports --------------------------------------------------------------------------

ExportStatus = Literal["queued", "running", "done", "failed"]


class ExportOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /api/clips/{id}/exports``; every field has a default."""

    aspect: Literal["9:16", "1:1", "16:9"] = "9:16"
    reframe: Literal["speaker", "center", "none"] = "speaker"  # none: the whole picture, letterboxed
    captions: Literal["none", "burned", "karaoke"] = "burned"
    max_height: Annotated[int, msgspec.Meta(ge=240, le=2160)] = 1080  # output pixels, never above the source's


class ExportView(msgspec.Struct):
    """An export as the API and the ``export`` Socket.IO event show it."""

    id: str
    clip_id: str
    status: ExportStatus
    progress: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]  # of the render, 0..1: 1 once done, 0 while queued
    options: ExportOptions
    download_url: str | None  # once done (signed when handed out)
    error: str | None  # once failed
    channel_id: str | None  # the clip's channel or VOD job, whose subscribers get the event
    vod_id: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    width: int | None = None  # once done
    height: int | None = None
    duration: float | None = None  # seconds
    cpu: float | None = None  # CPU seconds the render took
