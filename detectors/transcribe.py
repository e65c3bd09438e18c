"""Transcription of recordings: whole VAD utterances, once each, packed into 30 s windows.

The live :class:`detectors.speech.StreamingTranscriber` re-decodes a growing buffer until two
hypotheses agree (LocalAgreement), because live audio must be transcribed before it is
finished. A recording (a VOD job, cut into 2-5 minute shards transcribed in parallel, one CPU
thread each) has all its audio at hand, so here each utterance is decoded exactly once:

* **VAD.** faster-whisper's bundled Silero VAD scores the shard in 32 ms windows on a grid
  fixed in *stream* time (stream sample ``k * 512``). Silero is recurrent: carried across
  a whole shard (as the live transcriber carries it), its state would make two shards that
  start at different times score the same audio differently, and disagree on utterance
  boundaries. So its state is reset on a stream-time grid (every 4.1 s, after 1 s of
  warm-up): a window's score depends only on the few seconds of audio before it, and is the
  same, to the bit, in every shard that holds them (see :func:`speech_probs`). Utterances
  are the speech stretches, by the live transcriber's rules and settings: speech starts at
  a window scoring ``vad_threshold``, goes on while windows score ``vad_neg_threshold``,
  ends after ``end_silence`` seconds without, needs ``min_speech`` seconds of windows at
  ``vad_threshold``, and is padded by ``speech_pad`` on each side (two pads that would
  overlap meet in the middle of the pause). One longer than a window is cut into parts at
  its quietest 32 ms windows.
* **Ownership.** Only utterances whose speech *onset* lies in ``[own_from, own_until)`` are
  transcribed, whole, even where they run past ``own_until``: shards that overlap in audio
  never transcribe or emit an utterance twice, and none is lost at a seam. One exception
  keeps the audio a shard needs past ``own_until`` bounded: an utterance that starts before
  a seam and is still going on ``SEAM_REACH`` (15) seconds after it is cut there, at its
  quietest window of the 2 s before that point, and the part after the cut belongs to the
  next shard (both shards find the same cut: they score those windows alike). The caller
  gives each shard at least ``LEAD_NEEDED`` (6) seconds of audio before ``own_from`` (the
  VAD's reset grid, warm-up and ``end_silence``: speech already going on at ``own_from`` is
  then seen to have started before it) and ``TAIL_NEEDED`` (16.5) seconds after
  ``own_until`` (or all there is); ``stats["cut_at_end"]`` tells when an owned utterance
  reaches the end of the audio given.
* **Packing.** Consecutive owned utterances are concatenated, each with its pads (so the
  pause between two is kept up to ``2 * speech_pad``, the rest cut out), into windows of at
  most ``MAX_WINDOW`` seconds. Whisper decodes each window once: temperature 0, greedy, no
  timestamp tokens (one segment: only it is read, so no second encoder pass for a tail),
  no conditioning on previous text and no prompt (windows are independent: the words of an
  utterance do not depend on where a shard starts, and windows can be batched), word
  times from whisper's alignment, mapped back to stream time through the packing offsets.
  Each word belongs to the utterance under its midpoint and is clamped inside that
  utterance's speech (``_EDGE`` of slack), so no word straddles two utterances or lands in
  audio that was cut out.
* **Second looks.** A window that yields no word although it holds several utterances
  (whisper's figures condemned it whole, or it decoded nothing) is split in halves, judged
  on their own: one utterance of noise cannot take 28 s of good speech down with it. Where
  the decoder stopped early (the window's last utterances without a word, or its last word
  ending more than 1 s before the VAD's speech does), those utterances are transcribed
  again, whole, in windows of their own. Both are rare, and bounded.
* **Hallucination filters:** the live transcriber's, shared with it (``detectors.speech``):
  whisper's confidence per result, VAD support per sentence, silence-hallucination phrases,
  annotations and non-words, repeated-phrase loops, ``min_probability``.
* **Batching** (``batch_size > 1``, the default 8): the windows of a round are decoded
  together with faster-whisper's ``BatchedInferencePipeline`` (one batched encoder pass,
  one batched greedy decode), each packed window given as its own clip. The same windows and
  the same prompt-free decoding give the same words as one ``model.transcribe`` call per
  window (word times differ by up to ~0.1 s: the alignment is batched too); on one CPU
  thread it costs about 15% less CPU (``bench.vod_asr``). ``BatchedInferencePipeline``'s
  own VAD path is *not* used: given a ``VadOptions`` object it does not cap its chunks at
  30 s, and a longer chunk is truncated to its first 30 s (half the words lost on speech
  with short pauses) or, with word timestamps, can crash the process.

Pure code: numpy audio in, :class:`records.wire.Word` out; no I/O besides the model call.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from detectors.speech import (
    HypWord,
    SpeechOptions,
    collapse_loops,
    keep_segment,
    vad_support,
    voiced_sentences,
    word_text,
)
from records.wire import Word

RATE = 16000
WIN = 512  # Silero VAD window (32 ms)
_CTX = 64  # samples of the previous window Silero sees with each window
_BLOCK = 128  # VAD windows (4.1 s) scored from one fresh state, on a grid of stream time...
_WARM = 32  # ...started this many windows (1 s) before the block
_TOL = 0.1  # seconds of slack around a sentence when asking the VAD whether it is speech
_EDGE = int(0.15 * RATE)  # words may reach this far outside their utterance's VAD speech
_INCOMPLETE = RATE  # a window's last word ending this long before its utterance's speech: cut short
MAX_WINDOW = 28.0  # seconds of audio per whisper window (its window is 30 s)
SEAM_REACH = 15.0  # seconds: an utterance going on this long past a seam is cut there...
SEAM_SNAP = 2.0  # ...at its quietest window in the seconds before that
LEAD_NEEDED = 6.0  # seconds of audio a shard needs before own_from (_BLOCK + _WARM + end_silence, rounded up)
TAIL_NEEDED = SEAM_REACH + 1.5  # seconds it needs after own_until (end_silence and speech_pad included)


class Utterance(NamedTuple):
    """A VAD speech stretch (or a part of a long one), in samples of the shard's audio."""

    onset: int  # where the VAD heard the (whole) utterance start: ownership goes by this
    start: int  # the audio to transcribe, pads included: [start, end)
    end: int
    speech_start: int  # the VAD speech in it: words are kept within this (and _EDGE)
    speech_end: int


