"""The stream actor's FLV port is internal: bound to the node's address, never a wildcard, and
deaf to anyone without the one-time token the edge gets over Ray.

The chain under test is the real one minus Ray: the ffmpeg CLI publishing over RTMP to
``RtmpServer``, routed by ``PublishRouter`` (stream key looked up in Postgres), forwarded by
``open_tcp_sink`` into ``FlvPushSource``. Only the Ray call that fetches the ticket is
replaced, by a subclass returning the ticket the source issues (what
``StreamActor.ingest_endpoint`` returns).
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from pathlib import Path

import msgspec
import pytest
from flv_pusher import FlvPusher

from gateway.rtmp import RtmpServer
from records.wire import ChannelCreate
from stream_actor.sources import FlvPushSource, source_for
from stream_actor.sources.base import check_source_options
from stream_actor.sources.flv_push import MAX_UNAUTHENTICATED, FlvOptions
from stream_actor.sources.one_time_tokens import TOKEN_LENGTH, OneTimeTokens
from supervisor.edge import PublishRouter

pytestmark = pytest.mark.usefixtures("ffmpeg")

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
WILDCARDS = {"0.0.0.0", "::", ""}


@pytest.fixture(scope="module")
def intruder_media(tmp_path_factory) -> Path:
    """What the intruder pushes: 160x120, so its frames cannot pass for the publisher's."""
    path = tmp_path_factory.mktemp("intruder") / "intruder.mp4"
    subprocess.run(
        [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-f", "lavfi", "-i", "sine",
         "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-pix_fmt", "yuv420p",
         "-c:a", "aac", str(path)],
        check=True,
    )
    return path


def test_flv_listener_binds_the_node_address_not_a_wildcard():
    src = FlvPushSource()
    try:
        bound = src._listener.getsockname()[0]
        assert bound not in WILDCARDS and src.endpoint[0] == bound
        assert bound == "127.0.0.1"  # no Ray in this process: loopback
        host, port, token = src.ingest_ticket()
        assert (host, port) == src.endpoint
        assert src.ingest_ticket()[2] != token  # a fresh token per ticket
    finally:
        src.close()


def test_one_time_tokens_are_single_use_short_lived_and_few():
    now = [0.0]
    tokens = OneTimeTokens(ttl=30.0, max_live=3, clock=lambda: now[0])
    a, b = tokens.issue(), tokens.issue()
    assert len(a) == len(b) == TOKEN_LENGTH and a != b
    assert not tokens.redeem(b"x" * TOKEN_LENGTH) and not tokens.redeem(a[:-1].encode())
    assert tokens.redeem(a.encode()) and not tokens.redeem(a.encode())  # spent
    now[0] = 31.0
    assert not tokens.redeem(b.encode())  # expired
    first = tokens.issue()
    for _ in range(3):
        tokens.issue()
    assert not tokens.redeem(first.encode())  # forgotten: only the newest three are live


@pytest.mark.parametrize(
    "source",
    [{"host": "0.0.0.0"}, {"advertise_host": "attacker.example"}, {"probesize": 10**12}, {"idle_timeout": 0}],
)
def test_a_channel_cannot_set_bind_or_advertise_addresses(source):
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(source, FlvOptions)
    with pytest.raises(msgspec.ValidationError, match=next(iter(source))):
        check_source_options(source, "rtmp", None)  # what the API runs (422)
    with pytest.raises(msgspec.ValidationError):
        source_for("rtmp", None, source)  # and a stored row cannot sneak it past the actor


