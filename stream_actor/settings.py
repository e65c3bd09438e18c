"""Per-channel settings: every detector, fusion, clip and ring-buffer option, with defaults.

A channel's ``settings`` JSON picks a genre profile and overrides any subset, e.g.
``{"profile": "sports", "fusion": {"threshold": 0.7}, "clip": {"pre_roll": 8}}``.
Unknown keys and out-of-range values are errors naming the field; ``source`` is checked
against the options of the channel's source plugin. Nothing here is a path: a HUD profile
and a whisper model are names (``detectors.assets``).
"""
from __future__ import annotations

from typing import Annotated

import msgspec

from detectors.arousal import ArousalOptions
from detectors.assets import OPTIONAL_NAME_PATTERN, AssetDirs, AssetError, whisper_model_dir
from detectors.chat import ChatOptions
from detectors.crowd import CrowdOptions
from detectors.fusion import FusionOptions
from detectors.genres import DEFAULT_PROFILE, with_profile
from detectors.keywords import KeywordOptions
from detectors.loudness import LoudnessOptions
from detectors.music import MusicOptions
from detectors.scene import SceneOptions
from detectors.sentiment import SentimentOptions
from detectors.speech import SpeechOptions
from detectors.speech_rate import SpeechRateOptions
from records.retention import RetentionOptions
from stream_actor.ring_buffer import RingOptions


class ClipOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pre_roll: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 10.0  # seconds before the moment
    post_roll: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 5.0  # seconds after the moment
    # once the post-roll is buffered, longest wait for ASR to reach the clip's end
    transcript_wait: Annotated[float, msgspec.Meta(ge=0.0, le=30.0)] = 1.5


class HudOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Game-HUD events (detectors.hud): off unless a game profile is named."""

    # a game profile's name (e.g. "example_shooter"): bundled, or a folder in --profiles-dir
    profile: Annotated[str, msgspec.Meta(pattern=OPTIONAL_NAME_PATTERN)] = ""
    # keyframes are decoded to this BGR size for the HUD detector (at most 1080p)
    frame_width: Annotated[int, msgspec.Meta(ge=64, le=1920)] = 640
    frame_height: Annotated[int, msgspec.Meta(ge=36, le=1080)] = 360


class ChannelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    profile: str = DEFAULT_PROFILE  # genre profile (detectors.genres): weights, threshold, rolls, cooldown
    loudness: LoudnessOptions = msgspec.field(default_factory=LoudnessOptions)
    arousal: ArousalOptions = msgspec.field(default_factory=ArousalOptions)  # excitement in the voice, not level
    music: MusicOptions = msgspec.field(default_factory=MusicOptions)  # music (and singing) vs speech: context
    speech: SpeechOptions = msgspec.field(default_factory=SpeechOptions)
    keywords: KeywordOptions = msgspec.field(default_factory=KeywordOptions)
    sentiment: SentimentOptions = msgspec.field(default_factory=SentimentOptions)
    speech_rate: SpeechRateOptions = msgspec.field(default_factory=SpeechRateOptions)  # rushed utterances
    crowd: CrowdOptions = msgspec.field(default_factory=CrowdOptions)
    scene: SceneOptions = msgspec.field(default_factory=SceneOptions)
    fusion: FusionOptions = msgspec.field(default_factory=FusionOptions)
    clip: ClipOptions = msgspec.field(default_factory=ClipOptions)
    ring: RingOptions = msgspec.field(default_factory=RingOptions)
    retention: RetentionOptions = msgspec.field(default_factory=RetentionOptions)  # this channel's clips
    hud: HudOptions = msgspec.field(default_factory=HudOptions)
    chat: ChatOptions = msgspec.field(default_factory=ChatOptions)
    # Twitch channel whose chat is read: "" = the channel URL's (if Twitch), "-" = none
    chat_login: Annotated[str, msgspec.Meta(pattern=r"^(-|[A-Za-z0-9_]{1,25})?$")] = ""
    # options of the source plugin (e.g. {"quality": "480p"}): checked by validate_channel_settings
    source: Annotated[dict, msgspec.Meta(max_length=32)] = {}


def channel_settings(raw: dict | None) -> ChannelSettings:
    """The channel's settings over its genre profile's, over the defaults."""
    return msgspec.convert(with_profile(raw), ChannelSettings)


def validate_channel_settings(
    raw: dict, kind: str | None = None, url: str | None = None, dirs: AssetDirs | None = None
) -> dict:
    """Raise ``msgspec.ValidationError`` naming the field (``at `$.speech.cpu_threads```);
    return what the user gave, to store.

    ``kind`` and ``url`` pick the source plugin whose options ``source`` must fit (``kind``
    None: no plugin reads them, as for a VOD job). Named assets are looked up in ``dirs``
    (the operator's directories) and the package. Reads files (a HUD profile, capped and
    non-blocking): call it off the event loop.
    """
    import stream_actor.sources  # noqa: F401 (registers the plugins)
    from stream_actor.sources.base import check_source_options

    settings = channel_settings(raw)
    check_source_options(settings.source, kind, url)
    if settings.clip.pre_roll + settings.clip.post_roll > settings.ring.max_seconds:
        raise msgspec.ValidationError("clip.pre_roll + clip.post_roll must fit in ring.max_seconds - at `$.clip`")
    dirs = dirs or AssetDirs()
    try:
        whisper_model_dir(settings.speech.model, dirs)
    except AssetError as exc:
        raise msgspec.ValidationError(f"{exc} - at `$.speech.model`") from None
    if settings.hud.profile:
        from detectors.hud import ProfileError, load_profile

        try:
            load_profile(settings.hud.profile, dirs)
        except ProfileError as exc:
            raise msgspec.ValidationError(f"{exc} - at `$.hud.profile`") from None
    return raw
