"""Clip exports: the crop path and caption images (pure), and one real export end to end:
a generated talking-head clip (a real face, scikit-image's astronaut, moving left to right)
is exported to 9:16 through the API, rendered by a Ray task, announced over Socket.IO through
the outbox, downloaded by its signed URL, and checked with independent tools: template
matching for the face, easyocr for the burned captions, ffmpeg's ebur128 for loudness.
"""
from __future__ import annotations

import asyncio
import difflib
import itertools
import math
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import asyncpg
import av
import cv2
import httpx
import msgspec
import numpy as np
import pytest
import ray
import redis.asyncio as aioredis

from bench.talking_head import face_template, make_talking_head
from conftest import _admin, _with_database
from gateway.app import create_app
from records.captions import cues
from records.export_store import MAX_ATTEMPTS, ExportStore
from records.key_store import KeyStore
from records.outbox import OutboxRelay
from records.settings import Settings
from records.store import Store
from records.wire import ChannelCreate, ClipRecord, ExportOptions, MomentEvent, Word, clip_stream_key, new_commit_key
from test_feed import serving
from vod.caption_images import CaptionStyle, active_word, render_cue
from vod.export import TARGET_LUFS, FrameProgress, RenderResult, output_size, rendering
from vod.export_jobs import PROGRESS_EVERY, ExportScheduler, ExportSchedulerOptions, ProgressGate
from vod.reframe import ReframeOptions, crop_path

KEY = "export-key-5d1e"
AUTH = {"Authorization": f"Bearer {KEY}"}
FPS = 25
SECONDS = 6.0
FACE_HEIGHT = 0.9  # of the frame: the photo; the face is about a third of it
WORDS = [  # what the clip "says", timed from its first frame
    Word(0.3, 0.7, "Welcome"), Word(0.8, 1.2, "back,"), Word(1.3, 1.8, "everyone."),
    Word(2.4, 2.8, "Today"), Word(2.9, 3.2, "we"), Word(3.3, 3.8, "export"), Word(3.9, 4.3, "clips."),
    Word(4.7, 5.1, "Thanks"), Word(5.2, 5.4, "for"), Word(5.5, 5.9, "watching."),
]
EXPORT = {"aspect": "9:16", "reframe": "speaker", "captions": "karaoke", "max_height": 640}


# -- the crop path (pure) --------------------------------------------------------------------

W, CROP = 1280.0, 405.0  # a 720p picture, its 9:16 crop


def face_at(x: float, size: float = 120.0) -> np.ndarray:
    return np.array([[x - size / 2, 200.0, size, size]])


def sampled(times, xs) -> list[tuple[float, np.ndarray]]:
    return [(t, face_at(x) if x is not None else np.zeros((0, 4))) for t, x in zip(times, xs)]


FRAMES = np.arange(0, 10, 1 / 30)
SAMPLES = np.arange(0, 10, 0.4)


def test_the_crop_follows_a_walking_face_and_keeps_it_in_the_middle_third():
    walk = lambda t: 200 + 880 * t / 10  # noqa: E731  (88 px/s, left to right)
    path = crop_path(FRAMES, sampled(SAMPLES, [walk(t) for t in SAMPLES]), W, CROP)
    assert not path.wide.any()
    offset = (walk(FRAMES) - (path.x + CROP / 2)) / CROP  # the face from the crop's centre, in crop widths
    assert np.abs(offset).max() < 1 / 6, np.abs(offset).max()
    assert path.x[-1] - path.x[0] > 700  # it did pan


def test_the_pan_speed_is_bounded_and_the_crop_stays_in_the_picture():
    o = ReframeOptions()
    jump = sampled(SAMPLES, [200 if t < 3 else 1100 for t in SAMPLES])  # the speaker changes seats
    path = crop_path(FRAMES, jump, W, CROP, o)
    speed = np.abs(np.diff(path.x)) * 30
    assert speed.max() <= o.max_speed * CROP + 1e-6
    assert speed.max() > 0.5 * o.max_speed * CROP  # it moved fast, just not faster
    assert path.x.min() >= 0 and path.x.max() <= W - CROP
    accel = np.abs(np.diff(speed)) * 30
    assert accel.max() <= o.max_accel * CROP + 1e-3  # no jerk: eases in and out


