"""Scoped API keys: what each scope may do, revocation, stream keys, and `livecut keys`."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
import socketio

from gateway.app import create_app
from records.key_store import KeyStore, key_hash
from records.settings import Settings
from supervisor.edge import PublishRouter
from test_api import RecordingControl, assert_error, client_for

ADMIN = "admin-key-5b1e"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=str(tmp_path), api_key=ADMIN, rate_limit=100_000)


@pytest.fixture
async def client(settings, store, redis):
    async with client_for(create_app(settings, store, redis, RecordingControl())) as c:
        yield c


async def new_key(client, scope: str, name: str = "") -> dict:
    resp = await client.post("/api/keys", json={"scope": scope, "name": name}, headers=bearer(ADMIN))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_read_key_cannot_register_channels_or_see_stream_keys(client):
    read = (await new_key(client, "read", "dashboard"))["key"]
    refused = assert_error(
        await client.post("/api/channels", json={"name": "x", "source": "rtmp"}, headers=bearer(read)), 403, "forbidden"
    )
    assert "ingest" in refused["message"]

    made = await client.post("/api/channels", json={"name": "cam", "source": "rtmp"}, headers=bearer(ADMIN))
    channel = made.json()
    stream_key = channel["ingest"]["stream_key"]
    # reading is allowed, but no view a reader gets holds the stream key
    for resp in (
        await client.get("/api/channels", headers=bearer(read)),
        await client.get(f"/api/channels/{channel['id']}", headers=bearer(read)),
    ):
        assert resp.status_code == 200, resp.text
        assert stream_key not in resp.text and "stream_key" not in resp.text
    assert_error(await client.post(f"/api/channels/{channel['id']}/stream-key/rotate", headers=bearer(read)), 403, "forbidden")
    assert_error(await client.delete(f"/api/channels/{channel['id']}", headers=bearer(read)), 403, "forbidden")
    assert_error(await client.post("/api/keys", json={"scope": "read"}, headers=bearer(read)), 403, "forbidden")
    assert_error(await client.get("/api/keys", headers=bearer(read)), 403, "forbidden")
    assert_error(await client.post("/api/uploads", headers={**bearer(read), "Tus-Resumable": "1.0.0", "Upload-Length": "10"}), 403, "forbidden")
    assert (await client.get("/api/clips", headers=bearer(read))).status_code == 200


async def test_whoami_tells_any_key_its_own_scope(client):
    """What the web console asks to decide which controls it shows."""
    for scope in ("read", "ingest", "admin"):
        made = await new_key(client, scope)
        me = await client.get("/api/whoami", headers=bearer(made["key"]))
        assert me.status_code == 200 and me.json() == {"key_id": made["id"], "scope": scope}, me.text
    assert (await client.get("/api/whoami", headers=bearer(ADMIN))).json()["scope"] == "admin"
    assert_error(await client.get("/api/whoami"), 401, "unauthorized")
    assert_error(await client.get("/api/whoami", headers=bearer("lck_nope")), 401, "unauthorized")
    spec = (await client.get("/openapi.json")).json()
    assert "scope" in str(spec["paths"]["/api/whoami"]["get"]["responses"]["200"])


async def test_ingest_key_registers_channels_and_rotates_their_stream_keys(client, store):
    ingest = (await new_key(client, "ingest"))["key"]
    made = await client.post("/api/channels", json={"name": "cam", "source": "rtmp"}, headers=bearer(ingest))
    assert made.status_code == 201, made.text
    channel = made.json()
    old = channel["ingest"]["stream_key"]
    assert len(old) >= 16

    rotated = await client.post(f"/api/channels/{channel['id']}/stream-key/rotate", headers=bearer(ingest))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["ingest"]["stream_key"]
    assert new != old and len(new) >= 16
    # the edge looks keys up in Postgres at each publish: the old key opens nothing now
    edge = PublishRouter(store, supervisor=None)
    assert await edge("live", old) is None
    assert await edge.open_for_whip(channel["id"], old) is None
    assert (await store.channel_by_stream_key(new))["id"] == channel["id"]

    url = await client.post("/api/channels", json={"name": "web", "source": "url", "url": "https://example.com/a.m3u8"},
                            headers=bearer(ingest))
    assert_error(await client.post(f"/api/channels/{url.json()['id']}/stream-key/rotate", headers=bearer(ingest)), 409, "conflict")
    assert_error(await client.post("/api/channels/nope/stream-key/rotate", headers=bearer(ingest)), 404, "not_found")
    assert_error(await client.get("/api/keys", headers=bearer(ingest)), 403, "forbidden")  # keys: admin only


async def test_keys_are_stored_as_hashes_and_listed_without_secrets(client, store):
    created = await new_key(client, "read", "bot")
    assert created["key"].startswith("lck_") and created["scope"] == "read" and created["name"] == "bot"
    row = await store.pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", created["id"])
    assert bytes(row["key_hash"]) == key_hash(created["key"])
    assert created["key"] not in str(dict(row))
    listed = (await client.get("/api/keys", headers=bearer(ADMIN))).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and created["key"] not in str(listed)
    assert_error(await client.post("/api/keys", json={"scope": "root"}, headers=bearer(ADMIN)), 422, "invalid_request")
    assert_error(await client.post("/api/keys", json={"scope": "read", "extra": 1}, headers=bearer(ADMIN)), 422, "invalid_request")


async def test_revoked_and_unknown_keys_are_refused(client, store):
    first = await new_key(client, "admin")
    assert (await client.get("/api/channels", headers=bearer(first["key"]))).status_code == 200
    revoked = await client.delete(f"/api/keys/{first['id']}", headers=bearer(ADMIN))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    # revoked through this gateway: refused at once
    assert_error(await client.get("/api/channels", headers=bearer(first["key"])), 401, "unauthorized")
    assert_error(await client.get("/api/channels", headers=bearer("lck_" + "x" * 43)), 401, "unauthorized")
    assert_error(await client.delete("/api/keys/nope", headers=bearer(ADMIN)), 404, "not_found")

    # revoked elsewhere (the CLI, another gateway): refused within the cache time
    second = await new_key(client, "read")
    assert (await client.get("/api/clips", headers=bearer(second["key"]))).status_code == 200
    await KeyStore(store.pool).revoke(second["id"])
    deadline = time.monotonic() + 10
    while (await client.get("/api/clips", headers=bearer(second["key"]))).status_code != 401:
        assert time.monotonic() < deadline, "a key revoked in Postgres still works after 10 s"
        await asyncio.sleep(0.2)
    last_used = await store.pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", second["id"])
    assert last_used is not None


async def test_feed_connect_takes_scoped_keys(settings, store, redis):
    import uvicorn

    from conftest import free_port

    app = create_app(settings, store, redis, RecordingControl())
    keys = KeyStore(store.pool)
    read, gone = await keys.create("read"), await keys.create("read")
    await keys.revoke(gone.id)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        ok = socketio.AsyncClient(reconnection=False)
        await ok.connect(f"http://127.0.0.1:{port}", auth={"token": read.key}, transports=["websocket"], wait_timeout=10)
        assert ok.connected
        await ok.disconnect()
        refused = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(f"http://127.0.0.1:{port}", auth={"token": gone.key}, transports=["websocket"], wait_timeout=10)
    finally:
        server.should_exit = True
        await task


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.cli", "keys", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_keys_cli_against_postgres(pg_dsn, tmp_path, redis):
    env = {**os.environ, "DATABASE_URL": pg_dsn}
    env.pop("LIVECUT_API_KEY", None)
    created = run_cli("create", "--scope", "ingest", "--name", "obs", "--data-dir", str(tmp_path), env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("lck_") and " " not in secret  # the key alone on the last line
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "obs" in listed.stdout and "ingest" in listed.stdout and secret not in listed.stdout
    key_id = listed.stdout.splitlines()[1].split()[0]

    # the key works against a gateway on the same database; the CLI's revocation stops it
    from records.store import Store

    store = await Store.connect(pg_dsn)
    try:
        app = create_app(Settings(data_dir=str(tmp_path), api_key="", rate_limit=100_000), store, redis, RecordingControl())
        async with client_for(app) as c:
            made = await c.post("/api/channels", json={"name": "cam", "source": "rtmp"}, headers=bearer(secret))
            assert made.status_code == 201, made.text
            revoked = run_cli("revoke", key_id, env=env)
            assert revoked.returncode == 0, revoked.stderr
            deadline = time.monotonic() + 10
            while (await c.get("/api/channels", headers=bearer(secret))).status_code != 401:
                assert time.monotonic() < deadline, "revoked by the CLI, still accepted after 10 s"
                await asyncio.sleep(0.2)
    finally:
        await store.close()
    assert run_cli("revoke", "nope", env=env).returncode == 1
    assert key_id not in run_cli("list", "--active", env=env).stdout
    assert run_cli("create", "--scope", "root", env=env).returncode == 2  # argparse refuses it


async def test_keys_cli_shares_the_embedded_postgres_of_a_running_livecut():
    """Without DATABASE_URL the CLI attaches to the data dir's embedded PostgreSQL, which a
    running `livecut up` holds (here: this process, the same way), and leaves it running."""
    import shutil
    import tempfile
    from pathlib import Path

    import asyncpg

    from records.embedded import start_postgres

    # not under pytest's tmp dir: as root, the server runs as its own user (see conftest)
    data_dir = Path(tempfile.mkdtemp(prefix="livecut-keys-embedded-"))
    dsn, handle = start_postgres(data_dir)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LIVECUT_API_KEY")}
        created = run_cli("create", "--scope", "read", "--data-dir", str(data_dir), env=env)
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[-1]
        conn = await asyncpg.connect(dsn)  # still up after the CLI exited
        try:
            row = await conn.fetchrow("SELECT scope, revoked_at FROM api_keys WHERE key_hash = $1", key_hash(secret))
        finally:
            await conn.close()
        assert row["scope"] == "read" and row["revoked_at"] is None
    finally:
        handle.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
