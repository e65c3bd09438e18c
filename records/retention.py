"""Clip retention: which clips to delete, given their ages and sizes and the limits.

Pure (but for a warning about a stored value that no longer passes): the sweeper
(``supervisor.retention``) reads the clips and does the deleting. Limits are global (stored
in ``workspace_settings``: the console's Settings page, ``PUT /api/settings/retention``, or
``livecut up --retention-days/--retention-bytes`` at start) and per channel (the
``retention`` section of its settings); 0 means no limit of that kind. A clip goes when any
limit that covers it says so, oldest first: age limits delete what is older, size limits
keep the newest clips whose sizes add up to the limit. VOD clips (no channel) fall under the
global limits only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Iterable

import msgspec

__all__ = ["RetentionOptions", "RetentionLimits", "ClipUsage", "select_expired", "stored_limits", "channel_limits"]

log = logging.getLogger(__name__)

DAY = 86400.0
MAX_DAYS = 36500.0  # a century: the bound of every age limit
MAX_BYTES = 2**50  # 1 PiB: the bound of every size limit


class RetentionOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A channel's own limits (its ``retention`` settings); 0 = none of that kind."""

    max_age_days: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DAYS)] = 0.0
    max_bytes: Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)] = 0


class RetentionLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The workspace's limits over every clip, VOD clips included; 0 = none of that kind."""

    max_age_days: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DAYS)] = 0.0
    max_bytes: Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)] = 0


def stored_limits(value: object) -> RetentionLimits:
    """The workspace's limits from their stored JSON; None (never set) is no limits. So is a
    value that no longer passes (stored before a bound tightened, or edited by hand), with a
    warning: better to keep every clip than to delete by a guess."""
    if value is None:
        return RetentionLimits()
    try:
        return msgspec.convert(value, RetentionLimits)
    except msgspec.ValidationError as exc:
        log.warning("ignoring the stored retention limits (no global limits until they are set again): %s", exc)
        return RetentionLimits()


def channel_limits(raw: dict[str, object]) -> dict[str, RetentionOptions]:
    """Each channel's ``retention`` settings (channel id → stored JSON) as options. One that no
    longer passes (stored before a bound tightened) is left out, with a warning: the global
    limits still cover that channel's clips."""
    options = {}
    for channel_id, value in raw.items():
        try:
            options[channel_id] = msgspec.convert(value, RetentionOptions)
        except msgspec.ValidationError as exc:
            log.warning("channel %s: ignoring its retention settings: %s", channel_id, exc)
    return options


@dataclass(frozen=True, slots=True)
class ClipUsage:
    id: str
    channel_id: str | None  # None: a VOD clip
    age_seconds: float
    bytes: int  # video and thumbnail on disk


def select_expired(
    clips: Iterable[ClipUsage],
    limits: RetentionLimits,
    per_channel: dict[str, RetentionOptions] | None = None,
) -> dict[str, str]:
    """The clips to delete, each with why, oldest first."""
    per_channel = per_channel or {}
    # newest first; of two clips of the same age, the greater (later) id is newer
    newest_first = sorted(sorted(clips, key=lambda c: c.id, reverse=True), key=lambda c: c.age_seconds)
    expired: dict[str, str] = {}

    def by_age(candidates: list[ClipUsage], days: float, whose: str) -> None:
        if days > 0:
            for c in candidates:
                if c.id not in expired and c.age_seconds > days * DAY:
                    expired[c.id] = f"older than {days:g} days ({whose} retention)"

    def by_size(candidates: list[ClipUsage], cap: int, whose: str) -> None:
        if cap > 0:
            kept = 0
            for c in candidates:  # newest first: the newest that fit stay
                if c.id in expired:
                    continue
                kept += c.bytes
                if kept > cap:
                    expired[c.id] = f"over {cap} bytes ({whose} retention)"

    by_channel: dict[str, list[ClipUsage]] = {}
    for c in newest_first:
        if c.channel_id is not None:
            by_channel.setdefault(c.channel_id, []).append(c)
    for channel_id, own in by_channel.items():
        options = per_channel.get(channel_id)
        if options is not None:
            by_age(own, options.max_age_days, f"channel {channel_id}")
            by_size(own, options.max_bytes, f"channel {channel_id}")
    by_age(newest_first, limits.max_age_days, "global")
    by_size(newest_first, limits.max_bytes, "global")
    oldest_first = [c.id for c in reversed(newest_first) if c.id in expired]
    return {clip_id: expired[clip_id] for clip_id in oldest_first}

