"""A filled data disk: a stream actor on a 64 MiB tmpfs data dir, fed a generated broadcast
in real time, with real Postgres. After its first clip is committed the disk is filled
below the low-water mark: the channel shows a clear status and logs an event, the next
moment's clip is refused (logged lost, no row, no file), the ring shrinks to the pre-roll,
and the clip committed before is still there, whole. Freeing the space brings it back."""
from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import av
import pytest

from bench.broadcast import Moment, make_broadcast
from records.store import Store
from records.wire import ChannelCreate
from stream_actor.actor import ActorConfig, StreamActor
from stream_actor.disk_space import free_bytes, low_space_reason

pytestmark = pytest.mark.usefixtures("ffmpeg")

MiB = 1024 * 1024
MIN_FREE = 24 * MiB
MOMENTS = [Moment(10.0, "loud"), Moment(40.0, "loud")]
DURATION = 52.0


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs (we run as root). Where mounting is impossible, a plain directory: the
    test then fills it past a low-water mark set relative to its current free space."""
    path = tmp_path / "data"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    yield path, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_low_space_reason_is_pure_and_clear():
    assert low_space_reason(2 * 1024**3, 1024**3) == ""
    assert low_space_reason(300 * MiB, 1024**3) == "disk low: 300 MiB free < 1024 MiB (--min-free-bytes)"


async def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def test_a_full_disk_refuses_new_clips_and_keeps_the_committed_ones(store: Store, pg_dsn, small_disk, tmp_path):
    data_dir, mounted = small_disk
    media = tmp_path / "broadcast.mp4"
    await asyncio.to_thread(make_broadcast, media, duration=DURATION, moments=MOMENTS)
    # on a plain directory (no tmpfs), the mark sits 256 MiB under the free space now
    min_free = MIN_FREE if mounted else free_bytes(str(data_dir)) - 256 * MiB
    channel = await store.create_channel(
        ChannelCreate(name="full disk", source="url", url=str(media)), {"source": {"realtime": True}}
    )
    cid = channel["id"]
    actor = StreamActor(channel, ActorConfig(dsn=pg_dsn, data_dir=str(data_dir), allow_private_urls=True,
                                             min_free_bytes=min_free))
    fill = data_dir / "filler.bin"
    await actor.start()
    try:
        first = await wait_for(lambda: store.pool.fetchrow("SELECT * FROM clips WHERE channel_id = $1", cid),
                               90, "the first clip")
        video, thumb = Path(first["video_path"]), Path(first["thumbnail_path"])
        before = (video.read_bytes(), thumb.read_bytes())

        # fill the disk: 12 MiB free stays, under the 24 MiB mark (or 256 MiB past it)
        free = free_bytes(str(data_dir))
        size = free - 12 * MiB if mounted else 512 * MiB
        await asyncio.to_thread(_write_zeros, fill, size)

        async def degraded():
            row = await store.get_channel(cid)
            return row if row["status"] == "degraded" else None

        row = await wait_for(degraded, 15, "status degraded")
        assert row["status_reason"].startswith("disk low: ") and "new clips are refused" in row["status_reason"]
        events = await store.events(cid)
        assert any(e["kind"] == "disk_low" and e["detail"].startswith("disk low: ") for e in events)
        # the ring keeps only about a clip's pre-roll (plus the open segment)
        opts = actor.settings
        assert actor.ring.seconds_buffered <= opts.clip.pre_roll + 2 * opts.ring.segment_seconds + 1.0

        # the second moment is refused: logged lost with the reason, no row, no new file
        async def refused():
            return [e for e in await store.events(cid) if e["kind"] == "clip_lost"]

        lost = await wait_for(refused, 60, "the second moment refused")
        assert lost[0]["detail"].startswith("clip refused: disk low: ")
        rows = await store.pool.fetch("SELECT id FROM clips WHERE channel_id = $1", cid)
        assert [r["id"] for r in rows] == [first["id"]]
        assert sorted(p.name for p in actor.clip_dir.glob("*.mp4")) == [video.name]

        # the clip committed before is whole: same bytes, and it plays to its end
        assert (video.read_bytes(), thumb.read_bytes()) == before
        with av.open(str(video)) as c:
            frames = sum(1 for _ in c.decode(video=0))
        assert frames >= (first["duration"] - 0.5) * 15

        # space again: back to normal
        await asyncio.to_thread(fill.unlink)

        async def recovered():
            row = await store.get_channel(cid)
            events = await store.events(cid)
            return row["status"] != "degraded" and any(e["kind"] == "disk_ok" for e in events)

        await wait_for(recovered, 15, "recovery")
        assert actor.disk.reason == ""
    finally:
        fill.unlink(missing_ok=True)
        await actor.stop()


def _write_zeros(path: Path, size: int) -> None:
    chunk = b"\0" * MiB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(chunk[: min(left, MiB)])
            left -= MiB
        f.flush()
        os.fsync(f.fileno())


async def test_metrics_show_the_data_disks_free_bytes(store, redis_url, small_disk):
    import httpx
    import redis.asyncio as aioredis
    from prometheus_client.parser import text_string_to_metric_families

    from gateway.app import create_app
    from records.settings import Settings

    class Control:
        async def channels_changed(self) -> None:
            pass

        async def stream_limit(self):
            return None

    data_dir, _mounted = small_disk
    client_redis = aioredis.from_url(redis_url)
    app = create_app(Settings(data_dir=str(data_dir), api_key="k"), store, client_redis, Control())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            resp = await client.get("/metrics")
        assert resp.status_code == 200, resp.text
        values = {s.name: s.value for f in text_string_to_metric_families(resp.text) for s in f.samples}
        assert values["livecut_data_free_bytes"] == pytest.approx(free_bytes(str(data_dir)), abs=8 * MiB)
    finally:
        await client_redis.aclose()
