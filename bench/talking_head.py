"""A generated talking-head clip for the export tests and bench: a real face (scikit-image's
``astronaut`` photo, shipped in its wheel) moving across a generated background, with a
speech-like audio track, written with PyAV as H.264/AAC MP4 like a livecut clip.

``make_talking_head`` returns where the face's centre was in each frame, so a test can find
it again in the export.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

RATE = 48_000


# The astronaut's head and shoulders in the 512x512 photo, and her face in that crop
# (x, y, w, h: where OpenCV's frontal cascade finds it)
PHOTO = (slice(0, 380), slice(80, 380))
FACE = (94, 70, 96, 96)


def face_image(height: int) -> np.ndarray:
    """The astronaut's head and shoulders, ``height`` pixels tall (RGB); the face's box in it
    is ``FACE`` scaled by ``height / 380``."""
    from skimage.data import astronaut

    photo = astronaut()[PHOTO]
    width = int(round(photo.shape[1] * height / photo.shape[0]))
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)


def face_template(height: int) -> np.ndarray:
    """Just the face, as it appears in ``face_image(height)`` (gray), to find it again."""
    scale = height / (PHOTO[0].stop - PHOTO[0].start)
    x, y, w, h = (int(round(v * scale)) for v in FACE)
    return cv2.cvtColor(face_image(height)[y:y + h, x:x + w], cv2.COLOR_RGB2GRAY)


def background(width: int, height: int, t: float) -> np.ndarray:
    """A soft studio-like backdrop with slow drifting stripes (so frames differ)."""
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    base = 70 + 50 * y + 20 * np.sin(2 * np.pi * (3 * x + 0.1 * t))
    return np.clip(np.stack([base * 0.6, base * 0.8, base], axis=-1), 0, 255).astype(np.uint8)


def speech_like(seconds: float, level_db: float = -32.0, seed: int = 3) -> np.ndarray:
    """Mono float32 at 48 kHz: a buzzy voiced tone in syllable-like bursts, at about
    ``level_db`` dBFS RMS while voiced (far from the export's loudness target)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = (np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)) > -0.2).astype(np.float32)
    envelope = cv2.GaussianBlur(syllables.reshape(1, -1), (1, 481), 0).reshape(-1)
    signal = voice * envelope
    rms = np.sqrt(np.mean(signal[envelope > 0.5] ** 2))
    return (signal * (10 ** (level_db / 20) / rms)).astype(np.float32)


def make_talking_head(
    path: Path, *, width: int = 640, height: int = 360, seconds: float = 6.0, fps: int = 25,
    face_height: float = 0.9, start: float = 0.15, end: float = 0.85, audio: np.ndarray | None = None,
) -> np.ndarray:
    """Write the clip; the face's centre moves from ``start`` to ``end`` of the width (eased).
    ``face_height``: of the frame height, the photo's (the face is about a third of it).
    ``audio``: mono float32 at 48 kHz (default ``speech_like``). Returns each frame's face
    centre x in pixels."""
    face = face_image(int(face_height * height))
    fh, fw = face.shape[:2]
    frames = int(round(seconds * fps))
    audio = speech_like(seconds) if audio is None else audio
    centres = []
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "20"}
        sound = out.add_stream("aac", rate=RATE, layout="mono")
        for i in range(frames):
            t = i / fps
            progress = 0.5 - 0.5 * np.cos(np.pi * min(1.0, t / seconds))
            cx = width * (start + (end - start) * progress)
            x0 = int(round(cx - (FACE[0] + FACE[2] / 2) * fh / 380))  # the face's centre at cx
            picture = background(width, height, t)
            top = height - fh
            left, right = max(0, x0), min(width, x0 + fw)
            picture[top:top + fh, left:right] = face[:, left - x0:right - x0]
            centres.append(cx)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        for i in range(0, len(audio), 1024):
            chunk = av.AudioFrame.from_ndarray(audio[None, i:i + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, i, Fraction(1, RATE)
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return np.array(centres)
