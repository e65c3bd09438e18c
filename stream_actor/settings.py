"""Per-channel settings: every detector, fusion, clip and ring-buffer option, with defaults.

A channel's ``settings`` JSON picks a genre profile and overrides any subset, e.g.
``{"profile": "sports", "fusion": {"threshold": 1.2}, "clip": {"pre_roll": 8}}``.
Unknown keys are errors.
"""
from __future__ import annotations

import msgspec

from detectors.chat import ChatOptions
from detectors.crowd import CrowdOptions
from detectors.fusion import FusionOptions
from detectors.genres import DEFAULT_PROFILE, with_profile
from detectors.keywords import KeywordOptions
from detectors.loudness import LoudnessOptions
from detectors.scene import SceneOptions
from detectors.sentiment import SentimentOptions
from detectors.speech import SpeechOptions
from stream_actor.ring_buffer import RingOptions


class ClipOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pre_roll: float = 10.0  # seconds before the moment
    post_roll: float = 5.0  # seconds after the moment
    transcript_wait: float = 1.5  # once the post-roll is buffered, longest wait for ASR to reach the clip's end


class HudOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Game-HUD events (detectors.hud): off unless a game profile is named."""

    profile: str = ""  # a bundled game profile's name (e.g. "example_shooter") or a profile file's path
    frame_width: int = 640  # keyframes are decoded to this BGR size for the HUD detector
    frame_height: int = 360


class ChannelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    profile: str = DEFAULT_PROFILE  # genre profile (detectors.genres): weights, threshold, rolls, cooldown
    loudness: LoudnessOptions = msgspec.field(default_factory=LoudnessOptions)
    speech: SpeechOptions = msgspec.field(default_factory=SpeechOptions)
    keywords: KeywordOptions = msgspec.field(default_factory=KeywordOptions)
    sentiment: SentimentOptions = msgspec.field(default_factory=SentimentOptions)
    crowd: CrowdOptions = msgspec.field(default_factory=CrowdOptions)
    scene: SceneOptions = msgspec.field(default_factory=SceneOptions)
    fusion: FusionOptions = msgspec.field(default_factory=FusionOptions)
    clip: ClipOptions = msgspec.field(default_factory=ClipOptions)
    ring: RingOptions = msgspec.field(default_factory=RingOptions)
    hud: HudOptions = msgspec.field(default_factory=HudOptions)
    chat: ChatOptions = msgspec.field(default_factory=ChatOptions)
    chat_login: str = ""  # Twitch channel whose chat is read: "" = the channel URL's (if Twitch), "-" = none
    source: dict = {}  # options of the source plugin (e.g. {"quality": "480p"})


def channel_settings(raw: dict | None) -> ChannelSettings:
    """The channel's settings over its genre profile's, over the defaults."""
    return msgspec.convert(with_profile(raw), ChannelSettings)


OPERATOR_ONLY_SOURCE_OPTIONS = ("allow_private",)  # set from `livecut up` flags, never by a channel


def validate_channel_settings(raw: dict) -> dict:
    """Raise ``msgspec.ValidationError`` on a bad value; store what the user gave."""
    settings = channel_settings(raw)
    for name in OPERATOR_ONLY_SOURCE_OPTIONS:
        if name in settings.source:
            raise msgspec.ValidationError(f"source.{name} is an operator setting (livecut up --allow-private-urls)")
    if settings.clip.pre_roll < 0 or settings.clip.post_roll < 0:
        raise msgspec.ValidationError("clip.pre_roll and clip.post_roll must be >= 0")
    if settings.clip.pre_roll + settings.clip.post_roll > settings.ring.max_seconds:
        raise msgspec.ValidationError("clip.pre_roll + clip.post_roll must fit in ring.max_seconds")
    if settings.hud.profile:
        from detectors.hud import ProfileError, load_profile

        try:
            load_profile(settings.hud.profile)
        except ProfileError as exc:
            raise msgspec.ValidationError(f"hud.profile: {exc}") from None
    return raw
