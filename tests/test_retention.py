"""Clip retention (global and per channel), clip DELETE, and ring folders of deleted channels:
real Postgres, real files."""
from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from records.retention import ClipUsage, RetentionLimits, RetentionOptions, select_expired
from records.settings import Settings
from records.store import Store
from records.wire import ChannelCreate, ClipRecord, MomentEvent
from supervisor.retention import RetentionSweeper, remove_orphan_rings

DAY = 86400.0
KEY = "retention-test-key"


# -- the pure selection ---------------------------------------------------------------------

def usage(clip_id: str, days: float, size: int, channel: str | None = "a") -> ClipUsage:
    return ClipUsage(clip_id, channel, days * DAY, size)


@pytest.mark.parametrize("clips, limits, per_channel, expected", [
    # nothing set: everything stays
    ([usage("1", 400, 10**9)], RetentionLimits(), {}, []),
    # global age: older than 30 days goes, VOD clips (no channel) included
    ([usage("1", 40, 1), usage("2", 31, 1, None), usage("3", 29, 1)], RetentionLimits(max_age_days=30), {}, ["1", "2"]),
    # global size: the newest that fit in 250 bytes stay, oldest first out
    ([usage("1", 3, 100), usage("2", 2, 100), usage("3", 1, 100, None), usage("4", 0, 100)],
     RetentionLimits(max_bytes=250), {}, ["1", "2"]),
    # per channel: a's own size cap; b unlimited; a's age cap
    ([usage("1", 3, 100), usage("2", 2, 100), usage("3", 1, 100), usage("4", 5, 100, "b")],
     RetentionLimits(), {"a": RetentionOptions(max_bytes=150)}, ["1", "2"]),
    ([usage("1", 3, 1), usage("2", 0.5, 1), usage("3", 9, 1, "b")],
     RetentionLimits(), {"a": RetentionOptions(max_age_days=1)}, ["1"]),
    # both: the channel's cap first, then the global one over what is left
    ([usage("1", 4, 100, "b"), usage("2", 3, 100), usage("3", 2, 100), usage("4", 1, 100)],
     RetentionLimits(max_bytes=150), {"a": RetentionOptions(max_bytes=100)}, ["1", "2", "3"]),
])
def test_select_expired(clips, limits, per_channel, expected):
    chosen = select_expired(clips, limits, per_channel)
    assert list(chosen) == expected  # oldest first
    assert all(chosen.values())  # each with a reason


# -- the sweeper on real rows and files -----------------------------------------------------

async def commit(store: Store, owner: str, clip_dir: Path, size: int, *, vod: bool = False, seq: int = 0) -> ClipRecord:
    """A committed clip whose video has ``size`` bytes (thumbnail: 100)."""
    name = f"{owner}-{seq}-{size}"
    video, thumb = clip_dir / f"{name}.mp4", clip_dir / f"{name}.jpg"
    video.write_bytes(b"v" * size)
    thumb.write_bytes(b"j" * 100)
    record = ClipRecord(
        id=name, channel_id=None if vod else owner, vod_id=owner if vod else None, moment_seq=seq if vod else None,
        stream_start=float(seq), stream_end=seq + 10.0, score=1.5, signals={"loudness": 1.5}, transcript="",
        video_path=str(video), thumbnail_path=str(thumb), duration=10.0, created_at="",
    )
    return await store.commit_clip(record, MomentEvent(t=seq + 5.0, score=1.5, signals={"loudness": 1.5}))


async def age(store: Store, clip_id: str, days: float) -> None:
    await store.pool.execute("UPDATE clips SET created_at = now() - make_interval(days => $2) WHERE id = $1",
                             clip_id, int(days))


async def clip_ids(store: Store) -> set[str]:
    return {r["id"] for r in await store.pool.fetch("SELECT id FROM clips")}


def files_of(clip: ClipRecord) -> list[Path]:
    return [Path(clip.video_path), Path(clip.thumbnail_path)]


