"""RTMP chunk stream: reassembling incoming chunks into messages, and chunking outgoing ones.

Covers the RTMP 1.0 chunk format: basic headers with 1/2/3-byte chunk stream ids, message
headers of fmt 0-3 with per-chunk-stream state, extended timestamps (also on fmt 3 chunks,
as the spec, FFmpeg and librtmp do), Set Chunk Size, Abort and acknowledgement windows.

All limits are enforced before memory is committed, so a hostile peer can make the reader
raise ``ChunkError`` but not make it buffer more than ``max_pending`` bytes.  Until the
server has accepted a publish it keeps the reader on a short leash: ``allow_media`` off (a
media message header is an error) and ``max_bytes`` (a cap on everything read so far).
"""
from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "ChunkError",
    "ChunkReader",
    "ChunkWriter",
    "Message",
    "MSG_ABORT",
    "MSG_ACK",
    "MSG_AGGREGATE",
    "MSG_AUDIO",
    "MSG_COMMAND_AMF0",
    "MSG_COMMAND_AMF3",
    "MSG_DATA_AMF0",
    "MSG_DATA_AMF3",
    "MSG_SET_CHUNK_SIZE",
    "MSG_SET_PEER_BANDWIDTH",
    "MSG_USER_CONTROL",
    "MSG_VIDEO",
    "MSG_WINDOW_ACK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
]

# Message type ids.
MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_ACK = 3
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK_SIZE = 5
MSG_SET_PEER_BANDWIDTH = 6
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_DATA_AMF3 = 15
MSG_SHARED_OBJECT_AMF3 = 16
MSG_COMMAND_AMF3 = 17
MSG_DATA_AMF0 = 18
MSG_SHARED_OBJECT_AMF0 = 19
MSG_COMMAND_AMF0 = 20
MSG_AGGREGATE = 22

DEFAULT_CHUNK_SIZE = 128
# The spec allows up to 2**31-1; no real encoder uses more than a few tens of KiB.  A chunk
# is always bounded by its message's length anyway, so this only rejects nonsense.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 0xFFFFFF  # the 24-bit length field's own limit
# Protocol control / command / data messages are small; only media may be large.
MAX_CONTROL_MESSAGE_SIZE = 64
MAX_SMALL_MESSAGE_SIZE = 1024 * 1024
MAX_CHUNK_STREAMS = 64

_CONTROL_TYPES = frozenset(
    {MSG_SET_CHUNK_SIZE, MSG_ABORT, MSG_ACK, MSG_USER_CONTROL, MSG_WINDOW_ACK_SIZE, MSG_SET_PEER_BANDWIDTH}
)
_MEDIA_TYPES = frozenset({MSG_AUDIO, MSG_VIDEO, MSG_AGGREGATE})

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


class ChunkError(Exception):
    """The peer violated the chunk protocol or a size limit; the connection must close."""


@dataclass(slots=True)
class Message:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int  # absolute, milliseconds, modulo 2**32
    payload: bytes


@dataclass(slots=True)
class _ChunkStreamState:
    timestamp: int = 0  # absolute timestamp of the latest message header
    delta: int = 0  # timestamp field (fmt 0: absolute, else delta), reused by fmt 3
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False  # latest fmt 0/1/2 header used an extended timestamp
    have_header: bool = False
    parts: list[bytes] = field(default_factory=list)
    received: int = 0  # bytes of the in-progress message received so far (0: none)


def _max_size_for(type_id: int, max_message_size: int) -> int:
    if type_id in _CONTROL_TYPES:
        return MAX_CONTROL_MESSAGE_SIZE
    if type_id in _MEDIA_TYPES:
        return max_message_size
    return min(MAX_SMALL_MESSAGE_SIZE, max_message_size)


