"""VOD jobs end to end on real parts: `livecut up` (Ray, Postgres, Redis, gateway), a Range-
capable HTTP server, an HLS VOD playlist, uploads with the real tuspy client, Socket.IO.

One batch of five recordings: a generated broadcast over HTTP, the same as an HLS VOD
playlist, the same uploaded over tus (interrupted half-way and resumed), a URL nobody answers
and an upload that is not media. The good ones must give one clip per planted moment (the
moments the live pipeline finds, ±1 s), the bad ones a clear error code, each alone.
Then: a shard's worker SIGKILLed mid-job, `livecut up` killed mid-job and restarted, and a
cancelled job.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import av
import psutil
import pytest

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber, LivecutProcess, free_port
from conftest import _admin, _with_database, stack_on_fresh_database
from range_server import RangeServer

pytestmark = pytest.mark.e2e

SHARD_SECONDS = 20.0  # 75 s → 4 shards, seams at 18.75, 37.5 and 56.25 s: next to the moments
NEAR = 3.0  # a clip's lead trigger is this close to its planted moment


VOD_ARGS = ["--allow-private-urls", "--vod-shard-seconds", str(SHARD_SECONDS), "--max-vod-jobs", "3"]


def _tus_upload(stack: LivecutProcess, path: Path, *, interrupt_at: float | None = None) -> str:
    """Upload with the real tuspy client; stop at ``interrupt_at`` of the file and resume with
    a new client from the server's offset. Returns the upload id."""
    from tusclient.client import TusClient

    headers = {"Authorization": f"Bearer {stack.api_key}"}
    size = path.stat().st_size
    chunk = max(64 * 1024, size // 10)
    uploader = TusClient(f"{stack.base_url}/api/uploads", headers=headers).uploader(file_path=str(path), chunk_size=chunk)
    if interrupt_at is not None:
        while uploader.offset < size * interrupt_at:
            uploader.upload_chunk()
        url = uploader.url
        del uploader  # the first client is gone; a new one resumes from the server's offset
        resumed = TusClient(f"{stack.base_url}/api/uploads", headers=headers).uploader(
            file_path=str(path), url=url, chunk_size=chunk
        )
        assert 0 < resumed.offset < size, resumed.offset  # HEAD: resumes mid-file, not from 0
        resumed.upload()
        return url.rstrip("/").rsplit("/", 1)[-1]
    uploader.upload()
    return uploader.url.rstrip("/").rsplit("/", 1)[-1]


def _wait_jobs(stack: LivecutProcess, ids: list[str], timeout: float = 300.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        jobs = {i: stack.api("GET", f"/api/vods/{i}").json() for i in ids}
        if all(j["status"] in ("done", "failed", "cancelled") for j in jobs.values()):
            return jobs
        time.sleep(1.0)
    raise TimeoutError(f"jobs not finished: {jobs}\n{stack.log_tail(60)}")


def _clips(stack: LivecutProcess, vod_id: str) -> list[dict]:
    return stack.api("GET", f"/api/clips?vod_id={vod_id}&limit=200").json()["items"]


def _lead_time(clip: dict) -> float:
    """The clip's moment time as fusion gives it: its strongest signal's (earliest on ties)."""
    best = max(clip["signals"].values())
    leads = [t for t in clip["triggers"] if abs(clip["signals"].get(t["name"], -1) - best) < 1e-6]
    return min(t["t"] for t in leads)


@pytest.fixture(scope="module")
def media(tmp_path_factory, ffmpeg, espeak):
    work = tmp_path_factory.mktemp("vod-media")
    truth = make_broadcast(work / "broadcast.mp4", duration=75.0)
    hls = work / "hls"
    hls.mkdir()
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(work / "broadcast.mp4"), "-c", "copy",
         "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(hls / "seg%03d.ts"), str(hls / "index.m3u8")],
        check=True,
    )
    (work / "notes.txt").write_text("meeting notes, not a video\n" * 2000)
    server = RangeServer(work)
    yield {"work": work, "truth": truth, "server": server}
    server.close()


@pytest.fixture(scope="module")
def batch(media, tmp_path_factory, pg_admin_dsn, redis_url):
    """Submit the batch of five once; the tests below examine what came out."""
    with stack_on_fresh_database(tmp_path_factory.mktemp("vod-stack") / "data", pg_admin_dsn, redis_url,
                                 extra_args=VOD_ARGS) as stack:
        server = media["server"]
        try:
            upload_id = _tus_upload(stack, media["work"] / "broadcast.mp4", interrupt_at=0.5)
            junk_id = _tus_upload(stack, media["work"] / "notes.txt")
            items = [
                {"url": server.url("broadcast.mp4"), "name": "http"},
                {"url": server.url("hls/index.m3u8"), "name": "hls"},
                {"upload_id": upload_id, "name": "upload"},
                {"url": f"http://127.0.0.1:{free_port()}/gone.mp4", "name": "unreachable"},
                {"upload_id": junk_id, "name": "not media"},
            ]
            response = stack.api("POST", "/api/vods", json={"items": items})
            assert response.status_code == 201, response.text
            jobs = response.json()["items"]
            assert [j["name"] for j in jobs] == [i["name"] for i in items]
            assert all(j["status"] == "queued" for j in jobs)
            subscriber = ClipSubscriber(stack.base_url, stack.api_key, vod_ids=[j["id"] for j in jobs])
            final = _wait_jobs(stack, [j["id"] for j in jobs])
            good = [j["id"] for j in jobs[:3]]
            moments = len(media["truth"].moments)
            subscriber.wait_until(lambda s: sum(c["vod_id"] in good for c in s.clips) >= 3 * moments, 30)

            def ended(s):  # the final state is relayed after the job is final in Postgres
                last = {e["id"]: e["status"] for e in s.vod_events}
                return all(last.get(j) == f["status"] for j, f in final.items())

            subscriber.wait_until(ended, 30)
            subscriber.close()
            clips = {j["id"]: _clips(stack, j["id"]) for j in jobs}
        except BaseException:
            print(stack.log_tail(200))
            raise
        yield {"stack": stack, "jobs": jobs, "final": final, "clips": clips, "subscriber": subscriber, **media}


def test_good_recordings_give_one_clip_per_planted_moment(batch):
    truth = batch["truth"]
    for job in batch["jobs"][:3]:
        final = batch["final"][job["id"]]
        assert final["status"] == "done", final
        assert final["progress"] == 1.0 and final["error"] is None
        assert abs(final["duration"] - truth.duration) < 1.0
        clips = sorted(batch["clips"][job["id"]], key=lambda c: c["stream_start"])
        assert final["clips"] == len(clips)
        leads = [_lead_time(c) for c in clips]
        planted = [m.t for m in truth.moments]
        assert len(clips) == len(planted), (job["name"], leads, planted)
        for moment, clip, lead in zip(planted, clips, leads):
            assert abs(lead - moment) < NEAR, (job["name"], lead, moment)
            assert clip["stream_start"] <= moment <= clip["stream_end"]
            assert clip["vod_id"] == job["id"] and clip["channel_id"] is None


def test_at_most_max_vod_jobs_run_at_once_and_the_rest_start_in_submission_order(batch):
    import datetime as dt

    final = [batch["final"][j["id"]] for j in batch["jobs"]]
    started = [dt.datetime.fromisoformat(f["started_at"].replace("Z", "+00:00")) for f in final]
    finished = [dt.datetime.fromisoformat(f["finished_at"].replace("Z", "+00:00")) for f in final]
    assert started == sorted(started)  # submission order
    # --max-vod-jobs 3: the fourth job waited until one of the first three had ended
    assert started[3] >= min(finished[:3])


def test_the_same_moments_as_the_live_pipeline(batch):
    from bench.live_replay import replay
    from detectors.speech import SpeechOptions, load_whisper_model

    live, _cpu = replay(batch["work"] / "broadcast.mp4", load_whisper_model(SpeechOptions()))
    live_times = sorted(e.t for e in live)
    for job in batch["jobs"][:3]:
        vod_times = sorted(_lead_time(c) for c in batch["clips"][job["id"]])
        assert len(vod_times) == len(live_times), (job["name"], vod_times, live_times)
        for v, t in zip(vod_times, live_times):
            assert abs(v - t) <= 1.0, (job["name"], vod_times, live_times)


def test_bad_items_fail_alone_with_clear_codes(batch):
    unreachable, junk = batch["jobs"][3], batch["jobs"][4]
    assert batch["final"][unreachable["id"]]["status"] == "failed"
    assert batch["final"][unreachable["id"]]["error"]["code"] == "unreachable"
    assert batch["final"][junk["id"]]["status"] == "failed"
    assert batch["final"][junk["id"]]["error"]["code"] == "not_media"
    assert batch["clips"][unreachable["id"]] == [] and batch["clips"][junk["id"]] == []


def test_clips_are_valid_mp4s_cut_by_stream_copy(batch):
    stack = batch["stack"]
    for job in batch["jobs"][:3]:
        assert batch["final"][job["id"]]["cut_mode"] in ("copy", "remux")
        for clip in batch["clips"][job["id"]]:
            response = stack.api("GET", clip["video_url"])
            assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
            path = stack.data_dir / f"check-{clip['id']}.mp4"
            path.write_bytes(response.content)
            with av.open(str(path)) as container:
                assert container.streams.video[0].codec_context.name == "h264"
                assert container.streams.audio[0].codec_context.name == "aac"
                duration = container.duration / av.time_base
            assert abs(duration - (clip["stream_end"] - clip["stream_start"])) < 0.6
            assert 10.0 <= duration <= 25.0
            thumb = stack.api("GET", clip["thumbnail_url"])
            assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


def test_http_shards_read_the_recording_by_range(batch):
    ranges = batch["server"].ranges("broadcast.mp4")
    starts = {int(r.split("=")[1].split("-")[0]) for r in ranges if r}
    assert len(starts) > 3, ranges  # each shard (and each clip cut) seeks: ranged reads past the start


def test_socketio_delivers_clip_and_vod_events(batch):
    subscriber = batch["subscriber"]
    for job in batch["jobs"]:
        clips = [c for c in subscriber.clips if c["vod_id"] == job["id"]]
        assert sorted(c["id"] for c in clips) == sorted(c["id"] for c in batch["clips"][job["id"]])
        events = [e for e in subscriber.vod_events if e["id"] == job["id"]]
        assert events and events[-1]["status"] == batch["final"][job["id"]]["status"]
    http_events = [e for e in subscriber.vod_events if e["id"] == batch["jobs"][0]["id"]]
    assert any(0 < e["progress"] < 1 for e in http_events)  # progress as shards finish


def test_a_malformed_item_refuses_the_whole_batch(batch):
    stack = batch["stack"]
    before = len(stack.api("GET", "/api/vods").json()["items"])
    response = stack.api("POST", "/api/vods", json={"items": [
        {"url": batch["server"].url("broadcast.mp4")}, {"url": "ftp://example.com/x.mp4"},
    ]})
    assert response.status_code == 422
    assert "items[1]" in response.json()["error"]["message"]
    for bad in ({"items": [{"upload_id": "0" * 32}]}, {"items": []}, {"items": [{"url": "x", "upload_id": "y"}]},
                {"items": [{"url": batch["server"].url("a.mp4"), "settings": {"fusion": {"nope": 1}}}]}):
        response = stack.api("POST", "/api/vods", json=bad)
        assert response.status_code == 422, (bad, response.text)
    assert len(stack.api("GET", "/api/vods").json()["items"]) == before  # nothing queued
    single = stack.api("POST", "/api/vods", json={"url": f"http://127.0.0.1:{free_port()}/x.mp4"})
    assert single.status_code == 201 and single.json()["status"] == "queued"  # one bare item: one job


# -- faults --------------------------------------------------------------------------------


@pytest.fixture
def long_recording(media, ffmpeg):
    """150 s: 8 shards, so a job is still running when a fault hits it."""
    path = media["work"] / "long.mp4"
    if not path.exists():
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-stream_loop", "1", "-i", str(media["work"] / "broadcast.mp4"),
             "-c", "copy", "-t", "150", str(path)],
            check=True,
        )
    return path


