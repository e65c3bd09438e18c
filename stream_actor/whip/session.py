"""A WHIP session: one publisher's peer connection, feeding a media pipeline into a sink."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from gateway.rtmp.server import PublishSink

from . import ffmpeg_compat
from .media import MediaPipeline
from .options import WhipOptions
from .sdp import BadOffer, rewrite_answer

log = logging.getLogger(__name__)

SINK_CLOSE_TIMEOUT = 10.0
PC_CLOSE_TIMEOUT = 10.0


class WhipSession:
    """One publisher: its peer connection, media pipeline and sink, and how it ends (see the
    package docstring). ``on_end`` is called once everything is closed."""

    def __init__(self, options: WhipOptions, label: str, sink: PublishSink, ffmpeg: bool,
                 on_end: Callable[[WhipSession], None]) -> None:
        self.options = options
        self.on_end = on_end
        self.id = secrets.token_urlsafe(16)
        self.sink = sink
        self.ffmpeg = ffmpeg
        self.label = f"{label}/{self.id[:6]}"
        servers = [RTCIceServer(urls=u) for u in self.options.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.pipeline: MediaPipeline | None = None
        self.tracks: list[MediaStreamTrack] = []
        self.tasks: set[asyncio.Task] = set()
        self.created = time.monotonic()
        self.last_frame: float | None = None
        self.readers = 0
        self.tracks_ended = 0
        self.reason = ""
        self._ending: asyncio.Task | None = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def negotiate(self, offer: str, kinds: list[str]) -> str:
        pc = self.pc
        if self.ffmpeg and self.options.ffmpeg_compat and self.options.ffmpeg_dtls == "1.0":
            ffmpeg_compat.use_dtls10(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks.append(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.debug("whip %s: connection %s", self.label, state)
            if state == "failed":
                self.end("ICE/DTLS failed")
            elif state == "closed":
                self.end("the connection closed")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except (ValueError, TypeError, KeyError, IndexError, AssertionError) as e:
            raise BadOffer(f"cannot answer this offer: {e or type(e).__name__}") from None
        local = pc.localDescription.sdp
        has = {m.kind for m in SessionDescription.parse(local).media
               if m.kind in kinds and m.port != 0 and m.rtp.codecs and m.direction in ("recvonly", "sendrecv")}
        if not has:
            raise BadOffer("no supported codec: video H.264 or VP8, audio Opus, PCMU or PCMA")
        if self.ffmpeg and self.options.ffmpeg_compat:
            ffmpeg_compat.fix_transports(pc, self._spawn)
        self.pipeline = MediaPipeline(
            self.sink, self.options, has_video="video" in has, has_audio="audio" in has,
            label=self.label, on_failure=lambda reason: self.end(reason),
        )
        self.pipeline.start()
        for track in self.tracks:
            if track.kind in has:
                self.readers += 1
                self._spawn(self._read(track))
        self._spawn(self._watch())
        return rewrite_answer(local, self.options.public_ip)

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.last_frame = time.monotonic()
                if self.pipeline is not None:
                    self.pipeline.push(frame)
        except MediaStreamError:
            self.tracks_ended += 1
            if self.tracks_ended >= self.readers:
                self.end("the publisher stopped sending")
        except Exception:
            log.exception("whip %s: reading the %s track failed", self.label, track.kind)
            self.end(f"{track.kind} track error")

    async def _watch(self) -> None:
        o = self.options
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            started = self.pipeline is not None and self.pipeline.stats.first_bytes_at is not None
            if not started and now - self.created > o.connect_timeout:
                self.end(f"no media within {o.connect_timeout:g} s")
                return
            if self.last_frame is not None and now - self.last_frame > o.idle_timeout:
                self.end(f"no media for {o.idle_timeout:g} s")
                return

    @property
    def ending(self) -> bool:
        return self._ending is not None

    def end(self, reason: str) -> asyncio.Task:
        """End the session (idempotent); the task completes once the sink is closed."""
        if self._ending is None:
            self.reason = reason
            self._ending = asyncio.get_running_loop().create_task(self._finish())
        return self._ending

    async def _finish(self) -> None:
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        try:
            async with asyncio.timeout(PC_CLOSE_TIMEOUT):
                await self.pc.close()
        except Exception as e:
            log.warning("whip %s: closing the peer connection: %s", self.label, type(e).__name__)
        if self.pipeline is not None:
            await self.pipeline.close()
        try:
            async with asyncio.timeout(SINK_CLOSE_TIMEOUT):
                await self.sink.close()
        except Exception as e:
            log.warning("whip %s: closing the sink: %s", self.label, type(e).__name__)
        self.on_end(self)
        stats = self.pipeline.stats.summary() if self.pipeline is not None else {}
        log.info("whip %s: session ended (%s) after %.1f s; %s",
                 self.label, self.reason, time.monotonic() - self.created, stats)
