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

The fusion weights, bias and threshold of each profile are *fitted* on the train part of a
labelled corpus (``bench.fit_fusion`` writes ``detectors/fitted/<profile>.json``). The
hand-written weights below are the fallback where no fitted file exists, and stay selectable
as ``<profile>-manual``. Signals the corpus cannot show (chat, emotes: a recording has no
chat) keep their hand-written meaning in a fitted profile: an additive weight of 1.0 is
exactly the fitted threshold.
"""
from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Annotated

import msgspec

from detectors.fusion import ADDITIVE_WEIGHTS, LOGIT_SCALE, logits

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "default"
FITTED_DIR = Path(__file__).resolve().parent / "fitted"
MANUAL_SUFFIX = "-manual"

# Hand-written profiles; fusion weights are additive here (a sum of 1.0 is a moment).
MANUAL_PROFILES: dict[str, dict] = {
    DEFAULT_PROFILE: {},  # the option defaults of each detector, fusion and clip
    "gaming": {
        "fusion": {
            "weights": {"hud": 1.2, "keyword": 1.0, "loudness": 0.8, "arousal": 0.9, "crowd": 0.6, "laughter": 0.5,
                        "chat": 0.8, "emote": 0.5, "sentiment": 0.4, "scene_rate": 1.0, "scene": 0.2},
            "cooldown": 12.0,
        },
        "clip": {"pre_roll": 8.0, "post_roll": 5.0},
    },
    "just_chatting": {
        "fusion": {
            "weights": {"laughter": 1.2, "keyword": 1.0, "chat": 1.0, "emote": 0.6, "sentiment": 0.6,
                        "loudness": 0.8, "arousal": 1.0, "crowd": 0.6, "hud": 0.0, "scene_rate": 0.2, "scene": 0.1},
            "cooldown": 20.0,
        },
        "clip": {"pre_roll": 10.0, "post_roll": 5.0},
    },
    "sports": {
        "fusion": {
            "weights": {"crowd": 1.0, "loudness": 1.0, "arousal": 1.0, "keyword": 0.8, "scene_rate": 1.0, "chat": 0.8,
                        "emote": 0.5, "sentiment": 0.4, "laughter": 0.3, "hud": 0.0, "scene": 0.2},
            "cooldown": 25.0,
        },
        "clip": {"pre_roll": 15.0, "post_roll": 8.0},
    },
    "podcast": {
        "fusion": {
            "weights": {"laughter": 1.2, "sentiment": 0.8, "keyword": 1.0, "loudness": 0.6, "arousal": 0.8, "crowd": 0.4,
                        "chat": 0.8, "emote": 0.4, "hud": 0.0, "scene_rate": 0.0, "scene": 0.0},
            "cooldown": 30.0,
        },
        "clip": {"pre_roll": 20.0, "post_roll": 5.0},
    },
}

FITTED_VERSION = 1
Weight = Annotated[float, msgspec.Meta(ge=-40.0, le=40.0)]


class FittedFusion(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A profile's fusion, fitted by ``bench.fit_fusion`` (logistic regression on the train part)."""

    version: int
    profile: str
    features: list[str]  # the signal names the model was fitted over (detectors' output names)
    bias: Annotated[float, msgspec.Meta(ge=-100.0, le=100.0)]
    weights: dict[str, Weight]
    threshold: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]
    cap: Annotated[float, msgspec.Meta(gt=0.0, le=100.0)]
    detectors: str = ""  # the detector version the signals came from (bench.corpus_signals)
    fitted_on: dict = {}  # the corpus part, seeds, hours, and the train figures


def load_fitted(name: str, folder: Path = FITTED_DIR) -> FittedFusion | None:
    """The fitted fusion of profile ``name``, or None where there is none (or it is unusable)."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    try:
        fitted = msgspec.json.decode(path.read_bytes(), type=FittedFusion)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("fitted profile %s is unusable (%s): the hand-written one is used", path.name, exc)
        return None
    if fitted.version != FITTED_VERSION:
        log.warning("fitted profile %s has version %s, not %s: the hand-written one is used",
                    path.name, fitted.version, FITTED_VERSION)
        return None
    return fitted


def _manual(profile: dict) -> dict:
    """A hand-written profile with its additive fusion weights as logits."""
    out = merge({"fusion": {"weights": ADDITIVE_WEIGHTS}}, profile)  # unnamed weights: defaults
    out["fusion"]["weights"] = logits(out["fusion"]["weights"])
    out["fusion"]["bias"] = -LOGIT_SCALE
    return out


def _fitted(profile: dict, fitted: FittedFusion) -> dict:
    """A hand-written profile with the fitted fusion laid over it. Names the model never saw
    keep their hand-written meaning: additive weight w adds w of the way from bias to threshold."""
    additive = merge({"fusion": {"weights": ADDITIVE_WEIGHTS}}, profile)["fusion"]["weights"]
    unit = math.log(fitted.threshold / (1.0 - fitted.threshold)) - fitted.bias
    weights = {name: round(w * unit, 6) for name, w in additive.items() if name not in fitted.features}
    weights.update(fitted.weights)
    out = merge(profile, {"fusion": {"bias": fitted.bias, "threshold": fitted.threshold, "cap": fitted.cap}})
    out["fusion"]["weights"] = weights
    return out


def build_profiles(folder: Path = FITTED_DIR) -> dict[str, dict]:
    """Every profile by name: fitted where a fitted file exists, and each hand-written one as
    ``<name>-manual``."""
    profiles: dict[str, dict] = {}
    for name, profile in MANUAL_PROFILES.items():
        fitted = load_fitted(name, folder)
        profiles[name] = _fitted(profile, fitted) if fitted is not None else _manual(profile)
        profiles[name + MANUAL_SUFFIX] = _manual(profile)
    return profiles


def with_profile(raw: dict | None) -> dict:
    """The channel's settings on top of its profile's (raises ``msgspec.ValidationError``)."""
    raw = dict(raw or {})
    name = raw.get("profile", DEFAULT_PROFILE)
    if name not in PROFILES:
        raise msgspec.ValidationError(f"unknown profile {name!r} (one of: {', '.join(sorted(PROFILES))})")
    return merge(PROFILES[name], raw)


def merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: nested dicts merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


PROFILES: dict[str, dict] = build_profiles()
