"""Streaming speech-to-text: VAD-gated faster-whisper with a LocalAgreement-2 commit policy.

Whisper is not streaming: it transcribes a finished piece of audio and costs about the same
per call whatever the piece's length (the encoder always sees 30 s: tiny.en int8 on one core
is ~0.6-0.8 CPU-s a call). So the transcriber asks it rarely, and only when there is speech:

* **VAD gate.** faster-whisper's bundled Silero VAD (offline ONNX, ~0.003 CPU-s per stream
  second) scores every 32 ms window, with its recurrent state carried across pushes. While
  no speech is heard whisper is never called and ``transcribed_until`` follows the input
  (less ``speech_pad``): nothing can be invented on silence, music or roars. After
  ``reset_silence`` seconds without speech the buffer restarts, so timestamps cannot drift
  across long silences; after shorter pauses the last utterance stays in the buffer as
  context (tiny.en hears a sentence's first words much better with the previous one).
* **LocalAgreement-2** (whisper_streaming, Macháček et al. 2023). The buffer starts at the
  utterance (or at committed context before it). ``first_step`` seconds into an utterance,
  then every ``step`` seconds of new audio while the VAD hears speech, the whole buffer is
  transcribed (temperature 0, greedy, no conditioning on previous text, word times from
  whisper's alignment, and the last ``prompt_chars`` of committed text before the buffer as
  ``initial_prompt``: on bench.asr_quality that takes tiny.en's WER from ~0.20 to ~0.14 at
  no measurable cost). The longest common prefix (normalised words) of the last two hypotheses is
  committed. Committed words are emitted once, in stream time, and never revised; later
  hypotheses are aligned to them by time (words starting before the last commit are ignored)
  and by n-gram overlap with the committed tail (a word heard twice at the seam is dropped).
* **Utterance end.** When the VAD has heard ``end_silence`` seconds of non-speech after
  speech, the utterance is over: its last hypothesis (or one more whisper call if audio
  arrived since) is committed whole. Most sentences are shorter than ``first_step``, so they
  cost one call, and a phrase is final well under a second after it is said.
* **Bounded buffer and lag.** Past ``max_buffer`` seconds the buffer is trimmed at a
  committed sentence end (else the last committed word). If audio would stay unfinal for
  more than ``max_lag`` seconds (speech that never pauses and hypotheses that never agree),
  the current hypothesis is committed up to the buffer's edge regardless of agreement.
* **One encoder pass per call.** Whisper decodes without timestamp tokens, and only the first
  window's segment is read: otherwise, for audio that ends mid-sentence (most of streaming),
  faster-whisper seeks back to the last word and encodes the tail again, doubling the cost.

Decisions are taken on a fixed 0.25 s grid of stream time, never at push boundaries, and the
VAD runs on a fixed 512-sample grid with carried state, so live (100 ms pushes) and batch (one
big array) input give the same whisper calls and the same words. ``flush()`` commits what is
buffered now (a clip waits for its transcript, or the stream ends) and restarts the grid.

Hallucination filters, applied to each whisper result before its words enter a hypothesis
(module-level functions, shared with :mod:`detectors.transcribe`, the recordings' transcriber):

1. Whisper's no-speech test, stricter than faster-whisper's own (0.6 and -1): a result with
   no_speech_prob > ``no_speech_prob`` and avg_logprob < ``no_speech_logprob`` is dropped
   (the classic "Thank you." on music scores 0.87 and -0.96; espeak speech at most 0.42).
2. ``min_avg_logprob``: results decoded with low confidence (at temperature 0, mostly
   invented text: whisper would have retried them hotter).
3. ``max_compression_ratio``: highly repetitive results (decoder loops).
4. Not backed by the VAD: a sentence under which no 32 ms window reaches ``vad_neg_threshold``.
5. Known silence hallucinations ("thank you", "thanks for watching", "you", "bye", ...) are
   kept, as a sentence, only where the VAD calls at least half of the audio under them speech.
6. Non-words: punctuation-only tokens, ``[Music]``/``(applause)``/``♪`` annotations.
7. Repeated-phrase loops: a phrase of 2-8 words said 3+ times in a row, or a word 4+ times,
   is kept once.
8. ``min_probability``: words the model is less sure of (0 keeps all).

Load shedding, in this order, driven by ``push(..., behind=s)``, the stream seconds the caller
still holds queued beyond this push (the actor's speech-queue backlog):

1. ``behind > shed_slow``: the step doubles (fewer whisper calls; commits come later).
2. ``behind > shed_first_pass``: each call's hypothesis is committed at once, up to the
   buffer's edge, without waiting for a second hypothesis to agree.
3. ``behind > shed_drop``: the oldest unprocessed audio is dropped: whatever the last
   hypothesis holds is committed, the rest of the buffer and every pushed sample are thrown
   away unheard (``shed_seconds`` counts them; ``transcribed_until`` follows the input) until
   ``behind`` falls back to ``shed_slow``. So ASR lag stays bounded by about ``shed_drop``.
"""
from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal, NamedTuple

