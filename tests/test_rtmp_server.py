"""The RTMP ingest edge, against the real ffmpeg CLI as publisher (our stand-in for OBS) and
raw loopback sockets for everything ffmpeg will not do (garbage, pings, exotic chunk headers).
Every FLV stream the server hands out is checked by demuxing and decoding it with PyAV."""
from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import secrets
import shutil
import struct
import time

import av
import pytest

from gateway.rtmp import RtmpServer, open_tcp_sink
from records.redact import redact_key
from gateway.rtmp import amf0
from gateway.rtmp.chunks import ChunkError, ChunkReader, ChunkWriter

LOGGER = "gateway.rtmp"


# ---------------------------------------------------------------- helpers


def ffmpeg_path() -> str:
    path = shutil.which("ffmpeg")
    if not path:  # test peers are required, never skipped
        pytest.fail("required test peer 'ffmpeg' is not installed (run deploy/test.sh, which installs it)")
    return path


class MemorySink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0
        self.closed = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set, write() waits for it

    async def write(self, data: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.writes += 1
        self.data += data

    async def close(self) -> None:
        self.closed.set()


class Router:
    """on_publish: keys in `allowed` get a MemorySink, keys starting with "boom" raise."""

    def __init__(self) -> None:
        self.allowed: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.sinks: dict[str, MemorySink] = {}

    async def __call__(self, app: str, key: str) -> MemorySink | None:
        self.calls.append((app, key))
        if key.startswith("boom"):
            raise RuntimeError(f"channel lookup failed for {key}")
        if key not in self.allowed:
            return None
        sink = self.sinks[key] = MemorySink()
        return sink


@pytest.fixture
async def rtmp():
    router = Router()
    server = RtmpServer("127.0.0.1", 0, router, idle_timeout=5.0, handshake_timeout=1.0)
    await server.start()
    assert server.port != 0
    try:
        yield server, router
    finally:
        await server.stop()


def new_key(prefix: str = "chan") -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


async def ffmpeg_publish(
    url: str, *, seconds: float = 1.0, realtime: bool = False, size: str = "320x240", timeout: float = 40.0
) -> tuple[int, str]:
    args = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if realtime:
        args.append("-re")
    args += [
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=15",
        "-f", "lavfi", "-i", "sine",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-g", "30",
        "-c:a", "aac",
        "-f", "flv", url,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, err.decode(errors="replace")


def demux(data: bytes) -> dict:
    """Demux and decode an FLV byte stream with PyAV."""
    packets = {"video": 0, "audio": 0}
    frames = {"video": 0, "audio": 0}
    span: dict[str, list[float]] = {}
    width = None
    with av.open(io.BytesIO(bytes(data)), format="flv") as container:
        metadata = dict(container.metadata)
        for packet in container.demux():
            kind = packet.stream.type
            if packet.size == 0 or packet.pts is None or kind not in packets:
                continue
            packets[kind] += 1
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            lo_hi = span.setdefault(kind, [start, end])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], start), max(lo_hi[1], end)
            for frame in packet.decode():
                frames[kind] += 1
                if kind == "video":
                    width = frame.width
    duration = max((hi - lo for lo, hi in span.values()), default=0.0)
    return {"packets": packets, "frames": frames, "duration": duration, "width": width, "metadata": metadata}


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, body) of every tag, parsed independently of gateway.rtmp.flv."""
    assert data[:3] == b"FLV" and data[3] == 1
    pos = struct.unpack_from(">I", data, 5)[0] + 4
    tags = []
    while pos < len(data):
        tag_type = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = bytes(data[pos + 11 : pos + 11 + size])
        assert len(body) == size
        assert struct.unpack_from(">I", data, pos + 11 + size)[0] == size + 11
        tags.append((tag_type, ts, body))
        pos += 11 + size + 4
    return tags


async def eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection within `seconds` (whatever it sent first)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def chunk(fmt: int, csid: int, *, ts: int | None = None, length: int | None = None, type_id: int | None = None,
          stream_id: int | None = None, ext: int | None = None, body: bytes = b"") -> bytes:
    """One hand-built chunk (basic header + message header + body), per the RTMP spec."""
    if csid < 64:
        out = bytes([(fmt << 6) | csid])
    elif csid < 320:
        out = bytes([fmt << 6, csid - 64])
    else:
        out = bytes([(fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])
    if fmt <= 2:
        out += ts.to_bytes(3, "big")
    if fmt <= 1:
        out += length.to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        out += struct.pack("<I", stream_id)
    if ext is not None:
        out += struct.pack(">I", ext)
    return out + body


class RawClient:
    """A minimal RTMP publisher for what ffmpeg cannot be made to send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunks = ChunkReader(reader)
        self.out = ChunkWriter()
        self.controls: list[tuple[int, bytes]] = []

    @classmethod
    async def open(cls, port: int, local_ip: str | None = None) -> RawClient:
        """Connect and handshake; ``local_ip`` (another loopback address, e.g. 127.0.0.2)
        makes the client a different peer address for the per-IP limits."""
        local = (local_ip, 0) if local_ip else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
        client = cls(reader, writer)
        c1 = bytes(8) + os.urandom(1528)
        writer.write(b"\x03" + c1)
        s012 = await asyncio.wait_for(reader.readexactly(1 + 2 * 1536), 5)
        assert s012[0] == 3
        assert s012[1 + 1536 :] == c1  # S2 echoes C1
        writer.write(s012[1 : 1 + 1536])  # C2 echoes S1
        return client

    def send(self, csid: int, type_id: int, stream_id: int, payload: bytes, ts: int = 0) -> None:
        self.writer.write(self.out.encode(csid, type_id, stream_id, ts, payload))

    def command(self, stream_id: int, *values) -> None:
        self.send(3 if stream_id == 0 else 8, 20, stream_id, amf0.encode(*values))

    async def recv(self):
        async with asyncio.timeout(5):
            msg = await self.chunks.read_message()
        if msg.type_id == 1:
            self.chunks.set_chunk_size(struct.unpack(">I", msg.payload)[0])
        if msg.type_id in (1, 3, 4, 5, 6):
            self.controls.append((msg.type_id, msg.payload))
        return msg

    async def recv_command(self, name: str) -> list:
        while True:
            msg = await self.recv()
            if msg.type_id == 20:
                values = amf0.decode_all(msg.payload)
                if values[0] == name:
                    return values

    async def publish(self, app: str, key: str) -> tuple[int, list]:
        self.command(0, "connect", 1.0, {"app": app, "type": "nonprivate", "tcUrl": f"rtmp://127.0.0.1/{app}"})
        result = await self.recv_command("_result")
        assert result[3]["code"] == "NetConnection.Connect.Success"
        self.command(0, "createStream", 2.0, None)
        result = await self.recv_command("_result")
        stream_id = int(result[3])
        self.command(stream_id, "publish", 0.0, None, key, "live")
        status = await self.recv_command("onStatus")
        return stream_id, status

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


