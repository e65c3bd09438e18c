"""The public RTMP port under abuse, with the ffmpeg CLI publishing on it throughout.

Attackers connect from other loopback addresses (127.0.0.2, .3, .4: Linux routes all of
127/8 to lo), so the per-IP limits keep them apart from the publisher on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import logging
import os

from test_rtmp_server import RawClient, Router, chunk, demux, eof_within, ffmpeg_publish, new_key

from gateway.rtmp import RtmpServer

LOGGER = "gateway.rtmp"
DEADLINE = 2.0  # publish_deadline in these tests


async def _connect_from(ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` one byte every 0.3 s (a slowloris), until the server hangs up."""
    try:
        for b in data:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.3)
    except ConnectionError:
        pass


async def _flood(writer: asyncio.StreamWriter, total: int) -> int:
    """Partial command messages on 60 chunk streams, each claiming 1 MiB (the most a
    command may be), ``total`` bytes in all; returns what was written before a reset."""
    body = os.urandom(128)  # the default chunk size: one chunk of each message at a time
    streams = range(3, 63)
    data = b"".join(chunk(0, csid, ts=0, length=1024 * 1024, type_id=20, stream_id=0, body=body) for csid in streams)
    more = b"".join(chunk(3, csid, body=body) for csid in streams)
    sent = 0
    try:
        while sent < total:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), 5)
            sent += len(data)
            data = more
    except (ConnectionError, TimeoutError):
        pass
    return sent


async def test_slowloris_and_preconnect_flood_leave_the_publisher_streaming(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    router = Router()
    key = new_key()
    router.allowed.add(key)
    server = RtmpServer("127.0.0.1", 0, router, publish_deadline=DEADLINE, max_connections_per_ip=8)
    await server.start()
    port = server.port
    try:
        publish = asyncio.create_task(
            ffmpeg_publish(f"rtmp://127.0.0.1:{port}/live/{key}", seconds=8, realtime=True)
        )
        async with asyncio.timeout(20):
            while key not in router.sinks:  # the publisher is live before the attack starts
                await asyncio.sleep(0.05)

        # Slowloris from 127.0.0.2, up to its per-IP cap: half never finish the handshake,
        # half finish it and then dribble chunk-header bytes, never a whole message.
        loris = []
        for i in range(8):
            if i % 2:
                c = await RawClient.open(port, local_ip="127.0.0.2")
                reader, writer, data = c.reader, c.writer, bytes(64)
            else:
                reader, writer = await _connect_from("127.0.0.2", port)
                data = b"\x03" + bytes(1600)
            loris.append((reader, writer, asyncio.create_task(_trickle(writer, data))))
        await asyncio.sleep(0.2)
        assert server.connections >= 9  # the eight plus the publisher

        # One more from 127.0.0.2 is over the cap: closed without a handshake reply.
        reader, writer = await _connect_from("127.0.0.2", port)
        writer.write(b"\x03" + bytes(1536))
        async with asyncio.timeout(5):
            try:
                reply = await reader.read(1)
            except ConnectionResetError:  # closed with our bytes unread
                reply = b""
        assert reply == b""
        writer.close()
        assert server.refused_connections >= 1

        # Pre-connect memory flood from 127.0.0.3: megabytes of partial command messages.
        flood = await RawClient.open(port, local_ip="127.0.0.3")
        sent = await _flood(flood.writer, 8 * 1024 * 1024)
        assert await eof_within(flood.reader, 5)
        await flood.close()
        assert "more than" in caplog.text and "before a publish was accepted" in caplog.text, sent

        # Media before publish, from 127.0.0.3: closed at the message header.
        early = await RawClient.open(port, local_ip="127.0.0.3")
        early.command(0, "connect", 1.0, {"app": "live"})
        await early.recv_command("_result")
        early.writer.write(chunk(0, 6, ts=0, length=4 * 1024 * 1024, type_id=9, stream_id=1, body=bytes(128)))
        assert await eof_within(early.reader, 5)
        await early.close()
        assert "media message (type 9) before a publish was accepted" in caplog.text

        # The slowloris connections are closed by the publish deadline (not 10 s handshake
        # or 30 s idle timeouts): every one within a generous bound.
        async with asyncio.timeout(DEADLINE + 6):
            for reader, _, _ in loris:
                assert await eof_within(reader, DEADLINE + 6)
        for _, writer, task in loris:
            task.cancel()
            writer.close()
        assert "timed out before publishing" in caplog.text

        # With them gone, 127.0.0.2 may connect again.
        again = await RawClient.open(port, local_ip="127.0.0.2")
        await again.close()

        rc, err = await asyncio.wait_for(publish, 60)
        assert rc == 0, err
    finally:
        await server.stop()
    assert router.calls == [("live", key)]
    sink = router.sinks[key]
    assert sink.closed.is_set()
    info = demux(sink.data)
    assert info["frames"]["video"] >= 100 and info["frames"]["audio"] >= 300, info  # 8 s at 15 fps
    assert 7.5 <= info["duration"] <= 8.6, info


async def test_publish_attempts_are_rate_limited_per_address():
    router = Router()
    good = new_key()
    router.allowed.add(good)
    server = RtmpServer("127.0.0.1", 0, router, publish_rate=3)
    await server.start()
    try:
        for _ in range(3):  # guessing keys from 127.0.0.4
            c = await RawClient.open(server.port, local_ip="127.0.0.4")
            _, status = await c.publish("live", new_key("guess"))
            assert status[3]["code"] == "NetStream.Publish.BadName"
            await c.close()
        assert len(router.calls) == 3
        # The fourth attempt, even with a good key, is refused before it is routed.
        c = await RawClient.open(server.port, local_ip="127.0.0.4")
        _, status = await c.publish("live", good)
        assert status[3]["code"] == "NetStream.Publish.BadName"
        assert await eof_within(c.reader, 5)
        await c.close()
        assert len(router.calls) == 3 and good not in router.sinks
        # Another address is not affected.
        rc, err = await ffmpeg_publish(f"rtmp://127.0.0.1:{server.port}/live/{good}", seconds=1)
        assert rc == 0, err
        await asyncio.wait_for(router.sinks[good].closed.wait(), 5)
        assert demux(router.sinks[good].data)["frames"]["video"] >= 10
    finally:
        await server.stop()

