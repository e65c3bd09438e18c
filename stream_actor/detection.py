"""One channel's detectors and their fusion, fed from the actor's decode and ASR threads.

No I/O here: decoded audio and frames in, moment events out. The lock only guards the
fusion and the transcript, which both threads touch.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from detectors.assets import AssetDirs
from detectors.arousal import ArousalDetector
from detectors.boundaries import snap_clip
from detectors.crowd import CrowdDetector
from detectors.fusion import Fusion
from detectors.keywords import KeywordSpotter
from detectors.loudness import LoudnessDetector
from detectors.music import MusicDetector
from detectors.pitch import VoiceFrames
from detectors.scene import SceneChangeDetector
from detectors.sentiment import SentimentDetector
from detectors.speech import StreamingTranscriber, words_between
from detectors.speech_rate import SpeechRateDetector
from records.wire import MomentEvent, Signal, Word
from stream_actor.settings import ChannelSettings

if TYPE_CHECKING:
    from detectors.hud import HudDetector  # OpenCV: imported only by channels with a game profile

TRANSCRIPT_KEEP = 300.0  # seconds of words kept for clip transcripts


def hud_detector(settings: ChannelSettings, dirs: AssetDirs | None = None) -> HudDetector:
    """The channel's game profile, by name (``dirs``: the operator's directories), with its
    models (OCR and YOLO on the GPU, if one was given)."""
    from detectors import hud_models
    from detectors.hud import HudDetector, load_profile
    from detectors.speech import resolve_device

    profile = load_profile(settings.hud.profile, dirs)
    gpu = resolve_device(settings.speech.device) == "cuda"
    ocr = hud_models.load_ocr_reader(gpu=gpu, threads=1) if profile.ocr else None
    yolo = None
    if profile.yolo is not None:
        yolo = hud_models.load_yolo_onnx(profile.yolo.weights, device="cuda" if gpu else "cpu", threads=1)
    return HudDetector(profile, ocr_reader=ocr, yolo_session=yolo)


class DetectorPipeline:
    """Live: every detector plus fusion. ``*_signals`` are the detectors alone (no fusion, no
    state beyond the detectors'), which is what a VOD shard runs: its signals are merged with
    the other shards' and fused once (``vod``). ``whisper_model=None``: no streaming ASR."""

    def __init__(self, settings: ChannelSettings, whisper_model, hud: HudDetector | None = None):
        self.loudness = LoudnessDetector(settings.loudness)
        self.arousal = ArousalDetector(settings.arousal)
        self.music = MusicDetector(settings.music)
        self.voice_frames = VoiceFrames()  # the frame analysis arousal and music share (computed once)
        self.crowd = CrowdDetector(settings.crowd)
        self.sentiment = SentimentDetector(settings.sentiment)
        self.scene = SceneChangeDetector(settings.scene)
        self.hud = hud  # only with a game profile
        self.transcriber = StreamingTranscriber(whisper_model, settings.speech) if whisper_model is not None else None
        self.keywords = KeywordSpotter(settings.keywords)
        self.speech_rate = SpeechRateDetector(settings.speech_rate)
        self.fusion = Fusion(settings.fusion)
        self.words: deque[Word] = deque()
        self.audio_through = 0.0  # stream time the audio detectors have consumed
        self.frames_through = 0.0
        self.signal_counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def audio_signals(self, t0: float, samples: np.ndarray) -> list[Signal]:
        aroused, music = [], []
        for frames in self.voice_frames.push(t0, samples):
            heard = self.music.push_frames(frames)  # first: arousal does not judge inside music
            aroused += self.arousal.push_frames(frames, heard)
            music += heard
        signals = self.loudness.push(t0, samples) + aroused + music + self.crowd.push(t0, samples)
        self.audio_through = t0 + len(samples) / 16000.0
        return signals

    def frame_signals(self, t: float, gray: np.ndarray, color: np.ndarray | None = None) -> list[Signal]:
        signals = self.scene.push(t, gray)
        if self.hud is not None and color is not None:
            signals += self.hud.push(t, color)
        self.frames_through = t
        return signals

    def word_signals(self, words: list[Word], until: float) -> list[Signal]:
        """Transcript signals of final words (``until``: the stream time the transcript is final to)."""
        # the sentiment detector also closes an utterance after a pause, with no new words
        signals = self.sentiment.push(words, until=until) + self.speech_rate.push(words, until=until)
        if words:
            signals += self.keywords.push(words)
        return signals

    def on_audio(self, t0: float, samples: np.ndarray) -> list[MomentEvent]:
        return self._fuse(self.audio_signals(t0, samples))

    def on_frame(self, t: float, gray: np.ndarray, color: np.ndarray | None = None) -> list[MomentEvent]:
        return self._fuse(self.frame_signals(t, gray, color))

    def on_speech(self, t0: float, samples: np.ndarray, behind: float = 0.0) -> list[MomentEvent]:
        words = self.transcriber.push(t0, samples, behind=behind)
        return self._add_words(words)

    def on_signals(self, signals: list[Signal]) -> list[MomentEvent]:
        """Signals from a detector fed outside the media path (the chat thread)."""
        return self._fuse(signals)

    def flush_speech(self) -> list[MomentEvent]:
        return self._add_words(self.transcriber.flush())

    @property
    def asr_through(self) -> float:
        return self.transcriber.transcribed_until

    def clip_bounds(self, start: float, end: float) -> tuple[float, float]:
        """A clip's [start, end], moved to sentence (at least word) boundaries."""
        with self._lock:
            words = [w for w in self.words if w.end > start - 10.0 and w.start < end + 10.0]
        return snap_clip(start, end, words)

    def clip_words(self, start: float, end: float) -> list[Word]:
        """The words of a clip cut at [start, end], timed from its start."""
        with self._lock:
            return words_between(list(self.words), start, end)

    def _add_words(self, words: list[Word]) -> list[MomentEvent]:
        if words:
            with self._lock:
                self.words.extend(words)
                while self.words and self.words[0].end < words[-1].end - TRANSCRIPT_KEEP:
                    self.words.popleft()
        return self._fuse(self.word_signals(words, self.transcriber.transcribed_until))

    def _fuse(self, signals: list[Signal]) -> list[MomentEvent]:
        if not signals:
            return []
        # plain floats: a numpy scalar from a detector would not serialise into the clip's row
        signals = [Signal(s.name, float(s.t), float(s.value), s.detail) for s in signals]
        with self._lock:
            for s in signals:
                self.signal_counts[s.name] = self.signal_counts.get(s.name, 0) + 1
            return self.fusion.push(signals)