# ---------------------------------------------------------------- ffmpeg end to end


async def test_ffmpeg_publish_is_relayed_as_flv_and_keys_stay_out_of_logs(rtmp, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server, router = rtmp
    key = new_key()
    router.allowed.add(key)

    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/{key}", seconds=4, realtime=True)
    assert rc == 0, err
    assert router.calls == [("live", key)]
    sink = router.sinks[key]
    await asyncio.wait_for(sink.closed.wait(), 5)

    data = bytes(sink.data)
    assert data[:3] == b"FLV" and data[4] == 0x05  # audio + video, from onMetaData
    tags = flv_tags(data)
    assert tags[0][0] == 18 and tags[0][2].startswith(amf0.encode("onMetaData"))  # unwrapped
    assert not any(b"@setDataFrame" in body for t, _, body in tags if t == 18)
    assert {t for t, _, _ in tags} == {8, 9, 18}

    info = demux(data)
    assert info["packets"]["video"] >= 55 and info["packets"]["audio"] >= 150, info
    assert info["frames"]["video"] >= 55 and info["frames"]["audio"] >= 150, info
    assert info["width"] == 320
    assert 3.6 <= info["duration"] <= 4.5, info
    assert "encoder" in info["metadata"]  # ffmpeg's onMetaData arrived as a script tag

    assert redact_key(key) in caplog.text  # the publish was logged...
    assert key not in caplog.text  # ...but never with its whole key


async def test_unknown_or_failing_key_is_refused_and_server_keeps_serving(rtmp, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server, router = rtmp
    unknown, boom, good = new_key("nochan"), new_key("boom"), new_key()
    router.allowed.add(good)

    for key in (unknown, boom):
        rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/{key}", seconds=1)
        assert rc != 0
        assert "Publish refused" in err  # ffmpeg got the onStatus error, not just a hangup
    assert router.sinks == {}
    assert [k for _, k in router.calls] == [unknown, boom]
    assert "RuntimeError" in caplog.text  # on_publish's exception was logged...
    assert unknown not in caplog.text and boom not in caplog.text  # ...scrubbed of the key

    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/{good}", seconds=1)
    assert rc == 0, err
    await asyncio.wait_for(router.sinks[good].closed.wait(), 5)
    assert demux(router.sinks[good].data)["frames"]["video"] >= 10


async def test_garbage_closes_only_its_connection(rtmp):
    server, router = rtmp
    port = server.port
    rnd = random.Random(1935)

    # Not RTMP at all.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await eof_within(r, 2)
    w.close()

    # Random bytes (first byte is not the RTMP version).
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(bytes([0x16]) + rnd.randbytes(20000))
    assert await eof_within(r, 2)
    w.close()

    # A truncated handshake that then stalls: the handshake timeout (1 s here) closes it.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"\x03" + rnd.randbytes(700))
    t0 = time.monotonic()
    assert await eof_within(r, 3)
    assert time.monotonic() - t0 >= 0.8
    w.close()

    # A good handshake, then a huge Set Chunk Size.
    c = await RawClient.open(port)
    c.writer.write(chunk(0, 2, ts=0, length=4, type_id=1, stream_id=0, body=struct.pack(">I", 0x7FFFFFFF)))
    assert await eof_within(c.reader, 2)
    await c.close()

    # A command message claiming 16 MiB.
    c = await RawClient.open(port)
    c.writer.write(chunk(0, 3, ts=0, length=0xFFFFFF, type_id=20, stream_id=0, body=b"\x02\x00"))
    assert await eof_within(c.reader, 2)
    await c.close()

    # A fmt 3 chunk on a chunk stream that never had a header.
    c = await RawClient.open(port)
    c.writer.write(chunk(3, 9, body=b"x" * 10))
    assert await eof_within(c.reader, 2)
    await c.close()

    # Garbage after connect, then the peer hangs up.
    c = await RawClient.open(port)
    c.command(0, "connect", 1.0, {"app": "live"})
    await c.recv_command("_result")
    c.writer.write(rnd.randbytes(50000))
    c.writer.write_eof()
    assert await eof_within(c.reader, 3)
    await c.close()

    assert router.calls == []
    # The listener still serves a real publisher.
    key = new_key()
    router.allowed.add(key)
    rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{port}/live/{key}", seconds=1)
    assert rc == 0, err
    await asyncio.wait_for(router.sinks[key].closed.wait(), 5)
    info = demux(router.sinks[key].data)
    assert info["frames"]["video"] >= 10 and info["frames"]["audio"] >= 10
    async with asyncio.timeout(3):
        while server.connections:
            await asyncio.sleep(0.05)


async def test_two_publishers_at_once_reach_their_own_sinks(rtmp):
    server, router = rtmp
    big, small = new_key("big"), new_key("small")
    router.allowed |= {big, small}
    results = await asyncio.gather(
        ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/{big}", seconds=2, realtime=True, size="320x240"),
        ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/{small}", seconds=2, realtime=True, size="160x120"),
    )
    for rc, err in results:
        assert rc == 0, err
    assert sorted(router.calls) == sorted([("live", big), ("live", small)])
    for key, width in ((big, 320), (small, 160)):
        await asyncio.wait_for(router.sinks[key].closed.wait(), 5)
        info = demux(router.sinks[key].data)
        assert info["width"] == width, (key, info)  # each stream went to its own sink
        assert info["frames"]["video"] >= 25 and info["frames"]["audio"] >= 50, info
        assert 1.6 <= info["duration"] <= 2.5, info
    assert server.publishing == 0


async def test_open_tcp_sink_forwards_flv_to_a_tcp_listener():
    received = bytearray()
    done = asyncio.Event()

    async def on_conn(reader, writer):
        while chunk_ := await reader.read(65536):
            received.extend(chunk_)
        writer.close()
        done.set()

    target = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    seen = []

    token = secrets.token_hex(24)

    async def on_publish(app, key):
        seen.append((app, key))
        return await open_tcp_sink("127.0.0.1", target_port, token)

    server = RtmpServer("127.0.0.1", 0, on_publish)
    await server.start()
    try:
        key = new_key()
        rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/app2/{key}", seconds=1)
        assert rc == 0, err
        await asyncio.wait_for(done.wait(), 5)  # EOF reached the target when the publish ended
    finally:
        await server.stop()
        target.close()
        await target.wait_closed()
    assert seen == [("app2", key)]
    assert received.startswith(token.encode())  # the listener's one-time token comes first
    info = demux(received[len(token):])
    assert info["frames"]["video"] >= 10 and info["frames"]["audio"] >= 10, info
    assert 0.7 <= info["duration"] <= 1.5, info


# ---------------------------------------------------------------- raw protocol


async def test_chunk_headers_timestamps_and_aggregates_become_absolute_flv_timestamps(rtmp):
    server, router = rtmp
    key = new_key()
    router.allowed.add(key)
    c = await RawClient.open(server.port)
    sid, status = await c.publish("live/", f"{key}?token=abc")  # app and key are normalised
    assert status[3]["code"] == "NetStream.Publish.Start"
    assert router.calls == [("live", key)]

    w = c.writer
    v1, v2, v3, v4 = b"\x17\x01AAAA", b"\x27\x01BBBB", b"\x27\x01CCCC", bytes(range(256)) + b"DDDD"
    # Video on chunk stream 6 (chunk size is still 128): fmt 0, fmt 2, fmt 3 (new message), then
    # fmt 1 with a 260-byte message split in a fmt 3 continuation.
    w.write(chunk(0, 6, ts=1000, length=6, type_id=9, stream_id=sid, body=v1))
    w.write(chunk(2, 6, ts=40, body=v2))
    w.write(chunk(3, 6, body=v3))  # repeats the delta: 1080
    w.write(chunk(1, 6, ts=20, length=len(v4), type_id=9, body=v4[:128]))
    w.write(chunk(3, 6, body=v4[128:256]) + chunk(3, 6, body=v4[256:]))
    # Audio on chunk stream 4 with extended timestamps, carried on fmt 3 chunks too.
    a1, a2, a3 = b"\xaf\x01" + b"a" * 198, b"\xaf\x01bb", b"\xaf\x01cc"
    w.write(chunk(0, 4, ts=0xFFFFFF, length=len(a1), type_id=8, stream_id=sid, ext=0x01000004, body=a1[:128]))
    w.write(chunk(3, 4, ext=0x01000004, body=a1[128:]))
    w.write(chunk(1, 4, ts=0xFFFFFF, length=len(a2), type_id=8, ext=0x01000000, body=a2))
    w.write(chunk(3, 4, ext=0x01000000, body=a3))  # new message, same extended delta
    # Interleaved: a message on another chunk stream between two chunks of one message.
    v5 = b"\x27\x01" + b"E" * 198
    w.write(chunk(1, 6, ts=10, length=len(v5), type_id=9, body=v5[:128]))
    w.write(chunk(0, 7, ts=5, length=4, type_id=18, stream_id=sid, body=b"\x05\x05\x05\x05"))  # not a real script; passed as-is
    w.write(chunk(3, 6, body=v5[128:]))
    # An aggregate message: two sub-tags, renormalised to the aggregate's timestamp (2000).
    sub = b""
    for tag_type, ts, body in ((9, 500, b"\x27\x01F"), (8, 520, b"\xaf\x01G")):
        sub += bytes([tag_type]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        sub += bytes([ts >> 24, 0, 0, 0]) + body + struct.pack(">I", 11 + len(body))
    w.write(chunk(0, 8, ts=2000, length=len(sub), type_id=22, stream_id=sid, body=sub))
    # @setDataFrame metadata is unwrapped.
    meta = amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray(width=64.0, height=48.0))
    w.write(chunk(0, 5, ts=0, length=len(meta), type_id=18, stream_id=sid, body=meta))
    c.command(sid, "FCUnpublish", 0.0, None, key)
    sink = router.sinks[key]
    await asyncio.wait_for(sink.closed.wait(), 5)

    assert flv_tags(bytes(sink.data)) == [
        (9, 1000, v1),
        (9, 1040, v2),
        (9, 1080, v3),
        (9, 1100, v4),
        (8, 0x01000004, a1),
        (8, 0x02000004, a2),
        (8, 0x03000004, a3),
        (18, 5, b"\x05\x05\x05\x05"),
        (9, 1110, v5),
        (9, 2000, b"\x27\x01F"),
        (8, 2020, b"\xaf\x01G"),
        (18, 0, amf0.encode("onMetaData", amf0.EcmaArray(width=64.0, height=48.0))),
    ]
    assert bytes(sink.data)[4] == 0x05
    await c.close()


async def test_control_messages_ping_ack_and_stop(rtmp):
    server, router = rtmp
    key = new_key()
    router.allowed.add(key)
    c = await RawClient.open(server.port)
    sid, status = await c.publish("live", key)
    assert status[3]["code"] == "NetStream.Publish.Start"
    # connect was answered with Window Ack Size, Set Peer Bandwidth and a larger chunk size.
    types = [t for t, _ in c.controls]
    assert types[:3] == [5, 6, 1]
    assert struct.unpack(">I", c.controls[2][1])[0] == 4096
    assert (4, struct.pack(">HI", 0, sid)) in c.controls  # StreamBegin

    # Ping.
    c.send(2, 4, 0, struct.pack(">HI", 6, 123456))
    while (4, struct.pack(">HI", 7, 123456)) not in c.controls:
        await c.recv()
    # Acknowledgements once our window is exceeded (and a bigger chunk size from us).
    c.send(2, 5, 0, struct.pack(">I", 10000))
    c.send(2, 1, 0, struct.pack(">I", 8192))
    c.out.chunk_size = 8192
    for i in range(3):
        c.send(6, 9, sid, b"\x17\x01" + bytes(6000), ts=i * 33)
    while not any(t == 3 for t, _ in c.controls):
        await c.recv()
    ack = next(p for t, p in c.controls if t == 3)
    assert struct.unpack(">I", ack)[0] >= 10000
    # An unknown command and an Abort are harmless.
    c.command(0, "someVendorThing", 9.0, None, "x")
    c.send(2, 2, 0, struct.pack(">I", 6))
    c.send(6, 9, sid, b"\x17\x01end", ts=200)

    sink = router.sinks[key]
    async with asyncio.timeout(5):
        while len(flv_tags(bytes(sink.data))) < 4:
            await asyncio.sleep(0.02)
    assert [ts for _, ts, _ in flv_tags(bytes(sink.data))] == [0, 33, 66, 200]
    assert server.publishing == 1
    await server.stop()  # closes the connection and the sink
    assert sink.closed.is_set()
    assert await eof_within(c.reader, 2)
    assert server.connections == 0
    await c.close()


async def test_slow_sink_backpressures_the_publisher(rtmp):
    server, router = rtmp
    key = new_key()
    router.allowed.add(key)
    c = await RawClient.open(server.port)
    sid, _ = await c.publish("live", key)
    sink = router.sinks[key]
    sink.gate = asyncio.Event()  # the sink blocks

    c.send(2, 1, 0, struct.pack(">I", 65536))
    c.out.chunk_size = 65536
    frame = b"\x27\x01" + bytes(256 * 1024)
    total = 96
    for i in range(total):  # 24 MiB, written without waiting
        c.send(6, 9, sid, frame, ts=i * 40)
    await asyncio.sleep(1.0)
    pending = c.writer.transport.get_write_buffer_size()
    # The server read at most one tag plus socket/stream buffers, so most of it is still here.
    assert pending > 12 * 1024 * 1024, pending
    assert sink.writes == 0 and len(sink.data) == 0

    sink.gate.set()
    async with asyncio.timeout(20):
        while sink.writes < total + 1:  # header + every tag
            await asyncio.sleep(0.05)
    tags = flv_tags(bytes(sink.data))
    assert len(tags) == total and tags[-1][1] == (total - 1) * 40
    await c.close()


async def test_idle_connections_and_stalled_sinks_are_dropped():
    router = Router()
    server = RtmpServer("127.0.0.1", 0, router, idle_timeout=0.5, handshake_timeout=0.5)
    await server.start()
    try:
        idle = await RawClient.open(server.port)  # handshakes, then says nothing
        key = new_key()
        router.allowed.add(key)
        stalled = await RawClient.open(server.port)
        sid, _ = await stalled.publish("live", key)
        sink = router.sinks[key]
        sink.gate = asyncio.Event()  # never set: the sink makes no progress
        stalled.send(6, 9, sid, b"\x17\x01frame")
        t0 = time.monotonic()
        assert await eof_within(idle.reader, 5)
        assert await eof_within(stalled.reader, 5)
        assert sink.closed.is_set()
        assert 0.4 <= time.monotonic() - t0 <= 4.0
        assert server.publishing == 0
        await idle.close()
        await stalled.close()
    finally:
        await server.stop()


# ---------------------------------------------------------------- units


async def test_chunk_reader_limits_and_abort():
    reader = asyncio.StreamReader()
    acks = []
    cr = ChunkReader(reader, on_ack=acks.append)
    cr.set_ack_window(100)
    body = bytes(300)
    reader.feed_data(chunk(0, 6, ts=7, length=300, type_id=9, stream_id=1, body=body[:128]))
    reader.feed_data(chunk(0, 2, ts=0, length=4, type_id=2, stream_id=0, body=struct.pack(">I", 6)))
    reader.feed_data(chunk(0, 6, ts=9, length=3, type_id=9, stream_id=1, body=b"xyz"))
    reader.feed_data(chunk(0, 320, ts=1, length=2, type_id=8, stream_id=1, body=b"hi"))  # 3-byte basic header
    reader.feed_eof()
    abort = await cr.read_message()
    assert abort.type_id == 2
    cr.abort(6)
    msg = await cr.read_message()
    assert (msg.csid, msg.timestamp, msg.payload) == (6, 9, b"xyz")
    msg = await cr.read_message()
    assert (msg.csid, msg.type_id, msg.payload) == (320, 8, b"hi")
    assert acks and acks[0] >= 100
    with pytest.raises(asyncio.IncompleteReadError):
        await cr.read_message()
    for bad in (0, 0x7FFFFFFF):
        with pytest.raises(ChunkError):
            cr.set_chunk_size(bad)


def test_amf0_round_trip_and_garbage():
    values = [
        1.5, True, False, "héllo", "x" * 70000, None, amf0.UNDEFINED,
        {"app": "live", "n": 3.0, "nested": {"a": [1.0, "b", None]}},
        amf0.EcmaArray(duration=0.0, encoder="Lavf"), [1.0, 2.0], amf0.Date(1.7e12, 0),
    ]  # fmt: skip
    data = amf0.encode(*values)
    assert data[0] == 0x00 and amf0.encode("x" * 70000)[0] == 0x0C  # long string marker
    decoded = amf0.decode_all(data)
    assert decoded == values
    assert isinstance(decoded[8], amf0.EcmaArray)
    rnd = random.Random(7)
    for _ in range(2000):
        blob = rnd.randbytes(rnd.randrange(1, 64))
        try:
            amf0.decode_all(blob)
        except amf0.AMF0Error:
            pass
    with pytest.raises(amf0.AMF0Error):
        amf0.decode_all(b"\x0a\xff\xff\xff\xff")  # strict array longer than the data
    with pytest.raises(amf0.AMF0Error):
        amf0.decode_all(b"\x03" * 100)  # nesting bomb


def test_redact_key():
    assert redact_key("live_123456789_abcdefghijklmnop") == "live…"
    assert redact_key("abc") == "a…"
    assert redact_key("") == "<empty>"
    assert "abcdefgh" not in redact_key("abcdefgh")
