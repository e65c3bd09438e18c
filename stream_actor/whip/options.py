"""Settings of the WHIP ingest (network, media, sessions, FFmpeg interop)."""
from __future__ import annotations

import ipaddress
from typing import Literal

import msgspec

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


class WhipOptions(msgspec.Struct, kw_only=True, frozen=True):
    """Settings of the WHIP ingest.  Every field has a working default."""

    # --- network
    public_ip: str | None = None
    """An address to advertise, first, as a host candidate of the answer (and in its
    ``c=`` line): the public IP of a 1:1 NAT (a cloud VM's elastic/public IP).  aioice
    binds a random UDP port on every interface, and the NAT must forward that same port,
    so open the ephemeral UDP range to the host.  FFmpeg only ever tries the first
    candidate, so this is what makes it work from outside the NAT."""
    ice_servers: list[str] = []
    """STUN URLs (``stun:host:port``) for server-reflexive candidates.  None by default:
    aiortc would otherwise ask a public Google STUN server."""

    # --- media (see media.py)
    video_bitrate: int = 2_500_000
    audio_bitrate: int = 128_000
    keyframe_interval: float = 2.0
    x264_preset: str = "veryfast"
    max_width: int = 1920
    max_height: int = 1080
    """Frames larger than this are scaled down (aspect kept); others keep their size."""
    encoder_threads: int = 0
    """libx264 threads per session; 0 lets x264 decide."""
    max_queued_video_frames: int = 8
    """Decoded frames waiting for the encoder; beyond this the oldest is dropped."""
    max_queued_audio_frames: int = 50
    sink_write_timeout: float = 10.0

    # --- sessions
    max_sessions: int = 16
    max_offer_bytes: int = 64 * 1024
    connect_timeout: float = 15.0
    """From the POST to the first output (ICE, DTLS, first video frame)."""
    idle_timeout: float = 10.0
    """No media for this long ends a session (a publisher that vanished)."""

    # --- FFmpeg WHIP muxer interop (see the module docstring)
    ffmpeg_compat: bool = True
    ffmpeg_dtls: Literal["1.0", "1.2"] = "1.0"

    def __post_init__(self) -> None:
        if self.public_ip is not None:
            ipaddress.ip_address(self.public_ip)  # ValueError on garbage
        for url in self.ice_servers:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"ice_servers takes STUN URLs, not {url!r}")
        if self.video_bitrate <= 0 or self.audio_bitrate <= 0:
            raise ValueError("bitrates must be positive")
        if not 0.1 <= self.keyframe_interval <= 60:
            raise ValueError("keyframe_interval must be within 0.1..60 s")
        if self.x264_preset not in X264_PRESETS:
            raise ValueError(f"x264_preset must be one of {', '.join(X264_PRESETS)}")
        if self.max_width < 16 or self.max_height < 16:
            raise ValueError("max_width and max_height must be at least 16")
        if self.ffmpeg_dtls not in ("1.0", "1.2"):
            raise ValueError('ffmpeg_dtls must be "1.0" or "1.2"')
        if min(self.connect_timeout, self.idle_timeout, self.sink_write_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_sessions < 1 or self.max_offer_bytes < 256:
            raise ValueError("max_sessions >= 1 and max_offer_bytes >= 256")
