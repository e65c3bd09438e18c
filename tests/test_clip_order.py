"""Clip ids come from Postgres at commit, per channel (and per VOD job): their order is commit
order whatever the clock of the host that cut the clip, so a subscriber resuming after its
last clip id misses nothing. Also: every statement has a timeout."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from records.store import Store
from records.vod_store import NewVod, VodStore
from records.wire import ChannelCreate, ClipRecord, MomentEvent, new_commit_key


def _clip(channel_id: str | None, start: float, *, id: str = "", **kw) -> ClipRecord:
    return ClipRecord(
        id=id, channel_id=channel_id, stream_start=start, stream_end=start + 15, score=1.5,
        signals={"loudness": 1.5}, transcript="", video_path=f"/clips/{start}.mp4",
        thumbnail_path=f"/clips/{start}.jpg", duration=15.0, created_at="", **kw,
    )


def _host_clock_id(seconds_behind: float) -> str:
    """The id a stream actor made before (``new_commit_key``: its host's clock in microseconds)."""
    return f"{(time.time_ns() // 1000 - int(seconds_behind * 1e6)):014x}00c10c00"


async def test_a_clip_cut_on_a_host_whose_clock_is_behind_still_sorts_after_earlier_commits(store):
    channel = (await store.create_channel(ChannelCreate(name="a", source="rtmp"), {}))["id"]
    event = MomentEvent(t=10.0, score=1.5, signals={})
    first = await store.commit_clip(_clip(channel, 0.0, commit_key=new_commit_key()), event)
    # cut on a host whose clock is an hour behind, committed after the first
    late = await store.commit_clip(_clip(channel, 20.0, id=_host_clock_id(3600)), event)
    assert late.id > first.id
    assert [c.id for c in await store.clips_after(channel, first.id)] == [late.id]  # resume gets it
    assert [c.id for c in await store.list_clips(channel_id=channel)] == [late.id, first.id]


async def test_ids_follow_commit_order_under_concurrent_commits(store):
    channel = (await store.create_channel(ChannelCreate(name="a", source="rtmp"), {}))["id"]
    event = MomentEvent(t=1.0, score=1.0, signals={})
    stored = await asyncio.gather(*[
        store.commit_clip(_clip(channel, float(i), commit_key=new_commit_key()), event) for i in range(20)
    ])
    # the outbox row is written after the id is taken, in the same transaction: its order is commit order
    rows = await store.pool.fetch("SELECT payload->>'id' AS id FROM outbox WHERE channel_id = $1 ORDER BY id", channel)
    committed = [r["id"] for r in rows]
    assert committed == sorted(committed) and sorted(committed) == sorted(c.id for c in stored)


async def test_ids_keep_increasing_when_the_database_clock_steps_back(store):
    channel = (await store.create_channel(ChannelCreate(name="a", source="rtmp"), {}))["id"]
    event = MomentEvent(t=1.0, score=1.0, signals={})
    # as if an earlier commit had run under a clock a day ahead
    ahead = (time.time_ns() // 1000) + 86_400 * 10**6
    await store.pool.execute("UPDATE channels SET clip_seq = $2 WHERE id = $1", channel, ahead)
    clip = await store.commit_clip(_clip(channel, 0.0, commit_key=new_commit_key()), event)
    assert int(clip.id[:14], 16) == ahead + 1


async def test_a_replayed_commit_returns_the_first_and_adds_nothing(store):
    channel = (await store.create_channel(ChannelCreate(name="a", source="rtmp"), {}))["id"]
    event = MomentEvent(t=10.0, score=1.5, signals={})
    clip = _clip(channel, 0.0, commit_key=new_commit_key())
    await store.record_pending_moment(channel, event, clip.commit_key)
    first = await store.commit_clip(clip, event)
    again = await store.commit_clip(clip, event)
    assert again.id == first.id
    assert await store.pool.fetchval("SELECT count(*) FROM clips WHERE channel_id = $1", channel) == 1
    assert await store.pool.fetchval("SELECT count(*) FROM outbox WHERE channel_id = $1", channel) == 1
    assert [(e["kind"], e["clip_id"]) for e in await store.events(channel)] == [("moment", first.id)]
    # a pending row written late (after the commit) does not reopen the moment
    assert await store.record_pending_moment(channel, event, clip.commit_key) is None
    assert await store.lose_pending_moments(channel, "restarted") == 0


async def test_vod_clips_get_their_ids_at_commit_in_job_order(store):
    vods = VodStore(store.pool)
    (job,) = await vods.create_jobs([NewVod(name="rec", url="https://example.com/a.mp4", upload_id=None, settings={})])
    event = MomentEvent(t=10.0, score=1.5, signals={})
    a = await store.commit_clip(_clip(None, 0.0, vod_id=job["id"], moment_seq=1, id=_host_clock_id(0)), event)
    b = await store.commit_clip(_clip(None, 20.0, vod_id=job["id"], moment_seq=2, id=_host_clock_id(3600)), event)
    again = await store.commit_clip(_clip(None, 20.0, vod_id=job["id"], moment_seq=2), event)
    assert b.id > a.id and again.id == b.id
    assert [c.id for c in await store.clips_after(None, a.id, vod_id=job["id"])] == [b.id]


async def test_a_commit_for_a_missing_channel_is_refused_for_good(store):
    from records.store import CommitRejected, commit_can_never_succeed

    with pytest.raises(CommitRejected) as refused:
        await store.commit_clip(_clip("no-such-channel", 0.0), MomentEvent(t=1.0, score=1.0, signals={}))
    assert commit_can_never_succeed(refused.value)
    assert not commit_can_never_succeed(ConnectionRefusedError())
    assert not commit_can_never_succeed(asyncio.TimeoutError())


async def test_every_statement_has_a_timeout(pg_dsn):
    quick = await Store.connect(pg_dsn, command_timeout=0.5)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await quick.pool.execute("SELECT pg_sleep(5)")
        assert await quick.pool.fetchval("SELECT 1") == 1  # the pool goes on
    finally:
        await quick.close()
    default = await Store.connect(pg_dsn)
    try:
        async with default.pool.acquire() as conn:
            assert isinstance(conn, asyncpg.Connection)
            assert conn._config.command_timeout == 30.0
    finally:
        await default.close()