def test_detection_jitter_inside_the_dead_zone_leaves_the_crop_still():
    rng = np.random.default_rng(1)
    o = ReframeOptions()
    jitter = 640 + rng.uniform(-0.5, 0.5, len(SAMPLES)) * o.dead_zone * CROP
    path = crop_path(FRAMES, sampled(SAMPLES, jitter), W, CROP, o)
    assert np.ptp(path.x) == 0.0


def test_a_short_dropout_holds_the_crop_and_a_long_one_goes_wide():
    o = ReframeOptions(hold=1.5)
    short = [None if 4.0 <= t < 5.0 else 900 for t in SAMPLES]
    path = crop_path(FRAMES, sampled(SAMPLES, short), W, CROP, o)
    assert not path.wide.any()
    assert np.ptp(path.x) == 0.0  # held where it was
    long = [None if t >= 4.0 else 900 for t in SAMPLES]
    path = crop_path(FRAMES, sampled(SAMPLES, long), W, CROP, o)
    assert not path.wide[FRAMES < 5.0].any() and path.wide[FRAMES > 6.0].all()


def test_two_people_go_wide_but_a_one_sample_blip_does_not():
    two = [(t, np.vstack([face_at(300), face_at(1000)])) for t in SAMPLES]
    assert crop_path(FRAMES, two, W, CROP).wide.all()
    blip = sampled(SAMPLES, [640] * len(SAMPLES))
    blip[10] = (blip[10][0], np.vstack([face_at(640), face_at(1000)]))
    assert not crop_path(FRAMES, blip, W, CROP).wide.any()
    # a small face beside the speaker (a poster, a false detection) is not a second person
    small = [(t, np.vstack([face_at(640), face_at(1000, size=40)])) for t in SAMPLES]
    assert not crop_path(FRAMES, small, W, CROP).wide.any()


def test_nobody_at_all_is_letterboxed():
    assert crop_path(FRAMES, sampled(SAMPLES, [None] * len(SAMPLES)), W, CROP).wide.all()


def test_output_size_never_exceeds_max_height_or_upscales_a_wide_picture():
    assert output_size(1920, 1080, "9:16", 1080) == (608, 1080)
    assert output_size(1920, 1080, "9:16", 1920) == (1080, 1920)
    assert output_size(640, 360, "16:9", 1080) == (640, 360)
    assert output_size(1280, 720, "1:1", 480) == (480, 480)


# -- progress (pure) ---------------------------------------------------------------------

def test_frame_progress_tells_each_percent_once_and_stays_below_one_until_the_end():
    progress = FrameProgress(1000)
    told = [f for f in (progress.advance() for _ in range(1000)) if f is not None]
    assert told == [n / 100 for n in range(1, 100)]
    few = FrameProgress(30)  # fewer frames than points: one value a frame
    told = [f for f in (few.advance() for _ in range(30)) if f is not None]
    assert len(told) == 30 and told[0] == 0.03 and told[-1] == 0.99 and told == sorted(set(told))
    more = FrameProgress(10)  # a decoder that gives more frames than the packets promised
    assert max(f for f in (more.advance() for _ in range(15)) if f is not None) < 1.0


def test_the_progress_gate_stores_the_first_value_then_at_most_one_a_second_that_moved():
    gate = ProgressGate()
    assert not gate.admit(0.005, 0.0)  # not a percentage point yet
    assert gate.admit(0.01, 0.0)  # the first: the row shows it started
    assert not gate.admit(0.2, PROGRESS_EVERY / 2)  # too soon
    assert not gate.admit(0.015, PROGRESS_EVERY * 2)  # moved too little
    assert gate.admit(0.3, PROGRESS_EVERY * 2)
    assert not gate.admit(0.3, PROGRESS_EVERY * 10)  # did not move


# -- caption images (pure) ---------------------------------------------------------------

def test_karaoke_draws_the_spoken_word_in_the_highlight_colour():
    from PIL import ImageFont

    style = CaptionStyle()
    cue = cues(WORDS[:3])[0]
    font = ImageFont.load_default(size=40)
    assert active_word(cue, 0.1) is None and active_word(cue, 0.9) == 1 and active_word(cue, 1.25) == 1

    def highlighted_columns(image: np.ndarray) -> np.ndarray:
        rgb = image[:, :, :3].astype(int)
        mask = (np.abs(rgb - style.highlight).sum(axis=2) < 60) & (image[:, :, 3] > 200)
        return np.flatnonzero(mask.any(axis=0))

    plain = render_cue(cue, font, style)
    assert len(highlighted_columns(plain)) == 0
    first, second = render_cue(cue, font, style, highlight=0), render_cue(cue, font, style, highlight=1)
    a, b = highlighted_columns(first), highlighted_columns(second)
    assert len(a) and len(b) and a.max() < b.min()  # "back," is right of "Welcome"
    assert plain.shape == first.shape  # the layout does not move as the highlight does


