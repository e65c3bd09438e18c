"""Scene cuts on small grayscale frames: synthetic ones, and the broadcast's real keyframes."""
import numpy as np

import media
from detectors.scene import SceneChangeDetector

H, W = 36, 64


def gradient(shift: float, brightness: float = 1.0) -> np.ndarray:
    """A horizontal gradient with a bright box, moved ``shift`` pixels to the right."""
    x = (np.arange(W) + shift) % W
    img = np.tile(40 + 160 * x / W, (H, 1)) * brightness
    box = int(shift) % (W - 10)
    img[10:20, box : box + 10] = 250
    return img.clip(0, 255).astype(np.uint8)


def other_scene() -> np.ndarray:
    """A different shot: dark room, a lit window, noise."""
    rng = np.random.default_rng(5)
    img = rng.normal(30, 8, (H, W))
    img[5:25, 40:60] = 220
    return img.clip(0, 255).astype(np.uint8)


def test_fires_once_on_a_hard_cut():
    det = SceneChangeDetector()
    frames = [gradient(i) for i in range(5)] + [other_scene()] * 3
    signals = [s for i, f in enumerate(frames) for s in det.push(100.0 + i, f)]
    assert [(s.name, s.t) for s in signals] == [("scene", 105.0)]
    assert signals[0].value >= 1.0


def test_quiet_on_a_moving_and_brightening_gradient():
    # 8 px between keyframes moves pixels more than a cut's pixel_trigger: the histogram
    # (nothing new on screen) is what keeps this quiet.
    det = SceneChangeDetector()
    signals = [s for i in range(60) for s in det.push(float(i), gradient(8 * i, 0.8 + 0.005 * i))]
    assert signals == []


def test_quiet_on_the_broadcast_keyframes(ffmpeg, espeak):
    path, _, _ = media.broadcast()
    frames = media.keyframes(path, W, H)
    assert len(frames) >= 30  # a keyframe every 2 s of 75 s
    det = SceneChangeDetector()
    assert [s for t, f in frames for s in det.push(t, f)] == []


def test_a_new_resolution_is_not_a_cut():
    det = SceneChangeDetector()
    assert det.push(0.0, gradient(0)) == []
    assert det.push(1.0, np.zeros((72, 128), np.uint8)) == []
    assert det.push(2.0, np.zeros((72, 128), np.uint8)) == []


def test_rapid_cuts_make_one_scene_rate_signal_and_single_cuts_none():
    det = SceneChangeDetector()
    shots = [gradient(0), other_scene(), 255 - gradient(20), other_scene()[::-1].copy(), gradient(0)]
    # one cut per 2 s keyframe, four in a row (a replay), then a calm shot
    timeline = [(t, shots[0]) for t in (0.0, 2.0, 4.0)]
    timeline += [(6.0 + 2 * i, shots[1 + i]) for i in range(4)]
    timeline += [(14.0 + 2 * i, gradient(i)) for i in range(10)]
    # a single cut much later (the streamer switches scene) is only a "scene" signal
    timeline += [(40.0, other_scene())]
    signals = [s for t, f in timeline for s in det.push(t, f)]
    rate = [s for s in signals if s.name == "scene_rate"]
    assert [(s.t, s.value) for s in rate] == [(6.0, 1.0)], signals
    assert [s.t for s in signals if s.name == "scene"] == [6.0, 8.0, 10.0, 12.0, 40.0]
