"""Several streams' whisper calls as one CTranslate2 batch, each with its own prompt.

The live transcriber (:class:`detectors.speech.StreamingTranscriber`) calls whisper with
one piece of audio (at most 28 s) and the tail of its committed text as ``initial_prompt``,
and reads one segment: temperature 0, greedy, no timestamp tokens, word times from the
alignment. :func:`transcribe_batch` gives the same result for many such calls at once, from
different streams: one encoder pass over the batch, one greedy decode, one alignment.

faster-whisper's ``BatchedInferencePipeline`` batches the chunks of *one* file under *one*
prompt; this goes one level down, to the CTranslate2 model, because each stream keeps its
own prompt (on ``bench.asr_quality`` the prompt takes tiny.en's live WER from ~0.20 to
~0.14). CTranslate2 wants the prompts of a batch to have the same length, so prompts are
grouped by length and a group's are cut, from the left, to its shortest: a few tokens of
older context at most (:func:`prompt_groups`).

Whisper's encoder always reads 30 s, and on a CPU that pass is most of a call's cost, which a
batch does not share out. :func:`transcribe_packed` does: consecutive calls are laid end to
end, with a short silence between, in windows of up to 28 s, and each word goes back to the
call under it. A packed window has no prompt (it belongs to one stream; the window's earlier
calls are the context instead); a call alone in its window keeps its prompt. The words of a
call whose window's decoder stopped before it are decoded again, alone.

The faster-whisper methods used here are checked by :func:`check_model_api` when a model
server starts, and faster-whisper is pinned to the minor version they were read from.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

RATE = 16000
MAX_SAMPLES = 30 * RATE
PREPEND = "\"'“¿([{-"
APPEND = "\"'.。,，!！?？:：”)]}、"
GROUP_RATIO = 0.75  # a prompt group's shortest prompt keeps at least this share of its longest
_MODEL_API = ("feature_extractor", "hf_tokenizer", "get_prompt", "encode", "add_word_timestamps", "max_length",
              "frames_per_second")  # fmt: skip


class Job(NamedTuple):
    """One whisper call: 16 kHz float32 mono (at most 30 s) and the prompt text (or None)."""

    audio: np.ndarray
    prompt: str | None = None


class WordTiming(NamedTuple):
    """A word, in seconds from the start of its job's audio (faster-whisper's field names)."""

    start: float
    end: float
    word: str
    probability: float


class Segment(NamedTuple):
    """A job's one segment, with the figures the hallucination filters read."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[WordTiming, ...]


def check_model_api(model) -> None:
    """Raise if this faster-whisper lacks a method this module calls (it is not public API)."""
    from faster_whisper import transcribe as fw

    missing = [name for name in _MODEL_API if not hasattr(model, name)]
    missing += [name for name in ("Tokenizer", "get_compression_ratio", "get_suppressed_tokens") if not hasattr(fw, name)]
    missing += [name for name in ("generate", "is_multilingual") if not hasattr(model.model, name)]
    if missing:
        raise RuntimeError(f"faster-whisper changed: the batched transcriber needs {', '.join(missing)}")


def prompt_groups(lengths: Sequence[int]) -> list[tuple[list[int], int]]:
    """Job indices grouped for CTranslate2 (one length of previous-text tokens per batch),
    with the number of tokens each group keeps: jobs without a prompt together; the others
    by length, longest first, a group closed when the next is shorter than ``GROUP_RATIO`` of
    its longest."""
    groups: list[tuple[list[int], int]] = []
    bare = [i for i, n in enumerate(lengths) if n == 0]
    if bare:
        groups.append((bare, 0))
    for i in sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i]):
        if groups and groups[-1][1] > 0 and lengths[i] >= GROUP_RATIO * lengths[groups[-1][0][0]]:
            groups[-1][0].append(i)
            groups[-1] = (groups[-1][0], lengths[i])
        else:
            groups.append(([i], lengths[i]))
    return groups