# -- the render's progress ------------------------------------------------------------------

def test_the_render_tells_its_progress_rising_to_one_with_the_file_whole(clip_file, tmp_path):
    dest = tmp_path / "out.mp4"
    options = ExportOptions(aspect="9:16", reframe="speaker", captions="none", max_height=240)
    steps = rendering(str(clip_file[0]), str(dest), options, [])
    told = []
    while True:
        try:
            told.append(next(steps))
        except StopIteration as end:
            result = end.value
            break
        if told[-1] == 1.0:
            assert dest.exists()  # 1 only once the file is whole
        else:
            assert not dest.exists()
    assert isinstance(result, RenderResult) and abs(result.frames - FPS * SECONDS) <= 1
    assert told[-1] == 1.0 and all(0.0 < f < 1.0 for f in told[:-1])
    assert all(b > a for a, b in zip(told, told[1:])), told  # rising
    # both frame passes (faces, then encoding) count: about one value per percent
    assert len(told) >= 90 and any(0.4 < f < 0.6 for f in told), told


# -- one export, end to end --------------------------------------------------------------

class Exported(msgspec.Struct):
    created: tuple[int, dict]
    events: list[dict]  # Socket.IO `export` events, as received
    final: dict
    listed: dict
    video: Path  # the downloaded export
    unsigned_status: int
    outbox: list[dict]
    stream_kinds: list[str]
    bad_bodies: list[tuple[int, dict]]
    unknown_clip: tuple[int, dict]
    read_key_post: int
    broken: dict  # an export of a clip whose file is not media
    documented: dict  # the OpenAPI document's schema of GET …/exports/{export_id}


def make_clip(path: Path) -> np.ndarray:
    return make_talking_head(path, width=640, height=360, seconds=SECONDS, fps=FPS, face_height=FACE_HEIGHT)


async def _flow(dsn: str, redis_url: str, data_dir: Path, clip_path: Path) -> Exported:
    import socketio

    store = await Store.connect(dsn)
    await store.migrate()
    redis = aioredis.from_url(redis_url)
    channel = await store.create_channel(ChannelCreate(name="talk", source="rtmp"), {})

    async def commit(video: Path, words: list[Word]) -> ClipRecord:
        clip = ClipRecord(
            id=new_commit_key(), channel_id=channel["id"], stream_start=10.0, stream_end=10.0 + SECONDS, score=0.9,
            signals={"loudness": 1.0}, transcript=" ".join(w.text for w in words), video_path=str(video),
            thumbnail_path=str(video.with_suffix(".jpg")), duration=SECONDS, created_at="", words=words,
        )
        return await store.commit_clip(clip, MomentEvent(t=12.0, score=0.9, signals=clip.signals))

    clip = await commit(clip_path, WORDS)
    broken_path = data_dir / "broken.mp4"
    broken_path.write_bytes(b"not a video at all" * 100)
    broken_clip = await commit(broken_path, [])
    read_key = (await KeyStore(store.pool).create("read")).key

    scheduler = ExportScheduler(store, ExportSchedulerOptions(data_dir=str(data_dir), max_running=1, cpus=1))
    settings = Settings(data_dir=str(data_dir), api_key=KEY, rate_limit=100_000, media_rate_limit=100_000)
    app = create_app(settings, store, redis, _NoChannels(), exports=scheduler)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.run(stop)), asyncio.create_task(OutboxRelay(store, redis, dsn).run(stop))]
    events: list[dict] = []
    done = asyncio.Event()
    sio = socketio.AsyncClient(reconnection=False)

    @sio.on("export")
    async def on_export(data):
        events.append(data)
        if data["status"] in ("done", "failed") and data["clip_id"] == clip.id:
            done.set()

    try:
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            await sio.connect(url, auth={"token": KEY}, transports=["websocket"])
            assert (await sio.call("subscribe", {"channel_id": channel["id"]}))["ok"]
            bad_bodies = []
            for body in (b'{"aspect": "4:3"}', b'{"max_height": 100000}', b'{"colour": "red"}', b"{nope"):
                r = await http.post(f"/api/clips/{clip.id}/exports", content=body, headers=AUTH)
                bad_bodies.append((r.status_code, r.json()))
            r = await http.post("/api/clips/nosuchclip/exports", json=EXPORT, headers=AUTH)
            unknown = (r.status_code, r.json())
            read_post = (await http.post(f"/api/clips/{clip.id}/exports", json=EXPORT,
                                         headers={"Authorization": f"Bearer {read_key}"})).status_code

            r = await http.post(f"/api/clips/{clip.id}/exports", json=EXPORT, headers=AUTH)
            created = (r.status_code, r.json())
            broken = (await http.post(f"/api/clips/{broken_clip.id}/exports", json={}, headers=AUTH)).json()
            await asyncio.wait_for(done.wait(), 300)  # a guard against a hang, not a timing
            final = (await http.get(f"/api/clips/{clip.id}/exports/{created[1]['id']}", headers=AUTH)).json()
            listed = (await http.get(f"/api/clips/{clip.id}/exports", headers=AUTH)).json()
            video = data_dir / "downloaded.mp4"
            if final["download_url"]:
                video.write_bytes((await http.get(final["download_url"])).content)  # signed: no key
            unsigned = (await http.get(f"/api/clips/{clip.id}/exports/{created[1]['id']}/video")).status_code
            spec = (await http.get("/openapi.json")).json()
            documented = spec["paths"]["/api/clips/{clip_id}/exports/{export_id}"]["get"]["responses"]["200"]
            for _ in range(600):
                broken_row = (await http.get(f"/api/clips/{broken_clip.id}/exports/{broken['id']}", headers=AUTH)).json()
                if broken_row["status"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.5)
            await sio.disconnect()
        outbox = [dict(r) for r in await store.pool.fetch(
            "SELECT stream, kind, payload FROM outbox WHERE kind = 'export' ORDER BY id")]
        entries = await redis.xrange(clip_stream_key(channel["id"]))
        kinds = [fields[b"kind"].decode() for _, fields in entries]
        return Exported(created, events, final, listed, video, unsigned, outbox, kinds, bad_bodies, unknown,
                        read_post, broken_row, documented["content"]["application/json"]["schema"])
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()
        await store.close()


