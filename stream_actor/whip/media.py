"""WHIP media: decoded WebRTC frames -> H.264 + AAC re-encode -> FLV bytes -> ``PublishSink``.

aiortc hands us decoded frames (VP8/H.264 video as ``av.VideoFrame``, Opus/G.711 audio as
``av.AudioFrame``).  The stream actor wants what OBS sends over RTMP: one FLV byte stream
with H.264 (keyframe every ``keyframe_interval`` seconds) and AAC.  So each session gets a
``MediaPipeline``:

* ``push(frame)`` runs on the event loop: it maps the frame's media timestamp onto the
  session clock (``_Timeline``) and appends it to a bounded queue.  When the queue is full
  the **oldest video frame is dropped** (the oldest audio frame, for audio): a publisher
  that outruns the encoder costs frames, never unbounded memory or growing latency.
* one encoder thread per session does the blocking work: scale to the output size (the
  first frame's, capped), libx264 (``tune=zerolatency``: no B-frames, no lookahead, so
  one frame in, one packet out) with a keyframe forced every ``keyframe_interval`` seconds
  of stream time, AAC through a 1024-sample FIFO, and FLV tags built here (no libavformat
  muxer, whose interleaving queue would add latency).
* each batch of tags is written to the sink on the event loop and the thread waits for the
  write: a slow sink slows the encoder, and then the bounded queue drops frames.

Timestamps: aiortc gives each track its own RTP-derived pts starting at 0.  ``_Timeline``
turns them into session-clock seconds as ``media_time + min(arrival - media_time)``: the
offset is the smallest transit delay seen so far, so jitter does not move timestamps, both
tracks land on the same wall clock (A/V sync to within the difference of their minimum
delays), and a sender whose clock runs fast or jumps gets re-anchored.  FLV timestamps are
milliseconds from the first video frame (the first audio frame when there is no video);
video stays strictly increasing, and audio keeps a sample-exact timeline that is padded
with silence across small gaps (packet loss) and jumps across large ones.
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import fractions
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from gateway.rtmp import amf0
from gateway.rtmp.flv import FLAG_AUDIO, FLAG_VIDEO, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, flv_header, flv_tag
from gateway.rtmp.server import PublishSink

if TYPE_CHECKING:
    from .options import WhipOptions

__all__ = ["FlvMuxer", "MediaPipeline", "PipelineStats", "avc_config", "split_annexb"]

log = logging.getLogger(__name__)

PR_SET_NAME = 15  # prctl(2)
MS = fractions.Fraction(1, 1000)
AUDIO_RATE = 48000
AUDIO_TB = fractions.Fraction(1, AUDIO_RATE)
AAC_FRAME = 1024
AUDIO_TOLERANCE = int(0.06 * AUDIO_RATE)  # timeline slack before a gap or overlap counts
AUDIO_MAX_FILL = 2 * AUDIO_RATE  # gaps up to this are filled with silence; longer ones jump
TIMELINE_RESET = 5.0  # a frame this much later than the best transit delay re-anchors a track
AUDIO_HOLD = 1.0  # seconds of audio kept while the first video frame is awaited

ENCODER_THREAD = "whip-encode"  # the OS thread name (top -H, /proc/PID/task/TID/comm)

NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 6, 7, 8, 9
FLV_AVC, FLV_KEY, FLV_INTER = 7, 1, 2
FLV_AAC_HEADER = 0xAF  # AAC, "44 kHz", 16-bit, stereo: fixed by the FLV spec for AAC


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-visible name, so an operator (and a test) sees which
    process does the encoding. Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------- H.264 / FLV framing


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes removed)."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    nals = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        if k + 1 < len(starts) and e > s and data[e - 1] == 0:
            e -= 1  # the leading zero of a 4-byte start code
        if e > s:
            nals.append(data[s:e])
    return nals


def avc_config(sps: bytes, pps: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord (ISO 14496-15) for one SPS and one PPS."""
    if len(sps) < 4:
        raise ValueError("SPS too short")
    record = (
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1))
        + struct.pack(">H", len(sps)) + sps
        + b"\x01" + struct.pack(">H", len(pps)) + pps
    )
    if sps[1] in (100, 110, 122, 144):
        # High-profile extension: 4:2:0, 8-bit luma and chroma, no SPS extensions (what our
        # encoder always produces).
        record += bytes((0xFC | 1, 0xF8, 0xF8, 0))
    return record