class ChunkReader:
    """Reads chunks from an ``asyncio.StreamReader`` and yields complete messages.

    ``on_ack(sequence_number)`` is called (synchronously) each time the bytes received since
    the last acknowledgement reach the peer's window (set with ``ack_window``).

    ``max_bytes`` (None: no cap) bounds ``bytes_received``; ``allow_media`` False refuses
    audio, video and aggregate messages.  Both may be changed between messages.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_pending: int = 2 * MAX_MESSAGE_SIZE,
        on_ack: Callable[[int], None] | None = None,
        bytes_received: int = 0,
        max_bytes: int | None = None,
        allow_media: bool = True,
    ) -> None:
        self._reader = reader
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.allow_media = allow_media
        self.ack_window = 0
        self.bytes_received = bytes_received
        self._last_ack = bytes_received
        self._on_ack = on_ack
        self._states: dict[int, _ChunkStreamState] = {}
        self._pending = 0  # bytes buffered in incomplete messages, all chunk streams

    # -- control from the message layer

    def set_chunk_size(self, size: int) -> None:
        size &= 0x7FFFFFFF
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ChunkError(f"unacceptable chunk size {size}")
        self.chunk_size = size

    def set_ack_window(self, size: int) -> None:
        self.ack_window = size if size > 0 else 0

    def abort(self, csid: int) -> None:
        st = self._states.get(csid)
        if st is not None and st.received:
            self._pending -= st.received
            st.parts = []
            st.received = 0

    # -- reading

    async def _read(self, n: int) -> bytes:
        if self.max_bytes is not None and self.bytes_received + n > self.max_bytes:
            raise ChunkError(f"more than {self.max_bytes} bytes before a publish was accepted")
        data = await self._reader.readexactly(n)
        self.bytes_received += n
        if self.ack_window and self.bytes_received - self._last_ack >= self.ack_window:
            self._last_ack = self.bytes_received
            if self._on_ack is not None:
                self._on_ack(self.bytes_received & 0xFFFFFFFF)
        return data

    async def read_message(self) -> Message:
        """Read chunks until one message is complete.  Raises ``asyncio.IncompleteReadError``
        at end of stream and ``ChunkError`` on protocol violations."""
        while True:
            msg = await self._read_chunk()
            if msg is not None:
                return msg

    async def _read_chunk(self) -> Message | None:
        b0 = (await self._read(1))[0]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        if csid == 0:
            csid = 64 + (await self._read(1))[0]
        elif csid == 1:
            b = await self._read(2)
            csid = 64 + b[0] + (b[1] << 8)

        st = self._states.get(csid)
        if st is None:
            if len(self._states) >= MAX_CHUNK_STREAMS:
                raise ChunkError("too many chunk streams")
            st = self._states[csid] = _ChunkStreamState()

        if fmt == 3:
            if not st.have_header:
                raise ChunkError(f"fmt 3 chunk on chunk stream {csid} without a previous header")
            if st.extended:
                ext = _U32.unpack(await self._read(4))[0]
                if not st.received:  # a new message repeating the previous delta
                    st.delta = ext
            if not st.received:
                st.timestamp = (st.timestamp + st.delta) & 0xFFFFFFFF
        else:
            if st.received:
                # A new header while a message is incomplete: the peer dropped it.  FFmpeg
                # and librtmp never do this; treat the old data as aborted.
                self._pending -= st.received
                st.parts = []
                st.received = 0
            if fmt == 0:
                h = await self._read(11)
                ts = (h[0] << 16) | (h[1] << 8) | h[2]
                st.length = (h[3] << 16) | (h[4] << 8) | h[5]
                st.type_id = h[6]
                st.stream_id = _U32LE.unpack_from(h, 7)[0]
            elif fmt == 1:
                if not st.have_header:
                    # Lenient: some encoders open a chunk stream with fmt 1 (stream id 0).
                    st.timestamp = 0
                h = await self._read(7)
                ts = (h[0] << 16) | (h[1] << 8) | h[2]
                st.length = (h[3] << 16) | (h[4] << 8) | h[5]
                st.type_id = h[6]
            else:  # fmt 2
                if not st.have_header:
                    raise ChunkError(f"fmt 2 chunk on chunk stream {csid} without a previous header")
                h = await self._read(3)
                ts = (h[0] << 16) | (h[1] << 8) | h[2]
            st.extended = ts == 0xFFFFFF
            if st.extended:
                ts = _U32.unpack(await self._read(4))[0]
            st.delta = ts
            st.timestamp = ts if fmt == 0 else (st.timestamp + ts) & 0xFFFFFFFF
            st.have_header = True
            if not self.allow_media and st.type_id in _MEDIA_TYPES:
                raise ChunkError(f"media message (type {st.type_id}) before a publish was accepted")
            limit = _max_size_for(st.type_id, self.max_message_size)
            if st.length > limit:
                raise ChunkError(f"message of type {st.type_id} and {st.length} bytes exceeds {limit}")

        remaining = st.length - st.received
        n = min(self.chunk_size, remaining)
        if n:
            if self._pending + n > self.max_pending:
                raise ChunkError("too much data buffered in incomplete messages")
            data = await self._read(n)
            st.parts.append(data)
            st.received += n
            self._pending += n
        if st.received < st.length:
            return None
        payload = st.parts[0] if len(st.parts) == 1 else b"".join(st.parts)
        self._pending -= st.received
        st.parts = []
        st.received = 0
        return Message(csid, st.type_id, st.stream_id, st.timestamp, payload)


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes([(fmt << 6) | csid])
    if 64 <= csid <= 319:
        return bytes([fmt << 6, csid - 64])
    if 320 <= csid <= 65599:
        v = csid - 64
        return bytes([(fmt << 6) | 1, v & 0xFF, v >> 8])
    raise ValueError(f"invalid chunk stream id {csid}")


class ChunkWriter:
    """Splits outgoing messages into chunks.  Every message starts with a fmt 0 header (the
    server sends few messages, so header compression is not worth its state)."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE

    def encode(self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes) -> bytes:
        if len(payload) > MAX_MESSAGE_SIZE:
            raise ValueError("message too long")
        timestamp &= 0xFFFFFFFF
        extended = timestamp >= 0xFFFFFF
        ts_field = 0xFFFFFF if extended else timestamp
        ext = _U32.pack(timestamp) if extended else b""
        n = len(payload)
        out = bytearray(_basic_header(0, csid))
        out += ts_field.to_bytes(3, "big")
        out += n.to_bytes(3, "big")
        out.append(type_id)
        out += _U32LE.pack(stream_id)
        out += ext
        cont = _basic_header(3, csid) + ext
        size = self.chunk_size
        out += payload[:size]
        for off in range(size, n, size):
            out += cont
            out += payload[off : off + size]
        return bytes(out)
