"""The store against a real Postgres: migrations, the clip outbox and resume order."""
import msgspec

from records.outbox import OutboxRelay
from records.wire import ChannelCreate, ClipRecord, MomentEvent, Signal, clip_stream_key, new_commit_key


def _clip(channel_id: str, start: float) -> ClipRecord:
    return ClipRecord(
        id=new_commit_key(), channel_id=channel_id, stream_start=start, stream_end=start + 15, score=1.5,
        signals={"loudness": 1.5}, transcript="hello", video_path="/v.mp4", thumbnail_path="/t.jpg",
        duration=15.0, created_at="",
    )


async def test_migrate_is_idempotent(store):
    assert await store.migrate() == []


async def test_clip_and_notification_commit_together(store):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    stored = await store.commit_clip(_clip(channel["id"], 5.0), MomentEvent(t=15.0, score=1.5, signals={"loudness": 1.5}))
    assert stored.created_at.endswith("Z")
    pending = await store.pending_notifications()
    assert [p["payload"]["id"] for p in pending] == [stored.id]
    assert pending[0]["payload"]["video_url"] == f"/api/clips/{stored.id}/video"
    events = await store.events(channel["id"])
    assert [(e["kind"], e["clip_id"]) for e in events] == [("moment", stored.id)]


async def test_a_clip_keeps_the_signals_that_fired_with_their_detail(store):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    fired = [Signal("loudness", 14.0, 1.5, "-10 dBFS vs baseline -24"), Signal("keyword", 15.0, 1.0, "let's go")]
    clip = msgspec.structs.replace(_clip(channel["id"], 5.0), triggers=fired)
    stored = await store.commit_clip(clip, MomentEvent(t=14.0, score=2.5, signals={"loudness": 1.5, "keyword": 1.0}))
    assert (await store.get_clip(stored.id)).triggers == fired
    (pending,) = await store.pending_notifications()
    assert [(s["name"], s["detail"]) for s in pending["payload"]["triggers"]] == [
        ("loudness", "-10 dBFS vs baseline -24"), ("keyword", "let's go")]


async def test_commit_is_idempotent_per_clip_id(store):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    clip = _clip(channel["id"], 0.0)
    event = MomentEvent(t=10.0, score=1.5, signals={})
    first = await store.commit_clip(clip, event)
    again = await store.commit_clip(clip, event)
    assert again.id == first.id
    assert len(await store.pending_notifications()) == 1


async def test_clips_after_returns_the_missed_ones_in_order(store):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    ids = [(await store.commit_clip(_clip(channel["id"], i * 20.0), MomentEvent(t=i * 20.0 + 10, score=1, signals={}))).id for i in range(4)]
    assert [c.id for c in await store.clips_after(channel["id"], ids[1])] == ids[2:]
    page = await store.list_clips(channel_id=channel["id"], limit=2)
    assert [c.id for c in page] == ids[:1:-1]
    assert [c.id for c in await store.list_clips(channel_id=channel["id"], before=page[-1].id, limit=2)] == ids[1::-1]


async def test_outbox_relay_delivers_in_order_and_marks_rows(store, pg_dsn, redis_url):
    import redis.asyncio as aioredis

    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    ids = [(await store.commit_clip(_clip(channel["id"], i * 20.0), MomentEvent(t=1, score=1, signals={}))).id for i in range(3)]
    redis = aioredis.from_url(redis_url)
    try:
        relay = OutboxRelay(store, redis, pg_dsn)
        assert await relay.drain() == 3
        assert await relay.drain() == 0
        entries = await redis.xrange(clip_stream_key(channel["id"]))
        assert [msgspec.json.decode(fields[b"data"])["id"] for _, fields in entries] == ids
        assert await store.pending_notifications() == []
    finally:
        await redis.delete(clip_stream_key(channel["id"]))
        await redis.aclose()


async def test_a_moment_pending_when_its_actor_died_is_reported_lost_not_dropped(store):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    cut = MomentEvent(t=20.0, score=1.5, signals={"loudness": 1.5})
    uncut = MomentEvent(t=60.0, score=1.2, signals={"keyword": 1.2})
    key = new_commit_key()  # the clip's commit key settles its pending row
    await store.record_pending_moment(channel["id"], cut, key)
    await store.record_pending_moment(channel["id"], uncut)
    clip = await store.commit_clip(msgspec.structs.replace(_clip(channel["id"], 10.0), commit_key=key), cut)
    assert await store.lose_pending_moments(channel["id"], "actor restarted") == 1
    events = {e["stream_time"]: e for e in await store.events(channel["id"])}
    assert (events[20.0]["kind"], events[20.0]["clip_id"]) == ("moment", clip.id)
    assert (events[60.0]["kind"], events[60.0]["detail"]) == ("clip_lost", "actor restarted")
    assert len(events) == 2  # the commit settled the pending row rather than adding one