import msgspec
import numpy as np

from detectors.assets import OPTIONAL_NAME_PATTERN, AssetDirs, AssetError, whisper_model_dir
from records.wire import Word

RATE = 16000


Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=60.0)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
LogProb = Annotated[float, msgspec.Meta(ge=-20.0, le=0.0)]
Backlog = Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)]


class SpeechOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Model, streaming and load-shedding settings for :class:`StreamingTranscriber`."""

    # a model's name: "" or "tiny.en" is the bundled tiny.en; another name is a CTranslate2
    # Whisper model folder in the operator's --models-dir (e.g. a converted small.en)
    model: Annotated[str, msgspec.Meta(pattern=OPTIONAL_NAME_PATTERN)] = ""
    # "auto": CUDA when the actor was given a GPU (Ray sets CUDA_VISIBLE_DEVICES), else CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # "auto": int8 on CPU, float16 on CUDA; or a CTranslate2 compute type
    compute_type: Literal[
        "auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
        "bfloat16", "float32",
    ] = "auto"
    cpu_threads: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1  # one core per stream: many streams share a machine
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")] = "en"  # tiny.en only knows English
    first_step: Seconds = 3.5  # seconds into an utterance before its first whisper call (most end sooner)
    step: Annotated[float, msgspec.Meta(ge=0.25, le=30.0)] = 2.5  # then seconds of new audio between whisper calls
    end_silence: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)] = 0.5  # non-speech that ends an utterance: committed whole
    reset_silence: Seconds = 2.0  # seconds of non-speech that restart the buffer (else it stays as context)
    max_lag: Seconds = 6.0  # audio is final at most this long after it was pushed (force a commit)
    max_buffer: Annotated[float, msgspec.Meta(ge=1.0, le=30.0)] = 12.0  # seconds: past this, trim at a committed sentence end
    prompt_chars: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 100  # initial_prompt: this much committed text (0: none)
    vad_threshold: Share = 0.5  # Silero speech probability that starts speech...
    vad_neg_threshold: Share = 0.35  # ...and that keeps it going once started
    min_speech: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.25  # VAD speech an utterance needs before whisper hears it
    speech_pad: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.4  # audio kept before speech starts and after it ends
    min_probability: Share = 0.0  # drop words the model is less sure of (0 keeps all)
    min_avg_logprob: LogProb = -1.0  # drop segments decoded with less confidence
    no_speech_prob: Share = 0.5  # drop segments whisper thinks are no speech (above this)...
    no_speech_logprob: LogProb = -0.7  # ...and decoded with less confidence than this
    max_compression_ratio: Annotated[float, msgspec.Meta(gt=0.0, le=100.0)] = 2.4  # drop more repetitive segments (loops)
    shed_slow: Backlog = 5.0  # behind (s): double the step
    shed_first_pass: Backlog = 10.0  # behind (s): commit each hypothesis without agreement
    shed_drop: Backlog = 20.0  # behind (s): drop audio unheard until behind <= shed_slow


def resolve_device(device: str) -> str:
    """"auto" means CUDA if ctranslate2 sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    """"auto" means int8 on the CPU (fastest there) and float16 on a GPU."""
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def load_whisper_model(opts: SpeechOptions | None = None, dirs: AssetDirs | None = None, workers: int = 1):
    """The one place that loads whisper weights (from disk only: never downloads).

    ``opts.model`` names the model: "" or "tiny.en" is the bundled tiny.en, another name a
    CTranslate2 model folder in ``dirs.models_dir`` (``detectors.assets``: never a path).
    """
    from faster_whisper import WhisperModel

    opts = opts or SpeechOptions()
    try:
        path = whisper_model_dir(opts.model, dirs or AssetDirs())
    except AssetError as exc:
        raise RuntimeError(str(exc)) from None
    device = resolve_device(opts.device)
    try:
        return WhisperModel(
            path,
            device=device,
            compute_type=resolve_compute_type(opts.compute_type, device),
            cpu_threads=opts.cpu_threads,
            num_workers=workers,  # calls decoded at once, from as many Python threads
            local_files_only=True,
        )
    except Exception as exc:
        if opts.model:  # the error names the folder: say which model instead
            raise RuntimeError(
                f"speech.model {opts.model!r}: not a loadable CTranslate2 Whisper model "
                f"(models are never downloaded): {type(exc).__name__}"
            ) from None
        raise


