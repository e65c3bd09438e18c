"""A VOD job's input, on real files and a real HTTP server: probing (what is media, what is
not, what cannot be reached), which URLs are pages to resolve, and cutting clips out of a
recording by stream copy over HTTP Range, by remux, or by re-encoding as a last resort."""
from __future__ import annotations

import os
import subprocess

import av
import pytest

from bench.stack import free_port
from range_server import RangeServer
from records.url_policy import UrlPolicy
from stream_actor.clipper import cut_media, transcode_media
from vod import sources
from vod.errors import VodFailure
from vod.probe import input_options, probe
from vod.sources import Location

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]


def local_url(url: str) -> Location:
    """A URL of the test's loopback server, allowed as with the operator's --allow-private-urls."""
    return Location(url, UrlPolicy(allow_private=True))


@pytest.fixture(scope="module")
def files(tmp_path_factory, ffmpeg):
    work = tmp_path_factory.mktemp("vod-media")
    src = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-t", "40"]
    subprocess.run([*FFMPEG, *src, "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-movflags", "+faststart", str(work / "h264.mp4")], check=True)
    subprocess.run([*FFMPEG, *src, "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-f", "mpegts", str(work / "h264.ts")], check=True)
    # MPEG-2 video and MP2 audio: neither goes into MP4 by stream copy
    subprocess.run([*FFMPEG, *src, "-c:v", "mpeg2video", "-g", "30", "-c:a", "mp2", "-f", "mpegts",
                    str(work / "mpeg2.ts")], check=True)
    (work / "notes.txt").write_text("not a video\n" * 500)
    (work / "random.bin").write_bytes(os.urandom(200_000))
    server = RangeServer(work)
    yield work, server
    server.close()


def test_probe_describes_recordings_and_picks_how_clips_are_cut(files):
    work, server = files
    mp4 = probe(local_url(server.url("h264.mp4")))
    assert (mp4.video, mp4.audio, mp4.cut_mode) == ("h264", "aac", "copy")
    assert abs(mp4.duration - 40.0) < 0.5
    ts = probe(str(work / "h264.ts"))
    assert ts.cut_mode == "remux" and ts.origin > 0  # MPEG-TS starts at 1.4 s: clip times are from there
    assert probe(str(work / "mpeg2.ts")).cut_mode == "reencode"


@pytest.mark.parametrize("name", ["notes.txt", "random.bin"])
def test_a_file_that_is_not_media_fails_as_not_media(files, name):
    work, _server = files
    with pytest.raises(VodFailure) as exc:
        probe(str(work / name))
    assert exc.value.code == "not_media"


def test_unreachable_and_missing_urls_fail_with_their_codes(files):
    _work, server = files
    with pytest.raises(VodFailure) as exc:
        probe(local_url(f"http://127.0.0.1:{free_port()}/x.mp4"))
    assert exc.value.code == "unreachable"
    with pytest.raises(VodFailure) as exc:
        probe(local_url(server.url("missing.mp4")))
    assert exc.value.code == "not_found"


def test_a_clip_is_cut_over_http_by_range_requests(files, tmp_path):
    _work, server = files
    url = local_url(server.url("h264.mp4"))
    before = len(server.requests)
    cut = cut_media(url, 20.0, 30.0, tmp_path / "c.mp4", tmp_path / "c.jpg", options=input_options(url))
    assert abs(cut.start - 20.0) <= 1.0 and abs(cut.duration - 10.0) <= 1.0
    ranged = [r for _n, r in server.requests[before:] if r and not r.startswith("bytes=0-")]
    assert ranged, server.requests[before:]  # it seeked: only the clip's part was read past the header
    with av.open(str(tmp_path / "c.mp4")) as clip:
        assert clip.streams.video[0].codec_context.name == "h264"
        assert abs(clip.duration / av.time_base - cut.duration) < 0.2
    assert (tmp_path / "c.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_mpeg_ts_is_remuxed_with_times_from_the_recordings_start(files, tmp_path):
    work, _server = files
    info = probe(str(work / "h264.ts"))
    cut = cut_media(str(work / "h264.ts"), 4.0, 12.0, tmp_path / "t.mp4", tmp_path / "t.jpg", origin=info.origin)
    assert abs(cut.start - 4.0) <= 1.0 and cut.end <= 13.0
    with av.open(str(tmp_path / "t.mp4")) as clip:
        assert clip.format.name.startswith("mov")
        assert clip.streams.audio[0].codec_context.name == "aac"


def test_codecs_mp4_cannot_hold_are_reencoded_to_h264_and_aac(files, tmp_path):
    work, _server = files
    info = probe(str(work / "mpeg2.ts"))
    cut = transcode_media(str(work / "mpeg2.ts"), 10.0, 18.0, tmp_path / "r.mp4", tmp_path / "r.jpg", origin=info.origin)
    assert cut.duration == pytest.approx(8.0)
    with av.open(str(tmp_path / "r.mp4")) as clip:
        assert clip.streams.video[0].codec_context.name == "h264"
        assert clip.streams.audio[0].codec_context.name == "aac"
        assert abs(clip.duration / av.time_base - 8.0) < 0.5
    assert (tmp_path / "r.jpg").read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize("url, page", [
    ("https://www.twitch.tv/videos/2345678901", True),
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", True),
    ("https://kick.com/somechannel", True),
    ("https://cdn.example.com/vods/stream.mp4", False),
    ("https://cdn.example.com/vods/index.m3u8", False),
    ("https://cdn.example.com/vods/part.ts?token=abc", False),
])
def test_page_urls_are_told_from_media_urls(url, page):
    assert sources._is_page(url) is page  # matching only: nothing is fetched


@pytest.mark.parametrize("url", ["http://127.0.0.1/x.mp4", "http://10.0.0.8/x.mp4", "file:///etc/passwd",
                                 "/etc/passwd", "http://localhost/x.m3u8"])
def test_the_url_policy_refuses_private_and_local_sources(url):
    with pytest.raises(VodFailure) as exc:
        sources.resolve(url, None, allow_private=False)
    assert exc.value.code == "unsafe_url"
