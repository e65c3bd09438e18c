"""Forwarding a publish's FLV bytes over TCP to the channel's stream actor (possibly on
another node).  The stream is the actor's one-time token, then the FLV file as-is: header,
then tags; EOF ends it."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from .server import PublishSink

__all__ = ["TcpSink", "open_tcp_sink"]

log = logging.getLogger(__name__)

# How much may wait in the socket's user-space buffer before write() blocks; beyond this
# the publisher is slowed down instead (TCP backpressure end to end).
WRITE_HIGH_WATER = 256 * 1024


class TcpSink:
    """A ``PublishSink`` writing to a TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionError("sink is closed")
        if self._writer.is_closing() or self._reader.at_eof():
            # The receiver went away (it never sends anything, so EOF means it closed).
            raise ConnectionResetError("forward target closed the connection")
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # close() sends what is still buffered, then FIN: the receiver sees a clean EOF.
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10.0):
                await self._writer.wait_closed()


async def open_tcp_sink(host: str, port: int, token: str, *, connect_timeout: float = 10.0) -> PublishSink:
    """Connect to ``host:port``, present ``token`` (the listener's one-time token, issued
    with the address) and return a sink that forwards FLV bytes there."""
    async with asyncio.timeout(connect_timeout):
        reader, writer = await asyncio.open_connection(host, port)
    writer.write(token.encode("ascii"))  # before any FLV: the listener reads nothing else first
    log.debug("rtmp: forwarding FLV to %s:%d", host, port)
    return TcpSink(reader, writer)
