"""Recovery benchmark: SIGKILL a stream actor's process under a live RTMP push and time how
long until the channel's ring buffer gets a packet again.

    .venv/bin/python -m bench.recovery [--rounds 3] [--reconnect-delay 0.5] [--ray-address HOST:PORT]

A publisher pushes a generated stream (ffmpeg, testsrc2 + a tone, 2 s GOP) in real time and,
like OBS, reconnects when its connection drops, after ``--reconnect-delay``. Each round waits
until the channel is live and its stream time moves, then kills the process named by
``health.pid`` and records:

- **actor back**: the channel's health names a new pid (Ray restarted the actor, the
  supervisor called ``start()``, and the actor sent its first report);
- **first packet**: the first write to the ring buffer after the kill (the newest segment
  file's mtime, polled every 20 ms). The open segment is flushed after every packet, so this
  is the first new packet. It includes the publisher's reconnect.

The new process starts its stream time at 0 again (printed as "stream time now").

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers. With ``--ray-address`` it
joins that cluster (export RAY_AUTH_MODE=token and the token, as deploy/cluster.md says), and
``--data-dir`` must then be on the shared path.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.stats import percentile
from bench.stack import LivecutProcess


class ReconnectingPublisher:
    """ffmpeg pushing a synthetic live stream, reconnecting like OBS when the push fails."""

    def __init__(self, url: str, reconnect_delay: float):
        self.url = url
        self.reconnect_delay = reconnect_delay
        self.stop_event = threading.Event()
        self.process: subprocess.Popen | None = None
        self.connects = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
        while not self.stop_event.is_set():
            self.connects += 1
            self.process = subprocess.Popen(
                [ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
                 "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
                 "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000",
                 "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30",
                 "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", self.url],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.process.wait()
            self.stop_event.wait(self.reconnect_delay)

    def start(self) -> "ReconnectingPublisher":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.thread.join(10)


def last_write(ring: Path) -> float:
    """mtime of the newest segment file of the ring buffer (0 when there is none)."""
    newest = 0.0
    try:
        for entry in os.scandir(ring):
            if entry.name.endswith(".ts"):
                try:
                    newest = max(newest, entry.stat().st_mtime)
                except FileNotFoundError:  # evicted meanwhile
                    pass
    except FileNotFoundError:
        pass
    return newest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reconnect-delay", type=float, default=0.5, help="publisher's wait before reconnecting (s)")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds of live stream before each kill")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for a round's recovery (s)")
    parser.add_argument("--ray-address", default="", help="join this Ray cluster instead of a local Ray")
    parser.add_argument("--data-dir", default="", help="livecut's data dir (default: a new temp dir)")
    args = parser.parse_args()

    if not shutil.which("ffmpeg"):
        raise SystemExit("bench.recovery needs the ffmpeg CLI (the publisher)")
    work = Path(tempfile.mkdtemp(prefix="livecut-recovery-"))
    data_dir = Path(args.data_dir) if args.data_dir else work / "data"
    extra = ["--ray-address", args.ray_address] if args.ray_address else []
    stack = LivecutProcess(
        data_dir, database_url=os.environ.get("DATABASE_URL", ""), redis_url=os.environ.get("REDIS_URL", ""),
        extra_args=extra,
    ).start()
    publisher = None
    channel_id = ""
    try:
        channel = stack.api("POST", "/api/channels", json={"name": "recovery bench", "source": "rtmp"}).json()
        channel_id = channel["id"]
        stack.wait_channel(channel_id, lambda c: c["health_at"] is not None, timeout=120)
        publisher = ReconnectingPublisher(f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}",
                                          args.reconnect_delay).start()
        ring = data_dir / "ring" / channel_id
        backs, firsts = [], []
        for round_no in range(1, args.rounds + 1):
            live = stack.wait_channel(channel_id, lambda c: c["status"] == "live", timeout=args.timeout)
            time.sleep(args.settle)
            live = stack.api("GET", f"/api/channels/{channel_id}").json()
            assert live["status"] == "live", live
            pid, stream_time = live["health"]["pid"], live["health"]["stream_time"]
            os.kill(pid, signal.SIGKILL)
            killed = time.time()
            first = back = None
            deadline = killed + args.timeout
            last_api = 0.0
            while time.time() < deadline and (first is None or back is None):
                now = time.time()
                if first is None and last_write(ring) > killed + 0.05:  # not the dying process's last flush
                    first = now - killed
                if back is None and now - last_api >= 0.25:
                    last_api = now
                    health = stack.api("GET", f"/api/channels/{channel_id}").json()["health"] or {}
                    if health.get("pid") not in (None, 0, pid):
                        back = time.time() - killed
                time.sleep(0.02)
            after = stack.api("GET", f"/api/channels/{channel_id}").json()
            print(f"round {round_no}: killed pid {pid} at stream time {stream_time:.1f}s; "
                  f"actor back after {fmt(back)}, first packet after {fmt(first)} "
                  f"(stream time now {after['health']['stream_time']:.1f}s, publisher connects: {publisher.connects})",
                  flush=True)
            if back is None or first is None:
                raise SystemExit(f"round {round_no} did not recover within {args.timeout}s:\n{stack.log_tail(30)}")
            backs.append(back)
            firsts.append(first)
        print(f"\nSIGKILL → actor back:   p50 {percentile(backs, 0.5):.2f}s  max {max(backs):.2f}s  ({len(backs)} rounds)")
        print(f"SIGKILL → first packet: p50 {percentile(firsts, 0.5):.2f}s  max {max(firsts):.2f}s  "
              f"(publisher reconnect delay {args.reconnect_delay}s)")
    finally:
        if publisher:
            publisher.stop()
        if channel_id:
            stack.api("DELETE", f"/api/channels/{channel_id}")
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f}s"


if __name__ == "__main__":
    main()
