"""``livecut up --demo``: a demo channel fed in real time by a bundled sample broadcast.

The sample is pushed over RTMP with PyAV, exactly as OBS would, so the demo exercises the
real ingest path and needs no ffmpeg binary on the machine.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import av

from records.store import Store
from records.wire import ChannelCreate

log = logging.getLogger(__name__)

DEMO_CHANNEL = "demo"


def sample_path() -> Path:
    return Path(str(resources.files("supervisor.samples").joinpath("broadcast.mp4")))


async def ensure_demo_channel(store: Store) -> dict:
    for channel in await store.list_channels():
        if channel["name"] == DEMO_CHANNEL and channel["source"] == "rtmp":
            return channel
    return await store.create_channel(ChannelCreate(name=DEMO_CHANNEL, source="rtmp"), {})


class DemoPublisher:
    """Pushes the sample in a loop, paced to real time, one RTMP publish per pass.

    It runs as a child process: PyAV holds Python's import lock while it connects, which
    would deadlock the RTMP server's own event loop if both lived in one process.
    """

    def __init__(self, sample: Path, rtmp_url: str):
        self.args = [sys.executable, "-m", "supervisor.demo", str(sample), rtmp_url]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def publish_forever(sample: Path, rtmp_url: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())  # the parent stops us in order
    while not stop.is_set():
        try:
            push_file(sample, rtmp_url, stop)
        except Exception as exc:  # the server may not be ready yet, or restarting
            log.info("demo publish: %s; retrying", exc)
        stop.wait(2.0)


def push_file(path: Path, url: str, stop: threading.Event | None = None, on_packet=None) -> None:
    """Remux ``path`` to ``url`` (FLV over RTMP) without re-encoding, paced to real time."""
    with av.open(str(path)) as src, av.open(url, "w", format="flv") as dst:
        mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("audio", "video")}
        started = time.monotonic()
        for packet in src.demux(*[src.streams[i] for i in mapping]):
            if stop is not None and stop.is_set():
                return
            if packet.dts is None:
                continue
            t = float(packet.dts * packet.time_base)
            due = started + t
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            packet.stream = mapping[packet.stream.index]
            dst.mux(packet)
            if on_packet is not None:
                on_packet(t)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s demo: %(message)s")
    publish_forever(Path(sys.argv[1]), sys.argv[2])
