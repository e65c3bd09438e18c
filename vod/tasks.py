"""The Ray tasks of a VOD job: thin wrappers that run ``vod.shard`` on a worker.

A worker process keeps its whisper model between shards, so a job pays
the model load once per worker, not once per shard. Ray retries a shard whose worker dies
(``max_retries``); an exception raised by the shard's own code is not retried.
"""
from __future__ import annotations

import msgspec
import ray

from detectors.assets import AssetDirs
from stream_actor.settings import channel_settings
from vod.plan import Shard, ShardResult

SHARD_RETRIES = 3  # worker losses a shard survives
_models: dict[tuple, object] = {}


def _whisper(opts, dirs: AssetDirs):
    from detectors.speech import load_whisper_model

    key = (opts.model, dirs.models_dir, opts.device, opts.compute_type, opts.cpu_threads)
    if key not in _models:
        _models[key] = load_whisper_model(opts, dirs)
    return _models[key]


def analyse(location: str, shard: Shard, settings: dict, origin: float, dirs: AssetDirs | None = None) -> ShardResult:
    """One shard on this worker (see ``vod.shard.analyse_shard``); ``dirs``: the operator's
    directories of named HUD profiles and whisper models."""
    from vod.shard import analyse_shard

    channel = channel_settings(settings)
    dirs = dirs or AssetDirs()
    return analyse_shard(location, shard, channel, _whisper(channel.speech, dirs), origin=origin, dirs=dirs)


_remote_analyse = ray.remote(analyse)


def submit_shard(
    location: str, shard: Shard, settings: dict, origin: float, *, gpus: float = 0.0, dirs: AssetDirs | None = None
):
    """Start one shard; returns its ObjectRef (awaitable)."""
    return (
        _remote_analyse
        .options(num_cpus=1, num_gpus=gpus, max_retries=SHARD_RETRIES, name=f"vod-shard-{shard.index}")
        .remote(location, shard, settings, origin, dirs or AssetDirs())
    )


def result_builtins(result: ShardResult) -> dict:
    return msgspec.to_builtins(result)


def result_from_builtins(raw: dict) -> ShardResult:
    return msgspec.convert(raw, ShardResult)
