"""Genre profiles: what makes a moment differs between a shooter, a talk show and a match.

A profile is a set of channel-settings overrides (the same shape as a channel's ``settings``
JSON): signal weights, the threshold, the cooldown and the clip's pre-roll and post-roll.
A channel picks one with ``{"profile": "sports"}`` and may still override any value; its own
values win (dicts merge key by key, so ``{"fusion": {"weights": {"chat": 1.2}}}`` changes
one weight and keeps the profile's others).

Why the numbers differ:

* gaming: HUD events (eliminations, victories) are the clearest signal; streamers yell a lot,
  so loudness alone counts a little less; a kill-cam montage (rapid cuts) is a moment; fights
  are short (short pre-roll).
* just_chatting: reactions are the moment (a laugh on its own, hype phrases, chat bursts);
  scene cuts are camera switches and count for almost nothing.
* sports: the crowd is the signal; replays come as rapid cuts; plays build up, so a longer
  pre-roll, and a longer cooldown (the crowd stays loud after a goal).
* podcast: a laugh or an emotional line matters; long pre-roll for the setup of a joke,
  long cooldown (talk shows should give few, good clips).
"""
from __future__ import annotations

import copy

import msgspec

from detectors.fusion import DEFAULT_WEIGHTS

DEFAULT_PROFILE = "default"

PROFILES: dict[str, dict] = {
    DEFAULT_PROFILE: {},  # the option defaults of each detector, fusion and clip
    "gaming": {
        "fusion": {
            "weights": {"hud": 1.2, "keyword": 1.0, "loudness": 0.8, "crowd": 0.6, "laughter": 0.5,
                        "chat": 0.8, "emote": 0.5, "sentiment": 0.4, "scene_rate": 1.0, "scene": 0.2},
            "cooldown": 12.0,
        },
        "clip": {"pre_roll": 8.0, "post_roll": 5.0},
    },
    "just_chatting": {
        "fusion": {
            "weights": {"laughter": 1.2, "keyword": 1.0, "chat": 1.0, "emote": 0.6, "sentiment": 0.6,
                        "loudness": 0.8, "crowd": 0.6, "hud": 0.0, "scene_rate": 0.2, "scene": 0.1},
            "cooldown": 20.0,
        },
        "clip": {"pre_roll": 10.0, "post_roll": 5.0},
    },
    "sports": {
        "fusion": {
            "weights": {"crowd": 1.0, "loudness": 1.0, "keyword": 0.8, "scene_rate": 1.0, "chat": 0.8,
                        "emote": 0.5, "sentiment": 0.4, "laughter": 0.3, "hud": 0.0, "scene": 0.2},
            "cooldown": 25.0,
        },
        "clip": {"pre_roll": 15.0, "post_roll": 8.0},
    },
    "podcast": {
        "fusion": {
            "weights": {"laughter": 1.2, "sentiment": 0.8, "keyword": 1.0, "loudness": 0.6, "crowd": 0.4,
                        "chat": 0.8, "emote": 0.4, "hud": 0.0, "scene_rate": 0.0, "scene": 0.0},
            "cooldown": 30.0,
        },
        "clip": {"pre_roll": 20.0, "post_roll": 5.0},
    },
}


def with_profile(raw: dict | None) -> dict:
    """The channel's settings on top of its profile's (raises ``msgspec.ValidationError``)."""
    raw = dict(raw or {})
    name = raw.get("profile", DEFAULT_PROFILE)
    if name not in PROFILES:
        raise msgspec.ValidationError(f"unknown profile {name!r} (one of: {', '.join(sorted(PROFILES))})")
    base = merge({"fusion": {"weights": DEFAULT_WEIGHTS}}, PROFILES[name])  # unnamed weights: defaults
    return merge(base, raw)


def merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: nested dicts merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
