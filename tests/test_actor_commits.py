"""A stream actor's clip commits on real parts: a ring buffer fed with generated media, the
real clipper, the test's Postgres, and for an outage a DSN on which nothing listens (what an
actor sees while Postgres is down).

- clips cut while Postgres is down are journaled, survive the actor's process, and are
  committed once, whole and in cut order, by the next process; a replayed commit adds nothing;
- a commit that can never succeed goes to the event log and does not hold back later clips;
- a flood of audio for a stalled ASR stays bounded and shows in the actor's health.
"""
from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest
from test_clipper import feed, ffprobe, make_flv

from records.store import Store
from records.wire import ChannelCreate, MomentEvent, Word
from stream_actor.actor import ActorConfig, StreamActor
from stream_actor.clipper import part_path
from stream_actor.detection import DetectorPipeline

pytestmark = pytest.mark.usefixtures("ffmpeg")

POSTGRES_DOWN = "postgresql://postgres@127.0.0.1:9/livecut"  # nothing listens on port 9
MOMENTS = [MomentEvent(t=14.0, score=1.5, signals={"loudness": 1.5}, seq=1),
           MomentEvent(t=28.0, score=1.8, signals={"loudness": 1.8}, seq=2)]
CLIP_SECONDS = 15.0  # the default pre-roll (10 s) and post-roll (5 s)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_flv(tmp_path_factory.mktemp("media") / "src.flv", 40)


def _actor(channel: dict, data_dir, src, *, store) -> StreamActor:
    actor = StreamActor(channel, ActorConfig(dsn="", data_dir=str(data_dir)))
    actor.store = store
    actor.pipeline = DetectorPipeline(actor.settings, None)  # detectors without ASR
    return actor


def _buffered_and_ended(actor: StreamActor, src) -> None:
    feed(src, actor.ring, actor.clock)
    actor.status = "offline"  # the publish ended: every pending moment is cut now


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


async def _rows(store: Store, channel_id: str) -> list[dict]:
    return [dict(r) for r in await store.pool.fetch("SELECT * FROM clips WHERE channel_id = $1 ORDER BY id", channel_id)]


async def test_clips_cut_while_postgres_is_down_are_committed_once_by_the_next_process(store, tmp_path, src):
    channel = await store.create_channel(ChannelCreate(name="outage", source="rtmp"), {})
    data = tmp_path / "data"
    down = await Store.connect(POSTGRES_DOWN, min_size=0, command_timeout=2)
    first = _actor(channel, data, src, store=down)
    committing = asyncio.create_task(first._commit_loop())
    try:
        _buffered_and_ended(first, src)
        first._add_events(MOMENTS)
        await asyncio.wait_for(first._cut_ready(), 60)  # cutting never waits for Postgres
        assert not first.pending
        journaled = first.journal.pending()
        assert [e.event.seq for e in journaled] == [1, 2]
        for entry in journaled:
            assert os.path.getsize(entry.clip.video_path) > 0 and os.path.getsize(entry.clip.thumbnail_path) > 0
        await asyncio.sleep(1.5)  # the commit loop keeps retrying...
        assert not committing.done() and len(first.journal) == 2  # ...and keeps both
        assert first._health().commits_pending == 2
    finally:  # the process dies here: no stop, nothing flushed
        committing.cancel()
        first.source.close()
        await down.close()
    assert await _rows(store, channel["id"]) == []

    clip_dir = first.clip_dir
    leftover = part_path(clip_dir / "interrupted.mp4")  # a cut the crash interrupted
    leftover.write_bytes(b"half a clip")
    old = time.time() - 3600
    os.utime(leftover, (old, old))

    second = _actor(channel, data, src, store=store)  # the actor's next process, Postgres back
    await second._recover()
    assert not leftover.exists()
    assert {p.name for p in clip_dir.iterdir()} >= {f"{e.key}.mp4" for e in journaled}  # journaled: kept
    committing = asyncio.create_task(second._commit_loop())
    try:
        await _until(lambda: len(second.journal) == 0, 30, "the journal to be committed")
        rows = await _rows(store, channel["id"])
        # a crash between a commit and its journal entry's removal: the replay adds nothing
        await asyncio.to_thread(second.journal.add, journaled[0])
        second._journal_changed.set()
        await _until(lambda: len(second.journal) == 0, 30, "the replay")
    finally:
        committing.cancel()
        second.source.close()
    assert await _rows(store, channel["id"]) == rows
    assert [r["commit_key"] for r in rows] == [e.key for e in journaled]  # id order is cut order
    for row, moment in zip(rows, MOMENTS):
        assert row["stream_start"] <= moment.t <= row["stream_end"]
        assert row["duration"] >= CLIP_SECONDS - 1.0  # whole: not shortened by the outage
        probe = ffprobe(row["video_path"])  # playable, and as long as the row says
        assert float(probe["format"]["duration"]) == pytest.approx(row["duration"], abs=0.25)
        assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}
    events = await store.events(channel["id"])
    assert sorted((e["kind"], e["clip_id"]) for e in events) == sorted(("moment", r["id"]) for r in rows)
    assert await store.pool.fetchval("SELECT count(*) FROM outbox WHERE channel_id = $1", channel["id"]) == 2


async def test_a_commit_that_can_never_succeed_is_logged_and_does_not_block_later_clips(store, tmp_path, src):
    channel = await store.create_channel(ChannelCreate(name="refused", source="rtmp"), {})
    actor = _actor(channel, tmp_path / "data", src, store=store)
    committing = asyncio.create_task(actor._commit_loop())
    try:
        _buffered_and_ended(actor, src)
        # the first moment's transcript holds a NUL, which Postgres text refuses: bad data
        actor.pipeline.words.append(Word(start=13.0, end=13.5, text="bad\x00word"))
        actor._add_events(MOMENTS)
        await asyncio.wait_for(actor._cut_ready(), 60)
        await _until(lambda: len(actor.journal) == 0, 30, "the journal to settle")
    finally:
        committing.cancel()
        actor.source.close()
    rows = await _rows(store, channel["id"])
    assert len(rows) == 1 and rows[0]["stream_start"] <= MOMENTS[1].t <= rows[0]["stream_end"]
    events = {e["stream_time"]: e for e in await store.events(channel["id"])}
    assert events[MOMENTS[0].t]["kind"] == "clip_lost"
    assert "refused" in events[MOMENTS[0].t]["detail"]
    assert (events[MOMENTS[1].t]["kind"], events[MOMENTS[1].t]["clip_id"]) == ("moment", rows[0]["id"])


async def test_a_flood_of_audio_for_a_stalled_asr_stays_bounded(tmp_path):
    channel = {"id": "flood", "source": "rtmp", "settings": {}}
    actor = StreamActor(channel, ActorConfig(dsn="", data_dir=str(tmp_path)))
    try:
        chunk = np.zeros(1600, dtype=np.float32)  # 0.1 s
        for i in range(20000):  # 2000 s of audio and nobody transcribing
            actor.speech_q.put((i / 10, chunk))
        assert actor.speech_q.queued_seconds <= 60.0
        assert actor.speech_q.qsize() <= 600
        assert actor._health().asr_shed_seconds == pytest.approx(2000.0 - actor.speech_q.queued_seconds)
    finally:
        actor.source.close()
