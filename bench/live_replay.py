"""The live pipeline over a file, read as fast as possible: what a stream actor would find.

This is the naive way to process a recording (one process, streaming ASR, every packet in
order), kept as the baseline that VOD jobs are measured and checked against: their moments
must match these (``tests/test_e2e_vod.py``), at a fraction of the time (``bench.vod``).
"""
from __future__ import annotations

import time
from pathlib import Path

import av

from records.wire import MomentEvent
from stream_actor.clock import StreamClock
from stream_actor.decode import AudioDecoder, KeyframeSampler
from stream_actor.detection import DetectorPipeline
from stream_actor.settings import channel_settings


def latest_events(events: list[MomentEvent]) -> list[MomentEvent]:
    """One event per moment: fusion re-emits a growing moment with the same ``seq`` (keep
    the latest); events without a seq (0) are each their own moment."""
    out: dict[object, MomentEvent] = {}
    for i, e in enumerate(events):
        out[getattr(e, "seq", 0) or ("unique", i)] = e
    return sorted(out.values(), key=lambda e: e.t)


def decoded_media(path: Path, cost: dict[str, float], color_size: tuple[int, int] | None = None):
    """The stream actor's decoders over a file, packet by packet in file order.

    Yields ``(t, kind, items)`` for every packet the stream clock times: ``kind`` "audio"
    with ``items`` = [(t0, 16 kHz samples)], "frames" with [(t, gray, color or None)] for a
    video keyframe (color at ``color_size`` when given, as the actor decodes for a HUD), or
    "other" with []. CPU spent decoding is added to ``cost["decode audio"]`` and
    ``cost["decode keyframes"]``.
    """
    clock = StreamClock()
    clock.begin_session()
    with av.open(str(path)) as container:
        audio = AudioDecoder(container.streams.audio[0]) if container.streams.audio else None
        video = None
        if container.streams.video:
            stream = container.streams.video[0]
            video = KeyframeSampler(stream, color_size=color_size) if color_size else KeyframeSampler(stream)
        for packet in container.demux():
            t = clock.packet_time(packet)
            if t is None:
                continue
            kind = packet.stream.type
            started = time.process_time()
            if kind == "audio" and audio is not None:
                chunks = audio.decode(packet, t)
                cost["decode audio"] = cost.get("decode audio", 0.0) + time.process_time() - started
                yield t, "audio", chunks
            elif kind == "video" and video is not None and packet.is_keyframe:
                frames = video.decode_color(packet, t)
                cost["decode keyframes"] = cost.get("decode keyframes", 0.0) + time.process_time() - started
                yield t, "frames", frames
            else:
                yield t, "other", []


def replay(path: Path, model, settings: dict | None = None) -> tuple[list[MomentEvent], dict[str, float]]:
    """Moments the live pipeline finds in ``path``, and CPU seconds per stage (model load excluded)."""
    pipeline = DetectorPipeline(channel_settings(settings), model)
    cost: dict[str, float] = {}
    events: list[MomentEvent] = []

    def timed(stage: str, call, *args) -> list[MomentEvent]:
        started = time.process_time()
        out = call(*args)
        cost[stage] = cost.get(stage, 0.0) + time.process_time() - started
        return out

    for _t, kind, items in decoded_media(path, cost):
        if kind == "audio":
            for t0, samples in items:
                events += timed("other detectors", pipeline.on_audio, t0, samples)
                events += timed("asr", pipeline.on_speech, t0, samples)
        elif kind == "frames":
            for tf, gray, _color in items:
                events += timed("other detectors", pipeline.on_frame, tf, gray)
    events += timed("asr", pipeline.flush_speech)
    cpu = {"decode": cost.pop("decode audio", 0.0) + cost.pop("decode keyframes", 0.0), **cost}
    return latest_events(events), cpu