class _Piece(NamedTuple):
    """An utterance in a window: window samples [at, at + end - start) are shard samples
    [start, end) of ``utt``."""

    at: int
    utt: Utterance

    @property
    def start(self) -> int:
        return self.utt.start

    @property
    def end(self) -> int:
        return self.utt.end


def transcribe_recording(model, samples: np.ndarray, t0: float, opts: SpeechOptions, *,
                         own_from: float | None = None, own_until: float | None = None,
                         vad=None, batch_size: int = 8, stats: dict | None = None) -> list[Word]:  # fmt: skip
    """16 kHz float32 mono `samples` starting at stream time t0 -> committed words in stream time.
    Only utterances whose VAD start lies in [own_from, own_until) are transcribed (None = unbounded),
    so that shards overlapping in audio never transcribe (or emit) the same utterance twice; an owned
    utterance is transcribed whole even if it runs past own_until (the caller passes audio beyond it).

    Give it ``LEAD_NEEDED`` seconds of audio before ``own_from`` and ``TAIL_NEEDED`` after
    ``own_until`` (see the module docstring: an utterance still going on ``SEAM_REACH``
    seconds past a seam is cut there, the rest going to the next shard). ``vad``: a loaded
    ``faster_whisper.vad`` Silero model (default: the bundled one). ``batch_size``: windows
    decoded at once (1: one ``model.transcribe`` call per window; the same words).
    ``stats``, if given, is filled with counters: utterances, windows, whisper_calls
    (windows decoded, second looks included), seconds (of audio decoded), retried,
    cut_at_end, dropped_segments, loops_collapsed."""
    samples = np.asarray(samples, np.float32).reshape(-1)
    if vad is None:
        from detectors.vad import load_vad  # the Silero ONNX faster-whisper ships

        vad = load_vad()
    lead = int(round(t0 * RATE)) % WIN  # VAD window k covers shard samples [k * WIN - lead, ...)
    probs = speech_probs(vad, samples, int(round(t0 * RATE)))

    def owned(u: Utterance) -> bool:
        t = t0 + u.onset / RATE
        return (own_from is None or t >= own_from - 1e-6) and (own_until is None or t < own_until - 1e-6)

    seams = tuple(int(round((t - t0) * RATE)) for t in (own_from, own_until) if t is not None)
    mine = [u for u in find_utterances(probs, len(samples), lead, opts, seams=seams) if owned(u)]
    cut_at_end = own_until is not None and bool(mine) and mine[-1].speech_end >= len(samples) - WIN
    counters = {"utterances": len({u.onset for u in mine}), "windows": 0, "whisper_calls": 0, "seconds": 0.0,
                "retried": 0, "dropped_segments": 0, "loops_collapsed": 0, "cut_at_end": int(cut_at_end)}  # fmt: skip

    def speech_under(start: float, end: float) -> tuple[float, float]:
        a = (int(np.floor((start - _TOL - t0) * RATE)) + lead) // WIN
        b = -(-(int(np.ceil((end + _TOL - t0) * RATE)) + lead) // WIN)
        return vad_support(probs[max(0, a) : max(0, b)], opts)

    max_n = int(MAX_WINDOW * RATE)
    todo = pack(mine, max_n)
    counters["windows"] = len(todo)
    kept: list[HypWord] = []
    while todo:
        again: list[list[_Piece]] = []
        for window, found in zip(todo, _decode(model, samples, todo, t0, opts, batch_size, counters)):
            heard = 1 + max((i for _, i in found), default=-1)  # utterances up to the last with a word
            if heard == 0 and len(window) > 1:
                half = (len(window) + 1) // 2
                again += [_exactly(window[:half]), _exactly(window[half:])]
                counters["retried"] += 1
                continue
            last_end = max((w.end for w, i in found if i == heard - 1), default=0.0)
            if heard > 1 and last_end < t0 + (window[heard - 1].utt.speech_end - _INCOMPLETE) / RATE:
                heard -= 1  # the decoder stopped inside that utterance: it is heard again, whole
            if 0 < heard < len(window):
                again += pack([p.utt for p in window[heard:]], max_n)
                counters["retried"] += 1
            words = [w for w, i in found if i < heard]
            words, dropped = voiced_sentences(words, speech_under, opts)
            words, loops = collapse_loops(words)
            counters["dropped_segments"] += dropped
            counters["loops_collapsed"] += loops
            kept += words
        todo = again
    kept.sort(key=lambda w: w.start)  # stable: a window's words keep their order
    out: list[Word] = []
    for w in kept:
        start = max(w.start, out[-1].end) if out else w.start
        end = max(w.end, start)
        out.append(Word(start=round(start, 3), end=round(end, 3), text=w.text, probability=round(w.prob, 3)))
    if stats is not None:
        stats.update(counters)
    return out


# -- VAD ---------------------------------------------------------------------------------
def speech_probs(vad, samples: np.ndarray, stream_sample: int = 0) -> np.ndarray:
    """Silero's speech probability for each 512-sample window of a shard whose first sample is
    ``stream_sample``; window k covers shard samples [k * WIN - lead, ...), lead =
    ``stream_sample % WIN`` (zeros before the shard's audio and after it).

    Silero is recurrent, so a window's score depends on all the audio before it: two shards
    that start at different times would score the same audio differently (by a few windows
    even after 10 s) and could then disagree on who owns an utterance. So the state is reset
    on a grid of stream time: the windows of each ``_BLOCK`` are scored from a fresh state
    started ``_WARM`` windows before the block. A window's score then depends only on the
    audio since then: the same in every shard holding that audio."""
    lead = stream_sample % WIN
    x = np.concatenate([np.zeros(lead, np.float32), samples, np.zeros((-(lead + len(samples))) % WIN, np.float32)])
    if not len(x):
        return np.zeros(0, np.float32)
    frames = x.reshape(-1, WIN)
    batch = np.concatenate([np.concatenate([np.zeros((1, _CTX), np.float32), frames[:-1, -_CTX:]]), frames], 1)
    first = (stream_sample - lead) // WIN  # the stream's window index of window 0
    out = np.zeros(len(frames), np.float32)
    start = 0
    while start < len(frames):
        end = min(len(frames), (first + start) // _BLOCK * _BLOCK + _BLOCK - first)
        warm = max(0, start - _WARM)
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        p, _h, _c = vad.session.run(None, {"input": batch[warm:end], "h": h, "c": c})
        out[start:end] = np.asarray(p, np.float32).reshape(-1)[start - warm :]
        start = end
    return out


def find_utterances(probs: np.ndarray, n: int, lead: int, opts: SpeechOptions,
                    max_len: int = int(MAX_WINDOW * RATE), seams: tuple[int, ...] = ()) -> list[Utterance]:  # fmt: skip
    """The utterances (see the module docstring) of an ``n``-sample shard whose VAD window k
    starts at sample ``k * WIN - lead``, in order, none longer than ``max_len``.

    ``seams``: the shard samples where ownership changes hands (own_from, own_until). An
    utterance that starts before a seam and still goes on ``SEAM_REACH`` seconds after it
    is cut there (at its quietest window of the ``SEAM_SNAP`` seconds before that point):
    the part after the cut starts after the seam, so the shard after the seam owns it. The
    shards on both sides score the same windows there alike (:func:`speech_probs`), so they
    cut at the same sample: no utterance is left to a shard that is not given its end."""
    end_silence = int(round(opts.end_silence * RATE))
    min_windows = max(1, int(round(opts.min_speech * RATE / WIN)))
    pad = int(round(opts.speech_pad * RATE))
    spans: list[tuple[int, int]] = []  # VAD windows [first speech, last speech + 1)
    first = last = None
    strong = 0
    in_speech = False
    for k, p in enumerate(probs):
        if p >= opts.vad_threshold:
            if last is not None and (k - last) * WIN >= end_silence:
                if strong >= min_windows:
                    spans.append((first, last))
                first = None
            if first is None:
                first, strong = k, 0
            in_speech = True
            strong += 1
            last = k + 1
        elif in_speech and p >= opts.vad_neg_threshold:
            last = k + 1
        else:
            in_speech = False
    if first is not None and strong >= min_windows:
        spans.append((first, last))

    def at(k: int) -> int:  # the shard sample where VAD window k starts
        return min(n, max(0, k * WIN - lead))

    def quietest(lo: int, hi: int) -> int:  # the middle of the quietest window in [lo, hi)
        return at(lo + int(np.argmin(probs[lo : max(lo + 1, hi)]))) + WIN // 2

    reach, snap = int(SEAM_REACH * RATE), int(SEAM_SNAP * RATE)
    utts: list[Utterance] = []
    for a, b in spans:
        parts = [(at(a), at(b), True)]  # (speech from, speech to, padded before), cut at seams
        for seam in sorted(seams):
            onset, stop, padded = parts[-1]
            if onset < seam and stop > seam + reach:
                lo, hi = -(-(seam + reach - snap + lead) // WIN), -(-(seam + reach + lead) // WIN)
                cut = quietest(max(lo, a), min(hi, b))
                parts[-1:] = [(onset, cut, padded), (cut, stop, False)]
        for i, (onset, stop, padded) in enumerate(parts):
            start = max(0, onset - pad) if padded else onset
            end = min(n, stop + pad) if i == len(parts) - 1 else stop
            speech = onset
            while end - start > max_len:  # too long for a window: cut at its quietest window
                lo = (start + lead + max_len // 2) // WIN
                cut = quietest(lo, (start + lead + max_len - pad) // WIN)
                utts.append(Utterance(onset, start, cut, speech, cut))
                start = speech = cut
            utts.append(Utterance(onset, start, end, speech, stop))
    for i in range(1, len(utts)):  # pads that overlap meet in the middle of the pause
        prev, cur = utts[i - 1], utts[i]
        if cur.start < prev.end:
            mid = (prev.end + cur.start) // 2
            utts[i - 1], utts[i] = prev._replace(end=mid), cur._replace(start=mid)
    return utts


# -- packing -----------------------------------------------------------------------------
def pack(utts: list[Utterance], max_n: int) -> list[list[_Piece]]:
    """Consecutive utterances, concatenated, in windows of at most ``max_n`` samples (an
    utterance is never longer: :func:`find_utterances` cuts longer ones)."""
    windows: list[list[_Piece]] = []
    length = max_n + 1
    for u in utts:
        if length + u.end - u.start > max_n:
            windows.append([])
            length = 0
        windows[-1].append(_Piece(length, u))
        length += u.end - u.start
    return windows


def _exactly(pieces: list[_Piece]) -> list[_Piece]:
    """These pieces as a window of their own."""
    return pack([p.utt for p in pieces], 1 << 62)[0]


def _window_audio(samples: np.ndarray, window: list[_Piece]) -> np.ndarray:
    return np.concatenate([samples[p.start : p.end] for p in window])


# -- whisper -----------------------------------------------------------------------------
_DECODE = dict(temperature=0, beam_size=1, word_timestamps=True, without_timestamps=True)
# (BatchedInferencePipeline never conditions on previous text, and takes no such argument.)


def _decode(model, samples, windows: list[list[_Piece]], t0: float, opts: SpeechOptions, batch_size: int,
            counters: dict) -> list[list[tuple[HypWord, int]]]:  # fmt: skip
    """Whisper on each window: its filtered words in stream time, each with the index of the
    utterance (piece) it belongs to."""
    audios = [_window_audio(samples, w) for w in windows]
    counters["whisper_calls"] += len(windows)
    counters["seconds"] += sum(len(a) for a in audios) / RATE
    if batch_size <= 1:
        results = []
        for audio in audios:
            segments, _info = model.transcribe(
                audio, language=opts.language, vad_filter=False, condition_on_previous_text=False, **_DECODE
            )
            # One segment (no timestamp tokens): faster-whisper would then seek to the last
            # word's end and encode the window's tail again, for words the decoder skipped.
            results.append([(seg, 0.0) for seg in itertools.islice(segments, 1)])
    else:
        results = _decode_batched(model, audios, opts, batch_size)
    return [_words(window, found, t0, opts, counters) for window, found in zip(windows, results)]


def _decode_batched(model, audios: list[np.ndarray], opts: SpeechOptions, batch_size: int) -> list[list]:
    """BatchedInferencePipeline on the windows laid end to end, each its own clip (each
    starting on a whole second, so that its offset survives the pipeline's rounding)."""
    from faster_whisper import BatchedInferencePipeline

    offsets = [0]
    for a in audios[:-1]:
        offsets.append(offsets[-1] + -(-len(a) // RATE) * RATE)
    laid = np.zeros(offsets[-1] + len(audios[-1]), np.float32)
    for off, a in zip(offsets, audios):
        laid[off : off + len(a)] = a
    clips = [{"start": off / RATE, "end": (off + len(a)) / RATE} for off, a in zip(offsets, audios)]
    segments, _info = BatchedInferencePipeline(model).transcribe(
        laid, language=opts.language, clip_timestamps=clips, batch_size=batch_size, **_DECODE
    )
    index = {off // RATE: i for i, off in enumerate(offsets)}
    results: list[list] = [[] for _ in audios]
    for seg in segments:
        i = index[int(round(seg.seek / model.frames_per_second))]  # seek: the clip's start, in frames
        results[i].append((seg, offsets[i] / RATE))
    return results


def _words(window: list[_Piece], found, t0: float, opts: SpeechOptions, counters: dict) -> list[tuple[HypWord, int]]:
    """The filtered words of a window's segments ((segment, its time offset) pairs) in stream
    time, each clamped inside its own utterance, with that utterance's index in the window."""
    words: list[tuple[HypWord, int]] = []
    for seg, offset in found:
        if not keep_segment(seg, opts):
            counters["dropped_segments"] += 1
            continue
        for w in seg.words or ():
            kept = word_text(w, opts)
            if kept is None:
                continue
            text, key = kept
            a, b = (float(w.start) - offset) * RATE, (float(w.end) - offset) * RATE
            i = _piece_of(window, (a + b) / 2)
            p, u = window[i], window[i].utt
            lo, hi = max(u.start, u.speech_start - _EDGE), min(u.end, u.speech_end + _EDGE)
            start = min(max(u.start + a - p.at, lo), hi)
            end = min(max(u.start + b - p.at, start), hi)
            words.append((HypWord(t0 + start / RATE, t0 + end / RATE, text, float(w.probability), key), i))
    return words


def _piece_of(window: list[_Piece], x: float) -> int:
    """The index of the piece under window sample ``x`` (the nearest one, past either end)."""
    for i, p in enumerate(window):
        if x < p.at + p.end - p.start:
            return i
    return len(window) - 1
