"""An asyncio RTMP ingest server: one public port, every channel, routed by stream key.

Each accepted publish becomes a plain FLV byte stream handed to a ``PublishSink`` (see
``forward.open_tcp_sink``); the edge only re-frames, it never decodes.  The read loop awaits
``sink.write`` for every tag, so a slow sink stops the socket reads and TCP flow control
slows the encoder down: nothing is buffered without bound.

Stream keys are secrets: they are logged only through ``redact_key``.

Before a publish is accepted a connection costs little and lives briefly: no media message
is taken, at most ``pre_publish_bytes`` may arrive after the handshake, and the publish
command must come within ``publish_deadline`` of the TCP accept.  Each IP address may hold
``max_connections_per_ip`` connections and make ``publish_rate`` publish attempts per
minute (a moving window of the ``limits`` library), so keys cannot be guessed at speed.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from records.redact import redact_key

from . import amf0
from .chunks import (
    MSG_ABORT,
    MSG_ACK,
    MSG_AGGREGATE,
    MSG_AUDIO,
    MSG_COMMAND_AMF0,
    MSG_COMMAND_AMF3,
    MSG_DATA_AMF0,
    MSG_DATA_AMF3,
    MSG_SET_CHUNK_SIZE,
    MSG_SET_PEER_BANDWIDTH,
    MSG_USER_CONTROL,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    ChunkError,
    ChunkReader,
    ChunkWriter,
    Message,
)
from .flv import (
    FLAG_AUDIO,
    FLAG_VIDEO,
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    flags_from_metadata,
    flv_header,
    flv_tag,
    script_payload,
    split_aggregate,
)

__all__ = ["OnPublish", "PublishSink", "RtmpServer"]

log = logging.getLogger(__name__)

HANDSHAKE_SIZE = 1536
RTMP_VERSION = 3

SERVER_CHUNK_SIZE = 4096
SERVER_WINDOW_ACK_SIZE = 2_500_000
MIN_PEER_ACK_WINDOW = 4096
MAX_STREAMS_PER_CONNECTION = 8
MAX_KEY_LENGTH = 1024
MAX_OUTGOING_BUFFER = 1024 * 1024  # a peer that stops reading our replies is dropped
WRITE_TIMEOUT = 10.0
SINK_CLOSE_TIMEOUT = 10.0

# Outgoing chunk stream ids (the conventional ones).
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_STATUS = 5

# User control events.
UC_STREAM_BEGIN = 0
UC_PING_REQUEST = 6
UC_PING_RESPONSE = 7


@runtime_checkable
class PublishSink(Protocol):
    async def write(self, data: bytes) -> None:
        """FLV bytes: the first call gets the FLV header, then whole tags.  Awaiting applies
        backpressure to the publisher."""

    async def close(self) -> None:
        """The publish ended (deleteStream, FCUnpublish, disconnect, error, server stop)."""


OnPublish = Callable[[str, str], Awaitable["PublishSink | None"]]


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, redact_key(secret))
    return text


def _describe(exc: BaseException, secret: str | None, *, with_traceback: bool = False) -> str:
    if with_traceback:
        text = "".join(traceback.format_exception(exc))
    else:
        text = f"{type(exc).__name__}: {exc}"
    return _scrub(text, secret)


class _Close(Exception):
    """End this connection (already reported)."""


class _ProtocolError(Exception):
    """The peer sent something we do not accept; the connection closes."""


def _peer_str(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _peer_ip(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class _Connection:
    def __init__(self, server: RtmpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peername = writer.get_extra_info("peername")
        self.peer = _peer_str(peername)
        self.ip = _peer_ip(peername)
        handshake = 1 + 2 * HANDSHAKE_SIZE
        # Until a publish is accepted: no media, and a small cap on all bytes read.
        self.chunks = ChunkReader(
            reader, on_ack=self._send_ack, bytes_received=handshake,
            max_bytes=handshake + server.pre_publish_bytes, allow_media=False,
        )
        self.out = ChunkWriter()
        self.epoch = time.monotonic()
        self.connected = False
        self.app = ""
        self.next_stream_id = 1
        self.stream_ids: set[int] = set()
        self.publish_requested = False  # a publish command arrived: the publish deadline is met
        # Current publish.
        self.sink: PublishSink | None = None
        self.key: str | None = None  # kept (unredacted) only to scrub it from error texts
        self.header_sent = False
        self.tags = 0
        self.flv_bytes = 0

    # ------------------------------------------------------------------ plumbing

    def _uptime_ms(self) -> int:
        return int((time.monotonic() - self.epoch) * 1000) & 0xFFFFFFFF

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(self.out.encode(csid, type_id, stream_id, 0, payload))

    def _send_command(self, stream_id: int, *values: Any) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STATUS
        self._send(csid, MSG_COMMAND_AMF0, stream_id, amf0.encode(*values))

    def _send_ack(self, sequence: int) -> None:
        self._send(CSID_CONTROL, MSG_ACK, 0, struct.pack(">I", sequence))

    async def _flush(self) -> None:
        if self.writer.is_closing():
            return
        async with asyncio.timeout(WRITE_TIMEOUT):
            await self.writer.drain()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        reason = "closed"
        loop = asyncio.get_running_loop()
        publish_by = loop.time() + self.server.publish_deadline
        try:
            async with asyncio.timeout_at(min(loop.time() + self.server.handshake_timeout, publish_by)):
                await self._handshake()
            while True:
                read_by = loop.time() + self.server.idle_timeout
                if not self.publish_requested:
                    read_by = min(read_by, publish_by)
                async with asyncio.timeout_at(read_by):
                    msg = await self.chunks.read_message()
                await self._dispatch(msg)
                transport = self.writer.transport
                if transport is not None and transport.get_write_buffer_size() > MAX_OUTGOING_BUFFER:
                    raise _ProtocolError("peer does not read its replies")
        except asyncio.IncompleteReadError:
            reason = "peer disconnected"
        except TimeoutError:
            reason = "timed out" if self.publish_requested else "timed out before publishing"
        except (ChunkError, amf0.AMF0Error, _ProtocolError) as e:
            reason = f"protocol error: {_describe(e, self.key)}"
        except _Close as e:
            reason = str(e) or "closed"
        except (ConnectionError, OSError) as e:
            reason = f"connection error: {type(e).__name__}"
        except asyncio.CancelledError:
            reason = "server stopping"
            raise
        except Exception as e:  # a bug here must cost this connection only
            reason = "internal error"
            log.error("rtmp %s: unexpected error: %s", self.peer, _describe(e, self.key, with_traceback=True))
        finally:
            await self._end_publish(reason)
            self.writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(1.0):
                    await self.writer.wait_closed()
            log.log(
                logging.INFO if reason.startswith(("protocol", "timed out")) else logging.DEBUG,
                "rtmp %s: connection closed (%s)", self.peer, reason,
            )

    async def _handshake(self) -> None:
        c0 = await self.reader.readexactly(1)
        if c0[0] != RTMP_VERSION:
            # 6 would be RTMPE (encrypted); anything else is not RTMP at all (HTTP, TLS...).
            raise _ProtocolError(f"unsupported RTMP version {c0[0]}")
        c1 = await self.reader.readexactly(HANDSHAKE_SIZE)
        # Plain handshake: S1 = time, zero, random; S2 = echo of C1.  Zero in S1's version
        # field tells digest-capable clients (FFmpeg, librtmp/OBS) not to expect a digest.
        s1 = struct.pack(">II", self._uptime_ms(), 0) + os.urandom(HANDSHAKE_SIZE - 8)
        self.writer.write(bytes([RTMP_VERSION]) + s1 + c1)
        await self._flush()
        await self.reader.readexactly(HANDSHAKE_SIZE)  # C2: echo of S1, not checked

    # ------------------------------------------------------------------ messages

    async def _dispatch(self, msg: Message) -> None:
        t = msg.type_id
        if t == MSG_VIDEO or t == MSG_AUDIO:
            if self.sink is not None and msg.payload:
                await self._emit(TAG_VIDEO if t == MSG_VIDEO else TAG_AUDIO, msg.timestamp, msg.payload)
        elif t == MSG_DATA_AMF0 or t == MSG_DATA_AMF3:
            if self.sink is not None:
                payload = msg.payload[1:] if t == MSG_DATA_AMF3 else msg.payload
                body = script_payload(payload)
                if body is not None:
                    await self._emit(TAG_SCRIPT, msg.timestamp, body)
        elif t == MSG_AGGREGATE:
            if self.sink is not None:
                for sub_type, ts, body in split_aggregate(msg.payload, msg.timestamp):
                    if sub_type in (TAG_AUDIO, TAG_VIDEO) and body:
                        await self._emit(sub_type, ts, body)
                    elif sub_type == TAG_SCRIPT:
                        script = script_payload(body)
                        if script is not None:
                            await self._emit(TAG_SCRIPT, ts, script)
        elif t == MSG_COMMAND_AMF0 or t == MSG_COMMAND_AMF3:
            payload = msg.payload[1:] if t == MSG_COMMAND_AMF3 else msg.payload
            await self._on_command(msg.stream_id, amf0.decode_all(payload))
        elif t == MSG_SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise _ProtocolError("short Set Chunk Size")
            self.chunks.set_chunk_size(struct.unpack_from(">I", msg.payload)[0])
            log.debug("rtmp %s: peer chunk size %d", self.peer, self.chunks.chunk_size)
        elif t == MSG_ABORT:
            if len(msg.payload) >= 4:
                self.chunks.abort(struct.unpack_from(">I", msg.payload)[0])
        elif t == MSG_WINDOW_ACK_SIZE:
            if len(msg.payload) >= 4:
                size = struct.unpack_from(">I", msg.payload)[0]
                self.chunks.set_ack_window(max(size, MIN_PEER_ACK_WINDOW))
        elif t == MSG_USER_CONTROL:
            if len(msg.payload) >= 6:
                event = struct.unpack_from(">H", msg.payload)[0]
                if event == UC_PING_REQUEST:
                    self._send(
                        CSID_CONTROL, MSG_USER_CONTROL, 0, struct.pack(">H", UC_PING_RESPONSE) + msg.payload[2:6]
                    )
        elif t in (MSG_ACK, MSG_SET_PEER_BANDWIDTH):
            pass
        # Anything else (shared objects, unknown types) is ignored.

    async def _emit(self, tag_type: int, timestamp: int, body: bytes) -> None:
        if not self.header_sent:
            flags = FLAG_AUDIO | FLAG_VIDEO
            if tag_type == TAG_SCRIPT:
                flags = flags_from_metadata(body) or flags
            await self._sink_write(flv_header(flags))
            self.header_sent = True
        await self._sink_write(flv_tag(tag_type, timestamp, body))
        self.tags += 1

    async def _sink_write(self, data: bytes) -> None:
        sink = self.sink
        assert sink is not None
        try:
            # A slow sink is waited for (that is the backpressure); one that makes no
            # progress for a whole idle timeout is considered dead.
            async with asyncio.timeout(self.server.idle_timeout):
                await sink.write(data)
        except TimeoutError:
            log.warning(
                "rtmp %s: sink for %s/%s stalled for %.0f s", self.peer, self.app, redact_key(self.key or ""),
                self.server.idle_timeout,
            )
            raise _Close("sink stalled") from None
        except Exception as e:
            log.warning(
                "rtmp %s: sink for %s/%s failed: %s", self.peer, self.app, redact_key(self.key or ""),
                _describe(e, self.key),
            )
            raise _Close("sink failed") from None
        self.flv_bytes += len(data)

    # ------------------------------------------------------------------ commands

    async def _on_command(self, stream_id: int, values: list[Any]) -> None:
        if not values or not isinstance(values[0], str):
            return
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        cmd_obj = values[2] if len(values) > 2 else None
        args = values[3:]

        if name == "connect":
            await self._on_connect(txn, cmd_obj if isinstance(cmd_obj, dict) else {})
        elif name == "createStream":
            await self._on_create_stream(txn)
        elif name in ("releaseStream", "FCPublish"):
            if name == "FCPublish":
                self._send_command(
                    0, "onFCPublish", 0.0, None,
                    {"code": "NetStream.Publish.Start", "description": "FCPublish accepted."},
                )
            if txn:
                self._send_command(0, "_result", txn, None, amf0.UNDEFINED)
            await self._flush()
        elif name == "publish":
            stream_name = args[0] if args and isinstance(args[0], str) else ""
            await self._on_publish(stream_id, txn, stream_name)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            await self._end_publish(name)
            if name == "deleteStream" and args and isinstance(args[0], float):
                self.stream_ids.discard(int(args[0]))
        else:
            # _checkbw, getStreamLength, play, unknown: not an ingest concern.
            log.debug("rtmp %s: ignoring command %.64r", self.peer, name)

    async def _on_connect(self, txn: float, cmd_obj: dict) -> None:
        if self.connected:
            log.debug("rtmp %s: repeated connect ignored", self.peer)
            return
        app = cmd_obj.get("app")
        app = app if isinstance(app, str) else ""
        self.app = app.split("?", 1)[0].strip("/")[:256]
        self.connected = True
        self._send(CSID_CONTROL, MSG_WINDOW_ACK_SIZE, 0, struct.pack(">I", SERVER_WINDOW_ACK_SIZE))
        self._send(CSID_CONTROL, MSG_SET_PEER_BANDWIDTH, 0, struct.pack(">IB", SERVER_WINDOW_ACK_SIZE, 2))
        self._send(CSID_CONTROL, MSG_SET_CHUNK_SIZE, 0, struct.pack(">I", SERVER_CHUNK_SIZE))
        self.out.chunk_size = SERVER_CHUNK_SIZE
        self._send_command(
            0, "_result", txn,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
        )
        await self._flush()
        log.debug("rtmp %s: connected to app %.64r", self.peer, self.app)

    async def _on_create_stream(self, txn: float) -> None:
        if not self.connected or len(self.stream_ids) >= MAX_STREAMS_PER_CONNECTION:
            self._send_command(
                0, "_error", txn, None,
                {"level": "error", "code": "NetConnection.Call.Failed", "description": "createStream refused."},
            )
        else:
            sid = self.next_stream_id
            self.next_stream_id += 1
            self.stream_ids.add(sid)
            self._send_command(0, "_result", txn, None, float(sid))
        await self._flush()

    async def _refuse(self, stream_id: int, key: str, why: str) -> None:
        log.info("rtmp %s: publish %s/%s refused (%s)", self.peer, self.app, redact_key(key), why)
        self._send_command(
            stream_id, "onStatus", 0.0, None,
            {"level": "error", "code": "NetStream.Publish.BadName", "description": "Publish refused."},
        )
        with contextlib.suppress(Exception):
            await self._flush()
        raise _Close("publish refused")

    async def _on_publish(self, stream_id: int, txn: float, stream_name: str) -> None:
        # Encoders may append a query string (key?param=...); routing uses the key alone.
        key = stream_name.split("?", 1)[0]
        self.publish_requested = True
        if not await self.server.publish_attempt(self.ip):
            await self._refuse(stream_id, key, "too many publish attempts from this address")
        if self.sink is not None:
            await self._refuse(stream_id, key, "already publishing on this connection")
        if not self.connected:
            await self._refuse(stream_id, key, "publish before connect")
        if not key or len(key) > MAX_KEY_LENGTH:
            await self._refuse(stream_id, key, "bad stream name")
        self.key = key
        sink: PublishSink | None = None
        try:
            async with asyncio.timeout(self.server.publish_timeout):
                sink = await self.server.on_publish(self.app, key)
        except Exception as e:  # TimeoutError included
            log.warning(
                "rtmp %s: on_publish for %s/%s failed: %s", self.peer, self.app, redact_key(key),
                _describe(e, key, with_traceback=not isinstance(e, TimeoutError)),
            )
            sink = None
        if sink is None:
            await self._refuse(stream_id, key, "no route for this key")
        self.sink = sink
        # The key was good: media may come now, as much as the publisher sends.
        self.chunks.allow_media = True
        self.chunks.max_bytes = None
        self.header_sent = False
        self.tags = 0
        self.flv_bytes = 0
        self.server._publishing += 1
        log.info("rtmp %s: publishing %s/%s", self.peer, self.app, redact_key(key))
        self._send(CSID_CONTROL, MSG_USER_CONTROL, 0, struct.pack(">HI", UC_STREAM_BEGIN, stream_id))
        self._send_command(
            stream_id, "onStatus", 0.0, None,
            {"level": "status", "code": "NetStream.Publish.Start", "description": "Start publishing."},
        )
        await self._flush()

    async def _end_publish(self, reason: str) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        self.server._publishing -= 1
        key = self.key or ""
        try:
            async with asyncio.timeout(SINK_CLOSE_TIMEOUT):
                await sink.close()
        except Exception as e:
            log.warning(
                "rtmp %s: closing the sink for %s/%s failed: %s", self.peer, self.app, redact_key(key),
                _describe(e, key),
            )
        log.info(
            "rtmp %s: publish %s/%s ended (%s): %d tags, %d bytes",
            self.peer, self.app, redact_key(key), _scrub(reason, key), self.tags, self.flv_bytes,
        )


class RtmpServer:
    """RTMP ingest on one port for every channel; ``on_publish(app, key)`` routes each publish.

    ``publish_deadline``: seconds from the TCP accept to the publish command (handshake,
    connect and createStream included).  ``pre_publish_bytes``: what a connection may send
    after the handshake before its publish is accepted.  ``max_connections_per_ip`` and
    ``publish_rate`` (publish attempts per minute, a moving window) apply per peer IP address.
    ``publish_timeout`` bounds ``on_publish`` itself (routing may wait for a stream actor).
    """

    def __init__(
        self,
        host: str,
        port: int,
        on_publish: OnPublish,
        *,
        idle_timeout: float = 30.0,
        handshake_timeout: float = 10.0,
        publish_timeout: float = 30.0,
        max_connections: int = 1024,
        publish_deadline: float = 10.0,
        pre_publish_bytes: int = 64 * 1024,
        max_connections_per_ip: int = 16,
        publish_rate: int = 30,
    ) -> None:
        if max_connections_per_ip < 1 or publish_rate < 1 or pre_publish_bytes < 1024:
            raise ValueError("max_connections_per_ip and publish_rate must be >= 1, pre_publish_bytes >= 1024")
        self.host = host
        self.port = port
        self.on_publish = on_publish
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.publish_timeout = publish_timeout
        self.max_connections = max_connections
        self.publish_deadline = publish_deadline
        self.pre_publish_bytes = pre_publish_bytes
        self.max_connections_per_ip = max_connections_per_ip
        self.publish_rate = RateLimitItemPerMinute(publish_rate)
        self._publish_limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_ip: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._publishing = 0
        self.refused_connections = 0  # over the server-wide or a per-IP cap

    async def publish_attempt(self, ip: str) -> bool:
        """Count one publish attempt from ``ip``; False when it is over ``publish_rate``."""
        return await self._publish_limiter.hit(self.publish_rate, "rtmp-publish", ip)

    @property
    def connections(self) -> int:
        return len(self._tasks)

    @property
    def publishing(self) -> int:
        """Publishes currently delivering to a sink."""
        return self._publishing

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("RtmpServer already started")
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=64 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("rtmp: listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await server.wait_closed()
        log.info("rtmp: stopped")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        ip = _peer_ip(peername)
        if self._server is None or len(self._tasks) >= self.max_connections:
            why = "server limit"
        elif self._per_ip[ip] >= self.max_connections_per_ip:
            why = "per-address limit"
        else:
            why = ""
        if why:
            self.refused_connections += 1
            log.warning("rtmp: refusing connection from %s (%s)", _peer_str(peername), why)
            writer.close()
            return
        self._tasks.add(task)
        self._per_ip[ip] += 1
        try:
            await _Connection(self, reader, writer).run()
        except asyncio.CancelledError:
            pass
        except Exception as e:  # never propagate into the event loop
            log.error("rtmp: connection handler failed: %s", type(e).__name__)
        finally:
            self._tasks.discard(task)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
