"""Clip retention (global and per channel; the global limits stored, set through the API or
`livecut up` flags), clip DELETE, and ring folders of deleted channels: real Postgres, real
files."""
from __future__ import annotations

import asyncio
from pathlib import Path

import logging

import httpx
import pytest
import redis.asyncio as aioredis

from records.key_store import KeyStore
from records.retention import ClipUsage, RetentionLimits, RetentionOptions, select_expired
from records.settings import Settings
from records.store import Store
from records.wire import ChannelCreate, ClipRecord, MomentEvent
from supervisor.retention import RetentionSweeper, apply_start_limits, remove_orphan_rings

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


async def sweep_under(store: Store, limits: RetentionLimits) -> dict[str, str]:
    """One pass of a sweeper under ``limits``, stored first (the sweeper reads them there)."""
    await store.set_retention_limits(limits)
    return await RetentionSweeper(store).sweep()


async def test_sweeper_deletes_old_clips_and_frees_their_files(store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    old, recent = [await commit(store, channel["id"], tmp_path, 1000, seq=i) for i in range(2)]
    await age(store, old.id, 10)
    before = sum(p.stat().st_size for p in tmp_path.iterdir())
    deleted = await sweep_under(store, RetentionLimits(max_age_days=7))
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
    deleted = await sweep_under(store, RetentionLimits(max_bytes=4500))
    a_ids = [c.id for c in clips[:4]]
    assert list(deleted) == a_ids[:3]  # a's two oldest (a's cap), then the oldest left (the global cap)
    assert "channel" in deleted[a_ids[0]] and "global" in deleted[a_ids[2]]
    assert await clip_ids(store) == {a_ids[3], clips[4].id, clips[5].id, clips[6].id}  # the VOD clip counts too
    for clip in clips:
        assert all(p.exists() == (clip.id not in deleted) for p in files_of(clip))
    assert await RetentionSweeper(store).sweep() == {}  # stable


async def test_an_interrupted_removal_is_finished_and_old_rows_are_measured(store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    first, second = [await commit(store, channel["id"], tmp_path, 500, seq=i) for i in range(2)]
    Path(second.thumbnail_path).unlink()  # a file already gone counts 0
    # a crash right after the row's deletion: files still there, not marked removed
    await store.delete_clips({first.id: "test"})
    assert all(p.exists() for p in files_of(first))
    await RetentionSweeper(store).sweep()  # no limits stored: none
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


# -- the global limits: stored, set through the API or at start -----------------------------

def gateway(store: Store, redis_client, tmp_path: Path) -> httpx.AsyncClient:
    from gateway.app import create_app

    settings = Settings(data_dir=str(tmp_path / "data"), api_key=KEY, rate_limit=100_000)
    app = create_app(settings, store, redis_client, _Control())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                             headers={"Authorization": f"Bearer {KEY}"})


async def test_retention_settings_round_trip_and_usage(store, redis, tmp_path):
    a = await store.create_channel(ChannelCreate(name="capped", source="rtmp"),
                                   {"retention": {"max_age_days": 3, "max_bytes": 5000}})
    await store.create_channel(ChannelCreate(name="plain", source="rtmp"), {})
    await store.create_channel(ChannelCreate(name="no limits", source="rtmp"), {"retention": {"max_bytes": 0}})
    gone = await store.create_channel(ChannelCreate(name="gone", source="rtmp"), {"retention": {"max_bytes": 9}})
    await store.delete_channel(gone["id"])
    clips = [await commit(store, a["id"], tmp_path, size, seq=i) for i, size in enumerate((1000, 2500, 40))]
    async with gateway(store, redis, tmp_path) as client:
        resp = await client.get("/api/settings/retention")
        assert resp.status_code == 200, resp.text
        # never set: no limits; the clips not measured yet count 0 bytes
        assert resp.json() == {
            "limits": {"max_age_days": 0.0, "max_bytes": 0},
            "usage": {"clips": 3, "bytes": 0},
            "channels": [{"id": a["id"], "name": "capped", "limits": {"max_age_days": 3.0, "max_bytes": 5000}}],
        }
        await RetentionSweeper(store).sweep()  # measures them (no limit deletes anything)
        usage = (await client.get("/api/settings/retention")).json()["usage"]
        assert usage == {"clips": 3, "bytes": sum(p.stat().st_size for c in clips for p in files_of(c))} == \
            {"clips": 3, "bytes": 1000 + 2500 + 40 + 3 * 100}

        resp = await client.put("/api/settings/retention", json={"max_age_days": 30, "max_bytes": 2 * 10**9})
        assert resp.status_code == 200, resp.text
        assert resp.json()["limits"] == {"max_age_days": 30.0, "max_bytes": 2 * 10**9}
        assert resp.json()["usage"] == usage
        assert (await client.get("/api/settings/retention")).json()["limits"] == resp.json()["limits"]
        assert await store.retention_limits() == RetentionLimits(max_age_days=30, max_bytes=2 * 10**9)
        # PUT replaces: a field left out is no limit of that kind
        resp = await client.put("/api/settings/retention", json={"max_age_days": 0.5})
        assert resp.json()["limits"] == {"max_age_days": 0.5, "max_bytes": 0}


@pytest.mark.parametrize("body, says", [
    ({"max_age_days": -1}, "$.max_age_days"),
    ({"max_bytes": -1}, "$.max_bytes"),
    ({"max_age_days": 36501}, "$.max_age_days"),  # past a century
    ({"max_bytes": 2**50 + 1}, "$.max_bytes"),  # past 1 PiB
    ({"max_bytes": 1.5}, "$.max_bytes"),
    ({"max_age_days": "30"}, "$.max_age_days"),
    ({"max_days": 30}, "unknown field"),
    ([30, 0], "object"),
])
async def test_bad_retention_limits_are_refused_and_change_nothing(store, redis, tmp_path, body, says):
    await store.set_retention_limits(RetentionLimits(max_age_days=9))
    async with gateway(store, redis, tmp_path) as client:
        resp = await client.put("/api/settings/retention", json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "invalid_request" and says in resp.json()["error"]["message"]
    assert await store.retention_limits() == RetentionLimits(max_age_days=9)


async def test_a_read_key_reads_the_retention_limits_but_cannot_change_them(store, redis, tmp_path):
    read = (await KeyStore(store.pool).create("read")).key
    ingest = (await KeyStore(store.pool).create("ingest")).key
    async with gateway(store, redis, tmp_path) as client:
        for body in (b"", b"{", b"x" * 2000):  # empty, not JSON, over the body limit
            resp = await client.put("/api/settings/retention", content=body)
            assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request", resp.text
        assert (await client.get("/api/settings/retention", headers={"Authorization": ""})).status_code == 401
        as_read = {"Authorization": f"Bearer {read}"}
        assert (await client.get("/api/settings/retention", headers=as_read)).status_code == 200
        for key in (read, ingest):
            resp = await client.put("/api/settings/retention", json={"max_age_days": 1},
                                    headers={"Authorization": f"Bearer {key}"})
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", resp.text
        # documented, with the body it takes
        spec = (await client.get("/openapi.json")).json()["paths"]["/api/settings/retention"]
    assert set(spec) == {"get", "put"}
    schema = spec["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"max_age_days", "max_bytes"} and schema["additionalProperties"] is False
    assert set(spec["get"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]) == \
        {"limits", "usage", "channels"}
    assert await store.retention_limits() == RetentionLimits()


async def test_the_sweeper_follows_limits_changed_through_the_api_without_a_restart(store, redis, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clips = [await commit(store, channel["id"], tmp_path, 1000, seq=i) for i in range(3)]
    for clip, days in zip(clips, (10, 5, 0)):
        await age(store, clip.id, days)
    sweeper = RetentionSweeper(store)  # one sweeper for the whole test, as in `livecut up`
    assert await sweeper.sweep() == {}  # no limits yet
    async with gateway(store, redis, tmp_path) as client:
        assert (await client.put("/api/settings/retention", json={"max_age_days": 7})).status_code == 200
        assert list(await sweeper.sweep()) == [clips[0].id]
        assert (await client.put("/api/settings/retention", json={"max_bytes": 1100})).status_code == 200
        assert list(await sweeper.sweep()) == [clips[1].id]  # the newest that fit in 1100 bytes stay
        assert (await client.get("/api/settings/retention")).json()["usage"] == {"clips": 1, "bytes": 1100}
    assert await clip_ids(store) == {clips[2].id}
    assert not any(p.exists() for c in clips[:2] for p in files_of(c))


async def test_an_unreadable_stored_value_means_no_global_limits(store, tmp_path, caplog):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = await commit(store, channel["id"], tmp_path, 1000)
    await age(store, clip.id, 10)
    await store.pool.execute(  # a bound broken by hand: not "delete everything"
        "INSERT INTO workspace_settings (name, value) VALUES ('retention', '{\"max_age_days\": -1}')"
    )
    with caplog.at_level(logging.WARNING, logger="records.retention"):
        assert await store.retention_limits() == RetentionLimits()
        assert await RetentionSweeper(store).sweep() == {}
    assert "ignoring the stored retention limits" in caplog.text
    assert await clip_ids(store) == {clip.id}


async def test_livecut_up_flags_replace_the_stored_limits_only_when_given(store):
    assert await apply_start_limits(store, None, None) == RetentionLimits()  # nothing stored, nothing given
    await store.set_retention_limits(RetentionLimits(max_age_days=30, max_bytes=5000))  # set in the console
    assert await apply_start_limits(store, None, None) == RetentionLimits(max_age_days=30, max_bytes=5000)
    assert await store.retention_limits() == RetentionLimits(max_age_days=30, max_bytes=5000)
    # one flag: its kind replaced, the other kind as stored
    assert await apply_start_limits(store, 7.0, None) == RetentionLimits(max_age_days=7, max_bytes=5000)
    assert await store.retention_limits() == RetentionLimits(max_age_days=7, max_bytes=5000)
    assert await apply_start_limits(store, None, 0) == RetentionLimits(max_age_days=7, max_bytes=0)
    assert await store.retention_limits() == RetentionLimits(max_age_days=7, max_bytes=0)


def test_retention_flags_are_none_unless_given(monkeypatch):
    from supervisor.cli import parse_args

    monkeypatch.delenv("LIVECUT_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("LIVECUT_RETENTION_BYTES", raising=False)
    args = parse_args(["up"])
    assert (args.retention_days, args.retention_bytes) == (None, None)
    args = parse_args(["up", "--retention-days", "30", "--retention-bytes", "0"])
    assert (args.retention_days, args.retention_bytes) == (30.0, 0)
    monkeypatch.setenv("LIVECUT_RETENTION_BYTES", "2000000000")
    assert (parse_args(["up"]).retention_days, parse_args(["up"]).retention_bytes) == (None, 2 * 10**9)
    for bad in (["--retention-days", "-1"], ["--retention-days", "36501"], ["--retention-bytes", str(2**50 + 1)]):
        with pytest.raises(SystemExit):
            parse_args(["up", *bad])


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


async def test_a_paused_channels_actor_stops_keeping_its_ring_and_resuming_starts_it_again(store, pg_dsn, tmp_path):
    """Pause through the store, as the API does: the supervisor's next reconcile stops the
    channel's named actor without discarding its ring folder, and its status stays ``paused``
    (the stopping actor's last heartbeat does not overwrite it). After a resume the next
    reconcile starts the actor again. A real local Ray, real actors on the test's database."""
    import ray

    from supervisor.supervisor import NAMESPACE, STREAM_SLOT, Supervisor, SupervisorConfig, stream_actor_name

    ray.init(address="local", num_cpus=2, resources={STREAM_SLOT: 2}, namespace=NAMESPACE, include_dashboard=False)

    async def actor_names() -> list[str]:
        return await asyncio.to_thread(ray.util.list_named_actors)

    async def gone(name: str) -> bool:  # ray.kill returns before the name is released
        for _ in range(100):
            if name not in await actor_names():
                return True
            await asyncio.sleep(0.1)
        return False

    try:
        supervisor = Supervisor(SupervisorConfig(dsn=pg_dsn, data_dir=str(tmp_path)))
        supervisor.store = store
        channel = await store.create_channel(ChannelCreate(name="napping", source="rtmp"), {})
        name = stream_actor_name(channel["id"])
        assert (await supervisor.reconcile())["running"] == [channel["id"]]
        assert name in await actor_names()
        ring = tmp_path / "ring" / channel["id"]
        (ring / "00000001.ts").write_bytes(b"x" * 1000)  # after the actor's start swept stale segments

        await store.pause_channel(channel["id"])
        assert await supervisor.reconcile() == {"running": [], "stopped": [channel["id"]]}
        await asyncio.gather(*supervisor._stopping.values())
        assert await gone(name)
        assert (ring / "00000001.ts").exists()  # not discarded: the channel is only paused
        row = await store.get_channel(channel["id"])
        assert (row["status"], row["status_reason"]) == ("paused", "paused through the API")
        assert await supervisor.reconcile() == {"running": [], "stopped": []}  # paused: no actor
        assert name not in await actor_names()

        resumed = await store.resume_channel(channel["id"], limit=None)
        assert resumed["status"] == "waiting" and resumed["paused_at"] is None
        assert (await supervisor.reconcile())["running"] == [channel["id"]]
        assert name in await actor_names()
        health = await asyncio.wait_for(supervisor.actors[channel["id"]].health.remote(), 60)
        assert health["status"] == "waiting"  # a fresh actor, waiting for a publisher
        await supervisor.shutdown()
        assert await gone(name)
    finally:
        ray.shutdown()
