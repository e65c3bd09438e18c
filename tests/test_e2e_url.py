"""End to end for a pull source: a channel whose URL is a broadcast served over HTTP, read by
the stream actor's URL plugin in real time. Then DELETE stops the channel."""
from __future__ import annotations

import functools
import http.server
import threading
import time

import pytest

from bench.broadcast import make_broadcast
from bench.stack import ClipSubscriber

pytestmark = pytest.mark.e2e


@pytest.fixture
def http_media(tmp_path, ffmpeg, espeak):
    truth = make_broadcast(tmp_path / "broadcast.mp4", duration=45.0)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield truth, f"http://127.0.0.1:{server.server_address[1]}/broadcast.mp4"
    server.shutdown()


def test_url_channel_clips_each_moment_then_delete_stops_it(livecut_stack, http_media):
    stack = livecut_stack
    truth, url = http_media
    assert truth.moments
    response = stack.api("POST", "/api/channels", json={
        "name": "http file", "source": "url", "url": url, "settings": {"source": {"realtime": True}},
    })
    assert response.status_code == 201, response.text
    channel = response.json()
    assert channel["ingest"] is None
    subscriber = ClipSubscriber(stack.base_url, stack.api_key, channel["id"])
    try:
        live = stack.wait_channel(channel["id"], lambda c: c["status"] == "live", timeout=60)
        started = time.monotonic()
        clips = subscriber.wait_for(len(truth.moments), timeout=truth.duration + 30)
        assert len(clips) == len(truth.moments), clips
        for moment, clip in zip(truth.moments, clips):
            assert clip["stream_start"] <= moment.t <= clip["stream_end"], (moment, clip)
        assert time.monotonic() - started < truth.duration + 30
        assert live["health"] is not None
    finally:
        subscriber.close()
    assert stack.api("DELETE", f"/api/channels/{channel['id']}").status_code == 204
    assert stack.api("GET", f"/api/channels/{channel['id']}").status_code == 404
    listed = stack.api("GET", "/api/channels").json()["items"]
    assert channel["id"] not in [c["id"] for c in listed]
    # the clips stay: Postgres is the record, deleting a channel only stops it
    kept = stack.api("GET", "/api/clips", params={"channel_id": channel["id"]}).json()["items"]
    assert {c["id"] for c in kept} == {c["id"] for c in clips}