# How every live whisper call decodes (the node's ASR server implements exactly this):
STREAM_DECODE = dict(
    temperature=0,  # no fallback retries: they cost seconds on hard audio
    beam_size=1,
    word_timestamps=True,
    condition_on_previous_text=False,
    without_timestamps=True,  # the whole window as one segment (word times come from the
    #                           alignment), so that one encoder pass suffices (StreamingTranscriber._call)
    vad_filter=False,  # gated by our own VAD already
)


class HypWord(NamedTuple):
    """A hypothesis word in stream time, with its normalised text for comparisons."""

    start: float
    end: float
    text: str
    prob: float
    key: str



_NON_WORD = re.compile(r"^\W*$")
_ANNOTATION = re.compile(r"^\s*([\[(*♪♫].*[\])*♪♫]|[♪♫]+)\s*$")
SILENCE_HALLUCINATIONS = frozenset({
    "thank you", "thank you very much", "thank you so much", "thanks", "thanks for watching",
    "thank you for watching", "thank you so much for watching", "thanks for watching and see you next time",
    "please subscribe", "subscribe", "like and subscribe", "you", "bye", "bye bye", "goodbye",
    "so", "the end", "okay", "oh",
})  # fmt: skip


def normalise(text: str) -> str:
    """Lower case, letters, digits and apostrophes only: how words are compared."""
    return " ".join(re.sub(r"[^\w' ]+", "", text.lower().replace("-", " ")).split())


# -- the hallucination filters (module docstring), shared with detectors.transcribe ---------
def keep_segment(seg, opts: SpeechOptions) -> bool:
    """Whisper's own confidence figures for one result: filters 1-3 and 6."""
    if seg.avg_logprob < opts.min_avg_logprob or seg.compression_ratio > opts.max_compression_ratio:
        return False
    if seg.no_speech_prob > opts.no_speech_prob and seg.avg_logprob < opts.no_speech_logprob:
        return False
    return not (_ANNOTATION.match(seg.text) or _NON_WORD.match(seg.text))


def word_text(word, opts: SpeechOptions) -> tuple[str, str] | None:
    """(text, normalised key) of a whisper word, or None for a non-word, an annotation or a
    word under ``min_probability`` (filters 6 and 8)."""
    text, key = word.word.strip(), normalise(word.word)
    if not key or _ANNOTATION.match(text) or word.probability < opts.min_probability:
        return None
    return text, key


def vad_support(probs: np.ndarray, opts: SpeechOptions) -> tuple[float, float]:
    """(peak VAD score, share of windows >= vad_threshold) of the windows under some words."""
    if not len(probs):
        return 0.0, 0.0
    return float(probs.max()), float((probs >= opts.vad_threshold).mean())


def voiced_sentences(words: list[HypWord], speech_under, opts: SpeechOptions) -> tuple[list[HypWord], int]:
    """Filters 4 and 5: each sentence must lie over audio the VAD calls speech.

    ``speech_under(start, end)`` gives :func:`vad_support` of the audio around [start, end] s.
    Returns (the words kept, sentences dropped)."""
    out: list[HypWord] = []
    dropped = 0
    sentence: list[HypWord] = []
    for i, w in enumerate(words):
        sentence.append(w)
        if w.text[-1:] not in ".?!" and i < len(words) - 1:
            continue
        peak, voiced = speech_under(sentence[0].start, sentence[-1].end)
        text = " ".join(x.key for x in sentence)
        if peak < opts.vad_neg_threshold or (text in SILENCE_HALLUCINATIONS and voiced < 0.5):
            dropped += 1  # words where the VAD heard no speech / "Thank you." on silence
        else:
            out += sentence
        sentence = []
    return out, dropped