class FlvMuxer:
    """Builds FLV bytes: the header, onMetaData, AVC and AAC tags.  Pure, no I/O."""

    def __init__(self, *, has_audio: bool, has_video: bool) -> None:
        self.flags = (FLAG_AUDIO if has_audio else 0) | (FLAG_VIDEO if has_video else 0)
        self._params: tuple[bytes, bytes] | None = None

    def header(self) -> bytes:
        return flv_header(self.flags)

    def metadata(self, meta: dict) -> bytes:
        return flv_tag(TAG_SCRIPT, 0, amf0.encode("onMetaData", amf0.EcmaArray(meta)))

    def video(self, dts_ms: int, cts_ms: int, key: bool, annexb: bytes) -> bytes:
        """Tags for one encoded frame: an AVC sequence header first whenever the SPS/PPS
        change (the first keyframe included), then the frame in AVCC form."""
        out = bytearray()
        sps = pps = None
        units = []
        for nal in split_annexb(annexb):
            kind = nal[0] & 0x1F
            if kind == NAL_SPS:
                sps = nal
            elif kind == NAL_PPS:
                pps = nal
            elif kind != NAL_AUD:
                units.append(nal)
        if sps is not None and pps is not None and (sps, pps) != self._params:
            self._params = (sps, pps)
            out += flv_tag(TAG_VIDEO, dts_ms, bytes((FLV_KEY << 4 | FLV_AVC, 0, 0, 0, 0)) + avc_config(sps, pps))
        if self._params is None or not units:
            return bytes(out)  # nothing decodable before the first SPS/PPS
        cts = max(-0x800000, min(0x7FFFFF, cts_ms)) & 0xFFFFFF
        body = bytearray(((FLV_KEY if key else FLV_INTER) << 4 | FLV_AVC, 1, cts >> 16, (cts >> 8) & 0xFF, cts & 0xFF))
        for nal in units:
            body += struct.pack(">I", len(nal))
            body += nal
        out += flv_tag(TAG_VIDEO, dts_ms, bytes(body))
        return bytes(out)

    def audio_config(self, asc: bytes) -> bytes:
        return flv_tag(TAG_AUDIO, 0, bytes((FLV_AAC_HEADER, 0)) + asc)

    def audio(self, ts_ms: int, raw: bytes) -> bytes:
        return flv_tag(TAG_AUDIO, ts_ms, bytes((FLV_AAC_HEADER, 1)) + raw)


# ---------------------------------------------------------------- timing


class _Timeline:
    """Maps one track's media time (seconds from its first frame) onto the monotonic clock."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.resets = 0

    def map(self, media_t: float, now: float) -> float:
        off = now - media_t
        if self.offset is None or off < self.offset:
            self.offset = off  # the least-delayed frame so far defines the offset
        elif off > self.offset + TIMELINE_RESET:
            self.offset = off  # the sender's clock jumped back (or we stalled for long)
            self.resets += 1
        return media_t + self.offset


def output_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The encoded size: the source's, scaled down to fit the caps, even dimensions."""
    scale = min(1.0, max_width / width, max_height / height)
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


# ---------------------------------------------------------------- the pipeline


@dataclass
class PipelineStats:
    video_in: int = 0
    video_dropped: int = 0  # dropped from a full queue (or before the output started)
    video_encoded: int = 0
    audio_in: int = 0
    audio_dropped: int = 0
    audio_packets: int = 0
    silence_samples: int = 0
    bytes_out: int = 0
    width: int = 0
    height: int = 0
    started_at: float = field(default_factory=time.monotonic)
    first_bytes_at: float | None = None  # monotonic time of the first sink write
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    """Seconds from a video frame's arrival from aiortc to its FLV tag's sink write."""

    def summary(self) -> dict:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 4) if lat else None

        return {
            "video_in": self.video_in,
            "video_dropped": self.video_dropped,
            "video_encoded": self.video_encoded,
            "audio_in": self.audio_in,
            "audio_dropped": self.audio_dropped,
            "audio_packets": self.audio_packets,
            "bytes_out": self.bytes_out,
            "size": f"{self.width}x{self.height}",
            "latency_p50": pct(0.5),
            "latency_p95": pct(0.95),
        }


