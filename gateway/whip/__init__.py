"""WHIP ingest (RFC 9725), the HTTP side: ``endpoint.WhipIngest`` authenticates each offer,
admits one publisher per channel, and hands the offer to the channel's session host (its
stream actor, ``stream_actor.whip``), where the media runs."""
from stream_actor.whip.options import WhipOptions

from .endpoint import OpenChannelHost, WhipHost, WhipIngest, WhipRefused

__all__ = ["OpenChannelHost", "WhipHost", "WhipIngest", "WhipOptions", "WhipRefused"]
