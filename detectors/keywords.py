"""Hype phrases in the transcript ("let's go", "oh my god", "clip it", ...).

ASR spells the same speech many ways ("Let's go!", "lets go", "Letsgo", "let's gooo"), so
both phrases and words are reduced to a compact form before comparing: lowercase, no
apostrophes or punctuation, no spaces, and letters repeated 3+ times squeezed to one. A phrase
then matches any run of consecutive words whose compact forms join up to it, which also covers
ASR merging or splitting words ("letsgo", "in sane", "let 's go"), and runs that straddle
push() calls.

There is deliberately no edit-distance tolerance: the phrases are short, so one letter is
often another real phrase ("what a plan" is not "what a play", "no say" is not "no way").

Per channel, ``phrases`` replaces the whole table and ``extra_phrases`` is laid over it: it
adds phrases, changes a weight (matched by compact form, so "lets go" overrides "let's go"),
or switches a default off with a weight of 0.
"""
from __future__ import annotations

import re
from collections import deque
from typing import Annotated

import msgspec

from records.wire import Signal, Word

DEFAULT_PHRASES: dict[str, float] = {
    # Clear hype on their own (weight >= fusion threshold 1.0 makes a moment by itself).
    "let's go": 1.0,
    "oh my god": 1.0,
    "my god": 1.0,  # ASR often loses the "oh" ("so my god")
    "omg": 1.0,
    "what a play": 1.0,
    "what a shot": 1.0,
    "what a save": 1.0,
    "what a goal": 1.0,
    "that's insane": 1.0,
    "holy shit": 1.0,
    "clip it": 1.2,  # someone asking for a clip is the strongest hint there is
    "clip that": 1.2,
    # Common in ordinary talk too ("there's no way to know"): only count next to other signals.
    "no way": 0.6,
    "insane": 0.6,
    "oh my gosh": 0.8,
    "unbelievable": 0.8,
    "are you kidding me": 0.8,
    "holy cow": 0.8,
}


#: phrase -> weight; bounded, so a channel cannot make every transcript word a long search
Phrases = Annotated[
    dict[Annotated[str, msgspec.Meta(min_length=1, max_length=100)], Annotated[float, msgspec.Meta(ge=0.0, le=10.0)]],
    msgspec.Meta(max_length=1000),
]


class KeywordOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Phrases to spot, each with the ``value`` its Signal gets (fusion weighs it further)."""

    phrases: Phrases = msgspec.field(default_factory=lambda: dict(DEFAULT_PHRASES))  # phrase → weight
    extra_phrases: Phrases = {}  # laid over ``phrases``: add, reweigh, or 0 = off
    max_extra_words: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1  # a phrase may be split by ASR into this many more words

    def effective_phrases(self) -> dict[str, float]:
        """The table in use: ``phrases`` with ``extra_phrases`` laid over it (by compact form)."""
        merged: dict[str, tuple[str, float]] = {}
        for table in (self.phrases, self.extra_phrases):
            for phrase, weight in table.items():
                key = compact(phrase)
                if key:
                    merged[key] = (phrase, float(weight))
        return {phrase: weight for phrase, weight in merged.values() if weight > 0.0}


_APOSTROPHES = re.compile(r"['’‘`´]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_REPEATS = re.compile(r"([a-z])\1{2,}")


def compact(text: str) -> str:
    """Canonical spelling used for matching: "Let's  GOOO!" -> "letsgo"."""
    t = _APOSTROPHES.sub("", text.lower())
    t = _NON_ALNUM.sub("", t)
    return _REPEATS.sub(r"\1", t)


class KeywordSpotter:
    """Feed final words (in order) with :meth:`push`; get one ``Signal("keyword")`` per phrase said.

    ``t`` = start of the phrase's first word; ``value`` = the phrase's weight; ``detail`` = the
    phrase as configured. A word is part of at most one match (the longest phrase wins), so
    the same words never fire twice.
    """

    def __init__(self, opts: KeywordOptions | None = None) -> None:
        self.opts = opts = opts or KeywordOptions()
        self._phrases: dict[str, tuple[str, float]] = {}
        longest = 1
        for phrase, weight in opts.effective_phrases().items():
            self._phrases[compact(phrase)] = (phrase, weight)
            longest = max(longest, len(phrase.split()))
        self._span = longest + max(0, opts.max_extra_words)
        # Recent words: (index, compact text, word). Only the last _span can start a match.
        self._recent: deque[tuple[int, str, Word]] = deque(maxlen=self._span)
        self._next_index = 0
        self._used_until = -1  # words up to this index belong to an emitted match

    def push(self, words: list[Word]) -> list[Signal]:
        out: list[Signal] = []
        for w in words:
            if any(r[2].start == w.start and r[2].text == w.text for r in self._recent):
                continue  # the same word handed over twice
            key = compact(w.text)
            if not key:
                continue  # pure punctuation: invisible, so "oh ... my god" still matches
            self._recent.append((self._next_index, key, w))
            self._next_index += 1
            hit = self._match()
            if hit is not None:
                out.append(hit)
        return out

    def _match(self) -> Signal | None:
        """Longest phrase ending at the newest word that uses no word already matched."""
        recent = list(self._recent)
        joined = ""
        best: tuple[int, str, float, float] | None = None  # (first index, phrase, weight, t)
        for idx, key, word in reversed(recent):
            if idx <= self._used_until:
                break
            joined = key + joined
            found = self._phrases.get(joined)
            if found is not None:
                best = (idx, found[0], found[1], word.start)
        if best is None:
            return None
        self._used_until = recent[-1][0]
        return Signal("keyword", t=best[3], value=best[2], detail=best[1])
