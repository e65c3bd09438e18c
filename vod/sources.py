"""Where a VOD job's recording is read from: an upload, a media URL, an HLS VOD playlist, or a
page (Twitch VOD, YouTube, Kick) that yt-dlp or streamlink resolves to one.

URLs go through the live URL sources' policy (``stream_actor.sources.url_safety``): the
API checks each one when the batch is submitted, and the job again before it opens the
URL (names resolved then, and the URL a page resolves to checked too).
"""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from stream_actor.sources.url_safety import UnsafeUrl, check_host, check_url, network_url, redact_url
from vod.errors import VodFailure

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".ts", ".flv", ".m3u8", ".mp3", ".m4a", ".aac",
                  ".wav", ".ogg", ".opus", ".avi")


def check_submitted_url(url: str, *, allow_private: bool) -> None:
    """The submit-time check (no DNS): raises ``UnsafeUrl`` with a message for the 422."""
    check_url(url, allow_private=allow_private)


def resolve(url: str | None, upload_path: Path | None, *, allow_private: bool) -> str:
    """The location FFmpeg opens for a job (a path or a URL), or ``VodFailure``."""
    if upload_path is not None:
        return str(upload_path)
    assert url is not None
    _check_network(url, allow_private)
    if "://" not in url or url.lower().startswith("file:"):  # a local file: only with --allow-private-urls
        return url[len("file://"):] if url.lower().startswith("file://") else url
    target = network_url(url)  # hls://https://… → https://…
    if _is_page(target):
        location = _resolve_page(target)
        _check_network(location, allow_private)
        return location
    return target


def _check_network(url: str, allow_private: bool) -> None:
    try:
        check_url(url, allow_private=allow_private)
        parts = urlsplit(network_url(url))
        if "://" in url and parts.hostname and not allow_private:
            check_host(parts.hostname, parts.port, allow_private=False)
    except UnsafeUrl as exc:
        raise VodFailure("unsafe_url", str(exc)) from None
    except OSError as exc:
        raise VodFailure("unreachable", str(exc)) from None


def _is_page(url: str) -> bool:
    """A URL that names a page (not a media file) some extractor knows."""
    path = urlsplit(url).path.lower()
    if path.endswith(MEDIA_SUFFIXES):
        return False
    return _yt_dlp_extractor(url) is not None or _streamlink_plugin(url) is not None


def _yt_dlp_extractor(url: str):
    from yt_dlp.extractor import gen_extractor_classes

    return next((ie for ie in gen_extractor_classes() if ie.IE_NAME != "generic" and ie.suitable(url)), None)


def _streamlink_plugin(url: str):
    from streamlink import Streamlink
    from streamlink.exceptions import NoPluginError

    try:
        return Streamlink().resolve_url(url)
    except NoPluginError:
        return None


def _resolve_page(url: str) -> str:
    """A page URL → a media URL: yt-dlp first (the field's tool for recordings), then streamlink."""
    if _yt_dlp_extractor(url) is not None:
        import yt_dlp

        options = {
            "quiet": True, "no_warnings": True, "noplaylist": True, "skip_download": True,
            # a small rendition with audio: the detectors need neither 1080p nor a separate audio track
            "format": "worst[acodec!=none][vcodec!=none]/worst[acodec!=none]/worst",
        }
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=False)
        except yt_dlp.utils.DownloadError as exc:
            raise VodFailure("unreachable", f"yt-dlp could not resolve {redact_url(url)}: {exc}") from None
        location = (info or {}).get("url")
        if not location:
            raise VodFailure("unsupported", f"yt-dlp found no single media URL for {redact_url(url)}")
        return location
    from streamlink import Streamlink
    from streamlink.exceptions import StreamlinkError

    try:
        streams = Streamlink().streams(url)
    except StreamlinkError as exc:
        raise VodFailure("unreachable", f"streamlink could not resolve {redact_url(url)}: {exc}") from None
    stream = streams.get("worst") or next(iter(streams.values()), None)
    if stream is None or not hasattr(stream, "to_url"):
        raise VodFailure("unsupported", f"no recording found at {redact_url(url)}")
    return stream.to_url()