class _NoChannels:
    async def channels_changed(self) -> None:
        pass

    async def stream_limit(self):
        return None


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("clip") / "talking_head.mp4"
    return path, make_clip(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, pg_admin_dsn, redis_url, clip_file) -> Exported:
    name = f"livecut_exports_{secrets.token_hex(4)}"
    _admin(pg_admin_dsn, f"CREATE DATABASE {name}")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield asyncio.run(_flow(_with_database(pg_admin_dsn, name), redis_url,
                                tmp_path_factory.mktemp("exports"), clip_file[0]))
    finally:
        ray.shutdown()
        _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_post_answers_202_with_a_queued_export(exported):
    status, body = exported.created
    assert status == 202
    assert body["status"] == "queued" and body["download_url"] is None and body["error"] is None
    assert body["options"] == EXPORT and body["clip_id"] and body["id"]


def test_bad_bodies_unknown_clips_and_read_keys_are_refused(exported):
    for (status, body), field in zip(exported.bad_bodies, ("$.aspect", "$.max_height", "colour", "invalid JSON")):
        assert status == 422 and body["error"]["code"] == "invalid_request", body
        assert field in body["error"]["message"], body
    assert exported.unknown_clip[0] == 404 and exported.unknown_clip[1]["error"]["code"] == "not_found"
    assert exported.read_key_post == 403  # creating needs the ingest scope


def test_the_export_finishes_and_its_signed_url_downloads_a_faststart_mp4(exported):
    final = exported.final
    assert final["status"] == "done", final
    assert "sig=" in final["download_url"] and final["width"] == 360 and final["height"] == 640
    assert [e["id"] for e in exported.listed["items"]] == [final["id"]]
    data = exported.video.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # fast start: the index before the media
    with av.open(str(exported.video)) as f:
        assert f.streams.video[0].codec_context.name == "h264" and f.streams.audio[0].codec_context.name == "aac"
        assert (f.streams.video[0].width, f.streams.video[0].height) == (360, 640)
    assert exported.unsigned_status == 401  # without a signature or a key: the same rule as clip media


