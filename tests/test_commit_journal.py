"""The commit journal (durable clip commits while Postgres is away), the start-up sweep of a
crash's leftovers, and the bounded ASR queue: plain data structures over real files."""
from __future__ import annotations

import os
import time

import numpy as np

from records.wire import ClipRecord, MomentEvent
from stream_actor.clip_sweep import stale_parts, unjournaled_clip_files
from stream_actor.clipper import part_path
from stream_actor.commit_journal import JOURNAL_NAME, Add, CommitJournal
from stream_actor.shed_queue import SheddingQueue


def _entry(key: str, t: float = 10.0) -> Add:
    clip = ClipRecord(
        id="", channel_id="ch", stream_start=t - 10, stream_end=t + 5, score=1.5, signals={"loudness": 1.5},
        transcript="", video_path=f"/clips/{key}.mp4", thumbnail_path=f"/clips/{key}.jpg", duration=15.0,
        created_at="", commit_key=key,
    )
    return Add(key=key, event=MomentEvent(t=t, score=1.5, signals={"loudness": 1.5}), clip=clip)


def test_entries_survive_a_reopen_in_order_until_done(tmp_path):
    journal = CommitJournal(tmp_path)
    for i, key in enumerate(["a", "b", "c"]):
        journal.add(_entry(key, 10.0 * i))
    journal.add(_entry("b"))  # a second add of a pending key changes nothing
    journal.done("a")
    reopened = CommitJournal(tmp_path)  # a restarted actor
    assert [e.key for e in reopened.pending()] == ["b", "c"]
    assert reopened.pending()[0].clip.video_path == "/clips/b.mp4"
    reopened.done("b")
    reopened.done("c")
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b""  # emptied once nothing is pending
    assert CommitJournal(tmp_path).pending() == []


def test_a_torn_last_line_is_dropped_and_the_rest_kept(tmp_path):
    journal = CommitJournal(tmp_path)
    journal.add(_entry("a"))
    journal.add(_entry("b"))
    with open(tmp_path / JOURNAL_NAME, "ab") as f:  # a crash in the middle of an append
        f.write(b'{"op":"add","key":"c","eve')
    reopened = CommitJournal(tmp_path)
    assert [e.key for e in reopened.pending()] == ["a", "b"]
    reopened.add(_entry("d"))  # appends after a clean line end, not onto the torn one
    assert [e.key for e in CommitJournal(tmp_path).pending()] == ["a", "b", "d"]


def test_a_lost_moment_is_journaled_too(tmp_path):
    journal = CommitJournal(tmp_path)
    journal.add(Add(key="x", event=MomentEvent(t=1.0, score=1.0, signals={}), lost="segment evicted"))
    (entry,) = CommitJournal(tmp_path).pending()
    assert entry.clip is None and entry.lost == "segment evicted"


def test_the_sweep_takes_stale_part_files_and_unreferenced_clip_files_only(tmp_path):
    old = time.time() - 3600
    stale_part = part_path(tmp_path / "k1.mp4")
    fresh_part = part_path(tmp_path / "k2.mp4")
    journaled = tmp_path / "k3.mp4"
    unjournaled = tmp_path / "k4.mp4"
    young = tmp_path / "k5.jpg"
    for path in (stale_part, fresh_part, journaled, unjournaled, young):
        path.write_bytes(b"x")
    for path in (stale_part, journaled, unjournaled):
        os.utime(path, (old, old))
    (tmp_path / JOURNAL_NAME).write_bytes(b"")
    assert stale_parts(tmp_path) == [stale_part]
    assert unjournaled_clip_files(tmp_path, {"k3"}) == [unjournaled]


def test_the_asr_queue_stays_bounded_under_a_flood_and_sheds_the_oldest():
    q = SheddingQueue(max_seconds=10.0)
    chunk = np.zeros(16000, dtype=np.float32)  # 1 s
    for i in range(1000):  # nobody reads: ASR has stalled
        q.put((float(i), chunk))
    assert q.qsize() == 10
    assert q.queued_seconds == 10.0
    assert q.shed_seconds == 990.0
    assert [q.get()[0] for _ in range(10)] == [float(i) for i in range(990, 1000)]  # the freshest kept
    q.put(None)  # the end marker always gets through
    assert q.get() is None
