"""Clip media through short-lived signed URLs: never the API key in a URL."""
from __future__ import annotations

import stat
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.app import create_app
from gateway.signing import UrlSigner, load_secret
from records.key_store import KeyStore
from records.settings import Settings
from records.wire import ChannelCreate
from test_api import RecordingControl, assert_error, client_for, make_clip

KEY = "media-key-0c4d"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "signing-secret-for-tests"


@pytest.fixture
async def client(tmp_path, store, redis):
    settings = Settings(data_dir=str(tmp_path), api_key=KEY, signing_key=SECRET, media_url_ttl=600, rate_limit=100_000)
    async with client_for(create_app(settings, store, redis, RecordingControl())) as c:
        yield c


@pytest.fixture
async def clip(store, tmp_path):
    channel = await store.create_channel(ChannelCreate(name="a", source="rtmp"), {})
    return await make_clip(store, channel["id"], tmp_path)


async def test_clip_responses_carry_signed_urls_that_open_the_media(client, clip):
    shown = (await client.get(f"/api/clips/{clip.id}", headers=AUTH)).json()
    video = urlsplit(shown["video_url"])
    assert video.path == f"/api/clips/{clip.id}/video"
    query = parse_qs(video.query)
    assert set(query) == {"exp", "sig"} and KEY not in shown["video_url"]
    assert time.time() + 500 < int(query["exp"][0]) <= time.time() + 601  # media_url_ttl=600
    resp = await client.get(shown["video_url"])  # no key at all
    assert resp.status_code == 200 and resp.content == bytes(range(256)) * 4
    assert (await client.get(shown["thumbnail_url"])).status_code == 200
    listed = (await client.get("/api/clips", headers=AUTH)).json()["items"]
    assert (await client.get(listed[0]["video_url"])).status_code == 200


async def test_expired_tampered_and_misapplied_signatures_are_403(client, clip, store, tmp_path):
    signer = UrlSigner(SECRET.encode(), ttl=60)
    path = f"/api/clips/{clip.id}/video"
    expired = signer.sign(path, now=time.time() - 120)  # valid signature, expired a minute ago
    assert_error(await client.get(expired), 403, "forbidden")

    good = signer.sign(path)
    assert (await client.get(good)).status_code == 200
    parts = urlsplit(good)
    q = parse_qs(parts.query)
    exp, sig = q["exp"][0], q["sig"][0]
    tampered_sig = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    assert_error(await client.get(path, params={"exp": exp, "sig": tampered_sig}), 403, "forbidden")
    # a later expiry with the old signature: the expiry is signed too
    assert_error(await client.get(path, params={"exp": str(int(exp) + 3600), "sig": sig}), 403, "forbidden")
    # the video's signature does not open the thumbnail, nor another clip
    assert_error(await client.get(f"/api/clips/{clip.id}/thumbnail", params={"exp": exp, "sig": sig}), 403, "forbidden")
    other = await make_clip(store, clip.channel_id, tmp_path, start=40.0)
    assert_error(await client.get(f"/api/clips/{other.id}/video", params={"exp": exp, "sig": sig}), 403, "forbidden")
    # another server's secret
    foreign = UrlSigner(b"another-secret").sign(path)
    assert_error(await client.get(foreign), 403, "forbidden")
    assert_error(await client.get(path, params={"exp": "soon", "sig": sig}), 403, "forbidden")
    assert_error(await client.get(path, params={"sig": sig}), 403, "forbidden")


async def test_token_query_no_longer_opens_media_but_a_read_key_does(client, clip, store):
    path = f"/api/clips/{clip.id}/video"
    assert_error(await client.get(path, params={"token": KEY}), 401, "unauthorized")
    read = await KeyStore(store.pool).create("read")
    assert (await client.get(path, headers={"Authorization": f"Bearer {read.key}"})).status_code == 200
    assert (await client.head(path, headers={"Authorization": f"Bearer {read.key}"})).status_code == 200


def test_the_secret_is_made_once_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVECUT_SIGNING_KEY", raising=False)
    first = load_secret(str(tmp_path))
    assert len(first) >= 32 and load_secret(str(tmp_path)) == first
    assert stat.S_IMODE((tmp_path / "signing_key").stat().st_mode) == 0o600
    monkeypatch.setenv("LIVECUT_SIGNING_KEY", "from-env")
    assert load_secret(str(tmp_path)) == b"from-env"


async def test_signatures_outlive_a_restart_of_the_gateway(tmp_path, store, redis, clip, monkeypatch):
    """A link handed out before a restart still works: the data dir keeps the secret."""
    monkeypatch.delenv("LIVECUT_SIGNING_KEY", raising=False)
    settings = Settings(data_dir=str(tmp_path / "data"), api_key=KEY, rate_limit=100_000)
    async with client_for(create_app(settings, store, redis, RecordingControl())) as c:
        url = (await c.get(f"/api/clips/{clip.id}", headers=AUTH)).json()["video_url"]
    async with client_for(create_app(settings, store, redis, RecordingControl())) as c:
        assert (await c.get(url)).status_code == 200
