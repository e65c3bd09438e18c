"""``GET /metrics``: Prometheus text built at scrape time from Postgres.

Every scrape reads the channel rows (status, the health JSON the stream actors report)
and the totals (counters the database's triggers keep, not ``count(*)``), then renders
them through a fresh ``CollectorRegistry``: no global metric state, so any number of apps
can live in one process. With ``--metrics-token`` set, a scrape needs it as a Bearer token.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Iterable, get_args

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.auth import bearer_token, key_matches
from gateway.errors import unauthorized
from records.store import Store
from stream_actor.disk_space import free_bytes
from records.wire import ChannelStatus, Health

STATUSES = get_args(ChannelStatus)  # one series per status a channel can have
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Snapshot(msgspec.Struct):
    channels: list[dict]
    counts: dict
    subscribers: int = 0
    streams_followed: int = 0
    relay_up: bool = True
    data_free_bytes: int | None = None  # free space of the data dir's disk (None: not measured)


class SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot, now: dt.datetime):
        self.snap = snap
        self.now = now

    def collect(self) -> Iterable[Metric]:
        ch = ["channel_id"]
        info = GaugeMetricFamily("livecut_channel_info", "Channel name and source (always 1).", labels=["channel_id", "name", "source"])
        status = GaugeMetricFamily("livecut_channel_status", "1 for the channel's current status, 0 for the others.", labels=["channel_id", "status"])
        ingest = GaugeMetricFamily("livecut_ingest_lag_seconds", "Wall-clock seconds the ring buffer is behind the source.", labels=ch)
        detector = GaugeMetricFamily("livecut_detector_lag_seconds", "Stream seconds the detectors are behind the ring buffer.", labels=ch)
        buffered = GaugeMetricFamily("livecut_seconds_buffered", "Seconds of stream in the ring buffer.", labels=ch)
        stream_time = GaugeMetricFamily("livecut_stream_time_seconds", "Newest stream time buffered.", labels=ch)
        rss = GaugeMetricFamily("livecut_actor_rss_bytes", "Resident memory of the stream actor.", labels=ch)
        cpu = CounterMetricFamily("livecut_actor_cpu_seconds", "CPU seconds used by the stream actor since it started.", labels=ch)
        age = GaugeMetricFamily("livecut_health_age_seconds", "Seconds since the stream actor last reported.", labels=ch)
        shed = CounterMetricFamily("livecut_asr_shed_seconds", "Audio seconds dropped (oldest first) because ASR fell behind.", labels=ch)
        journaled = GaugeMetricFamily("livecut_commits_pending", "Clips cut and journaled, waiting for Postgres.", labels=ch)
        asr_call = GaugeMetricFamily("livecut_asr_call_seconds", "The stream's last whisper call to its node's ASR server (queue and batch).", labels=ch)
        asr_queue = GaugeMetricFamily("livecut_asr_server_queue", "Calls queued at the node's ASR server (all streams), as this stream last saw it.", labels=ch)
        asr_calls_shed = CounterMetricFamily("livecut_asr_calls_shed", "Whisper calls the overloaded ASR server answered undecoded.", labels=ch)
        asr_calls_failed = CounterMetricFamily("livecut_asr_calls_failed", "Whisper calls given up on while the ASR server was down.", labels=ch)
        for row in self.snap.channels:
            cid = row["id"]
            info.add_metric([cid, row["name"], row["source"]], 1)
            for s in STATUSES:
                status.add_metric([cid, s], 1.0 if row["status"] == s else 0.0)
            if row.get("health"):
                try:
                    h = msgspec.convert(row["health"], Health)
                except msgspec.ValidationError:
                    continue
                ingest.add_metric([cid], h.ingest_lag)
                detector.add_metric([cid], h.detector_lag)
                buffered.add_metric([cid], h.seconds_buffered)
                stream_time.add_metric([cid], h.stream_time)
                rss.add_metric([cid], h.rss_bytes)
                cpu.add_metric([cid], h.cpu_seconds)
                shed.add_metric([cid], h.asr_shed_seconds)
                journaled.add_metric([cid], h.commits_pending)
                asr_call.add_metric([cid], h.asr_call_seconds)
                asr_queue.add_metric([cid], h.asr_server_queue)
                asr_calls_shed.add_metric([cid], h.asr_calls_shed)
                asr_calls_failed.add_metric([cid], h.asr_calls_failed)
            if row.get("health_at"):
                age.add_metric([cid], max(0.0, (self.now - row["health_at"]).total_seconds()))
        yield from (info, status, ingest, detector, buffered, stream_time, rss, cpu, age, shed, journaled,
                    asr_call, asr_queue, asr_calls_shed, asr_calls_failed)

        c = self.snap.counts
        yield CounterMetricFamily("livecut_clips", "Clips committed.", value=c.get("clips", 0))
        yield CounterMetricFamily("livecut_events", "Events recorded (moments, lost clips, ...).", value=c.get("events", 0))
        yield GaugeMetricFamily("livecut_outbox_pending", "Notifications committed but not yet relayed to Redis.", value=c.get("outbox_pending", 0))
        yield GaugeMetricFamily("livecut_channels", "Channels (not deleted).", value=len(self.snap.channels))
        yield GaugeMetricFamily("livecut_feed_subscribers", "Socket.IO channel subscriptions on this gateway.", value=self.snap.subscribers)
        yield GaugeMetricFamily("livecut_feed_streams_followed", "Redis streams this gateway's relay follows.", value=self.snap.streams_followed)
        yield GaugeMetricFamily("livecut_feed_relay_up", "1 while this gateway's Redis relay is reading.", value=1.0 if self.snap.relay_up else 0.0)
        if self.snap.data_free_bytes is not None:
            yield GaugeMetricFamily("livecut_data_free_bytes", "Free bytes on the data dir's disk (see --min-free-bytes).", value=self.snap.data_free_bytes)


def check_token(request, token: str) -> None:
    """Raise 401 unless the metrics token is unset or presented as ``Bearer TOKEN``."""
    if token and not key_matches(bearer_token(request), token):
        raise unauthorized("missing or wrong metrics token")


async def snapshot(store: Store, feed=None, data_dir: str | None = None) -> Snapshot:
    channels = await store.list_channels()
    counts = await store.counts()
    free = None
    if data_dir:
        try:
            free = await asyncio.to_thread(free_bytes, data_dir)
        except OSError:
            pass
    snap = Snapshot(channels=channels, counts=counts, data_free_bytes=free)
    if feed is not None:
        snap.subscribers = feed.subscriber_count()
        snap.streams_followed = len(feed.follows)
        snap.relay_up = feed.running and feed.redis_ok
    return snap


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap, dt.datetime.now(dt.timezone.utc)))
    return generate_latest(registry)
