"""Speech rate: an utterance spoken much faster than the speaker's own recent normal.

Excited speech is faster as well as higher (detectors.arousal measures pitch and timbre from
the audio); the rate comes from the word timestamps. Final ASR words are grouped into
utterances (a pause of ``pause`` seconds ends one); each utterance of at least ``min_words``
gives a rate in syllables per second (vowel groups of the words' spelling: rough per word,
steady over a sentence) and is compared with the median rate of the recent utterances.

Fires when the utterance is ``min_rise`` faster than the baseline; ``value`` = rise /
``clear_rise`` (1.0 for a clearly rushed utterance). It does not know who speaks: a fast
second speaker in a podcast reads as a rise, which is why this signal only ever corroborates
(fusion fits its weight). Words may arrive in any batches; utterances are cut by the words
themselves and by ``until``, so live and batch agree.
"""
from __future__ import annotations

import re
import statistics
from collections import deque
from typing import Annotated

import msgspec

from records.wire import Signal, Word

_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


class SpeechRateOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`SpeechRateDetector`."""

    pause: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)] = 0.6  # seconds between words that end an utterance
    min_words: Annotated[int, msgspec.Meta(ge=2, le=100)] = 3  # shorter utterances have no meaningful rate
    min_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=30.0)] = 0.6  # nor shorter ones in time
    baseline_utterances: Annotated[int, msgspec.Meta(ge=3, le=1000)] = 30  # recent utterances that define normal
    warmup_utterances: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5  # utterances needed before anything fires
    min_rise: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.15  # fires at 15% faster than normal...
    clear_rise: Annotated[float, msgspec.Meta(gt=0.0, le=5.0)] = 0.3  # ...and 30% faster is value 1.0


def syllables(text: str) -> int:
    """Vowel groups of a word's spelling, at least one ("go" 1, "insane" 3: e-final counts too)."""
    return max(1, len(_VOWEL_GROUPS.findall(text.lower())))


class SpeechRateDetector:
    """Feed final words (in order) with :meth:`push`; get ``Signal("speech_rate")`` per rushed utterance."""

    def __init__(self, opts: SpeechRateOptions | None = None) -> None:
        self.opts = opts or SpeechRateOptions()
        self._words: list[Word] = []
        self._last: Word | None = None
        self._rates: deque[float] = deque(maxlen=self.opts.baseline_utterances)

    def push(self, words: list[Word], until: float | None = None) -> list[Signal]:
        out: list[Signal] = []
        for w in words:
            last = self._last
            if last is not None and (w.start < last.start or w == last):
                continue  # the same words handed over again
            if last is not None and w.start - last.end >= self.opts.pause - 1e-9:
                out += self._close()
            self._last = w
            if any(c.isalnum() for c in w.text):
                self._words.append(w)
        if until is not None and self._words and until - self._words[-1].end >= self.opts.pause - 1e-9:
            out += self._close()
        return out

    def _close(self) -> list[Signal]:
        words, self._words = self._words, []
        o = self.opts
        seconds = words[-1].end - words[0].start if words else 0.0
        if len(words) < o.min_words or seconds < o.min_seconds:
            return []
        rate = sum(syllables(w.text) for w in words) / seconds
        baseline = statistics.median(self._rates) if len(self._rates) >= o.warmup_utterances else None
        self._rates.append(rate)
        if baseline is None or baseline <= 0:
            return []
        rise = rate / baseline - 1.0
        if rise < o.min_rise:
            return []
        return [Signal("speech_rate", t=float(words[0].start), value=round(rise / o.clear_rise, 3),
                       detail=f"{rate:.1f} syllables/s vs {baseline:.1f}")]
