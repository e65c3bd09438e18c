"""Chat activity: message-rate and emote bursts against the channel's own chat baseline.

Twitch chat reacts to what happens on stream: a play, a fail or a joke makes the chat
rate jump and fills it with emotes ("Pog", "KEKW", "LUL"). What counts as a jump depends
on the channel (2 msg/s is a storm in a small channel and a lull in a big one), so both
measures are compared with the channel's own recent normal:

* ``Signal("chat")``: the message rate over a short window (``window_seconds``) against
  the same window rate over the last ``baseline_seconds``: above the median by
  ``trigger_sigmas`` robust deviations (MAD, on square-root counts, where counting noise
  is the same at any rate, and never below that noise), at least ``min_ratio`` times the
  median and at least ``min_rate`` msg/s. ``value`` = (rate - median)
  / (trigger - median), so >= 1.0 when it fires.
* ``Signal("emote")``: the share of messages containing an emote over the window against
  the pooled share of the baseline, with a binomial noise allowance, at least ``min_jump``
  above it and at least ``emote_min_share``. ``value`` is scaled the same way.

Both need enough distinct chatters in the window (``min_users``), and one chatter counts
for at most ``per_user_cap`` messages per window, so one spammer (or a few) cannot fire them.
One burst fires once: it is over when the window stays below the release level (half way
from the baseline to the trigger) for ``release_seconds``. Bins inside a burst stay out of
the baseline, unless the burst lasts ``max_burst_seconds`` (a raid: the new normal).

Time: messages carry stream time (the actor maps their wall-clock receive time to stream
time). Counting happens on a fixed grid of ``bin_seconds`` bins; a bin is final once a
later message or :meth:`ChatActivityDetector.advance` shows that its time has passed, so
results do not depend on how messages are batched. A gap longer than ``max_gap_seconds``
with no news (not live, no chat connection) is not "a quiet chat": the window restarts
and the baseline keeps what it had.

Chat lags the video: viewers watch the stream several seconds behind the broadcaster
(roughly as far behind as our own ingest, which reads the same HLS) and then need a
moment to react and type. ``reaction_delay`` is subtracted from the burst onset so the
signal points at the moment in the video, not at the chat's answer to it.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from typing import Annotated

import msgspec
import numpy as np

from records.wire import Signal

#: Common emotes typed as words (Twitch globals plus BTTV/FFZ/7TV favourites, which the
#: IRCv3 ``emotes`` tag does not mark) and reaction emoji. Matched as whole words,
#: case-sensitively (emote names are), emoji anywhere in the text.
DEFAULT_EMOTE_WORDS: tuple[str, ...] = (
    "PogChamp", "Pog", "PogU", "POGGERS", "Poggers", "PagMan", "PogBones",
    "KEKW", "KEK", "OMEGALUL", "LUL", "LULW", "LOL", "ICANT", "Kappa", "Keepo", "4Head",
    "monkaS", "monkaW", "monkaGIGA", "D:", "WutFace", "NotLikeThis", "BibleThump", "Sadge",
    "PepeHands", "FeelsBadMan", "FeelsGoodMan", "EZ", "Clap", "GG", "W", "L", "HYPERS",
    "PauseChamp", "Kreygasm", "SeemsGood", "TriHard", "CoolStoryBob", "ResidentSleeper",
    "catJAM", "xdd", "Aware", "COPIUM", "5Head", "peepoClap", "widepeepoHappy",
    "😂", "🤣", "💀", "🔥", "😱", "😮", "👏", "🎉", "❤️",
)


class ChatMessage(msgspec.Struct, frozen=True):
    """One chat message. ``t`` is stream time for the detector (the client gives the
    wall-clock receive time; the actor maps it). ``emotes`` is the number of native
    Twitch emotes, from the IRCv3 ``emotes`` tag (0 where the server sends no tags)."""

    t: float
    user: str
    text: str
    emotes: int = 0


EmoteWords = Annotated[tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=100)], ...], msgspec.Meta(max_length=2000)]


class ChatOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tuning for :class:`ChatActivityDetector`; defaults suit a live Twitch chat."""

    bin_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=10.0)] = 1.0  # counting grid; also the time resolution of t
    window_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=120.0)] = 4.0  # the rate that is compared: messages over this window
    baseline_seconds: Annotated[float, msgspec.Meta(ge=1.0, le=3600.0)] = 180.0  # how much recent chat defines "normal"
    warmup_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 30.0  # this much baseline before anything fires
    trigger_sigmas: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 5.0  # robust deviations above the median (of sqrt counts)
    min_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 2.0  # ...and at least this many times the median rate
    min_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)] = 1.5  # ...and at least this many msg/s (a near-silent chat waking up)
    min_users: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 5  # distinct chatters in the window (one spammer is not a burst)
    per_user_cap: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 2  # messages one chatter counts for per window (and per bin)
    release_fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5  # a burst is over once below baseline + this * (trigger - baseline)...
    release_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 5.0  # ...for this long (so a wobbling burst fires once)
    onset_fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5  # the burst's t is the first bin of the run at this level
    max_burst_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)] = 60.0  # a longer burst starts to become the new normal
    max_gap_seconds: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)] = 10.0  # longer without news: not a quiet chat; restart the window
    reaction_delay: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 2.5  # seconds from the moment on stream to the chat's reaction
    emote_words: EmoteWords = DEFAULT_EMOTE_WORDS  # emotes recognised in the text
    emote_min_messages: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 8  # messages in the window for its emote share to count
    emote_min_share: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5  # share of messages with an emote for an emote burst...
    emote_min_jump: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.3  # ...at least this far above the baseline share
    emote_trigger_sigmas: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] = 5.0  # ...and this many binomial deviations above it


