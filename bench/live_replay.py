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


def replay(path: Path, model, settings: dict | None = None) -> tuple[list[MomentEvent], dict[str, float]]:
    """Moments the live pipeline finds in ``path``, and CPU seconds per stage (model load excluded)."""
    channel = channel_settings(settings)
    pipeline = DetectorPipeline(channel, model)
    cpu: dict[str, float] = {}
    events: list[MomentEvent] = []
    clock = StreamClock()
    clock.begin_session()

    def spend(stage: str, since: float) -> float:
        now = time.process_time()
        cpu[stage] = cpu.get(stage, 0.0) + now - since
        return now

    started = time.process_time()
    with av.open(str(path)) as container:
        audio = AudioDecoder(container.streams.audio[0]) if container.streams.audio else None
        video = KeyframeSampler(container.streams.video[0]) if container.streams.video else None
        for packet in container.demux():
            t = clock.packet_time(packet)
            if t is None:
                continue
            kind = packet.stream.type
            if kind == "audio" and audio is not None:
                chunks = audio.decode(packet, t)
                started = spend("decode", started)
                for t0, samples in chunks:
                    events += pipeline.on_audio(t0, samples)
                    started = spend("other detectors", started)
                    events += pipeline.on_speech(t0, samples)
                    started = spend("asr", started)
            elif kind == "video" and video is not None and packet.is_keyframe:
                frames = video.decode(packet, t)
                started = spend("decode", started)
                for tf, gray in frames:
                    events += pipeline.on_frame(tf, gray)
                started = spend("other detectors", started)
    events += pipeline.flush_speech()
    spend("asr", started)
    return latest_events(events), cpu
