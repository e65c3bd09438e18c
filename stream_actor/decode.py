"""Decoders that feed the detectors, stamped with stream time.

Each decoder owns its own codec context (built from the stream's parameters), so it
never disturbs the demuxer's contexts nor another decoder of the same stream, and may
run in another thread than the demuxer. Give each decoder the packets of its stream in
demux order, with their stream time ``t`` (of the packet's pts, or dts when pts is
unset: ``StreamClock.packet_time``). Create new decoders for each source session.

* ``AudioDecoder``: float32 mono at 16 kHz (what Whisper and the loudness detector
  want), as chunks stamped with the stream time of their first sample;
* ``KeyframeSampler``: keyframes only (only keyframe packets reach the decoder, which
  also has ``skip_frame = "NONKEY"``), as tiny grayscale images for scene/motion
  detection. Measured: ~2-4 % of the CPU of a full decode (720p30: 26-38 ms vs
  1.3 s of CPU per 10 s of video), each image out as soon as its packet is in.
"""
from __future__ import annotations

import logging

import av
import numpy as np

from .clock import raw_time

__all__ = ["AudioDecoder", "KeyframeSampler", "decoder_for"]

log = logging.getLogger(__name__)

#: An input timestamp further than this from where the audio should continue is a
#: discontinuity (reset, gap): the output timeline resyncs to it.
AUDIO_RESYNC = 0.1


def decoder_for(stream: av.stream.Stream) -> av.CodecContext:
    """A new decoder context configured like ``stream``'s."""
    src = stream.codec_context
    ctx = av.CodecContext.create(src.name, "r")
    if src.extradata:
        ctx.extradata = src.extradata
    if stream.type == "audio":
        if src.sample_rate:
            ctx.sample_rate = src.sample_rate
        if src.layout is not None and src.layout.nb_channels:
            ctx.layout = src.layout
    elif stream.type == "video":
        if src.width and src.height:
            ctx.width, ctx.height = src.width, src.height
    return ctx


def _shift(packet: av.Packet, t: float) -> float:
    raw = raw_time(packet)
    return 0.0 if raw is None else t - raw


class AudioDecoder:
    """Decodes an audio stream to float32 mono at ``rate`` Hz.

    ``decode(packet, t)`` returns ``[(stream time of first sample, samples), ...]``.
    Consecutive chunks are contiguous (the next chunk starts where the previous one
    ended) until the input timestamps jump by more than ``AUDIO_RESYNC``.
    """

    def __init__(self, stream: av.AudioStream, rate: int = 16000) -> None:
        self.rate = rate
        self.stream = stream
        self._ctx = decoder_for(stream)
        self._resampler: av.AudioResampler | None = None
        self._in_next: float | None = None  # stream time where the input should continue
        self._out_next = 0.0  # stream time of the next output sample

    def decode(self, packet: av.Packet, t: float) -> list[tuple[float, np.ndarray]]:
        if packet.size == 0:
            return []
        shift = _shift(packet, t)
        try:
            frames = self._ctx.decode(packet)
        except av.error.InvalidDataError:
            log.debug("undecodable audio packet at %.3f", t)
            return []
        out: list[tuple[float, np.ndarray]] = []
        for frame in frames:
            if frame.pts is not None and frame.time_base is not None:
                start = float(frame.pts * frame.time_base) + shift
            else:
                start = t
            if self._in_next is None or abs(start - self._in_next) > AUDIO_RESYNC:
                self._out_next = start
            self._in_next = start + frame.samples / frame.sample_rate
            out.extend(self._resample(frame))
        return out

    def _resample(self, frame: av.AudioFrame) -> list[tuple[float, np.ndarray]]:
        frame.pts = None  # the resampler must not act on (raw, possibly reset) timestamps
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        try:
            resampled = self._resampler.resample(frame)
        except ValueError:  # the input format changed mid-stream: start a new resampler
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            resampled = self._resampler.resample(frame)
        out = []
        for r in resampled:
            samples = r.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if samples.size:
                out.append((self._out_next, samples))
                self._out_next += samples.size / self.rate
        return out


class KeyframeSampler:
    """Decodes only the keyframes of a video stream into small grayscale images.

    ``decode(packet, t)`` returns ``[(stream time of the keyframe, uint8 array of
    shape (height, width))]`` for a keyframe packet and ``[]`` for any other.

    Only keyframe packets reach the decoder (with ``skip_frame = "NONKEY"`` as well),
    and each is drained at once: with the other frames skipped, the decoder's B-frame
    reorder delay would otherwise hold every keyframe back by whole GOPs.
    """

    def __init__(
        self, stream: av.VideoStream, size: tuple[int, int] = (64, 36), color_size: tuple[int, int] | None = None
    ) -> None:
        self.size = size
        self.color_size = color_size  # also a BGR image of this size (the HUD detector's input)
        self.stream = stream
        self._ctx = decoder_for(stream)
        self._ctx.skip_frame = "NONKEY"
        self.keyframes = 0

    def decode(self, packet: av.Packet, t: float) -> list[tuple[float, np.ndarray]]:
        return [(tf, gray) for tf, gray, _ in self.decode_color(packet, t)]

    def decode_color(self, packet: av.Packet, t: float) -> list[tuple[float, np.ndarray, np.ndarray | None]]:
        """Like ``decode``, with the BGR image of ``color_size`` (None without one)."""
        if packet.size == 0 or not packet.is_keyframe:
            return []
        try:
            frames = self._ctx.decode(packet) + self._ctx.decode(None)
        except av.error.InvalidDataError:
            log.debug("undecodable keyframe at %.3f", t)
            frames = []
        finally:
            self._ctx.flush_buffers()  # ready for the next keyframe
        out = []
        width, height = self.size
        for frame in frames[-1:]:
            image = frame.reformat(width=width, height=height, format="gray", interpolation="AREA")
            color = None
            if self.color_size is not None:
                cw, ch = self.color_size
                color = frame.reformat(width=cw, height=ch, format="bgr24", interpolation="AREA").to_ndarray()
            out.append((t, image.to_ndarray(), color))
            self.keyframes += 1
        return out