def collapse_loops(words: list[HypWord]) -> tuple[list[HypWord], int]:
    """Filter 7: a phrase of 2-8 words said 3+ times in a row, or a word 4+ times, is kept
    once. Returns (the words kept, loops collapsed)."""
    keys = [w.key for w in words]
    out: list[HypWord] = []
    loops = 0
    i = 0
    while i < len(words):
        for n in range(1, 9):
            reps = 1
            while keys[i + reps * n : i + (reps + 1) * n] == keys[i : i + n]:
                reps += 1
            if reps >= (4 if n == 1 else 3):
                out += words[i : i + n]
                i += reps * n
                loops += 1
                break
        else:
            out.append(words[i])
            i += 1
    return out, loops


class StreamingTranscriber:
    """Feed 16 kHz float32 mono with :meth:`push`; get newly committed words in stream time."""

    TICK = 4000  # 0.25 s: decisions are taken at buffer positions on this grid
    WIN = 512  # Silero VAD window (32 ms)
    _CTX = 64  # samples of the previous window Silero sees with each window
    _TOL = 0.1  # seconds of word-timestamp slack at the commit seam
    _EDGE = 0.3  # seconds: words ending this close to the buffer's end may be cut off
    _TAIL = 2400  # 0.15 s: a hypothesis this far past the speech's end heard all of it
    _MAX_AUDIO = 28 * RATE  # the most audio one whisper call is given (its window is 30 s)

    def __init__(self, model, opts: SpeechOptions | None = None, *, vad=None) -> None:
        self.model = model
        self.opts = opts = opts or SpeechOptions()
        if vad is None:
            from detectors.vad import load_vad  # the Silero ONNX faster-whisper ships

            vad = load_vad()
        self._vad = vad
        self._step_n = max(self.TICK, int(round(opts.step * RATE)))
        self._first_step_n = int(round(opts.first_step * RATE))
        self._end_silence_n = int(round(opts.end_silence * RATE))
        self._max_lag_n = max(2 * self.TICK, int(round(opts.max_lag * RATE)))
        self._max_buffer_n = int(round(opts.max_buffer * RATE))
        self._pad_n = int(round(opts.speech_pad * RATE))
        self._reset_n = int(round(opts.reset_silence * RATE))
        self._min_speech_windows = max(1, int(round(opts.min_speech * RATE / self.WIN)))
        self.transcribed_until: float = 0.0  # stream time up to which all audio is final
        self.chunks = 0  # whisper calls made
        self.skipped = 0  # non-speech stretches passed over without asking whisper
        self.dropped_segments = 0  # whisper results or sentences thrown away by the hallucination filters
        self.loops = 0  # repeated-phrase loops collapsed
        self.forced = 0  # commits forced by max_lag (no agreement)
        self.shed_seconds = 0.0  # stream seconds dropped unheard under load (shedding level 3)
        self.shed_level = 0  # current load-shedding level, 0-3 (see the module docstring)
        self._dropping = False
        self._committed: list[HypWord] = []  # the last committed words (prompt, seam dedup)
        self._origin: float | None = None
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._ctx = np.zeros(self._CTX, np.float32)

    # -- public -------------------------------------------------------------------------
    def push(self, t0: float, samples: np.ndarray, behind: float = 0.0) -> list[Word]:
        """Add audio starting at stream time ``t0``; return the words committed meanwhile.

        ``behind``: stream seconds the caller holds queued beyond this push (load shedding).
        """
        samples = np.asarray(samples, np.float32).reshape(-1)
        out: list[Word] = []
        if self._origin is None:
            self._start_run(t0, keep_vad=False)
        elif abs(t0 - self._t(self._end)) > 0.25:
            out += self.flush()  # a gap or jump in stream time: finish what we have
            self._start_run(t0, keep_vad=False)
        if self._shed(behind) >= 3:
            return out + self._drop(len(samples))
        if len(samples):
            self._buf = np.concatenate([self._buf, samples]) if len(self._buf) else samples.copy()
            self._end += len(samples)
        while self._end - self._done >= self.TICK:
            out += self._tick(self._done + self.TICK)
        return out

    def counters(self) -> dict[str, float]:
        """What the actor can report: whisper calls, filters at work, forced commits, shedding."""
        return {
            "whisper_calls": self.chunks,
            "non_speech_skipped": self.skipped,
            "dropped_segments": self.dropped_segments,
            "loops_collapsed": self.loops,
            "forced_commits": self.forced,
            "shed_level": self.shed_level,
            "shed_seconds": round(self.shed_seconds, 3),
        }

    def flush(self) -> list[Word]:
        """Commit everything buffered now (a clip waits for its transcript, or end of stream)."""
        if self._origin is None or self._end == 0:
            return []
        out: list[Word] = []
        end = self._end
        if end > self._done:
            self._vad_run(end, pad=True)
            self._vad_consume(-(-end // self.WIN))
            self._done = end
        if self._speech_end is not None and self._speech_windows >= self._min_speech_windows:
            words = self._hyp if self._last_call >= end else self._call(end)
            out += self._commit(words)
        self._start_run(self._t(end), keep_vad=True)
        return out

    # -- the decision grid --------------------------------------------------------------
    def _tick(self, d: int) -> list[Word]:
        self._done = d
        if self._vad_done < d // self.WIN * self.WIN:  # score up to 2 s ahead: few ONNX calls
            self._vad_run(min(self._end // self.WIN, d // self.WIN + 64) * self.WIN)
        self._vad_consume(d // self.WIN)
        out: list[Word] = []
        if self._speech_end is not None and d - self._speech_end >= self._end_silence_n:
            # The utterance is over: commit it whole, then wait for the next one.
            if self._speech_windows >= self._min_speech_windows:
                end = min(d, self._speech_end + self._pad_n)
                heard_all = self._last_call >= min(end, self._speech_end + self._TAIL)
                out += self._commit(self._hyp if heard_all else self._call(end))
            self._speech_end, self._speech_windows, self._hyp = None, 0, []
        if self._speech_end is None:
            if self._idle_since is None:
                self._idle_since = d
                self.skipped += 1
            self._set_final(d - self._pad_n)
            self._last_call = max(self._last_call, d - self._pad_n)  # the next step counts from here
            if d - self._idle_since >= self._reset_n or self._buf_start >= self._idle_since - self._pad_n:
                # A long non-speech stretch (or no speech yet): restart the buffer before the
                # next speech, so timestamps cannot drift and nothing is invented over it.
                self._buf_start = max(self._buf_start, min(self._final, d - self._pad_n))
                self._trim_memory()
            return out
        self._idle_since = None
        called = False
        step = self._step_n * (2 if self.shed_level >= 1 else 1)
        if self._last_call < self._onset:
            step = max(step, self._first_step_n)
            since = self._onset
        else:
            since = max(self._last_call, self._buf_start)
        if d - since >= step and self._in_speech:
            new = self._call(d)
            called = True
            if self.shed_level >= 2:
                out += self._commit_until(new, self._t(d) - self._EDGE)
            else:
                out += self._agree(new)
        if d - self._final > self._max_lag_n - self.TICK:
            # Speech that never pauses and hypotheses that never agree: commit regardless.
            self.forced += 1
            if not called:
                out += self._agree(self._call(d))
            out += self._commit_until(self._hyp, self._t(d) - self._EDGE)
            first = self._n(self._hyp[0].start) if self._hyp else d - self._pad_n
            self._set_final(max(min(first, d - self._pad_n), d - self._max_lag_n // 2))
        if d - self._buf_start > self._max_buffer_n:
            self._trim_buffer(d)
        return out

    def _shed(self, behind: float) -> int:
        o = self.opts
        if behind > o.shed_drop or (self._dropping and behind > o.shed_slow):
            self._dropping = True
            level = 3
        else:
            self._dropping = False
            level = 2 if behind > o.shed_first_pass else 1 if behind > o.shed_slow else 0
        self.shed_level = level
        return level

    def _drop(self, n: int) -> list[Word]:
        """Shedding level 3: keep what is already transcribed, throw the rest away unheard."""
        out = self._commit_until(self._hyp, self._t(self._last_call) - self._EDGE) if self._hyp else []
        end = self._end + n
        self.shed_seconds += (end - self._final) / RATE
        self._start_run(self._t(end), keep_vad=False)
        return out

    # -- whisper and the commit policy --------------------------------------------------
    def _call(self, end: int) -> list[HypWord]:
        """Transcribe the buffer up to ``end``: a filtered hypothesis past the last commit."""
        o = self.opts
        start = max(self._buf_start, end - self._MAX_AUDIO)  # whisper reads one 30 s window
        t = self._t(start)
        audio = self._buf[start - self._buf_base : end - self._buf_base]
        prompt = None
        if o.prompt_chars > 0:
            before = " ".join(w.text for w in self._committed if w.end <= t + self._TOL)
            prompt = before[-o.prompt_chars :].lstrip() or None
        self.chunks += 1
        self._last_call = end
        segments, _info = self.model.transcribe(audio, language=o.language, initial_prompt=prompt, **STREAM_DECODE)
        # Only the first window's segment: faster-whisper would then seek back to the last word's
        # end and encode the tail again (another full 30 s encoder pass, doubling the cost) for
        # audio the decoder has already seen and found no more words in.
        limit = self._t(end)
        words: list[HypWord] = []
        for seg in itertools.islice(segments, 1):
            if not keep_segment(seg, o):
                self.dropped_segments += 1
                continue
            for w in seg.words or ():
                kept = word_text(w, o)
                if kept is None:
                    continue
                text, key = kept
                start = min(t + max(0.0, float(w.start)), limit)
                end_t = min(max(t + float(w.end), start), limit)
                words.append(HypWord(start, end_t, text, float(w.probability), key))
        return self._after_commit(self._collapse_loops(self._voiced_sentences(words)))

    def _voiced_sentences(self, words: list[HypWord]) -> list[HypWord]:
        kept, dropped = voiced_sentences(words, self._speech_under, self.opts)
        self.dropped_segments += dropped
        return kept

    def _collapse_loops(self, words: list[HypWord]) -> list[HypWord]:
        kept, loops = collapse_loops(words)
        self.loops += loops
        return kept

    def _after_commit(self, words: list[HypWord]) -> list[HypWord]:
        """The part of a hypothesis that is new: after the last commit in time and in text."""
        final = self._t(self._final)
        new = [w for w in words if w.start >= final - self._TOL]
        if new and self._committed and abs(new[0].start - self._committed[-1].end) < 1.0:
            tail = [w.key for w in self._committed]
            for i in range(min(5, len(tail), len(new)), 0, -1):
                if tail[-i:] == [w.key for w in new[:i]]:
                    return new[i:]
        return new

    def _agree(self, new: list[HypWord]) -> list[Word]:
        """LocalAgreement-2: commit the common prefix of the previous and the new hypothesis."""
        n = 0
        while n < len(new) and n < len(self._hyp) and new[n].key == self._hyp[n].key:
            n += 1
        out = self._commit(new[:n])
        self._hyp = new[n:]
        return out

    def _commit_until(self, words: list[HypWord], until: float) -> list[Word]:
        n = 0
        while n < len(words) and words[n].end <= until:
            n += 1
        out = self._commit(words[:n])
        self._hyp = list(words[n:])
        return out

    def _commit(self, words: list[HypWord]) -> list[Word]:
        out: list[Word] = []
        for w in words:
            final = self._t(self._final)
            if w.start < final - self._TOL:
                continue  # already final (forced past it): never emit into final audio
            start = max(w.start, self._committed[-1].end if self._committed else w.start)
            end = max(w.end, start)
            out.append(Word(start=round(start, 3), end=round(end, 3), text=w.text, probability=round(w.prob, 3)))
            self._committed.append(w._replace(start=start, end=end))
            self._set_final(self._n(end))
        del self._committed[:-50]
        return out

    def _trim_buffer(self, d: int) -> None:
        """Start the buffer at a committed sentence end (else the last commit), keeping as
        much of the committed context as fits in ``max_buffer - step``."""
        t0, final = self._t(self._buf_start), self._t(self._final)
        ends = [self._n(w.end) for w in self._committed if t0 < w.end <= final and w.text[-1:] in ".?!"]
        fits = [e for e in ends if d - e <= self._max_buffer_n - self._step_n]
        cut = fits[0] if fits else ends[-1] if ends else self._final
        self._buf_start = max(self._buf_start, cut)
        self._trim_memory()

    # -- positions, VAD, bookkeeping ----------------------------------------------------
    def _start_run(self, t: float, keep_vad: bool) -> None:
        """Restart the grid at stream time ``t`` (sample 0), all audio before it final."""
        self._origin = t
        self._buf = np.zeros(0, np.float32)
        self._buf_base = self._buf_start = self._end = self._done = self._final = self._last_call = 0
        self._vad_done = 0  # samples the VAD has scored
        self._probs = np.zeros(0, np.float32)  # scores of windows from _probs_first on
        self._probs_first = 0
        self._consumed = 0  # windows folded into the speech state
        self._in_speech = False
        self._speech_end: int | None = None  # sample where the buffer's last speech ends
        self._speech_windows = 0  # windows >= vad_threshold in the current utterance
        self._onset = 0
        self._idle_since: int | None = None
        self._hyp: list[HypWord] = []
        if not keep_vad:
            self._h = np.zeros((1, 1, 128), np.float32)
            self._c = np.zeros((1, 1, 128), np.float32)
            self._ctx = np.zeros(self._CTX, np.float32)
            self._in_speech = False
        self.transcribed_until = max(self.transcribed_until, t) if keep_vad else t

    def _t(self, n: int) -> float:
        return self._origin + n / RATE

    def _n(self, t: float) -> int:
        return int(round((t - self._origin) * RATE))

    def _set_final(self, n: int) -> None:
        if n > self._final:
            self._final = min(n, self._done)
            self.transcribed_until = max(self.transcribed_until, self._t(self._final))

    def _vad_run(self, until: int, pad: bool = False) -> None:
        """Score the VAD windows of samples [_vad_done, until) (zero-padding the last one)."""
        x = self._buf[self._vad_done - self._buf_base : until - self._buf_base]
        if not len(x):
            return
        if pad and len(x) % self.WIN:
            x = np.concatenate([x, np.zeros(self.WIN - len(x) % self.WIN, np.float32)])
        frames = x.reshape(-1, self.WIN)
        ctx = np.concatenate([self._ctx[None], frames[:-1, -self._CTX :]])
        probs, self._h, self._c = self._vad.session.run(
            None, {"input": np.concatenate([ctx, frames], 1), "h": self._h, "c": self._c}
        )
        self._ctx = frames[-1, -self._CTX :].copy()
        self._probs = np.concatenate([self._probs, np.asarray(probs, np.float32).reshape(-1)])
        self._vad_done += len(frames) * self.WIN

    def _vad_consume(self, windows: int) -> None:
        """Fold the scores of the windows before window ``windows`` into the speech state."""
        o = self.opts
        for k in range(self._consumed, windows):
            p = self._probs[k - self._probs_first]
            end = (k + 1) * self.WIN
            if p >= o.vad_threshold:
                self._in_speech = True
                if self._speech_windows == 0:
                    self._onset = end - self.WIN
                self._speech_windows += 1
                self._speech_end = end
            elif self._in_speech and p >= o.vad_neg_threshold:
                self._speech_end = end
            else:
                self._in_speech = False
        self._consumed = max(self._consumed, windows)

    def _speech_under(self, start: float, end: float) -> tuple[float, float]:
        """(peak VAD score, share of windows >= vad_threshold) around [start, end] s."""
        a = self._n(start - self._TOL) // self.WIN - self._probs_first
        b = -(-self._n(end + self._TOL) // self.WIN) - self._probs_first
        return vad_support(self._probs[max(0, a) : max(0, min(b, self._consumed - self._probs_first))], self.opts)

    def _trim_memory(self) -> None:
        """Forget samples and VAD scores before the buffer start (views, not copies: one huge
        VOD push must not be copied again at every trim; the next live push copies anyway)."""
        cut = self._buf_start - self._buf_base
        if cut >= RATE:
            self._buf = self._buf[cut:]
            self._buf_base = self._buf_start
        drop = self._buf_start // self.WIN - self._probs_first
        if drop >= 64:
            self._probs = self._probs[drop:]
            self._probs_first += drop


def words_between(words: list[Word], start: float, end: float) -> list[Word]:
    """The words overlapping [start, end], in order, timed from ``start`` (a clip's words:
    times clamped to the clip, rounded to milliseconds)."""
    picked = sorted((w for w in words if w.end > start and w.start < end), key=lambda w: w.start)
    span = end - start
    return [
        Word(round(max(0.0, w.start - start), 3), round(min(span, w.end - start), 3), w.text, round(w.probability, 3))
        for w in picked
    ]
