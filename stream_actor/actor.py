"""The stream actor: thin wiring of source → ring buffer → detectors → fusion → clipper → publisher.

One Ray actor per live channel. Three threads do the blocking work (demux, decode +
cheap detectors, ASR); the actor's event loop cuts clips and talks to Postgres.

A clip is cut as soon as its moment is ready, whether or not Postgres answers: its commit
goes to the channel's durable commit journal (``stream_actor.commit_journal``), and a
separate task commits the journal in order, retrying while Postgres is down. So an outage
longer than the ring buffer delays clips but neither shortens nor loses them, and a commit
that can never succeed is reported and skipped instead of blocking the channel.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import shutil
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import psutil
import ray

from detectors.assets import AssetDirs
from detectors.chat import ChatActivityDetector
from detectors.speech import load_whisper_model
from records.backoff import Backoff
from records.store import Store, commit_can_never_succeed
from records.wire import ClipRecord, Health, MomentEvent, new_commit_key
from stream_actor.asr_client import RemoteWhisper, server_for
from stream_actor.asr_server import AsrServerOptions
from stream_actor.clip_sweep import remove_files, stale_parts, unjournaled_clip_files
from stream_actor.clipper import cut_clip
from stream_actor.commit_journal import Add, CommitJournal
from stream_actor.shed_queue import SheddingQueue
from stream_actor.chat import ChatFeed, TwitchChatClient, twitch_login_from_url
from stream_actor.clock import StreamClock
from stream_actor.decode import AudioDecoder, KeyframeSampler
from stream_actor.detection import DetectorPipeline, hud_detector
from stream_actor.disk_space import DiskWatch
from stream_actor.ring_buffer import RingBuffer
from stream_actor.settings import channel_settings
from stream_actor.sources import source_for

if TYPE_CHECKING:
    from gateway.rtmp.server import PublishSink
    from stream_actor.whip.options import WhipOptions
    from stream_actor.whip.sessions import Answer, WhipSessions
    from detectors.hud import HudDetector  # OpenCV: imported only by channels with a game profile

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 2.0
LOST_ON_RESTART = "the stream actor restarted before this moment's clip was cut"
COMMIT_RETRY_MAX = 2.0  # longest wait between commit attempts while Postgres is down
PENDING_RECORD_TIMEOUT = 2.0  # a 'moment_pending' row is best effort: never waited for longer
ASR_QUEUE_SECONDS = 60.0  # audio waiting for ASR beyond this is shed, oldest first
RESUME_MARGIN = HEALTH_INTERVAL  # the last reported stream time may be this old
FINISH_MARGIN = 3.0  # seconds a stop waits beyond a pending clip's post-roll (cut and commit)


class ActorConfig(msgspec.Struct, kw_only=True):
    dsn: str
    data_dir: str
    base_url: str = ""  # prefix of notification media URLs; empty keeps them relative
    allow_private_urls: bool = False  # the operator's setting; a channel cannot grant it itself
    min_free_bytes: int = 1024**3  # the free-space low-water mark of data_dir's disk (--min-free-bytes)
    profiles_dir: str = ""  # the operator's HUD game profiles (--profiles-dir), looked up by name
    models_dir: str = ""  # the operator's whisper models (--models-dir), looked up by name
    # the node's shared ASR server (stream_actor.asr_server); None: this actor loads its own model
    asr: AsrServerOptions | None = None

    @property
    def asset_dirs(self) -> AssetDirs:
        return AssetDirs(profiles_dir=self.profiles_dir, models_dir=self.models_dir)


class PendingClip(msgspec.Struct):
    event: MomentEvent
    buffered_at: float | None = None  # monotonic time its post-roll was buffered
    key: str = msgspec.field(default_factory=new_commit_key)  # names its files, keys its commit and events
    recording: object = None  # the task writing its 'moment_pending' row (the clip loop never waits for it)
    recorded_at: float = 0.0  # monotonic time of the last attempt


class StreamActor:
    def __init__(self, channel: dict, config: ActorConfig):
        self.channel_id: str = channel["id"]
        self.kind: str = channel["source"]
        self.config = config
        self.settings = channel_settings(channel.get("settings"))
        self.ring = RingBuffer(Path(config.data_dir, "ring", self.channel_id), self.settings.ring)
        self.clip_dir = Path(config.data_dir, "clips", self.channel_id)
        self.clip_dir.mkdir(parents=True, exist_ok=True)
        self.journal = CommitJournal(self.clip_dir)  # commits owed, a predecessor's included
        self._journal_changed = asyncio.Event()
        self.source = source_for(
            self.kind, channel.get("url"), {**self.settings.source, "allow_private": config.allow_private_urls}
        )
        self.status = "waiting"
        self.status_reason = ""
        self.stop_event = threading.Event()
        self.media_q: queue.Queue = queue.Queue(maxsize=2000)
        self.speech_q = SheddingQueue(ASR_QUEUE_SECONDS)  # bounded: a slow ASR sheds the oldest audio
        self.speech_queued_to = 0.0  # stream time of the end of the newest audio queued for ASR
        self.asr_flush_to = 0.0  # a clip waits for the transcript up to here: transcribe now
        self.pending: list[PendingClip] = []
        self.pending_lock = threading.Lock()
        self.cut_seqs: deque[int] = deque(maxlen=64)  # fusion seqs of moments already cut
        self.clips = 0
        self.events = 0
        self.session_origin: tuple[float, float] | None = None  # (wall, stream time) at session start
        self.clock = StreamClock()
        self.pipeline: DetectorPipeline | None = None
        self.asr: RemoteWhisper | None = None  # the node's ASR server, when whisper runs there
        self.chat: ChatFeed | None = None
        self.whip: WhipSessions | None = None  # created by the first WHIP offer
        self._channel_url: str | None = channel.get("url")
        self.store: Store | None = None
        self.process = psutil.Process()
        self.cpu_at_start = sum(self.process.cpu_times()[:2])
        self._threads: list[threading.Thread] = []
        self._tasks: list[asyncio.Task] = []  # the clip loop, the health loop, the commit loop
        self._cutting = 0  # cuts (with their commits) in flight
        self._status_changed = asyncio.Event()
        self.disk = DiskWatch(config.data_dir, config.min_free_bytes)  # see _disk_loop

    # -- Ray methods ----------------------------------------------------------------------
    async def start(self) -> None:
        if self._tasks:
            return
        model = await self._whisper()
        hud = await asyncio.to_thread(self._hud_detector) if self.settings.hud.profile else None
        self.pipeline = DetectorPipeline(self.settings, model, hud=hud)
        self.chat = self._chat_feed(self._channel_url)
        self.store = await Store.connect(self.config.dsn, min_size=1, max_size=2)
        await self._recover()
        # Stream time goes on from where the previous process of this actor left it (plus the
        # time it was down), so clip times stay monotonic per channel across restarts.
        if last := await self.store.last_stream_time(self.channel_id):
            stream_time, age = last
            self.clock.resume(stream_time + RESUME_MARGIN, time.time() - age)
        threads = [("ingest", self._ingest), ("detect", self._detect), ("asr", self._asr)]
        if self.chat is not None:
            threads.append(("chat", lambda: self.chat.run(self.stop_event)))
        for name, target in threads:
            thread = threading.Thread(target=target, name=f"{name}-{self.channel_id}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._clip_loop()),
            asyncio.create_task(self._health_loop()),
            asyncio.create_task(self._commit_loop()),
        ]
        self._tasks.append(asyncio.create_task(self._disk_loop()))

    async def _whisper(self):
        """The model the transcriber calls: the node's ASR server, or one of its own."""
        if self.config.asr is None:
            return await asyncio.to_thread(load_whisper_model, self.settings.speech, self.config.asset_dirs)
        options = msgspec.structs.replace(self.config.asr, model=self.settings.speech.model)
        server = server_for(options, ray.get_runtime_context().get_node_id())
        await server.ready.remote()  # loads the model once per node; a bad model name fails here
        self.asr = RemoteWhisper(server, self.channel_id, self.stop_event)
        return self.asr

    async def _recover(self) -> None:
        """What a previous process of this actor left: moments it detected but did not cut died
        with it (reported lost); clips it cut and journaled are committed by the commit loop;
        part files and clip files nothing points at are swept."""
        journaled = await asyncio.to_thread(self.journal.keys)
        if lost := await self.store.lose_pending_moments(self.channel_id, LOST_ON_RESTART, keep=sorted(journaled)):
            log.warning("channel %s: %d clip(s) lost with the previous actor process", self.channel_id, lost)
        if journaled:
            log.info("channel %s: %d clip commit(s) journaled by the previous process", self.channel_id, len(journaled))
        await self._sweep(journaled)

    async def _sweep(self, journaled: set[str]) -> None:
        parts = await asyncio.to_thread(stale_parts, self.clip_dir)
        await asyncio.to_thread(remove_files, parts)
        candidates = await asyncio.to_thread(unjournaled_clip_files, self.clip_dir, journaled)
        orphans = []
        for i in range(0, len(candidates), 500):
            batch = [str(p) for p in candidates[i:i + 500]]
            referenced = await self.store.referenced_paths(batch)
            orphans += [Path(p) for p in batch if p not in referenced]
        await asyncio.to_thread(remove_files, orphans)
        if parts or orphans:
            log.info("channel %s: swept %d part file(s) and %d orphaned clip file(s)",
                     self.channel_id, len(parts), len(orphans))

    def _hud_detector(self) -> HudDetector:
        return hud_detector(self.settings, self.config.asset_dirs)

    def _chat_feed(self, url: str | None) -> ChatFeed | None:
        """Twitch chat, read anonymously, as the "chat" and "emote" signals."""
        login = self.settings.chat_login or (twitch_login_from_url(url) if self.kind == "url" else None)
        if not login or login == "-":
            return None
        return ChatFeed(
            TwitchChatClient(login),
            ChatActivityDetector(self.settings.chat),
            origin=lambda: self.session_origin if self.status == "live" else None,
            on_signals=lambda signals: self._add_events(self.pipeline.on_signals(signals)),
        )

    async def ingest_endpoint(self) -> tuple[str, int, str] | None:
        """Where the edge forwards this channel's FLV bytes, with a fresh one-time token it
        sends first (push sources only). Each call issues a new token."""
        ticket = getattr(self.source, "ingest_ticket", None)
        return None if ticket is None else ticket()

    async def whip_ready(self) -> bool:
        """Can this actor take a WHIP session (a push channel, started)?"""
        return bool(self._tasks) and hasattr(self.source, "ingest_ticket") and not self.stop_event.is_set()

    async def whip_start(self, offer: str, kinds: list[str], ffmpeg: bool, options: WhipOptions) -> Answer:
        """Answer a WHIP offer the gateway authenticated: the peer connection and the
        re-encode run here, into this actor's own FLV ingest."""
        from stream_actor.whip.sessions import Answer, WhipSessions  # aiortc only once a WHIP publisher comes

        if not await self.whip_ready():
            return Answer(status=503, message="the channel is not taking publishes")
        if self.whip is None:
            self.whip = WhipSessions(self._own_ingest, label=self.channel_id)
        return await self.whip.start(offer, kinds, ffmpeg, options)

    async def whip_end(self, session_id: str, reason: str) -> None:
        if self.whip is not None:
            await self.whip.end(session_id, reason)

    async def whip_wait(self, session_id: str) -> str:
        return await self.whip.wait(session_id) if self.whip is not None else "no such session"

    async def _own_ingest(self) -> PublishSink:
        from gateway.rtmp.forward import open_tcp_sink

        return await open_tcp_sink(*self.source.ingest_ticket())

    async def health(self) -> dict:
        status, reason = self._shown_status()
        return {"status": status, "status_reason": reason, **msgspec.to_builtins(self._health())}

    async def stop(self) -> None:
        """Finish the clip in progress, stop ingest, let the detectors drain, cut what they
        found, then report offline.

        A moment already detected keeps the stream open until its post-roll is buffered and
        its clip cut (bounded by the post-roll plus the transcript wait), so deleting a
        channel or stopping livecut does not truncate it.
        """
        opts = self.settings.clip
        finish_by = time.monotonic() + opts.post_roll + opts.transcript_wait + FINISH_MARGIN
        while self.pending and self.status == "live" and time.monotonic() < finish_by:
            await asyncio.sleep(0.1)
        if self.whip is not None:
            await self.whip.close("the channel's stream actor is stopping")
        self.stop_event.set()
        self.source.close()
        if self.chat is not None:
            self.chat.close()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10)
        deadline = time.monotonic() + 15
        # The clip loop may be cutting a clip: let it finish, then stop the loop, so that the
        # final cuts below never cut a moment twice.
        while self._cutting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._tasks:
            self._tasks[0].cancel()
        while self.pending and time.monotonic() < deadline:
            await self._cut_ready(final=True)
            await asyncio.sleep(0.1)
        # the commit loop commits what was cut; what Postgres has not taken by the deadline
        # stays journaled, for the next process of this actor
        while len(self.journal) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if len(self.journal):
            log.warning("channel %s: %d clip commit(s) left journaled for the next start",
                        self.channel_id, len(self.journal))
        for task in self._tasks:
            task.cancel()
        self.status = "offline"
        if self.store:
            try:
                await self.store.report_health(self.channel_id, "offline", self._health())
            except Exception:  # best effort at shutdown
                pass
            await self.store.close()

    # -- threads --------------------------------------------------------------------------
    def _set_status(self, status: str, reason: str = "") -> None:  # reason "" clears an old one
        self.status, self.status_reason = status, reason
        loop = getattr(self, "_loop", None)
        if loop:
            loop.call_soon_threadsafe(self._status_changed.set)

    def _ingest(self) -> None:
        clock = self.clock
        try:
            for session in self.source.sessions(self.stop_event):
                self._run_session(session, clock)
                if not self.stop_event.is_set() and not getattr(session, "discontinuity", False):
                    self._set_status("offline" if self.kind == "rtmp" else "waiting", "input ended")
        except Exception as exc:
            log.exception("ingest failed for channel %s", self.channel_id)
            self._set_status("error", f"ingest: {exc}")
        finally:
            self.media_q.put(None)

    def _run_session(self, session, clock: StreamClock) -> None:
        clock.begin_session()
        self.ring.begin_session(session.video, session.audio)
        # Decoders copy the stream parameters now: the container (and its streams) is freed
        # at session end while packets may still wait in the queue.
        hud = self.settings.hud
        color_size = (hud.frame_width, hud.frame_height) if hud.profile else None
        video = KeyframeSampler(session.video, color_size=color_size) if session.video is not None else None
        audio = AudioDecoder(session.audio) if session.audio is not None else None
        self.media_q.put(("session", video, audio))
        self.session_origin = None
        self._set_status("live")
        try:
            for packet in session.packets():
                if self.stop_event.is_set():
                    break
                t = clock.packet_time(packet)
                if t is None:
                    continue
                self.ring.write(packet, t)
                if self.session_origin is None:
                    self.session_origin = (time.time(), t)
                kind = packet.stream.type
                if kind == "audio" or (kind == "video" and packet.is_keyframe):
                    self.media_q.put((kind, packet, t))
        except Exception as exc:
            log.warning("session ended with an error on channel %s: %s", self.channel_id, exc)
        finally:
            self.ring.end_session()
            session.close()

    def _detect(self) -> None:
        audio = video = None
        while (item := self.media_q.get()) is not None:
            kind = item[0]
            if kind == "session":
                _, video, audio = item
                continue
            _, packet, t = item
            events: list[MomentEvent] = []
            try:
                if kind == "audio" and audio is not None:
                    for t0, samples in audio.decode(packet, t):
                        events += self.pipeline.on_audio(t0, samples)
                        self.speech_q.put((t0, samples))
                        self.speech_queued_to = t0 + len(samples) / 16000.0
                elif kind == "video" and video is not None:
                    for tf, gray, color in video.decode_color(packet, t):
                        events += self.pipeline.on_frame(tf, gray, color)
            except Exception as exc:  # one bad packet must not stop detection
                log.warning("decode error on channel %s: %s", self.channel_id, exc)
            self._add_events(events)
        self.speech_q.put(None)

    def _asr(self) -> None:
        fed_until = 0.0
        while True:
            try:
                item = self.speech_q.get(timeout=0.05)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                t0, samples = item
                fed_until = t0 + len(samples) / 16000.0
                # the backlog lets the transcriber shed work rather than fall further behind
                behind = max(0.0, self.speech_queued_to - fed_until)
                self._add_events(self.pipeline.on_speech(t0, samples, behind=behind))
            if self.pipeline.asr_through < self.asr_flush_to <= fed_until:
                # a clip is ready to cut: transcribe the partial chunk rather than wait for a pause
                self._add_events(self.pipeline.flush_speech())
        self._add_events(self.pipeline.flush_speech())

    def _add_events(self, events: list[MomentEvent]) -> None:
        if events:
            with self.pending_lock:
                for event in events:
                    known = next((p for p in self.pending if event.seq and p.event.seq == event.seq), None)
                    if known is not None:
                        known.event = event  # the moment grew before its clip was cut
                    elif not event.seq or event.seq not in self.cut_seqs:  # (after its cut, a late joiner is ignored)
                        self.pending.append(PendingClip(event))
                        self.events += 1

    # -- event loop -----------------------------------------------------------------------
    async def _clip_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                await self._cut_ready()
            except Exception:
                log.exception("clip loop error on channel %s", self.channel_id)

    async def _cut_ready(self, final: bool = False) -> None:
        """Cut every moment whose post-roll (and transcript) is buffered, and journal its commit.
        Never waits for Postgres."""
        opts = self.settings.clip
        with self.pending_lock:
            pending = list(self.pending)
        for item in pending:
            event = item.event
            self._record_pending(item)
            end = event.span()[1] + opts.post_roll
            live = self.status == "live" and not final
            if live and self.ring.end < end:
                continue  # post-roll not buffered yet
            if item.buffered_at is None:
                item.buffered_at = time.monotonic()
            if live and self.pipeline.asr_through < end and time.monotonic() - item.buffered_at < opts.transcript_wait:
                self.asr_flush_to = max(self.asr_flush_to, end)
                continue  # the ASR thread is transcribing up to the clip's end
            with self.pending_lock:
                self.pending.remove(item)
                self.cut_seqs.append(event.seq)
                event = item.event  # the latest version of the moment
            first, last = event.span()
            start, end = self.pipeline.clip_bounds(first - opts.pre_roll, last + opts.post_roll)
            await self._cut_and_commit(item, max(start, self.ring.start), min(end, self.ring.end))

    def _record_pending(self, item: PendingClip) -> None:
        """Write the moment's 'moment_pending' row in the background (once; retried every few
        seconds while Postgres is down): if this process dies before the clip is cut, its
        successor reports the moment lost. Keyed like the commit, so whichever of the two
        reaches Postgres first, the moment has one event."""
        task = item.recording
        if task is not None and (not task.done() or (not task.cancelled() and task.exception() is None)):
            return  # in flight, or recorded
        if time.monotonic() - item.recorded_at < COMMIT_RETRY_MAX:
            return
        item.recorded_at = time.monotonic()
        item.recording = asyncio.create_task(asyncio.wait_for(
            self.store.record_pending_moment(self.channel_id, item.event, item.key), PENDING_RECORD_TIMEOUT
        ))
        item.recording.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning

    async def _cut_and_commit(self, item: PendingClip, start: float, end: float) -> None:
        self._cutting += 1
        try:
            await self._cut_and_journal(item, start, end)
        finally:
            self._cutting -= 1

    async def _cut_and_journal(self, item: PendingClip, start: float, end: float) -> None:
        """Cut the clip (its files fsynced) and journal its commit (fsynced): from here on the
        clip survives a crash of this process and any Postgres outage."""
        event = item.event
        if self.disk.reason:  # below the free-space low-water mark: no new clip files
            await self._journal(Add(key=item.key, event=event, lost=f"clip refused: {self.disk.reason}"))
            return
        video = self.clip_dir / f"{item.key}.mp4"
        thumb = self.clip_dir / f"{item.key}.jpg"
        try:
            cut = await asyncio.to_thread(
                cut_clip, self.ring.segments(start, end), start, end, video, thumb
            )
        except Exception as exc:
            log.warning("clip lost on channel %s at %.1fs: %s", self.channel_id, event.t, exc)
            await self._journal(Add(key=item.key, event=event, lost=str(exc) or type(exc).__name__))
            return
        words = self.pipeline.clip_words(cut.start, cut.end)
        record = ClipRecord(
            id="",  # given by Postgres at commit
            channel_id=self.channel_id,
            stream_start=round(cut.start, 3),
            stream_end=round(cut.end, 3),
            score=round(event.score, 3),
            signals={k: round(v, 3) for k, v in event.signals.items()},
            transcript=" ".join(w.text for w in words),
            words=words,
            video_path=str(video),
            thumbnail_path=str(thumb),
            duration=round(cut.duration, 3),
            created_at="",
            triggers=list(event.triggers),
            commit_key=item.key,
        )
        await self._journal(Add(key=item.key, event=event, clip=record))

    async def _journal(self, entry: Add) -> None:
        await asyncio.to_thread(self.journal.add, entry)
        self._journal_changed.set()

    async def _commit_loop(self) -> None:
        """Commit the journal, oldest entry first (so ids follow cut order). A failure that
        may pass (Postgres down, a timeout) is retried with backoff and holds the later
        entries back; one that never can (bad data, a broken constraint) is reported on the
        channel's event log and skipped."""
        backoff = Backoff(0.5, COMMIT_RETRY_MAX)
        while True:
            entries = await asyncio.to_thread(self.journal.pending)
            if not entries:
                self._journal_changed.clear()
                if not len(self.journal):
                    await self._journal_changed.wait()
                continue
            entry = entries[0]
            try:
                await self._commit(entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not commit_can_never_succeed(exc):
                    delay = backoff.next()
                    log.warning("channel %s: commit of %s failed (%s); retrying in %.1fs",
                                self.channel_id, entry.key, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                await self._report_rejected(entry, exc)
            backoff.reset()
            await asyncio.to_thread(self.journal.done, entry.key)

    async def _commit(self, entry: Add) -> None:
        if entry.clip is None:
            await self.store.lose_moment(self.channel_id, entry.event, entry.lost, key=entry.key)
            return
        await self.store.commit_clip(entry.clip, entry.event, self.config.base_url)
        self.clips += 1

    async def _report_rejected(self, entry: Add, exc: Exception) -> None:
        """A commit Postgres will never take: on the channel's event log as a lost clip, or,
        if Postgres refuses even that (the channel is gone), on the actor's log."""
        detail = f"the clip's commit was refused: {exc}".replace("\x00", "")[:1000]
        log.error("channel %s: %s (clip files %s.*)", self.channel_id, detail, self.clip_dir / entry.key)
        try:
            await asyncio.wait_for(
                self.store.lose_moment(self.channel_id, entry.event, detail, key=entry.key), PENDING_RECORD_TIMEOUT
            )
        except Exception as report_exc:
            log.error("channel %s: the lost clip %s could not be logged either: %s",
                      self.channel_id, entry.key, report_exc)

    # -- disk space (stream_actor.disk_space) ----------------------------------------------
    async def _disk_loop(self) -> None:
        """The free-space low-water mark: while the data dir's disk is below it, new clips are
        refused (``_cut_and_journal``), the status shows ``degraded`` and the ring keeps only
        a clip's pre-roll; each change goes on the channel's event log."""
        unlogged: list[tuple[str, str]] = []  # events Postgres has not taken yet
        while True:
            try:
                changed = await self.disk.check()
                if changed is not None:
                    keep = self.settings.clip.pre_roll + self.settings.ring.segment_seconds
                    await asyncio.to_thread(self.ring.shrink, keep if changed else None)
                    if changed:
                        log.warning("channel %s: %s", self.channel_id, self.disk.reason)
                    detail = self.disk.reason or f"disk space back: {self.disk.free // 2**20} MiB free"
                    unlogged.append(("disk_low" if changed else "disk_ok", detail))
                    self._status_changed.set()
                while unlogged:
                    kind, detail = unlogged[0]
                    await asyncio.wait_for(self.store.log_event(self.channel_id, kind, detail, self.ring.end), 5.0)
                    unlogged.pop(0)
            except Exception as exc:  # Postgres down: the event is logged on a later pass
                log.debug("disk check on channel %s: %s", self.channel_id, exc)
            await asyncio.sleep(self.disk.interval)

    def _shown_status(self) -> tuple[str, str]:
        """The status and reason reported: ``degraded`` while the disk is low (an error stays)."""
        if self.disk.reason and self.status != "error":
            return "degraded", f"{self.disk.reason}; new clips are refused"
        return self.status, self.status_reason

    async def discard_ring(self) -> None:
        """The channel was deleted (the supervisor calls this after ``stop``): remove its ring
        folder. Its clips stay."""
        def remove() -> None:
            self.ring.close(delete=True)
            shutil.rmtree(self.ring.directory, ignore_errors=True)

        await asyncio.to_thread(remove)

    async def _health_loop(self) -> None:
        while True:
            try:
                status, reason = self._shown_status()
                await self.store.report_health(self.channel_id, status, self._health(), reason)
            except Exception as exc:
                log.debug("health report failed: %s", exc)
            self._status_changed.clear()
            try:
                await asyncio.wait_for(self._status_changed.wait(), HEALTH_INTERVAL)
            except asyncio.TimeoutError:
                pass

    def _health(self) -> Health:
        ring_end = self.ring.end
        ingest_lag = 0.0
        if self.session_origin and self.status == "live":
            wall0, t0 = self.session_origin
            ingest_lag = max(0.0, (time.time() - wall0) - (ring_end - t0))
        detector_lag = 0.0
        if self.pipeline is not None and self.status == "live" and self.session_origin:
            # from the session's first packet: an outage before it (or a restart) is not a lag
            through = max(min(self.pipeline.audio_through, self.pipeline.asr_through), self.session_origin[1])
            detector_lag = max(0.0, ring_end - through)
        cpu = self.process.cpu_times()
        return Health(
            seconds_buffered=round(self.ring.seconds_buffered, 3),
            ingest_lag=round(ingest_lag, 3),
            detector_lag=round(detector_lag, 3),
            stream_time=round(max(ring_end, self.clock.end), 3),  # a new process resumes from here
            clips=self.clips,
            events=self.events,
            cpu_seconds=round(cpu.user + cpu.system - self.cpu_at_start, 3),
            rss_bytes=self.process.memory_info().rss,
            pid=self.process.pid,
            asr_shed_seconds=round(self.speech_q.shed_seconds, 3),
            commits_pending=len(self.journal),
            **({} if self.asr is None else dict(
                asr_call_seconds=round(self.asr.last_call_seconds, 3), asr_server_queue=self.asr.server_waiting,
                asr_calls_shed=self.asr.shed_calls, asr_calls_failed=self.asr.failed_calls,
            )),
        )
