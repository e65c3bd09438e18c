"""Emotional bursts in the transcript: an utterance far more positive or negative than usual.

Final ASR words are grouped into utterances (cut after sentence punctuation once there are
``min_words``, so "Yes! Yes! Yes!" stays one; at a pause of ``pause`` seconds between words;
or at ``max_words``, whose remainder then ends at the next sentence punctuation, however
short) and each is scored once with VADER's
compound score (-1..+1). VADER's lexicon and rules already weigh the cues ASR keeps: "!",
ALL CAPS, "so"/"very", negation, "but". Two conditions must hold to fire:

* the utterance is strongly emotional on its own: ``|compound| >= min_compound`` and at most
  ``max_neutral`` of it is emotionally neutral (VADER's ``neu`` share). One strong word in a
  long calm sentence ("I think the *best* approach here is to take it slowly": 0.64, neu
  0.70) is everyday talk; a short exclamation ("Wow!!", "Great job, well done.", "Oh no, this
  is a disaster!") is dense with emotion;
* it is a *shift*: at least ``min_shift`` away from the channel's baseline, the mean compound
  of its recent utterances, on the same side. A streamer who gushes all the time does not fire
  on every sentence, but a sudden outburst of the opposite mood does.

What this does not capture: tone of voice (a calmly read "oh my god, no way" is -0.1, and a
screamed "let's go" is 0.0 to VADER: the loudness and keyword detectors cover those), sarcasm,
slang missing from the lexicon, and anything not English. ASR punctuation decides part of the
score: whisper writing "!" makes the same words score higher.

Words may arrive in any batches; utterances are cut only by the words themselves (and by
``until``, the stream time the transcript is final to), so live and batch agree.
"""
from __future__ import annotations

from collections import deque
from typing import Annotated

import msgspec

from records.wire import Signal, Word

_SENTENCE_END = (".", "!", "?", "…")


class SentimentOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`SentimentDetector`; defaults stay quiet on calm broadcast talk."""

    pause: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.7  # seconds between words that end an utterance
    min_words: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4  # sentence punctuation ends an utterance only once it has this many words
    max_words: Annotated[int, msgspec.Meta(ge=1, le=200)] = 12  # longer runs are cut here (whisper sometimes writes no punctuation)
    min_compound: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.6  # |VADER compound| of a strongly emotional utterance...
    max_neutral: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.6  # ...whose neutral share (VADER "neu") is at most this...
    min_shift: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.4  # ...and which is this far from the baseline, on the same side
    clear_shift: Annotated[float, msgspec.Meta(gt=0.0, le=2.0)] = 0.75  # a shift this big is a clear burst: value 1.0
    baseline_utterances: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10  # the baseline is the mean of this many recent utterances...
    baseline_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 60.0  # ...that started at most this long before; none: 0 (neutral)
    release_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 10.0  # a same-sign burst starting this soon after one is its tail


_ANALYZER = None


def analyzer():
    """The one VADER analyzer per process (it parses its bundled lexicon once, ~15 ms)."""
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


class SentimentDetector:
    """Feed final words (in order) with :meth:`push`; get one ``Signal("sentiment")`` per burst.

    ``t`` = start of the utterance's first word; ``value`` = |compound - baseline| /
    ``clear_shift`` (>= min_shift / clear_shift when it fires, 1.0 for a clear burst, at most
    2 / clear_shift); ``detail`` = "positive"/"negative", the scores and the utterance's text.
    """

    def __init__(self, opts: SentimentOptions | None = None) -> None:
        self.opts = opts or SentimentOptions()
        self._vader = analyzer()
        self._words: list[Word] = []  # the open utterance
        self._rest = False  # the open utterance is the rest of one cut at max_words
        self._last: Word | None = None  # newest word accepted (to drop words handed over twice)
        self._history: deque[tuple[float, float]] = deque(maxlen=max(1, self.opts.baseline_utterances))
        self._burst: tuple[float, float] | None = None  # (sign, end time) of the latest burst
        self.utterances = 0  # utterances scored (for metrics)

    def push(self, words: list[Word], until: float | None = None) -> list[Signal]:
        """``until``: stream time the transcript is final to (closes an utterance left open by
        a trailing pause, so its signal need not wait for the next word)."""
        o = self.opts
        out: list[Signal] = []
        for w in words:
            last = self._last
            if last is not None and (w.start < last.start or w == last):
                continue  # the same words handed over again
            if last is not None and w.start - last.end >= o.pause - 1e-9:
                out += self._close()  # (also ends the rest of a cut utterance)
            self._last = w
            if not w.text.strip():
                continue
            self._words.append(w)
            n = len(self._words)
            if n >= o.max_words:
                out += self._close()
                self._rest = True
            elif (n >= o.min_words or self._rest) and w.text.rstrip("\"')]»”’").endswith(_SENTENCE_END):
                out += self._close()
        if until is not None and self._words and until - self._words[-1].end >= o.pause - 1e-9:
            out += self._close()
        return out

    def flush(self) -> list[Signal]:
        """Score the open utterance (end of stream)."""
        return self._close()

    def _close(self) -> list[Signal]:
        words, self._words, self._rest = self._words, [], False
        if not words:
            return []
        o = self.opts
        t, end = float(words[0].start), float(words[-1].end)
        text = " ".join(w.text.strip() for w in words)
        scores = self._vader.polarity_scores(text)
        compound, neutral = float(scores["compound"]), float(scores["neu"])
        self.utterances += 1
        recent = [c for start, c in self._history if start >= t - o.baseline_seconds]
        baseline = sum(recent) / len(recent) if recent else 0.0
        self._history.append((t, compound))
        shift = compound - baseline
        sign = 1.0 if compound > 0 else -1.0
        if abs(compound) < o.min_compound or neutral > o.max_neutral or shift * sign < o.min_shift:
            return []
        burst, self._burst = self._burst, (sign, end)
        if burst is not None and burst[0] == sign and t - burst[1] < o.release_seconds:
            return []  # the same outburst going on
        mood = "positive" if sign > 0 else "negative"
        if len(text) > 80:
            text = text[:77] + "..."
        return [Signal("sentiment", t=t, value=round(abs(shift) / o.clear_shift, 3),
                       detail=f"{mood} {compound:+.2f} vs baseline {baseline:+.2f}: {text}")]
