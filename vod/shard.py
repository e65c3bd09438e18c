"""One shard of a recording through the live detectors: decode [read_from, read_to], keep what
the shard owns.

Decoding is the stream actor's (``AudioDecoder``: 16 kHz mono chunks; ``KeyframeSampler``:
keyframes only), and so are the audio and video detectors (``DetectorPipeline.*_signals``).
ASR is not streaming here: the shard's audio is transcribed once, whole VAD utterances packed
into whisper's 30 s window (``detectors.transcribe``); transcript signals are made when the
shards are merged, over the whole transcript (``vod.plan.merge``).
"""
from __future__ import annotations

import math
import time

import av
import numpy as np

from detectors.assets import AssetDirs
from stream_actor.clipper import seek_before
from stream_actor.decode import AudioDecoder, KeyframeSampler
from stream_actor.detection import DetectorPipeline, hud_detector
from stream_actor.settings import ChannelSettings
from vod.plan import Shard, ShardResult, owned
from vod.probe import input_options

RATE = 16000


class _Clock:
    """CPU seconds per stage (the process's: a worker runs one shard at a time; whisper has threads of its own)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.process_time()
        self.cpu[stage] = self.cpu.get(stage, 0.0) + now - since
        return now


def analyse_shard(
    location: str, shard: Shard, settings: ChannelSettings, whisper_model, *, origin: float = 0.0,
    dirs: AssetDirs | None = None,
) -> ShardResult:
    """The signals and words ``shard`` owns in the recording at ``location`` (``dirs``: the
    operator's directories of named HUD profiles)."""
    clock = _Clock()
    started = time.process_time()
    hud = hud_detector(settings, dirs) if settings.hud.profile else None
    pipeline = DetectorPipeline(settings, None, hud=hud)
    color_size = (settings.hud.frame_width, settings.hud.frame_height) if hud is not None else None
    signals = []
    chunks: list[tuple[float, np.ndarray]] = []
    started = clock.add("load", started)
    with av.open(location, options=input_options(location)) as container:
        video_stream = container.streams.video[0] if container.streams.video else None
        audio_stream = container.streams.audio[0] if container.streams.audio else None
        audio = AudioDecoder(audio_stream) if audio_stream is not None else None
        video = KeyframeSampler(video_stream, color_size=color_size) if video_stream is not None else None
        seek_before(container, shard.read_from, origin)
        wanted = [s for s in (video_stream, audio_stream) if s is not None]
        done: set[str] = set()
        for packet in container.demux(*wanted):
            if packet.pts is None and packet.dts is None:
                continue
            raw = packet.pts if packet.pts is not None else packet.dts
            t = float(raw * packet.time_base) - origin
            kind = packet.stream.type
            if t > shard.read_to:
                done.add(kind)
                if len(done) == len(wanted):
                    break
                continue
            if kind == "audio" and audio is not None:
                decoded = audio.decode(packet, t)
                started = clock.add("decode audio", started)
                for t0, samples in decoded:
                    t0, samples = _on_grid(t0, samples, shard.read_from if not chunks else None)
                    if not len(samples):
                        continue
                    signals += pipeline.audio_signals(t0, samples)
                    chunks.append((t0, samples))
                started = clock.add("detect audio", started)
            elif kind == "video" and video is not None and packet.is_keyframe and t >= shard.read_from:
                frames = video.decode_color(packet, t)
                started = clock.add("decode video", started)
                for tf, gray, color in frames:
                    signals += pipeline.frame_signals(tf, gray, color)
                started = clock.add("detect video", started)
    words = []
    if chunks and whisper_model is not None:
        from detectors.transcribe import transcribe_recording

        t0, samples = _contiguous(chunks)
        words = transcribe_recording(
            whisper_model, samples, t0, settings.speech, own_from=shard.start,
            own_until=None if shard.end >= shard.read_to else shard.end,
        )
        started = clock.add("asr", started)
    signals = [type(s)(s.name, float(s.t), float(s.value), s.detail) for s in owned(signals, shard)]
    media = shard.read_to - shard.read_from
    return ShardResult(signals=signals, words=words, cpu={k: round(v, 4) for k, v in clock.cpu.items()},
                       media_seconds=round(media, 3))


def _on_grid(t0: float, samples: np.ndarray, begin: float | None) -> tuple[float, np.ndarray]:
    """The shard's first audio starts on a whole second of stream time (at or after ``begin``),
    so the detectors' hop grids (0.1 s, 0.25 s) are the same in every shard, and a signal at a
    seam gets the same time from both shards: exactly one of them owns it."""
    if begin is None:
        return t0, samples
    first = math.ceil(max(t0, begin) - 1e-6)
    skip = int(round((first - t0) * RATE))
    if skip >= len(samples):
        return t0, samples[:0]
    return first, samples[max(0, skip):]


def _contiguous(chunks: list[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    """The decoded chunks laid on one timeline from the first (gaps stay silent)."""
    t0 = chunks[0][0]
    end = max(t + len(x) / RATE for t, x in chunks)
    out = np.zeros(int(round((end - t0) * RATE)) + 1, np.float32)
    for t, x in chunks:
        i = int(round((t - t0) * RATE))
        out[i : i + len(x)] = x[: len(out) - i]
    return t0, out