async def test_sweeper_deletes_old_clips_and_frees_their_files(store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    old, recent = [await commit(store, channel["id"], tmp_path, 1000, seq=i) for i in range(2)]
    await age(store, old.id, 10)
    before = sum(p.stat().st_size for p in tmp_path.iterdir())
    deleted = await RetentionSweeper(store, RetentionLimits(max_age_days=7)).sweep()
    assert list(deleted) == [old.id] and "7 days" in deleted[old.id]
    assert await clip_ids(store) == {recent.id}
    assert not any(p.exists() for p in files_of(old))  # freed
    assert all(p.exists() for p in files_of(recent))
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == before - 1100
    # the deletion is recorded with the channel's events, and in clip_deletions
    events = [e for e in await store.events(channel["id"]) if e["kind"] == "clip_deleted"]
    assert [(e["clip_id"], e["detail"]) for e in events] == [(old.id, deleted[old.id])]
    row = await store.pool.fetchrow("SELECT * FROM clip_deletions WHERE clip_id = $1", old.id)
    assert row["files_removed_at"] is not None and row["reason"] == deleted[old.id]
    # the sizes were measured from the files (the column starts NULL)
    assert await store.pool.fetchval("SELECT bytes FROM clips WHERE id = $1", recent.id) == 1100


async def test_sweeper_keeps_the_total_under_the_size_limits(store, tmp_path):
    a = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {"retention": {"max_bytes": 2500}})
    b = await store.create_channel(ChannelCreate(name="b", source="rtmp"), {})
    await store.pool.execute("INSERT INTO vod_jobs (id, batch_id, name) VALUES ('job1', 'batch1', 'recording')")
    clips = []
    for i, (owner, vod) in enumerate([(a["id"], False)] * 4 + [(b["id"], False), ("job1", True), (b["id"], False)]):
        clips.append(await commit(store, owner, tmp_path, 1000, vod=vod, seq=i))
        await age(store, clips[-1].id, 20 - i)  # oldest first
    # global: 4 clips of 1100 bytes fit in 4500; channel a: 2 of its clips fit in 2500
    deleted = await RetentionSweeper(store, RetentionLimits(max_bytes=4500)).sweep()
    a_ids = [c.id for c in clips[:4]]
    assert list(deleted) == a_ids[:3]  # a's two oldest (a's cap), then the oldest left (the global cap)
    assert "channel" in deleted[a_ids[0]] and "global" in deleted[a_ids[2]]
    assert await clip_ids(store) == {a_ids[3], clips[4].id, clips[5].id, clips[6].id}  # the VOD clip counts too
    for clip in clips:
        assert all(p.exists() == (clip.id not in deleted) for p in files_of(clip))
    assert await RetentionSweeper(store, RetentionLimits(max_bytes=4500)).sweep() == {}  # stable


