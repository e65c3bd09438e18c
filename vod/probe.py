"""Probing a recording before a job accepts it: is it media, how long, which codecs."""
from __future__ import annotations

import errno
import secrets

import av
import msgspec

from records.guarded_http import egress_proxy, ffmpeg_options
from records.url_policy import UnsafeUrl
from vod.errors import VodFailure
from vod.sources import policy_of

# FFmpeg options for network inputs: give up on a silent host (15 s) instead of hanging a worker,
# and ride out a connection dropped mid-read (not a refused one: that fails at once). A seek
# within 256 KiB reads ahead; a longer one is a new Range request. (FFmpeg's own threshold
# follows the TCP receive window, so whether a shard downloaded megabytes it skips over
# depended on timing.)
NETWORK_OPTIONS = {"rw_timeout": "15000000", "reconnect": "1", "reconnect_streamed": "1", "reconnect_delay_max": "10",
                   "short_seek_size": str(256 * 1024)}
MP4_VIDEO = {"h264", "hevc", "av1", "vp9", "mpeg4"}  # codecs the MP4 muxer takes by stream copy
MP4_AUDIO = {"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}
MP4_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2"}
# Demuxers FFmpeg picks for files that are not recordings: text shown as video (tty, bin), still
# images, subtitles, filter graphs and playlists of local files.
NOT_RECORDINGS = {
    "tty", "bin", "xbin", "adf", "idf", "image2", "lavfi", "concat", "ffmetadata", "data", "srt", "ass",
    "webvtt", "subviewer", "subviewer1", "microdvd", "mpl2", "jacosub", "sami", "realtext", "pjs",
    "vplayer", "stl", "lrc", "mpsub", "aqtitle", "scc", "gif", "apng", "webp_pipe",
}


class MediaInfo(msgspec.Struct, frozen=True):
    duration: float  # seconds
    origin: float  # the recording's first timestamp (stream time 0 is there)
    format: str
    video: str | None  # codec names
    audio: str | None
    cut_mode: str  # "copy": MP4 in, stream copy; "remux": stream copy into MP4; "reencode"


def input_options(location: str, ticket: str = "livecut") -> dict[str, str]:
    """FFmpeg's options for ``location``; for a URL, its connections go through the URL
    policy's egress proxy (the policy of a ``vod.sources.Location``, else the strict one)."""
    if "://" not in location or location.startswith("file:"):
        return {}
    try:
        guarded = ffmpeg_options(str(location), policy_of(location), ticket)
    except UnsafeUrl as exc:
        raise VodFailure("unsafe_url", str(exc)) from None
    return {**NETWORK_OPTIONS, **guarded}


def probe(location: str) -> MediaInfo:
    """Open ``location`` and describe it; ``VodFailure`` says why it cannot be a job's input."""
    ticket = f"probe-{secrets.token_hex(4)}"
    try:
        return _probe(location, ticket)
    except VodFailure as failure:
        policy = policy_of(location)
        refused = None if policy.allow_private or "://" not in location else egress_proxy(policy).refusal(ticket)
        if refused is not None and failure.code != "unsafe_url":  # the guard refused a redirect
            raise VodFailure("unsafe_url", refused) from None
        raise


def _probe(location: str, ticket: str) -> MediaInfo:
    try:
        container = av.open(location, options=input_options(location, ticket))
    except av.error.HTTPNotFoundError as exc:
        raise VodFailure("not_found", f"the server answered 404: {exc.strerror}") from None
    except (av.error.HTTPError, av.error.HTTPClientError, av.error.HTTPServerError) as exc:
        raise VodFailure("unreachable", f"the server answered with an error: {exc}") from None
    except (av.error.InvalidDataError, av.error.DecoderNotFoundError, av.error.DemuxerNotFoundError) as exc:
        raise VodFailure("not_media", f"not a recording FFmpeg can read ({exc.strerror})") from None
    except av.error.FileNotFoundError:
        raise VodFailure("not_found", "the file is gone") from None
    except (av.error.FFmpegError, OSError) as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EIO) or \
                isinstance(exc, (av.error.ExitError, TimeoutError, ConnectionError)):
            raise VodFailure("unreachable", f"cannot reach the recording: {exc}") from None
        raise VodFailure("unreachable", f"cannot open the recording: {exc}") from None
    with container:
        try:
            return _describe(container)
        except av.error.FFmpegError as exc:  # opened, but reading it fails: random bytes, a torn file
            raise VodFailure("not_media", f"not a recording FFmpeg can read ({exc.strerror})") from None


def _describe(container) -> MediaInfo:
    video = container.streams.video[0].codec_context.name if container.streams.video else None
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    if video is None and audio is None:
        raise VodFailure("not_media", "the file has neither audio nor video")
    duration = container.duration / av.time_base if container.duration else None
    if not duration or duration <= 0:
        duration = _duration_by_reading(container)
    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    fmt = container.format.name
    if fmt in NOT_RECORDINGS or fmt.endswith("_pipe"):
        raise VodFailure("not_media", f"not a recording (FFmpeg reads it as {container.format.long_name or fmt})")
    if not duration or duration <= 0.5:
        raise VodFailure("not_media", "the recording has no duration (a live stream, or empty)")
    copyable = (video is None or video in MP4_VIDEO) and (audio is None or audio in MP4_AUDIO)
    mode = ("copy" if fmt in MP4_CONTAINERS else "remux") if copyable else "reencode"
    return MediaInfo(duration=round(duration, 3), origin=origin, format=fmt, video=video, audio=audio, cut_mode=mode)


def _duration_by_reading(container) -> float | None:
    """Some inputs (raw streams, certain TS files) state no duration: read the timestamps."""
    last = None
    first = None
    for packet in container.demux():
        if packet.pts is None:
            continue
        t = float(packet.pts * packet.time_base)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
    return (last - first) if last is not None and first is not None else None
