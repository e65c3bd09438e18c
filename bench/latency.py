"""Latency benchmark: push a broadcast over RTMP in real time to a real `livecut up`, and print,
per clip and as p50/p95, the delay from the moment the clip's last second was pushed to the
moment its notification arrived over Socket.IO; plus the stream actor's CPU seconds per
stream-second.

    .venv/bin/python -m bench.latency [--duration 75] [--rounds 1]

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers.
"""
from __future__ import annotations

import argparse
from datetime import datetime
import bisect
import os
import tempfile
import threading
import time
from pathlib import Path

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber, LivecutProcess
from bench.stats import percentile
from supervisor.demo import push_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=75.0)
    parser.add_argument("--rounds", type=int, default=1, help="broadcasts pushed one after another")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="livecut-bench-"))
    media = work / "broadcast.mp4"
    truth = make_broadcast(media, duration=args.duration)
    stack = LivecutProcess(
        work / "data", database_url=os.environ.get("DATABASE_URL", ""), redis_url=os.environ.get("REDIS_URL", "")
    ).start()
    try:
        channel = stack.api("POST", "/api/channels", json={"name": "bench", "source": "rtmp"}).json()
        stack.wait_channel(channel["id"], lambda c: c["health_at"] is not None)
        subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
        url = f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"
        pushed_t: list[float] = []  # stream time of each pushed packet
        pushed_wall: list[float] = []  # wall time it was handed to the socket
        offset = 0.0
        lock = threading.Lock()
        for _ in range(args.rounds):
            base = offset

            def record(t: float, base=base) -> None:
                with lock:
                    pushed_t.append(base + t)
                    pushed_wall.append(time.time())

            push_file(media, url, on_packet=record)
            offset = pushed_t[-1] + 2.0  # a reconnect continues stream time roughly by the wall gap
            time.sleep(2.0)
        expected = len(truth.moments) * args.rounds
        clips = subscriber.wait_for(expected, timeout=30)
        health = stack.api("GET", f"/api/channels/{channel['id']}").json()["health"]
        subscriber.close()
    finally:
        stack.stop()

    print(f"\nlivecut latency bench: {args.rounds} x {args.duration:.0f} s broadcast, {expected} planted moments, "
          f"{len(clips)} clips, {os.cpu_count()} cores")
    print(f"{'clip':>26} {'stream_end':>10} {'latency_s':>9} {'to_commit':>9} {'delivery':>8}  signals")
    latencies = []
    for clip, arrived in zip(clips, subscriber.arrivals):
        i = bisect.bisect_left(pushed_t, clip["stream_end"])
        if i >= len(pushed_wall):
            continue
        latency = arrived - pushed_wall[i]
        committed = datetime.fromisoformat(clip["created_at"].replace("Z", "+00:00")).timestamp()
        latencies.append(latency)
        print(f"{clip['id']:>26} {clip['stream_end']:>10.2f} {latency:>9.2f} {committed - pushed_wall[i]:>9.2f} "
              f"{arrived - committed:>8.2f}  {clip['signals']}")
    if latencies:
        print(f"latency p50 {percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
              f"max {max(latencies):.2f} s (target p95 <= 3 s)")
    if health and health["stream_time"] > 0:
        print(f"stream actor CPU: {health['cpu_seconds'] / health['stream_time']:.3f} CPU-s per stream-second "
              f"({health['cpu_seconds']:.1f} CPU-s over {health['stream_time']:.1f} s; includes model load), "
              f"RSS {health['rss_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
