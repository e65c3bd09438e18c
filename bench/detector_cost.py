"""CPU cost of each detector, in CPU seconds per stream second, over a generated broadcast
fed in 100 ms chunks exactly as the stream actor feeds them; and the ratio of the total to the
total without this release's detectors (arousal, music), measured in the same run.

    .venv/bin/python -m bench.detector_cost [--duration 120] [--json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from bench.genres import make_genre_broadcast
from detectors.arousal import ArousalDetector
from detectors.crowd import CrowdDetector
from detectors.fusion import Fusion
from detectors.keywords import KeywordSpotter
from detectors.loudness import LoudnessDetector
from detectors.music import MusicDetector
from detectors.pitch import VoiceFrames
from detectors.scene import SceneChangeDetector
from detectors.sentiment import SentimentDetector
from detectors.sentiment import analyzer as sentiment_analyzer
from detectors.speech import SpeechOptions, StreamingTranscriber, load_whisper_model
from stream_actor.decode import AudioDecoder, KeyframeSampler

CHUNK = 1600  # 100 ms at 16 kHz


def decoded(path: Path) -> tuple[np.ndarray, list[tuple[float, np.ndarray]], dict[str, float]]:
    """Audio at 16 kHz mono and keyframes at 64x36, with the decoders' own CPU cost."""
    cost = {"decode audio": 0.0, "decode keyframes": 0.0}
    audio_parts, frames = [], []
    with av.open(str(path)) as container:
        audio = AudioDecoder(container.streams.audio[0])
        video = KeyframeSampler(container.streams.video[0])
        for packet in container.demux():
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            started = time.process_time()
            if packet.stream.type == "audio":
                audio_parts += [s for _, s in audio.decode(packet, t)]
                cost["decode audio"] += time.process_time() - started
            elif packet.is_keyframe:
                frames += video.decode(packet, t)
                cost["decode keyframes"] += time.process_time() - started
    return np.concatenate(audio_parts), frames, cost


NEW = ("arousal + music (shared frames)",)  # this release's detectors; "today" is the total without them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    media = Path(tempfile.mkdtemp(prefix="livecut-cost-")) / "broadcast.mp4"
    make_genre_broadcast(media, "sports", duration=args.duration, seed=1)  # talk, crowd bed, music
    samples, frames, cost = decoded(media)
    duration = len(samples) / 16000
    sentiment_analyzer()

    def timed(name: str, fn) -> list:
        started = time.process_time()
        out = fn()
        cost[name] = time.process_time() - started
        return out

    def chunked(detector) -> list:
        return [s for i in range(0, len(samples), CHUNK) for s in detector.push(i / 16000, samples[i:i + CHUNK])]

    signals = timed("loudness", lambda: chunked(LoudnessDetector()))
    signals += timed("crowd", lambda: chunked(CrowdDetector()))
    def voice() -> list:  # as DetectorPipeline feeds them: one frame analysis for both
        frames, arousal, music = VoiceFrames(), ArousalDetector(), MusicDetector()
        return [s for i in range(0, len(samples), CHUNK) for f in frames.push(i / 16000, samples[i:i + CHUNK])
                for s in arousal.push_frames(f) + music.push_frames(f)]

    signals += timed(NEW[0], voice)
    model = load_whisper_model(SpeechOptions())
    transcriber = StreamingTranscriber(model)
    words = timed("speech (tiny.en int8, 1 thread)", lambda: [w for i in range(0, len(samples), CHUNK)
                                                            for w in transcriber.push(i / 16000, samples[i:i + CHUNK])]
                  + transcriber.flush())
    signals += timed("keywords", lambda: KeywordSpotter().push(words))
    signals += timed("sentiment", lambda: SentimentDetector().push(words, until=duration))
    scene = SceneChangeDetector()
    signals += timed("scene", lambda: [s for t, gray in frames for s in scene.push(t, gray)])
    events = timed("fusion", lambda: Fusion().push(sorted(signals, key=lambda s: s.t)))

    total = sum(cost.values())
    today = total - sum(cost[name] for name in NEW)
    per = {name: round(seconds / duration, 5) for name, seconds in cost.items()}
    if args.json:
        print(json.dumps({"stream_seconds": round(duration, 1), "cpu_per_stream_second": per,
                          "total": round(total / duration, 5), "without_new": round(today / duration, 5),
                          "ratio_to_without_new": round(total / today, 4)}, indent=2))
        return 0
    print(f"\ndetector cost over a {duration:.0f} s sports broadcast ({len(events)} events, {transcriber.chunks} ASR chunks), "
          f"audio in {CHUNK / 16:.0f} ms chunks as the actor feeds it")
    print(f"{'stage':<34} {'CPU-s':>7} {'CPU-s per stream-s':>19}")
    for name, seconds in cost.items():
        print(f"{name:<34} {seconds:>7.3f} {seconds / duration:>19.4f}")
    print(f"{'total':<34} {total:>7.3f} {total / duration:>19.4f}")
    print(f"{'without ' + ' and '.join(NEW):<34} {today:>7.3f} {today / duration:>19.4f}")
    print(f"ratio: {total / today:.3f} (the new detectors add {100 * (total / today - 1):.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
