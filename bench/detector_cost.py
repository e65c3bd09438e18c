"""CPU cost of each detector, in CPU seconds per stream second, over a generated broadcast
fed in 100 ms chunks exactly as the stream actor feeds them.

    .venv/bin/python -m bench.detector_cost [--duration 75]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from bench.broadcast import make_broadcast
from detectors.fusion import Fusion
from detectors.keywords import KeywordSpotter
from detectors.loudness import LoudnessDetector
from detectors.scene import SceneChangeDetector
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=75.0)
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="livecut-cost-")) / "broadcast.mp4"
    truth = make_broadcast(media, duration=args.duration)
    samples, frames, cost = decoded(media)
    duration = len(samples) / 16000

    def timed(name: str, fn) -> list:
        started = time.process_time()
        out = fn()
        cost[name] = time.process_time() - started
        return out

    loudness = LoudnessDetector()
    signals = timed("loudness", lambda: [s for i in range(0, len(samples), CHUNK)
                                         for s in loudness.push(i / 16000, samples[i:i + CHUNK])])
    model = load_whisper_model(SpeechOptions())
    transcriber = StreamingTranscriber(model)
    words = timed("speech (tiny.en int8, 1 thread)", lambda: [w for i in range(0, len(samples), CHUNK)
                                                            for w in transcriber.push(i / 16000, samples[i:i + CHUNK])]
                  + transcriber.flush())
    spotter = KeywordSpotter()
    signals += timed("keywords", lambda: spotter.push(words))
    scene = SceneChangeDetector()
    signals += timed("scene", lambda: [s for t, gray in frames for s in scene.push(t, gray)])
    fusion = Fusion()
    events = timed("fusion", lambda: fusion.push(sorted(signals, key=lambda s: s.t)))

    print(f"\ndetector cost over a {duration:.0f} s broadcast ({len(truth.moments)} planted moments, "
          f"{len(events)} events, {transcriber.chunks} ASR chunks)")
    print(f"{'stage':<34} {'CPU-s':>7} {'CPU-s per stream-s':>19}")
    for name, seconds in cost.items():
        print(f"{name:<34} {seconds:>7.3f} {seconds / duration:>19.4f}")
    print(f"{'total':<34} {sum(cost.values()):>7.3f} {sum(cost.values()) / duration:>19.4f}")


if __name__ == "__main__":
    main()