class _Attacker:
    """Keeps ``count`` connections to the FLV port open without a token, reconnecting as the
    listener drops them (each sends one byte of an FLV header now and then)."""

    def __init__(self, endpoint: tuple[str, int], count: int) -> None:
        self.endpoint = endpoint
        self.count = count
        self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conns: list[socket.socket] = []
        while not self.stop.is_set():
            alive = []
            for conn in conns:
                try:
                    conn.send(b"F")
                    alive.append(conn)
                except OSError:
                    conn.close()
            conns = alive
            while len(conns) < self.count:
                try:
                    conns.append(socket.create_connection(self.endpoint, timeout=2))
                    self.opened += 1
                except OSError:
                    break
            self.stop.wait(0.2)
        for conn in conns:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class _TicketFromSource(PublishRouter):
    """PublishRouter with the Ray round trip replaced by the source's own ticket."""

    def __init__(self, store, src: FlvPushSource) -> None:
        super().__init__(store, supervisor=None)
        self.src = src
        self.tickets = 0

    async def _ingest_ticket(self, channel_id: str):
        self.tickets += 1
        return self.src.ingest_ticket()


def _consume(src: FlvPushSource, stop: threading.Event, seen: list[dict]) -> threading.Thread:
    def run() -> None:
        for session in src.sessions(stop):
            entry = {"width": session.video.codec_context.width if session.video else None, "video": 0, "audio": 0}
            seen.append(entry)
            for packet in session.packets():
                entry[packet.stream.type] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_raw_flv_without_the_token_is_refused_and_the_publisher_gets_in(store, intruder_media):
    channel = await store.create_channel(ChannelCreate(name="auth", source="rtmp"), {})
    src = FlvPushSource()
    router = _TicketFromSource(store, src)
    rtmp = RtmpServer("127.0.0.1", 0, router)
    await rtmp.start()
    stop = threading.Event()
    seen: list[dict] = []
    consumer = _consume(src, stop, seen)
    # Strangers first: a raw ffmpeg FLV push with no token, one with a wrong token, and more
    # token-less connections than the listener holds, kept open (and renewed) throughout.
    raw = FlvPusher(intruder_media, *src.endpoint, None, 6)
    wrong = FlvPusher(intruder_media, *src.endpoint, "x" * 48, 6)
    attacker = _Attacker(src.endpoint, MAX_UNAUTHENTICATED + 4)
    try:
        await asyncio.sleep(0.5)
        publisher = await asyncio.create_subprocess_exec(
            *FFMPEG, "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-f", "lavfi", "-i", "sine",
            "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-pix_fmt", "yuv420p", "-c:a", "aac",
            "-f", "flv", f"rtmp://127.0.0.1:{rtmp.port}/live/{channel['stream_key']}",
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(publisher.communicate(), 60)
        assert publisher.returncode == 0, err.decode(errors="replace")
        deadline = time.monotonic() + 10
        while not (seen and seen[-1]["video"] >= 45) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert attacker.opened > MAX_UNAUTHENTICATED  # the strangers really were there
    finally:
        attacker.close()
        raw.kill()
        wrong.kill()
        stop.set()
        await rtmp.stop()
        consumer.join(10)
        src.close()
    # Every session came from the publisher (320 wide), none from the strangers (160).
    assert seen and all(s["width"] == 320 for s in seen), seen
    assert sum(s["video"] for s in seen) >= 45 and sum(s["audio"] for s in seen) >= 45, seen
    assert router.tickets == 1 and src.refused == 0
    assert src.unauthenticated >= 2 + MAX_UNAUTHENTICATED  # raw, wrong token, the held ones


async def test_a_paused_channel_takes_no_publish_until_resumed(store):
    """RTMP is refused (no ticket asked of the actor), WHIP answered 409 with the reason."""
    from gateway.whip import WhipRefused

    channel = await store.create_channel(ChannelCreate(name="paused", source="rtmp"), {})
    src = FlvPushSource()
    router = _TicketFromSource(store, src)
    try:
        await store.pause_channel(channel["id"])
        assert await router("live", channel["stream_key"]) is None
        with pytest.raises(WhipRefused) as refused:
            await router.open_for_whip(channel["id"], channel["stream_key"])
        assert (refused.value.status, refused.value.code) == (409, "conflict")
        assert "paused" in refused.value.message
        assert router.tickets == 0 and not router.publishing

        await store.resume_channel(channel["id"], limit=None)
        sink = await router("live", channel["stream_key"])
        assert sink is not None and router.tickets == 1
        await sink.close()
        assert not router.publishing
    finally:
        src.close()
