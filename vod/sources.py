"""Where a VOD job's recording is read from: an upload, a media URL, an HLS VOD playlist, or a
page (Twitch VOD, YouTube, Kick) that yt-dlp or streamlink resolves to one.

URLs go through the one URL policy (``records.url_policy``): the API checks each one when the
batch is submitted (``check_submitted_url``), and the job again before it opens the URL. Every
connection made for the job goes to an address the policy checked: yt-dlp's through the
guarded egress proxy (its ``proxy`` option), streamlink's through the mounted guarded adapter,
and FFmpeg's (probing, shards, cuts) through the egress proxy too (``vod.probe.input_options``
reads the policy from the ``Location`` that ``resolve`` returns, in whichever process opens it).
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from records.guarded_http import egress_proxy, guard_session
from records.url_policy import ALLOW_HINT, UnsafeUrl, UrlPolicy, is_local, network_url
from records.redact import redact_url
from vod.errors import VodFailure

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".ts", ".flv", ".m3u8", ".mp3", ".m4a", ".aac",
                  ".wav", ".ogg", ".opus", ".avi")
KINDS = ("http",)  # the URL kinds a recording may come from


class Location(str):
    """A recording's location (a path or URL) with the URL policy that guards opening it. A
    ``str``, so it goes wherever a location goes; it pickles with its policy (Ray tasks).
    A bare string is opened under the strict policy."""

    policy: UrlPolicy

    def __new__(cls, text: str, policy: UrlPolicy) -> Location:
        obj = super().__new__(cls, text)
        obj.policy = policy
        return obj

    def __reduce__(self):
        return (Location, (str(self), self.policy))


def policy_of(location: str) -> UrlPolicy:
    return getattr(location, "policy", None) or UrlPolicy()


def check_submitted_url(url: str, *, allow_private: bool) -> None:
    """The submit-time check: raises ``UnsafeUrl`` with a message for the 422. Names are
    resolved too (a name resolving to a private address is refused now); one that does not
    resolve now is left to the job."""
    policy = UrlPolicy(allow_private=allow_private)
    try:
        policy.check_resolved(url, KINDS)
    except UnsafeUrl:
        raise
    except OSError:
        pass


def resolve(url: str | None, upload_path: Path | None, *, allow_private: bool,
            policy: UrlPolicy | None = None) -> str:
    """The location FFmpeg opens for a job (a path or a guarded URL), or ``VodFailure``."""
    if upload_path is not None:
        return str(upload_path)
    assert url is not None
    policy = policy or UrlPolicy(allow_private=allow_private)
    _check_network(url, policy)
    if is_local(url):  # a local file: only with --allow-private-urls
        return url[len("file://"):] if url.lower().startswith("file://") else url
    target = network_url(url)  # hls://https://… → https://…
    if _is_page(target):
        location = _resolve_page(target, policy)
        _check_network(location, policy)
        if is_local(location):
            raise VodFailure("unsafe_url", f"the page resolved to a local file; {ALLOW_HINT}")
        return Location(location, policy)
    return Location(target, policy)


def _check_network(url: str, policy: UrlPolicy) -> None:
    try:
        policy.check_resolved(url, KINDS)
    except UnsafeUrl as exc:
        raise VodFailure("unsafe_url", str(exc)) from None
    except OSError as exc:
        raise VodFailure("unreachable", str(exc)) from None


def _is_page(url: str) -> bool:
    """A URL that names a page (not a media file) some extractor knows."""
    from urllib.parse import urlsplit

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

    try:  # matching only: following redirects here would be a request outside the guard
        return Streamlink().resolve_url(url, follow_redirect=False)
    except NoPluginError:
        return None


def _resolve_page(url: str, policy: UrlPolicy) -> str:
    """A page URL → a media URL: yt-dlp first (the field's tool for recordings), then streamlink."""
    ticket = f"vod-{secrets.token_hex(4)}"
    if _yt_dlp_extractor(url) is not None:
        import yt_dlp

        options = {
            "quiet": True, "no_warnings": True, "noplaylist": True, "skip_download": True,
            # a small rendition with audio: the detectors need neither 1080p nor a separate audio track
            "format": "worst[acodec!=none][vcodec!=none]/worst[acodec!=none]/worst",
        }
        if not policy.allow_private:  # every request yt-dlp makes goes through the guard
            options["proxy"] = egress_proxy(policy).url(ticket)
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=False)
        except yt_dlp.utils.DownloadError as exc:
            refused = None if policy.allow_private else egress_proxy(policy).refusal(ticket)
            if refused is not None:
                raise VodFailure("unsafe_url", refused) from None
            raise VodFailure("unreachable", f"yt-dlp could not resolve {redact_url(url)}: {exc}") from None
        location = (info or {}).get("url")
        if not location:
            raise VodFailure("unsupported", f"yt-dlp found no single media URL for {redact_url(url)}")
        return location
    from streamlink import Streamlink
    from streamlink.exceptions import StreamlinkError

    from stream_actor.sources.url import _uses_websockets

    session = Streamlink()
    refusals: list[UnsafeUrl] = []
    guard_session(session.http, policy, on_violation=refusals.append)
    if not policy.allow_private and _uses_websockets(session, url):
        raise VodFailure("unsafe_url", f"this site's streamlink plugin opens websockets, which the url guard "
                                       f"cannot check; {ALLOW_HINT}")
    try:
        streams = session.streams(url)
    except StreamlinkError as exc:
        if refusals:
            raise VodFailure("unsafe_url", str(refusals[0])) from None
        raise VodFailure("unreachable", f"streamlink could not resolve {redact_url(url)}: {exc}") from None
    stream = streams.get("worst") or next(iter(streams.values()), None)
    if stream is None or not hasattr(stream, "to_url"):
        raise VodFailure("unsupported", f"no recording found at {redact_url(url)}")
    return stream.to_url()
