"""Turning RTMP media/data messages into an FLV byte stream (no decoding, only framing)."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from . import amf0

__all__ = [
    "TAG_AUDIO",
    "TAG_SCRIPT",
    "TAG_VIDEO",
    "flags_from_metadata",
    "flv_header",
    "flv_tag",
    "script_payload",
    "split_aggregate",
]

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

FLAG_AUDIO = 0x04
FLAG_VIDEO = 0x01

_U32 = struct.Struct(">I")
_SET_DATA_FRAME = amf0.encode("@setDataFrame")
_CLEAR_DATA_FRAME = amf0.encode("@clearDataFrame")


def flv_header(flags: int = FLAG_AUDIO | FLAG_VIDEO) -> bytes:
    """The 9-byte FLV file header followed by PreviousTagSize0."""
    return b"FLV\x01" + bytes([flags & 0x05]) + _U32.pack(9) + _U32.pack(0)


def flv_tag(tag_type: int, timestamp: int, payload: bytes) -> bytes:
    """One FLV tag plus its trailing PreviousTagSize.  ``timestamp`` is absolute ms; FLV
    stores the low 24 bits and then the high 8 bits (TimestampExtended)."""
    n = len(payload)
    if n > 0xFFFFFF:
        raise ValueError("FLV tag payload too long")
    ts = timestamp & 0xFFFFFFFF
    header = bytes(
        (
            tag_type,
            (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF,
            (ts >> 16) & 0xFF, (ts >> 8) & 0xFF, ts & 0xFF,
            (ts >> 24) & 0xFF,
            0, 0, 0,
        )
    )
    return header + payload + _U32.pack(11 + n)


def script_payload(payload: bytes) -> bytes | None:
    """The FLV script-tag body for an RTMP data message, or None when it should not be
    forwarded.  ``@setDataFrame`` (what OBS and FFmpeg send) is unwrapped so the tag reads
    ``onMetaData, {...}`` as in a file; ``@clearDataFrame`` is dropped."""
    if payload.startswith(_SET_DATA_FRAME):
        payload = payload[len(_SET_DATA_FRAME):]
    elif payload.startswith(_CLEAR_DATA_FRAME):
        return None
    if not payload:
        return None
    return payload


def flags_from_metadata(script: bytes) -> int | None:
    """FLV header flags from an onMetaData script body, or None if it does not say."""
    try:
        values = amf0.decode_all(script, max_values=4)
    except amf0.AMF0Error:
        return None
    if len(values) < 2 or values[0] != "onMetaData" or not isinstance(values[1], dict):
        return None
    meta: dict[str, Any] = values[1]
    flags = 0
    if any(k in meta for k in ("videocodecid", "width", "height", "videodatarate", "framerate")):
        flags |= FLAG_VIDEO
    if any(k in meta for k in ("audiocodecid", "audiosamplerate", "audiodatarate", "audiochannels")):
        flags |= FLAG_AUDIO
    return flags or None


def split_aggregate(payload: bytes, timestamp: int) -> Iterator[tuple[int, int, bytes]]:
    """Sub-messages (type, absolute timestamp, body) of an RTMP aggregate message.  Sub-message
    timestamps are renormalised so the first one equals the aggregate's timestamp.  Stops at
    the first malformed sub-message."""
    pos = 0
    end = len(payload)
    base: int | None = None
    while pos + 11 <= end:
        tag_type = payload[pos]
        n = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(payload[pos + 4 : pos + 7], "big") | (payload[pos + 7] << 24)
        body_start = pos + 11
        body_end = body_start + n
        if body_end > end:
            return
        if base is None:
            base = ts
        yield tag_type, (timestamp + ts - base) & 0xFFFFFFFF, payload[body_start:body_end]
        pos = body_end + 4  # skip the back pointer