def _shard_workers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(part.startswith("ray::vod-shard") for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


async def _shards_done(dsn: str, vod_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM vod_shards WHERE vod_id = $1", vod_id)
    finally:
        await conn.close()


def _assert_each_moment_once(stack: LivecutProcess, vod_id: str, planted: list[float]) -> None:
    clips = _clips(stack, vod_id)
    leads = sorted(_lead_time(c) for c in clips)
    assert len(leads) == len(planted), (leads, planted)
    for lead, moment in zip(leads, sorted(planted)):
        assert abs(lead - moment) < NEAR, (leads, planted)


def _planted_long(truth) -> list[float]:
    return [m.t for m in truth.moments] + [m.t + truth.duration for m in truth.moments if m.t + truth.duration < 148]


def test_a_sigkilled_shard_worker_costs_only_its_shard(batch, long_recording):
    stack = batch["stack"]
    job = stack.api("POST", "/api/vods", json={"url": batch["server"].url("long.mp4"), "name": "killed worker"}).json()
    victim = _wait(lambda: _shard_workers(), 60, "no shard worker ever ran")[0]
    victim.send_signal(signal.SIGKILL)
    final = _wait_jobs(stack, [job["id"]])[job["id"]]
    assert final["status"] == "done", final
    _assert_each_moment_once(stack, job["id"], _planted_long(batch["truth"]))


def test_livecut_up_killed_mid_job_resumes_it_after_restart(media, long_recording, tmp_path, pg_admin_dsn, redis_url):
    import asyncio

    db = f"livecut_vod_{os.urandom(4).hex()}"
    _admin(pg_admin_dsn, f"CREATE DATABASE {db}")
    dsn = _with_database(pg_admin_dsn, db)
    stack = LivecutProcess(tmp_path / "data", database_url=dsn, redis_url=redis_url, extra_args=VOD_ARGS).start()
    try:
        job = stack.api("POST", "/api/vods", json={"url": media["server"].url("long.mp4"), "name": "restart"}).json()
        _wait(lambda: asyncio.run(_shards_done(dsn, job["id"])) >= 1, 120, "no shard finished")
        os.killpg(stack.process.pid, signal.SIGKILL)  # a crash: no graceful stop
        stack.process.wait(10)
        done_before = asyncio.run(_shards_done(dsn, job["id"]))
        again = LivecutProcess(tmp_path / "data", database_url=dsn, redis_url=redis_url, extra_args=VOD_ARGS).start()
        try:
            final = _wait_jobs(again, [job["id"]])[job["id"]]
            assert final["status"] == "done", final
            assert 1 <= done_before < 8  # it was mid-job, and the shards done before were kept
            _assert_each_moment_once(again, job["id"], _planted_long(media["truth"]))
        finally:
            assert again.stop() == 0
    finally:
        if stack.process.poll() is None:
            stack.stop()
        _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_cancel_stops_the_tasks(batch, long_recording):
    stack = batch["stack"]
    job = stack.api("POST", "/api/vods", json={"url": batch["server"].url("long.mp4"), "name": "cancelled"}).json()
    _wait(lambda: _shard_workers(), 60, "no shard worker ever ran")
    response = stack.api("DELETE", f"/api/vods/{job['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    _wait(lambda: not _shard_workers(), 30, f"shard tasks still running after cancel: {_shard_workers()}")
    time.sleep(3)
    after = stack.api("GET", f"/api/vods/{job['id']}").json()
    assert after["status"] == "cancelled" and after["finished_at"]
    assert stack.api("DELETE", "/api/vods/nope").status_code == 404
