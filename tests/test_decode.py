"""Decoders for the detectors: 16 kHz mono audio, keyframe-only tiny gray images."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from stream_actor.clock import StreamClock
from stream_actor.decode import AudioDecoder, KeyframeSampler, decoder_for

pytestmark = pytest.mark.usefixtures("ffmpeg")  # a required peer: fails loudly when missing

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]


@pytest.fixture(scope="module")
def flv(tmp_path_factory) -> Path:
    """6 s of 640x360 H.264 (B-frames, 2 s GOP) + 440 Hz stereo AAC at 48 kHz."""
    path = tmp_path_factory.mktemp("media") / "src.flv"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
         "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-ac", "2", "-b:a", "96k", "-f", "flv", str(path)],
        check=True,
    )
    return path


def timed_packets(path: Path, kind: str, offset: float = 0.0):
    """[(packet, stream time)] of one kind; the container stays open while in use."""
    container = av.open(str(path))
    clock = StreamClock()
    out = []
    for packet in container.demux():
        t = clock.packet_time(packet)
        if t is not None and packet.size and packet.stream.type == kind:
            out.append((packet, t + offset))
    return container, out


def test_audio_16k_mono_with_stream_times(flv):
    container, packets = timed_packets(flv, "audio", offset=100.0)
    stream = container.streams.audio[0]
    assert stream.codec_context.sample_rate == 48000 and stream.codec_context.channels == 2
    decoder = AudioDecoder(stream)
    chunks = [c for p, t in packets for c in decoder.decode(p, t)]
    assert chunks
    for _, samples in chunks:
        assert samples.dtype == np.float32 and samples.ndim == 1
    first_t = chunks[0][0]
    assert first_t == pytest.approx(packets[0][1], abs=0.03)  # stream time of the first sample
    for (t0, s0), (t1, _) in zip(chunks, chunks[1:]):
        assert t1 == pytest.approx(t0 + s0.size / 16000, abs=1e-6)  # contiguous
    audio = np.concatenate([s for _, s in chunks])
    assert audio.size / 16000 == pytest.approx(6.0, abs=0.1)
    # still a 440 Hz tone at 16 kHz (a wrong rate would move the peak)
    window = audio[16000:32000]
    peak = np.argmax(np.abs(np.fft.rfft(window))) * 16000 / window.size
    assert peak == pytest.approx(440, abs=2)
    container.close()


def test_audio_resyncs_after_a_jump(flv):
    container, packets = timed_packets(flv, "audio")
    decoder = AudioDecoder(container.streams.audio[0])
    half = len(packets) // 2
    jump_t = packets[half][1] + 30.0
    chunks = []
    for i, (p, t) in enumerate(packets):
        chunks += [(i, c) for c in decoder.decode(p, t + (30.0 if i >= half else 0.0))]
    after = [c for i, c in chunks if i >= half]
    assert after[0][0] == pytest.approx(jump_t, abs=0.03)
    container.close()


def test_keyframe_sampler_only_keyframes(flv):
    container, packets = timed_packets(flv, "video")
    stream = container.streams.video[0]
    keyframes = [t for p, t in packets if p.is_keyframe]
    assert len(keyframes) == 3
    sampler = KeyframeSampler(stream)
    t0 = time.process_time()
    images = []
    for p, t in packets:
        out = sampler.decode(p, t)  # (t: stream time of the pts)
        if p.is_keyframe:
            assert len(out) == 1  # out at once, not held back by the decoder's delay
        else:
            assert out == []
        images += out
    keyframe_cpu = time.process_time() - t0
    assert [t for t, _ in images] == pytest.approx(keyframes, abs=1e-6)
    for _, image in images:
        assert image.shape == (36, 64) and image.dtype == np.uint8
        assert 20 < image.mean() < 235 and image.std() > 5  # a real picture, not blank

    full = decoder_for(stream)
    t0 = time.process_time()
    frames = [f for p, _ in packets for f in full.decode(p)] + list(full.decode(None))
    full_cpu = time.process_time() - t0
    print(f"keyframe-only {keyframe_cpu * 1000:.0f} ms CPU vs full decode {full_cpu * 1000:.0f} ms "
          f"for {len(frames)} frames")
    assert len(frames) == len(packets) == 90
    assert keyframe_cpu < full_cpu / 3
    container.close()
