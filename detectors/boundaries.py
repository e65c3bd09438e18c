"""Clip edges that fall between words, and preferably between sentences.

A clip cut from detector times (a roar's onset minus a lead-in, say) usually starts and ends
mid-word, which sounds broken. :func:`snap_clip` moves each edge to the nearest clean place
the transcript shows, in this order of preference:

1. an edge in a pause between sentences is already clean: unchanged;
2. an edge inside a sentence goes *outwards* to that sentence's start (or end), if that is at
   most ``max_extend`` seconds away: the clip gains context rather than losing words;
3. otherwise *inwards* to the start of the next sentence (or end of the previous one), if that
   is at most ``max_trim`` away: a clip opening on the last two words of a long sentence is
   worse than one a moment shorter;
4. otherwise an edge inside a word goes outwards to that word's start (or end), whatever the
   limits (never cut mid-word); one between two words of a sentence stays.

A sentence starts at the first word, after a word ending in ``.``, ``!``, ``?`` or ``…``, or
after a pause of at least ``gap`` seconds between words, and ends likewise. Word times are
whisper's, good to about 0.1 s: callers wanting a breath of room can pad the result.
"""
from __future__ import annotations

from records.wire import Word

_SENTENCE_END = (".", "!", "?", "…")
_CLOSERS = "\"')]»”’"


def sentences(words: list[Word], gap: float = 0.5) -> list[tuple[float, float]]:
    """(start, end) of each sentence in ``words``, in order."""
    out: list[tuple[float, float]] = []
    words = sorted((w for w in words if w.text.strip()), key=lambda w: (w.start, w.end))
    for i, w in enumerate(words):
        prev = words[i - 1] if i else None
        if prev is None or _ends_sentence(prev) or w.start - prev.end >= gap - 1e-9:
            out.append((w.start, w.end))
        else:
            out[-1] = (out[-1][0], max(out[-1][1], w.end))
    return out


def snap_clip(
    start: float,
    end: float,
    words: list[Word],
    *,
    max_extend: float = 3.0,
    max_trim: float = 1.0,
    gap: float = 0.5,
) -> tuple[float, float]:
    """``(start, end)`` moved to word and sentence boundaries (see the module doc); unchanged
    where ``words`` say nothing about an edge. ``start <= end`` is kept."""
    spans = sentences(words, gap)
    if not spans or end < start:
        return start, end
    words = [w for w in words if w.text.strip()]
    new_start = _snap(start, spans, words, max_extend, max_trim, limit=end, forward=False)
    new_end = _snap(end, spans, words, max_extend, max_trim, limit=new_start, forward=True)
    return float(new_start), float(new_end)


def _snap(t: float, spans, words, max_extend: float, max_trim: float, *, limit: float, forward: bool) -> float:
    """One edge: ``forward`` for the clip's end (outwards is later), else its start."""
    inside = next(((a, b) for a, b in spans if a < t < b), None)
    if inside is None:
        return t  # 1. in a pause between sentences (or outside the transcript)
    a, b = inside
    outwards = b if forward else a
    if abs(outwards - t) <= max_extend + 1e-9:
        return outwards  # 2. the whole sentence
    if forward:  # 3. drop the sentence's cut-off part
        inwards = max((e for _, e in spans if e <= t), default=None)
        if inwards is not None and t - inwards <= max_trim + 1e-9 and inwards > limit:
            return inwards
    else:
        inwards = min((s for s, _ in spans if s >= t), default=None)
        if inwards is not None and inwards - t <= max_trim + 1e-9 and inwards < limit:
            return inwards
    cut = next((w for w in words if w.start < t < w.end), None)
    if cut is not None:
        return cut.end if forward else cut.start  # 4. never mid-word
    return t


def _ends_sentence(w: Word) -> bool:
    return w.text.rstrip().rstrip(_CLOSERS).endswith(_SENTENCE_END)
