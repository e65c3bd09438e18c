"""Captions from a clip's timed words: cues broken on phrase boundaries, as SRT, WebVTT or
JSON. The same cues are what exports burn into the picture (``vod.captions``), so the file
a player shows and the burned text agree.

Layout: words are grouped into phrases, ending at punctuation or at a pause; phrases fill
lines of at most ``max_chars`` (a phrase longer than a line breaks between words), lines
fill cues of at most ``max_lines``; a cue also ends at a long pause or after
``max_duration``. A cue shows from its first word's start to its last word's end, held a
little (``linger``) when the next cue leaves room.
"""
from __future__ import annotations

from typing import Annotated

import msgspec

from records.wire import Word

__all__ = ["CaptionLayout", "Cue", "cues", "srt", "vtt"]

PHRASE_END = (",", ".", "?", "!", ";", ":", "…", "—")


class CaptionLayout(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_chars: Annotated[int, msgspec.Meta(ge=8, le=80)] = 32
    max_lines: Annotated[int, msgspec.Meta(ge=1, le=3)] = 2
    max_duration: Annotated[float, msgspec.Meta(ge=1.0, le=10.0)] = 4.0
    phrase_pause: Annotated[float, msgspec.Meta(ge=0.1, le=2.0)] = 0.35  # a pause this long ends a phrase
    cue_pause: Annotated[float, msgspec.Meta(ge=0.2, le=5.0)] = 1.0  # ... and this long, a cue
    linger: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.5


class Cue(msgspec.Struct, frozen=True):
    start: float
    end: float
    lines: list[list[Word]]  # each line's words

    @property
    def words(self) -> list[Word]:
        return [w for line in self.lines for w in line]

    @property
    def text(self) -> str:
        return "\n".join(" ".join(w.text for w in line) for line in self.lines)


def _phrases(words: list[Word], pause: float) -> list[list[Word]]:
    phrases: list[list[Word]] = []
    for i, w in enumerate(words):
        if not phrases or (i and w.start - words[i - 1].end >= pause) or words[i - 1].text.endswith(PHRASE_END):
            phrases.append([])
        phrases[-1].append(w)
    return phrases


def _width(words: list[Word]) -> int:
    return sum(len(w.text) for w in words) + max(0, len(words) - 1)


def _lines(phrase: list[Word], max_chars: int) -> list[list[Word]]:
    """A phrase as whole lines: kept on one when it fits, else broken between words."""
    lines: list[list[Word]] = [[]]
    for w in phrase:
        if lines[-1] and _width(lines[-1] + [w]) > max_chars:
            lines.append([])
        lines[-1].append(w)
    return lines


def cues(words: list[Word], layout: CaptionLayout | None = None) -> list[Cue]:
    o = layout or CaptionLayout()
    words = [w for w in sorted(words, key=lambda w: w.start) if w.text.strip()]
    groups: list[list[list[Word]]] = []  # cues, as lines
    for phrase in _phrases(words, o.phrase_pause):
        for piece in _lines(phrase, o.max_chars):
            cue = groups[-1] if groups else None
            fresh = (
                cue is None
                or piece[0].start - cue[-1][-1].end >= o.cue_pause
                or piece[-1].end - cue[0][0].start > o.max_duration
            )
            if fresh:
                groups.append([piece])
            elif _width(cue[-1] + piece) <= o.max_chars and not _ends_phrase(cue[-1]):
                cue[-1] = cue[-1] + piece  # a short phrase joins the line it follows
            elif len(cue) < o.max_lines:
                cue.append(piece)
            else:
                groups.append([piece])
    out: list[Cue] = []
    for i, lines in enumerate(groups):
        start, end = lines[0][0].start, lines[-1][-1].end
        following = groups[i + 1][0][0].start if i + 1 < len(groups) else None
        end = end + o.linger if following is None else max(end, min(end + o.linger, following))
        out.append(Cue(round(start, 3), round(max(end, start + 0.2), 3), lines))
    return out


def _ends_phrase(line: list[Word]) -> bool:
    return line[-1].text.endswith((".", "?", "!"))


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(cue_list: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(cue_list, 1)
    ]
    return "\n".join(blocks)


def vtt(cue_list: list[Cue]) -> str:
    blocks = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_vtt_text(c.text)}\n" for c in cue_list]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _vtt_text(text: str) -> str:
    # WebVTT cue text is markup: escape it, and "-->" may not appear in it
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