async def test_an_interrupted_removal_is_finished_and_old_rows_are_measured(store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    first, second = [await commit(store, channel["id"], tmp_path, 500, seq=i) for i in range(2)]
    Path(second.thumbnail_path).unlink()  # a file already gone counts 0
    # a crash right after the row's deletion: files still there, not marked removed
    await store.delete_clips({first.id: "test"})
    assert all(p.exists() for p in files_of(first))
    await RetentionSweeper(store, RetentionLimits()).sweep()
    assert not any(p.exists() for p in files_of(first))
    assert await store.pool.fetchval("SELECT bytes FROM clips WHERE id = $1", second.id) == 500


async def test_a_deleted_clip_is_not_announced_by_a_pending_notification(store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = await commit(store, channel["id"], tmp_path, 100)
    assert [n["payload"]["id"] for n in await store.pending_notifications()] == [clip.id]
    await store.delete_clips({clip.id: "test"})
    assert await store.pending_notifications() == []


# -- DELETE /api/clips/{id} -----------------------------------------------------------------

class _Control:
    async def channels_changed(self) -> None:
        pass

    async def stream_limit(self):
        return None


async def test_clip_delete_route(store, redis_url, tmp_path):
    from gateway.app import create_app

    settings = Settings(data_dir=str(tmp_path / "data"), api_key=KEY)
    client_redis = aioredis.from_url(redis_url)
    app = create_app(settings, store, client_redis, _Control())
    auth = {"Authorization": f"Bearer {KEY}"}
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    doomed, kept = [await commit(store, channel["id"], tmp_path, 300, seq=i) for i in range(2)]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            assert (await client.delete(f"/api/clips/{doomed.id}")).status_code == 401
            resp = await client.delete(f"/api/clips/{doomed.id}", headers=auth)
            assert resp.status_code == 204, resp.text
            assert not any(p.exists() for p in files_of(doomed))
            assert all(p.exists() for p in files_of(kept))
            for path in (f"/api/clips/{doomed.id}", f"/api/clips/{doomed.id}/video"):
                resp = await client.get(path, headers=auth)
                assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
            for missing in (doomed.id, "no-such-clip"):
                resp = await client.delete(f"/api/clips/{missing}", headers=auth)
                assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
            items = (await client.get("/api/clips", headers=auth)).json()["items"]
            assert [c["id"] for c in items] == [kept.id]
    finally:
        await client_redis.aclose()


# -- ring folders of deleted channels -------------------------------------------------------

async def test_ring_folders_of_deleted_or_unknown_channels_are_removed_at_start(store, tmp_path):
    live = await store.create_channel(ChannelCreate(name="live", source="rtmp"), {})
    gone = await store.create_channel(ChannelCreate(name="gone", source="rtmp"), {})
    await store.delete_channel(gone["id"])
    for name in (live["id"], gone["id"], "never-existed"):
        (tmp_path / "ring" / name).mkdir(parents=True)
        (tmp_path / "ring" / name / "00000001.ts").write_bytes(b"x" * 100)
    active = {c["id"] for c in await store.list_channels()}
    removed = await asyncio.to_thread(remove_orphan_rings, tmp_path, active)
    assert sorted(removed) == sorted([gone["id"], "never-existed"])
    assert [p.name for p in (tmp_path / "ring").iterdir()] == [live["id"]]
    assert (tmp_path / "ring" / live["id"] / "00000001.ts").exists()


async def test_a_deleted_channels_ring_folder_goes_with_its_actor(store, tmp_path):
    """The supervisor's reconcile stops the actor of a deleted channel, which then removes its
    ring folder (on its own node); the clips folder stays. A real local Ray, a real actor."""
    import ray

    from supervisor.supervisor import NAMESPACE, STREAM_SLOT, Supervisor, SupervisorConfig

    ray.init(address="local", num_cpus=2, resources={STREAM_SLOT: 2}, namespace=NAMESPACE, include_dashboard=False)
    try:
        supervisor = Supervisor(SupervisorConfig(dsn="", data_dir=str(tmp_path)))
        supervisor.store = store
        channel = await store.create_channel(ChannelCreate(name="doomed", source="rtmp"), {})
        supervisor.actors[channel["id"]] = supervisor._create(channel)
        await asyncio.wait_for(supervisor.actors[channel["id"]].health.remote(), 120)  # constructed
        ring, clips = tmp_path / "ring" / channel["id"], tmp_path / "clips" / channel["id"]
        assert ring.is_dir() and clips.is_dir()
        (ring / "00000001.ts").write_bytes(b"x" * 1000)
        await store.delete_channel(channel["id"])
        result = await supervisor.reconcile()
        assert result["stopped"] == [channel["id"]]
        await asyncio.gather(*supervisor._stopping.values())
        assert not ring.exists()
        assert clips.is_dir()  # clips stay with a deleted channel
    finally:
        ray.shutdown()
