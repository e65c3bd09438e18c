"""Source plugins and their registry.

``source_for(kind, url, options)`` returns the plugin instance for a channel:
``"rtmp"`` (RTMP push relayed by the edge as FLV over TCP: ``FlvPushSource``) or
``"url"`` (files, HTTP(S), HLS, streamlink-supported sites: ``UrlSource``). Importing
this package registers the built-in plugins.
"""
from .base import (
    AvSession,
    NoSource,
    Source,
    SourceSession,
    register,
    registry,
    source_for,
)
from .flv_push import FlvPushSource
from .rtsp import RtspSource  # noqa: F401  (registers the rtsp plugin)
from .url import UrlSource

__all__ = [
    "AvSession",
    "FlvPushSource",
    "NoSource",
    "Source",
    "SourceSession",
    "UrlSource",
    "register",
    "registry",
    "source_for",
]
