"""Process-wide settings: flags and environment, resolved once at start."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec


class Settings(msgspec.Struct, kw_only=True):
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    rtmp_port: int = 1935
    rtmp_connections_per_ip: int = 16  # RTMP connections one IP address may hold at once
    rtmp_publish_rate: int = 30  # RTMP publish attempts per minute per IP address
    public_host: str = ""  # host name clients use in URLs; defaults to host
    database_url: str = ""  # empty: start an embedded PostgreSQL in data_dir
    redis_url: str = ""  # empty: start an embedded Redis in data_dir
    ray_address: str = ""  # empty: start a local Ray instance
    api_key: str = ""  # the admin key printed at start; more keys, with scopes, in the api_keys table
    metrics_token: str = ""  # when set, GET /metrics wants it as a Bearer token
    signing_key: str = ""  # signs media URLs; empty: LIVECUT_SIGNING_KEY or <data dir>/signing_key
    media_url_ttl: float = 3600.0  # seconds a signed media URL stays valid
    rate_limit: int = 100  # REST requests per minute per API key (per address without one)
    media_rate_limit: int = 1200  # media and upload requests per minute per key or address
    connect_rate_limit: int = 120  # Socket.IO connections per minute per key or address
    allow_private_urls: bool = False  # let url sources reach loopback/private hosts
    profiles_dir: str = ""  # HUD game profiles channels may name, beside the bundled ones
    models_dir: str = ""  # whisper models (CTranslate2 folders) channels may name as speech.model
    public_ip: str = ""  # advertised in WHIP ICE candidates behind a 1:1 NAT
    streams_per_node: int = 4  # stream slots a local Ray node advertises; the CLI default is 2 per core
    max_streams: int = 100  # active channels in this workspace, whatever the cluster size
    actor_gpus: float = 0.0  # GPU fraction per stream actor (e.g. 0.25)
    asr: str = "node"  # "node": one shared ASR server per node; "actor": each stream actor loads whisper
    asr_threads: int = 1  # CPU threads of a node's ASR server (1 measured cheapest per stream on 2 cores: bench.asr_quality --streams)
    asr_workers: int = 2  # batches a node's ASR server decodes at once
    asr_gpus: float = 0.0  # GPU share of a node's ASR server
    heartbeat_timeout: float = 20.0  # seconds without a health report before an actor is restarted
    max_vod_jobs: int = 0  # VOD jobs running at once; 0: the Ray cluster's CPU count
    vod_shard_seconds: float = 180.0  # a VOD job's recording is analysed in shards of about this long
    max_upload_bytes: int = 20 * 1024**3  # largest Upload-Length a tus upload may declare
    upload_expiry_seconds: float = 24 * 3600  # an unfinished upload is removed this long after its creation
    # global retention limits given at start, written to Postgres then (None: the stored ones stand)
    retention_days: float | None = None  # clips older than this are deleted (every channel and VOD job); 0: kept
    retention_bytes: int | None = None  # clips beyond this total size are deleted, oldest first; 0: no limit
    min_free_bytes: int = 1024**3  # below this free space on the data dir's disk, new clips are refused

    @property
    def advertised_host(self) -> str:
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def base_url(self) -> str:
        return f"http://{self.advertised_host}:{self.port}"

    @property
    def rtmp_url(self) -> str:
        return f"rtmp://{self.advertised_host}:{self.rtmp_port}/live"

    def path(self, *parts: str) -> Path:
        return Path(self.data_dir, *parts)


def load_api_key(data_dir: str) -> str:
    """``LIVECUT_API_KEY`` if set, else a key generated once and kept in the data dir."""
    if key := os.environ.get("LIVECUT_API_KEY"):
        return key
    path = Path(data_dir, "api_key")
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key