def test_the_export_event_goes_through_the_outbox_to_socketio(exported):
    statuses = [r["payload"]["status"] for r in exported.outbox if r["payload"]["id"] == exported.final["id"]]
    assert [status for status, _ in itertools.groupby(statuses)] == ["queued", "running", "done"]
    assert {r["stream"] for r in exported.outbox} == {clip_stream_key(exported.final["channel_id"])}
    assert "export" in exported.stream_kinds and "clip" in exported.stream_kinds  # the channel's own stream
    mine = [e for e in exported.events if e["id"] == exported.final["id"]]
    assert mine[-1]["status"] == "done" and "sig=" in mine[-1]["download_url"]


def test_the_export_progress_moves_while_it_runs_and_ends_at_one(exported):
    assert exported.created[1]["progress"] == 0.0
    assert exported.documented["properties"]["progress"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}
    assert "progress" in exported.documented["required"]
    assert exported.final["progress"] == 1.0 and exported.listed["items"][0]["progress"] == 1.0
    announced = [r["payload"] for r in exported.outbox if r["payload"]["id"] == exported.final["id"]]
    running = [a["progress"] for a in announced if a["status"] == "running"]
    assert any(0.0 < p < 1.0 for p in running), announced  # announced while it rendered
    progress = [a["progress"] for a in announced]
    assert progress == sorted(progress) and progress[-1] == 1.0
    tenths = [math.ceil(p * 10 - 1e-4) for p in running if p > 0]
    assert len(tenths) == len(set(tenths)), running  # at most one announcement per tenth
    received = [e["progress"] for e in exported.events if e["id"] == exported.final["id"]]
    assert any(0.0 < p < 1.0 for p in received)  # Socket.IO clients see it move


def test_a_clip_that_is_not_media_fails_its_export_with_the_reason(exported):
    assert exported.broken["status"] == "failed" and exported.broken["error"], exported.broken
    assert exported.broken["download_url"] is None and exported.broken["progress"] == 0.0


def test_the_face_stays_in_the_middle_third_of_every_sampled_frame(exported, clip_file):
    _, centres = clip_file
    assert centres[-1] - centres[0] > 300  # the face crossed the source picture
    with av.open(str(exported.video)) as f:
        frames = [fr.to_ndarray(format="gray") for i, fr in enumerate(f.decode(video=0)) if i % 5 == 0]
    scale = frames[0].shape[0] / 360  # the crop is the source's full height
    template = cv2.resize(face_template(int(FACE_HEIGHT * 360)), None, fx=scale, fy=scale)
    found = []
    for gray in frames:
        scores = cv2.matchTemplate(gray, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, _y) = cv2.minMaxLoc(scores)
        assert best > 0.6, best  # the face is there
        found.append((x + template.shape[1] / 2) / gray.shape[1])
    assert len(found) >= 25
    assert all(1 / 3 < f < 2 / 3 for f in found), [round(f, 3) for f in found]


def test_burned_captions_are_read_back_by_ocr(exported):
    from detectors.hud_models import load_ocr_reader

    reader = load_ocr_reader(threads=1)
    with av.open(str(exported.video)) as f:
        stream = f.streams.video[0]
        frames = {round(float(fr.time), 2): fr.to_ndarray(format="rgb24") for fr in f.decode(stream)}
    read = []
    for cue in cues(WORDS):
        t = min(frames, key=lambda ft: abs(ft - (cue.start + cue.end) / 2))
        frame = frames[t]
        band = frame[int(frame.shape[0] * 0.6):int(frame.shape[0] * 0.92)]
        read.append(" ".join(text for text, _ in reader(cv2.cvtColor(band, cv2.COLOR_RGB2BGR))))
    seen = re.findall(r"[a-z]+", " ".join(read).lower())
    spoken = [re.sub(r"[^a-z]", "", w.text.lower()) for w in WORDS if len(w.text) > 3]
    missing = [w for w in spoken if not difflib.get_close_matches(w, seen, n=1, cutoff=0.75)]
    assert not missing, (missing, read)