class MediaPipeline:
    """One session's re-encode: frames in (``push``, event loop), FLV bytes out (``sink``)."""

    def __init__(
        self,
        sink: PublishSink,
        options: WhipOptions,
        *,
        has_video: bool,
        has_audio: bool,
        label: str = "",
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        if not (has_video or has_audio):
            raise ValueError("a pipeline needs audio or video")
        self.sink = sink
        self.options = options
        self.has_video = has_video
        self.has_audio = has_audio
        self.label = label
        self.on_failure = on_failure
        self.stats = PipelineStats()
        self.failed: str | None = None
        self._loop = asyncio.get_running_loop()
        self._cond = threading.Condition()
        self._items: collections.deque = collections.deque()
        self._queued = {"video": 0, "audio": 0}
        self._limits = {"video": max(1, options.max_queued_video_frames), "audio": max(1, options.max_queued_audio_frames)}
        self._closing = False
        self._timelines = {"video": _Timeline(), "audio": _Timeline()}
        self._thread = threading.Thread(target=self._run, name=f"whip-encode-{label}", daemon=True)
        # Encoder-thread state.
        self._flv = FlvMuxer(has_audio=has_audio, has_video=has_video)
        self._origin: float | None = None
        self._header_sent = False
        self._venc: av.VideoCodecContext | None = None
        self._reformatter = VideoReformatter()
        self._last_vdts: int | None = None
        self._last_key: int | None = None
        self._keyint_ms = max(1, int(round(options.keyframe_interval * 1000)))
        self._aenc: av.AudioCodecContext | None = None
        self._resampler: av.AudioResampler | None = None
        self._fifo: av.AudioFifo | None = None
        self._a_next = 0  # session sample position of the next sample into the FIFO
        self._a_read = 0  # ... and of the next sample out of it
        self._a_started = False
        self._last_ats = 0
        self._held_audio: collections.deque = collections.deque()

    # ------------------------------------------------------------ event-loop side

    def start(self) -> None:
        self._thread.start()

    def push(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        """Queue a decoded frame (never blocks; drops the oldest of its kind when full)."""
        kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
        now = time.monotonic()
        if frame.pts is not None and frame.time_base is not None:
            media_t = float(frame.pts * frame.time_base)
        else:
            media_t = now - self.stats.started_at
        t = self._timelines[kind].map(media_t, now)
        with self._cond:
            if self._closing:
                return
            if kind == "video":
                self.stats.video_in += 1
            else:
                self.stats.audio_in += 1
            if self._queued[kind] >= self._limits[kind]:
                for i, item in enumerate(self._items):
                    if item[0] == kind:
                        del self._items[i]
                        break
                self._queued[kind] -= 1
                if kind == "video":
                    self.stats.video_dropped += 1
                else:
                    self.stats.audio_dropped += 1
            self._items.append((kind, frame, t, now))
            self._queued[kind] += 1
            self._cond.notify()

    async def close(self) -> None:
        """Encode what is queued, flush the encoders, write the last tags; then return.
        Does not close the sink (the session does)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        elif self._thread.ident is None:
            return  # never started

    async def _write(self, data: bytes) -> None:
        await self.sink.write(data)
        self.stats.bytes_out += len(data)
        if self.stats.first_bytes_at is None:
            self.stats.first_bytes_at = time.monotonic()

    # ------------------------------------------------------------ encoder thread

    def _emit(self, data: bytes) -> bool:
        if self.failed is not None or not data:
            return self.failed is None
        try:
            fut = asyncio.run_coroutine_threadsafe(self._write(data), self._loop)
        except RuntimeError as e:  # the loop is gone
            self._fail(f"event loop closed: {e}")
            return False
        try:
            fut.result(timeout=self.options.sink_write_timeout)
        except Exception as e:
            fut.cancel()
            self._fail(f"sink write failed: {type(e).__name__}: {e}" if str(e) else f"sink write failed: {type(e).__name__}")
            return False
        return True

    def _fail(self, reason: str) -> None:
        if self.failed is not None:
            return
        self.failed = reason
        if self.on_failure is not None:
            try:
                self._loop.call_soon_threadsafe(self.on_failure, reason)
            except RuntimeError:
                pass

    def _run(self) -> None:
        name_os_thread(ENCODER_THREAD)
        try:
            while True:
                with self._cond:
                    while not self._items and not self._closing:
                        self._cond.wait()
                    if not self._items:
                        break
                    kind, frame, t, arrived = self._items.popleft()
                    self._queued[kind] -= 1
                if self.failed is not None:
                    continue  # drain
                if kind == "video":
                    self._video(frame, t, arrived)
                else:
                    self._audio(frame, t)
            if self.failed is None:
                self._flush()
        except Exception as e:  # an encoder error: end the session, never the process
            log.exception("whip %s: encoder failed", self.label)
            self._fail(f"encoder error: {type(e).__name__}: {e}")
        finally:
            self._venc = self._aenc = self._resampler = self._fifo = None

    def _start_output(self, width: int = 0, height: int = 0) -> bool:
        if self._header_sent:
            return True
        self._header_sent = True
        o = self.options
        meta: dict = {"duration": 0.0, "encoder": "livecut-whip"}
        if self.has_video:
            meta.update(width=float(width), height=float(height), framerate=30.0,
                        videocodecid=float(FLV_AVC), videodatarate=o.video_bitrate / 1000)
        if self.has_audio:
            meta.update(audiocodecid=10.0, audiosamplerate=float(AUDIO_RATE), audiosamplesize=16.0,
                        stereo=True, audiodatarate=o.audio_bitrate / 1000)
        return self._emit(self._flv.header()) and self._emit(self._flv.metadata(meta))

    # video

    def _open_video(self, frame: av.VideoFrame) -> None:
        o = self.options
        w, h = output_size(frame.width, frame.height, o.max_width, o.max_height)
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height = w, h
        enc.pix_fmt = "yuv420p"
        enc.time_base = MS
        enc.framerate = fractions.Fraction(30, 1)  # a rate-control hint; the input is VFR
        enc.bit_rate = o.video_bitrate
        opts = {
            "preset": o.x264_preset,
            "tune": "zerolatency",
            "forced-idr": "1",
            "bf": "0",
            "g": str(max(1, int(o.keyframe_interval * 120))),  # we force keyframes by time...
            "x264-params": "scenecut=0",  # ...and only then: one GOP per keyframe_interval
            "maxrate": str(o.video_bitrate),
            "bufsize": str(2 * o.video_bitrate),
        }
        if o.encoder_threads > 0:
            opts["threads"] = str(o.encoder_threads)
        enc.options = opts
        enc.open()
        self._venc = enc
        self.stats.width, self.stats.height = w, h
        log.info("whip %s: video %dx%d -> H.264 %dx%d (%s, %d kb/s, keyframe every %.1f s)",
                 self.label, frame.width, frame.height, w, h, o.x264_preset, o.video_bitrate // 1000,
                 o.keyframe_interval)

    def _video(self, frame: av.VideoFrame, t: float, arrived: float) -> None:
        if self._venc is None:
            self._open_video(frame)
            if self._origin is None:
                self._origin = t
            if not self._start_output(self._venc.width, self._venc.height):
                return
            held, self._held_audio = self._held_audio, collections.deque()
            for af, at in held:  # audio that came in just before the first video frame
                self._audio(af, at)
        enc = self._venc
        ts = int(round((t - self._origin) * 1000))
        if ts < 0:
            self.stats.video_dropped += 1
            return
        if self._last_vdts is not None and ts <= self._last_vdts:
            ts = self._last_vdts + 1
        out = self._reformatter.reformat(frame, width=enc.width, height=enc.height, format="yuv420p")
        out.pts = ts
        out.time_base = MS
        due = self._last_key is None or ts - self._last_key >= self._keyint_ms - 5
        out.pict_type = PictureType.I if due else PictureType.NONE
        data = bytearray()
        for packet in enc.encode(out):
            data += self._video_packet(packet)
        self.stats.video_encoded += 1
        if self._emit(bytes(data)):
            self.stats.latencies.append(time.monotonic() - arrived)

    def _video_packet(self, packet: av.Packet) -> bytes:
        pts = packet.pts if packet.pts is not None else packet.dts
        dts = packet.dts if packet.dts is not None else pts
        if pts is None:
            return b""
        if self._last_vdts is not None and dts <= self._last_vdts:
            dts = self._last_vdts + 1
        self._last_vdts = dts
        key = bool(packet.is_keyframe)
        if key:
            self._last_key = pts
        return self._flv.video(dts, pts - dts, key, bytes(packet))

    # audio

    def _open_audio(self) -> None:
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate = AUDIO_RATE
        enc.layout = "stereo"
        enc.format = "fltp"
        enc.bit_rate = self.options.audio_bitrate
        enc.time_base = AUDIO_TB
        enc.open()
        self._aenc = enc
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        self._fifo = av.AudioFifo()
        self._emit(self._flv.audio_config(bytes(enc.extradata or b"")))

    def _audio(self, frame: av.AudioFrame, t: float) -> None:
        if self._origin is None:
            if self.has_video:
                # Wait for the first video frame; keep the last AUDIO_HOLD s meanwhile.
                self._held_audio.append((frame, t))
                while self._held_audio and t - self._held_audio[0][1] > AUDIO_HOLD:
                    self._held_audio.popleft()
                    self.stats.audio_dropped += 1
                return
            self._origin = t
            if not self._start_output():
                return
        if self._aenc is None:
            self._open_audio()
        pos = int(round((t - self._origin) * AUDIO_RATE))
        if not self._a_started:
            if pos + frame.samples * AUDIO_RATE // max(1, frame.sample_rate) <= 0:
                self.stats.audio_dropped += 1
                return
            self._a_started = True
            self._a_next = self._a_read = max(0, pos)
        gap = pos - self._a_next
        if gap > AUDIO_TOLERANCE:
            if gap <= AUDIO_MAX_FILL:
                self._fifo_write(self._silence(gap))
                self.stats.silence_samples += gap
            else:
                self._drain_fifo(pad=True)
                self._a_next = self._a_read = pos
        elif gap < -AUDIO_TOLERANCE:
            self.stats.audio_dropped += 1  # behind our timeline: skip until the sender catches up
            return
        frame.pts = None  # the timeline above is what counts; keep the resampler from "fixing" gaps
        for f in self._resampler.resample(frame):
            self._fifo_write(f)
        self._drain_fifo(pad=False)

    @staticmethod
    def _silence(samples: int) -> av.AudioFrame:
        f = av.AudioFrame.from_ndarray(np.zeros((2, samples), np.float32), format="fltp", layout="stereo")
        f.sample_rate = AUDIO_RATE
        return f

    def _fifo_write(self, f: av.AudioFrame) -> None:
        f.pts = None
        self._fifo.write(f)
        self._a_next += f.samples

    def _drain_fifo(self, *, pad: bool) -> None:
        fifo = self._fifo
        if pad and fifo.samples % AAC_FRAME:
            self._fifo_write(self._silence(AAC_FRAME - fifo.samples % AAC_FRAME))
        data = bytearray()
        while fifo.samples >= AAC_FRAME:
            f = fifo.read(AAC_FRAME)
            f.pts = self._a_read
            f.time_base = AUDIO_TB
            self._a_read += AAC_FRAME
            for packet in self._aenc.encode(f):
                data += self._audio_packet(packet)
        self._emit(bytes(data))

    def _audio_packet(self, packet: av.Packet) -> bytes:
        pts = packet.pts if packet.pts is not None else self._a_read
        ts = max(self._last_ats, int(round(pts * 1000 / AUDIO_RATE)))
        self._last_ats = ts
        self.stats.audio_packets += 1
        return self._flv.audio(ts, bytes(packet))

    def _flush(self) -> None:
        data = bytearray()
        if self._venc is not None:
            for packet in self._venc.encode(None):
                data += self._video_packet(packet)
        self._emit(bytes(data))
        if self._aenc is not None:
            self._drain_fifo(pad=True)
            data = bytearray()
            for packet in self._aenc.encode(None):
                data += self._audio_packet(packet)
            self._emit(bytes(data))

