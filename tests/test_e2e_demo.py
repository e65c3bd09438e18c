"""The first README command's path: `livecut up --demo` on a machine with no database or Redis
server (embedded ones in the data dir), clips within a minute, and a clean Ctrl-C."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bench.stack import LivecutProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def data_root():
    """Not under pytest's tmp dir: as root, the embedded PostgreSQL runs as its own user, and
    pytest keeps /tmp/pytest-of-root private to root."""
    path = Path(tempfile.mkdtemp(prefix="livecut-demo-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_on_embedded_servers_clips_within_a_minute_and_stops_clean(data_root):
    tmp_path = data_root
    stack = LivecutProcess(tmp_path / "data", database_url="", redis_url="", extra_args=["--demo"])
    started = time.monotonic()
    stack.start()
    try:
        demo = [c for c in stack.api("GET", "/api/channels").json()["items"] if c["name"] == "demo"]
        assert len(demo) == 1 and demo[0]["source"] == "rtmp"
        clips = []
        while not clips and time.monotonic() - started < 120:
            clips = stack.api("GET", "/api/clips", params={"channel_id": demo[0]["id"]}).json()["items"]
            time.sleep(1)
        assert clips, stack.log_tail()
        assert time.monotonic() - started < 90  # about a minute, start-up included
        video = httpx.get(f"{stack.base_url}{clips[0]['video_url']}", timeout=10)  # signed: no key
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
        assert (tmp_path / "data" / "redis" / "redis.sock").exists()
    finally:
        code = stack.stop()
    assert code == 0, stack.log_tail()
    assert not stack.leftovers, stack.leftovers
    deadline = time.monotonic() + 15
    while (left := _using(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"embedded servers still running after Ctrl-C: {left}"


def _using(path) -> list[str]:
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline:
            left.append(cmdline[:120])
    return left