def transcribe_batch(model, jobs: Sequence[Job], language: str = "en") -> list[Segment | None]:
    """Each job's segment (None where whisper decoded no token), as ``model.transcribe(audio,
    language=language, initial_prompt=prompt, temperature=0, beam_size=1, word_timestamps=True,
    without_timestamps=True, condition_on_previous_text=False, vad_filter=False)`` gives it
    for the first window. Word times may differ by a few hundredths of a second (the
    alignment's pause heuristics see the batch's previous job)."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.transcribe import Tokenizer, get_suppressed_tokens

    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    previous = [tokenizer.encode(" " + job.prompt.strip()) if job.prompt and job.prompt.strip() else [] for job in jobs]
    previous = [p[-(model.max_length // 2 - 1) :] for p in previous]
    out: list[Segment | None] = [None] * len(jobs)
    for indices, keep in prompt_groups([len(p) for p in previous]):
        features, frames = [], []
        for i in indices:
            feats = model.feature_extractor(np.asarray(jobs[i].audio, np.float32)[:MAX_SAMPLES])[..., :-1]
            frames.append(min(feats.shape[-1], 3000))
            features.append(pad_or_trim(feats))
        prompts = [
            model.get_prompt(tokenizer, previous[i][len(previous[i]) - keep :] if keep else [], without_timestamps=True)
            for i in indices
        ]
        encoded = model.encode(np.stack(features))
        results = model.model.generate(
            encoded, prompts, beam_size=1, patience=1, length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0,
            max_length=model.max_length, return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), max_initial_timestamp_index=50,
        )  # fmt: skip
        decoded = []
        for k, result in enumerate(results):
            tokens = result.sequences_ids[0]
            decoded.append([dict(
                tokens=tokens, start=0.0, end=frames[k] / model.frames_per_second, seek=0,
                avg_logprob=result.scores[0] * len(tokens) / (len(tokens) + 1),
                no_speech_prob=result.no_speech_prob,
            )])  # fmt: skip
        # one batched alignment; rows without tokens align to nothing (as in the batched pipeline)
        model.add_word_timestamps(decoded, tokenizer, encoded, frames, PREPEND, APPEND, 0.0)
        for k, i in enumerate(indices):
            if any(t < tokenizer.eot for t in decoded[k][0]["tokens"]):
                out[i] = _segment(decoded[k][0], tokenizer)
    return out


def _segment(raw: dict, tokenizer) -> Segment:
    from faster_whisper.transcribe import get_compression_ratio

    text = tokenizer.decode([t for t in raw["tokens"] if t < tokenizer.eot])
    words = tuple(WordTiming(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                  for w in raw.get("words", ()))  # fmt: skip
    return Segment(text, float(raw["avg_logprob"]), float(raw["no_speech_prob"]),
                   get_compression_ratio(text.strip()), words)  # fmt: skip


# -- packing: several calls in one 30 s window -------------------------------------------
GAP = int(0.4 * RATE)  # silence laid between two calls' audio in a window: a pause the decoder hears
WINDOW = 28 * RATE  # the most audio a packed window holds (its encoder window is 30 s)
_MIN_WORD_P = 1e-4


def pack_jobs(lengths: Sequence[int], window: int = WINDOW, gap: int = GAP) -> list[list[int]]:
    """Job indices, in order, in windows of at most ``window`` samples (``gap`` between jobs)."""
    windows: list[list[int]] = []
    used = 0
    for i, n in enumerate(lengths):
        if windows and used + gap + n <= window:
            windows[-1].append(i)
            used += gap + n
        else:
            windows.append([i])
            used = n
    return windows


def split_window(segment: Segment | None, offsets: Sequence[int], lengths: Sequence[int]) -> list[Segment | None]:
    """A packed window's segment as one segment per job: each word goes to the job under its
    midpoint (a gap belongs to the job before it), in that job's time and inside its audio.
    A job's ``avg_logprob`` is the mean log-probability of its words; ``no_speech_prob`` is the
    window's for its first job (whisper's no-speech token reads the window's start) and 0 after."""
    if segment is None:
        return [None] * len(offsets)
    mine: list[list[WordTiming]] = [[] for _ in offsets]
    for w in segment.words:
        mid = (w.start + w.end) / 2 * RATE
        k = max(0, sum(1 for off in offsets if off <= mid) - 1)
        lo, hi = offsets[k] / RATE, (offsets[k] + lengths[k]) / RATE
        start = min(max(w.start, lo), hi) - lo
        mine[k].append(WordTiming(start, min(max(w.end, lo + start), hi) - lo, w.word, w.probability))
    from faster_whisper.transcribe import get_compression_ratio

    out: list[Segment | None] = []
    for k, words in enumerate(mine):
        if not words:
            out.append(None)
            continue
        text = "".join(w.word for w in words)
        logprob = float(np.mean([np.log(max(w.probability, _MIN_WORD_P)) for w in words]))
        out.append(Segment(text, logprob, segment.no_speech_prob if k == 0 else 0.0,
                           get_compression_ratio(text.strip()), tuple(words)))  # fmt: skip
    return out


def transcribe_packed(model, jobs: Sequence[Job], language: str = "en") -> list[Segment | None]:
    """Each job's segment, as :func:`transcribe_batch` gives it, for less: consecutive jobs are
    laid end to end (``GAP`` of silence between) in windows of up to 28 s, so one encoder pass
    serves several calls; all windows go through whisper as one batch. A window of one job
    keeps its prompt; a packed window has none (its earlier jobs are context enough, and a
    prompt belongs to one stream). Jobs after the last one in a window that got words (the
    decoder stopped early) are decoded again, each alone with its prompt."""
    out: list[Segment | None] = [None] * len(jobs)
    todo = pack_jobs([min(len(j.audio), WINDOW) for j in jobs])
    for last_look in (False, True):
        windows, layouts = [], []
        for indices in todo:
            if len(indices) == 1:
                windows.append(jobs[indices[0]])
                layouts.append(None)
                continue
            offsets, lengths, parts = [], [], []
            at = 0
            for i in indices:
                audio = np.asarray(jobs[i].audio, np.float32)[:WINDOW]
                if parts:
                    parts.append(np.zeros(GAP, np.float32))
                    at += GAP
                offsets.append(at)
                lengths.append(len(audio))
                parts.append(audio)
                at += len(audio)
            windows.append(Job(np.concatenate(parts)))
            layouts.append((offsets, lengths))
        again: list[list[int]] = []
        for indices, layout, segment in zip(todo, layouts, transcribe_batch(model, windows, language)):
            if layout is None:
                out[indices[0]] = segment
                continue
            pieces = split_window(segment, *layout)
            heard = 1 + max((k for k, p in enumerate(pieces) if p is not None), default=-1)
            for k, i in enumerate(indices):
                if k < heard or last_look:
                    out[i] = pieces[k]
                else:
                    again.append([i])
        if not again:
            break
        todo = again
    return out