class _Bin(msgspec.Struct):
    """What one bin of the grid counted."""

    users: Counter = msgspec.field(default_factory=Counter)  # user -> messages
    emoters: Counter = msgspec.field(default_factory=Counter)  # user -> messages with an emote
    words: Counter = msgspec.field(default_factory=Counter)  # emote word -> count
    messages: int = 0  # per-user capped counts, set when the bin closes
    emote_messages: int = 0


class _Burst:
    """Trigger/release state of one measure."""

    def __init__(self) -> None:
        self.active = False
        self.bins = 0  # bins since it fired
        self.quiet = 0  # consecutive bins below the release level


class ChatActivityDetector:
    """Feed chat with :meth:`push` (and :meth:`advance` when time passes without any);
    get one ``Signal("chat")`` per message-rate burst and one ``Signal("emote")`` per
    emote burst, at the stream time the burst started minus ``reaction_delay``."""

    def __init__(self, opts: ChatOptions | None = None) -> None:
        self.opts = o = opts or ChatOptions()
        if o.bin_seconds <= 0 or o.window_seconds < o.bin_seconds:
            raise ValueError("need 0 < bin_seconds <= window_seconds")
        self._window_bins = max(1, int(round(o.window_seconds / o.bin_seconds)))
        history = max(1, int(round(o.baseline_seconds / o.bin_seconds)))
        self._words = frozenset(w for w in o.emote_words if w.isascii())
        self._emoji = tuple(w for w in o.emote_words if not w.isascii())
        self._index: int | None = None  # the open bin (grid index)
        self._open = _Bin()
        self._recent: deque[tuple[int, _Bin]] = deque(maxlen=self._window_bins)
        # Baselines: one entry per closed bin, None where the bin was not "normal".
        self._rates: deque[float | None] = deque(maxlen=history)  # window rate (msg/s)
        self._shares: deque[tuple[int, int] | None] = deque(maxlen=history)  # (messages, emote messages)
        self._chat = _Burst()
        self._emote = _Burst()
        self.through = -math.inf  # stream time up to which bins are final

    # -- feeding ----------------------------------------------------------------------

    def push(self, messages: list[ChatMessage]) -> list[Signal]:
        """Count ``messages`` (stream time; sorted here); returns the signals of the
        bins this closed. A message older than the open bin counts in the open bin."""
        out: list[Signal] = []
        for m in sorted(messages, key=lambda m: m.t):
            index = self._grid(m.t)
            if self._index is None:
                self._index = index
            elif index > self._index:
                out += self._close_until(index)
            self._count(m)
        return out

    def advance(self, t: float) -> list[Signal]:
        """Stream time ``t`` has been reached with no more messages: close the bins
        that end at or before it."""
        if self._index is None:
            self._index = self._grid(t)
            return []
        return self._close_until(self._grid(t))

    def _grid(self, t: float) -> int:
        return math.floor(t / self.opts.bin_seconds + 1e-9)

    def _count(self, m: ChatMessage) -> None:
        b = self._open
        b.users[m.user] += 1
        words = self._emote_words(m.text)
        if m.emotes > 0 or words:
            b.emoters[m.user] += 1
            if b.emoters[m.user] <= self.opts.per_user_cap:
                b.words.update(words)

    def _emote_words(self, text: str) -> list[str]:
        found = [w for w in text.split() if w in self._words]
        for e in self._emoji:
            if e in text:
                found.append(e)
        return found

    def _close_until(self, index: int) -> list[Signal]:
        """Close the open bin and the empty bins up to (not including) ``index``."""
        out: list[Signal] = []
        assert self._index is not None
        if index <= self._index:
            return out
        out += self._step(self._index, self._open)
        self._index += 1
        self._open = _Bin()
        if (index - self._index) * self.opts.bin_seconds > self.opts.max_gap_seconds:
            # No news for long: we do not know the chat was quiet. Restart the window
            # (the baselines keep what they had).
            self._recent.clear()
            self._chat, self._emote = _Burst(), _Burst()
            self._index = index
        while self._index < index:
            out += self._step(self._index, self._open)
            self._index += 1
            self._open = _Bin()
        self.through = index * self.opts.bin_seconds
        return out

    # -- one closed bin ---------------------------------------------------------------

    def _step(self, index: int, b: _Bin) -> list[Signal]:
        o = self.opts
        cap = o.per_user_cap
        b.messages = sum(min(n, cap) for n in b.users.values())
        b.emote_messages = sum(min(n, cap) for n in b.emoters.values())
        self._recent.append((index, b))
        if len(self._recent) < self._window_bins:
            return []  # the window is filling (start, or after a gap)
        users: Counter = Counter()
        emoters: Counter = Counter()
        for _, x in self._recent:
            users.update(x.users)
            emoters.update(x.emoters)
        messages = sum(min(n, cap) for n in users.values())
        emote_messages = sum(min(n, cap) for n in emoters.values())
        rate = messages / (self._window_bins * o.bin_seconds)
        out: list[Signal] = []
        if (sig := self._rate_step(rate, len(users))) is not None:
            out.append(sig)
        if (sig := self._emote_step(messages, emote_messages, len(emoters))) is not None:
            out.append(sig)
        return out

    def _rate_step(self, rate: float, n_users: int) -> Signal | None:
        o = self.opts
        base = self._rate_baseline()
        fired = None
        state = self._chat
        if base is not None:
            median, trigger = base
            release = median + o.release_fraction * (trigger - median)
            if state.active:
                state.bins += 1
                state.quiet = state.quiet + 1 if rate < release else 0
                if state.quiet * o.bin_seconds >= o.release_seconds - 1e-9:
                    state.active = False
            elif rate >= trigger and n_users >= o.min_users:
                state.active, state.bins, state.quiet = True, 0, 0
                onset_level = median + o.onset_fraction * (trigger - median)
                onset = self._onset(lambda x: x.messages / o.bin_seconds >= onset_level)
                fired = Signal(
                    "chat",
                    t=round(onset - o.reaction_delay, 3),
                    value=round((rate - median) / (trigger - median), 3),
                    detail=f"{rate:.1f} msg/s vs {median:.1f} ({n_users} chatters)",
                )
        normal = not state.active or state.bins * o.bin_seconds > o.max_burst_seconds
        self._rates.append(rate if normal else None)
        return fired

    def _rate_baseline(self) -> tuple[float, float] | None:
        """(median window rate, trigger rate), or None while warming up.

        The spread is measured on the square root of the window's message count, where
        counting (Poisson) noise has the same size (about 0.5) at any rate: a robust
        deviation (1.4826 MAD) of the channel's history, never below that noise floor.
        """
        o = self.opts
        h = np.array([r for r in self._rates if r is not None], float)
        if len(h) * o.bin_seconds < o.warmup_seconds - 1e-9:
            return None
        span = self._window_bins * o.bin_seconds
        roots = np.sqrt(h * span)
        median_root = float(np.median(roots))
        sigma = max(1.4826 * float(np.median(np.abs(roots - median_root))), 0.5)
        median = float(np.median(h))
        trigger = max((median_root + o.trigger_sigmas * sigma) ** 2 / span, o.min_ratio * median, o.min_rate)
        return median, trigger

    def _emote_step(self, messages: int, emote_messages: int, n_emoters: int) -> Signal | None:
        o = self.opts
        share = emote_messages / messages if messages else 0.0
        measured = messages >= o.emote_min_messages
        base = self._emote_baseline(messages)
        fired = None
        state = self._emote
        if base is not None:
            p, trigger = base
            release = p + o.release_fraction * (trigger - p)
            if state.active:
                state.bins += 1
                state.quiet = state.quiet + 1 if (not measured or share < release) else 0
                if state.quiet * o.bin_seconds >= o.release_seconds - 1e-9:
                    state.active = False
            elif measured and share >= trigger and n_emoters >= o.min_users:
                state.active, state.bins, state.quiet = True, 0, 0
                onset_level = p + o.onset_fraction * (trigger - p)
                onset = self._onset(lambda x: x.messages > 0 and x.emote_messages / x.messages >= onset_level)
                words: Counter = Counter()
                for _, x in self._recent:
                    words.update(x.words)
                top = f" ({words.most_common(1)[0][0]})" if words else ""
                fired = Signal(
                    "emote",
                    t=round(onset - o.reaction_delay, 3),
                    value=round((share - p) / (trigger - p), 3),
                    detail=f"{share:.0%} emote messages{top} vs {p:.0%}",
                )
        elif state.active:  # the baseline became all emotes: nothing to release against
            state.active = False
        normal = not state.active or state.bins * o.bin_seconds > o.max_burst_seconds
        last = self._recent[-1][1]
        self._shares.append((last.messages, last.emote_messages) if normal else None)
        return fired

    def _emote_baseline(self, messages: int) -> tuple[float, float] | None:
        """(pooled baseline share, trigger share for a window of ``messages``), or None
        while warming up."""
        o = self.opts
        normal = [s for s in self._shares if s is not None]
        if len(normal) * o.bin_seconds < o.warmup_seconds - 1e-9:
            return None
        total = sum(n for n, _ in normal)
        if total < o.emote_min_messages:
            p = 0.0  # hardly any chat so far: assume emotes are not the norm
        else:
            p = sum(e for _, e in normal) / total
        noise = math.sqrt(p * (1 - p) / max(messages, 1))
        trigger = max(p + o.emote_trigger_sigmas * noise, p + o.emote_min_jump, o.emote_min_share)
        if trigger > 1.0:
            return None  # this chat is all emotes anyway: no emote burst to see
        return p, trigger

    def _onset(self, high) -> float:
        """Start time of the earliest bin of the current run (in the window) that is
        ``high``; the newest bin when none is."""
        index = self._recent[-1][0]
        for i, x in reversed(self._recent):
            if not high(x):
                break
            index = i
        return index * self.opts.bin_seconds
