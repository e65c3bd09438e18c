"""WHIP ingest (RFC 9725): WebRTC publishers (OBS 30+, FFmpeg 8+, browsers) feeding the same
FLV pipeline as RTMP.

- ``endpoint``: the HTTP resource (``WhipIngest``: routes, admission, the sessions it holds);
- ``session``: one publisher's peer connection, media pipeline and sink, and how it ends;
- ``sdp``: which offers can be answered, and the answer's candidate order;
- ``ffmpeg_compat``: the workarounds FFmpeg's WHIP muxer needs (aiortc internals, checked at start);
- ``media``: ``MediaPipeline`` re-encodes received tracks into FLV for a ``PublishSink``;
- ``options``: ``WhipOptions``.
"""
from .endpoint import OpenChannelSink, WhipIngest, WhipRefused
from .options import WhipOptions

__all__ = ["OpenChannelSink", "WhipIngest", "WhipOptions", "WhipRefused"]
