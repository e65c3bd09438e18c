"""WHIP ingest (RFC 9725): WebRTC publishers (OBS 30+, FFmpeg 8+, browsers) feeding the same
FLV pipeline as RTMP.  ``endpoint.WhipIngest`` is the HTTP resource and session manager;
``media.MediaPipeline`` re-encodes received tracks into FLV for a ``PublishSink``."""
from .endpoint import OpenChannelSink, WhipIngest, WhipOptions, WhipRefused

__all__ = ["OpenChannelSink", "WhipIngest", "WhipOptions", "WhipRefused"]