def test_duration_matches_the_clip_and_loudness_is_normalised(exported, clip_file, ffmpeg):
    def duration(path: Path) -> float:
        with av.open(str(path)) as f:
            s = f.streams.video[0]
            return float(s.duration * s.time_base)

    def integrated(path: Path) -> float:
        out = subprocess.run([ffmpeg, "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
                             capture_output=True, text=True, check=True).stderr
        return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", out)[-1])

    source = clip_file[0]
    assert abs(duration(exported.video) - duration(source)) <= 2 / FPS
    assert abs(integrated(source) - TARGET_LUFS) > 5  # the clip was far off the target...
    assert abs(integrated(exported.video) - TARGET_LUFS) <= 1.0  # ...and the export is on it


# -- restarts ------------------------------------------------------------------------------

async def _stored_clip(store, tmp_path) -> ClipRecord:
    """A channel's clip row (its file need not exist: the store does not read it)."""
    channel = await store.create_channel(ChannelCreate(name="c", source="rtmp"), {})
    return await store.commit_clip(ClipRecord(
        id=new_commit_key(), channel_id=channel["id"], stream_start=0, stream_end=5, score=0.5, signals={},
        transcript="", video_path=str(tmp_path / "v.mp4"), thumbnail_path="", duration=5, created_at="",
    ), MomentEvent(t=1, score=0.5, signals={}))


async def test_an_export_left_running_is_queued_again_then_failed_after_its_attempts(store, tmp_path):
    clip = await _stored_clip(store, tmp_path)
    exports = ExportStore(store.pool)
    row = await exports.create(clip.id, ExportOptions())
    for attempt in range(1, MAX_ATTEMPTS + 1):
        started = await exports.start(row["id"])  # a livecut up that dies while it renders
        assert started["status"] == "running" and started["attempts"] == attempt
        assert await exports.recover(keep=[row["id"]]) == (0, 0)  # one that runs it keeps it
        assert await exports.recover() == ((1, 0) if attempt < MAX_ATTEMPTS else (0, 1))  # the next start
    final = await exports.get(clip.id, row["id"])
    assert final["status"] == "failed" and "interrupted" in final["error"]
    assert await exports.finish(row["id"], path="x", width=1, height=1, duration=1, cpu=1) is None  # final stays final


async def test_progress_is_stored_only_while_running_and_announced_at_each_new_tenth(store, tmp_path):
    clip = await _stored_clip(store, tmp_path)
    exports = ExportStore(store.pool)

    async def announced(export_id: str) -> list[tuple[str, float]]:
        rows = await store.pool.fetch(
            "SELECT payload FROM outbox WHERE kind = 'export' AND payload->>'id' = $1 ORDER BY id", export_id)
        return [(r["payload"]["status"], r["payload"]["progress"]) for r in rows]

    row = await exports.create(clip.id, ExportOptions())
    assert await exports.progress(row["id"], 0.5) is None  # queued: nothing renders it
    assert (await exports.get(clip.id, row["id"]))["progress"] == 0.0
    await exports.start(row["id"])
    for fraction in (0.04, 0.08, 0.1, 0.13, 0.35):
        assert (await exports.progress(row["id"], fraction))["progress"] == pytest.approx(fraction)
    assert await announced(row["id"]) == [("queued", 0.0), ("running", 0.0), ("running", 0.04),
                                          ("running", 0.13), ("running", 0.35)]
    with pytest.raises(asyncpg.CheckViolationError):
        await exports.progress(row["id"], 1.5)
    assert await exports.recover() == (1, 0)  # a stopped livecut up: queued again, from 0
    assert (await exports.get(clip.id, row["id"]))["progress"] == 0.0
    await exports.start(row["id"])
    await exports.progress(row["id"], 0.6)
    done = await exports.finish(row["id"], path="x", width=1, height=1, duration=1, cpu=1)
    assert done["progress"] == 1.0
    assert await exports.progress(row["id"], 0.7) is None  # done stays done, at 1
    assert (await exports.get(clip.id, row["id"]))["progress"] == 1.0

    failed = await exports.create(clip.id, ExportOptions())
    await exports.fail(failed["id"], "no")
    assert await exports.progress(failed["id"], 0.2) is None
    assert await announced(failed["id"]) == [("queued", 0.0), ("failed", 0.0)]


def test_the_sweep_removes_deleted_clips_exports_and_dead_renders_only(tmp_path):
    from vod.export_jobs import STALE_PART, sweep

    for clip in ("deleted", "kept"):
        (tmp_path / clip).mkdir()
        for name in ("e1.mp4", "e2.mp4.part", "e3.mp4.part"):
            (tmp_path / clip / name).write_bytes(b"x")
    now = time.time()
    old = now - STALE_PART - 10
    os.utime(tmp_path / "kept" / "e2.mp4.part", (old, old))  # a render that died an hour ago
    assert sweep(tmp_path, {"deleted"}, now) == 4
    assert not (tmp_path / "deleted").exists()
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["e1.mp4", "e3.mp4.part"]
