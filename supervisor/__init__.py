"""Keeps exactly one stream actor per active channel, and runs the whole service (``livecut up``)."""
