"""Resumable uploads (tus 1.0): the real gateway app under uvicorn, the real tuspy client,
real Postgres and Redis behind the app."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from conftest import free_port
from gateway.app import create_app
from gateway.uploads import Uploads
from records.settings import Settings

KEY = "upload-key-4d1e"
AUTH = {"Authorization": f"Bearer {KEY}"}
TUS = {"Tus-Resumable": "1.0.0"}
PATCH_HEADERS = {**AUTH, **TUS, "Content-Type": "application/offset+octet-stream"}
CHUNK = 256 * 1024
WAIT = 20.0  # seconds a condition may take before the test gives up (a deadline, not a measurement)


class NullControl:
    async def channels_changed(self) -> None:
        pass

    async def stream_limit(self):
        return None


class Server:
    def __init__(self, base: str, port: int, uploads: Uploads, settings: Settings) -> None:
        self.base = base
        self.port = port
        self.uploads = uploads
        self.settings = settings
        self.tus_url = f"{base}/api/uploads"
        self.http = httpx.AsyncClient(base_url=base, timeout=WAIT)

    def data_file(self, uid: str) -> Path:
        return self.settings.path("uploads", uid)

    def info_file(self, uid: str) -> Path:
        return self.settings.path("uploads", f"{uid}.info")

    async def upload_whole(self, path: Path, chunk_size: int = CHUNK) -> str:
        """A whole file, with the tuspy client; its upload id."""

        def upload() -> str:
            up = TusClient(self.tus_url, headers=dict(AUTH)).uploader(file_path=str(path), chunk_size=chunk_size)
            up.upload()
            return up.url

        return (await in_thread(upload)).rsplit("/", 1)[1]

    async def create(self, length: int, **headers: str) -> str:
        resp = await self.http.post("/api/uploads", headers={**AUTH, **TUS, "Upload-Length": str(length), **headers})
        assert resp.status_code == 201, resp.text
        return resp.headers["location"].rsplit("/", 1)[1]

    async def head(self, uid: str, headers: dict | None = None) -> httpx.Response:
        return await self.http.head(f"/api/uploads/{uid}", headers=AUTH | TUS if headers is None else headers)

    async def patch(self, uid: str, offset: int, body: bytes, headers: dict | None = None) -> httpx.Response:
        headers = PATCH_HEADERS if headers is None else headers
        headers = {**headers, "Upload-Offset": str(offset)}
        return await self.http.patch(f"/api/uploads/{uid}", headers=headers, content=body)


@asynccontextmanager
async def serving(settings: Settings, store, redis):
    """The whole gateway app (``create_app``) under uvicorn on a free loopback port."""
    app = create_app(settings, store, redis, NullControl())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    srv = Server(f"http://127.0.0.1:{port}", port, app.other_asgi_app.state.uploads, settings)
    try:
        yield srv
    finally:
        await srv.http.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def make_settings(tmp_path: Path, **kw) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), api_key=KEY, **kw)


async def in_thread(fn, *args):
    """The tuspy client is synchronous: run it off the loop that serves the app."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), WAIT * 3)


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.02)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def send_raw(port: int, head: str, body: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    return reader, writer


def raw_patch_head(port: int, uid: str, offset: int, length: int) -> str:
    return (
        f"PATCH /api/uploads/{uid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )


# -- 1. interrupted, resumed, byte-identical ------------------------------------------------


async def test_interrupted_upload_resumes_with_a_new_client(tmp_path, store, redis):
    settings = make_settings(tmp_path)
    src = tmp_path / "match.mp4"
    data = os.urandom(3 * 1024 * 1024 + 4321)
    src.write_bytes(data)

    async with serving(settings, store, redis) as srv:
        def first_chunks():
            up = TusClient(srv.tus_url, headers=dict(AUTH)).uploader(
                file_path=str(src), chunk_size=CHUNK, metadata={"filename": "match.mp4", "filetype": "video/mp4"}
            )
            for _ in range(5):
                up.upload_chunk()
            return up.url, up.offset

        url, offset = await in_thread(first_chunks)
        assert offset == 5 * CHUNK
        assert url.startswith(srv.tus_url + "/")
        uid = url.rsplit("/", 1)[1]
        info = srv.uploads.info(uid)
        assert info is not None
        assert (info.offset, info.size, info.complete, info.filename) == (offset, len(data), False, "match.mp4")
        assert info.expires_at is not None
        assert srv.uploads.path_of(uid) is None  # not complete yet

        # The uploader dies in the middle of its next PATCH: half a chunk, then the
        # connection is cut.
        half = CHUNK // 2
        _, writer = await send_raw(
            srv.port, raw_patch_head(srv.port, uid, offset, CHUNK), data[offset : offset + half]
        )
        await until(lambda: file_size(srv.data_file(uid)) == offset + half, "the server wrote the half chunk")
        writer.transport.abort()
        await until(lambda: srv.uploads.info(uid).offset == offset + half, "the server recorded the half chunk")

        # A new client object resumes from the same URL: HEAD gives the offset.
        def resume():
            up = TusClient(srv.tus_url, headers=dict(AUTH)).uploader(file_path=str(src), url=url, chunk_size=CHUNK)
            start = up.offset
            up.upload()
            return start, up.offset

        start, end = await in_thread(resume)
        assert start == offset + half
        assert end == len(data)

        path = srv.uploads.path_of(uid)
        assert path is not None
        assert path.parent == settings.path("uploads")
        assert path.read_bytes() == data
        info = srv.uploads.info(uid)
        assert info.complete and info.offset == info.size == len(data)
        assert info.expires_at is None  # complete uploads are kept until consumed

        head = await srv.head(uid)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == head.headers["upload-length"] == str(len(data))


async def test_a_patch_refused_half_way_leaves_no_stray_bytes(tmp_path, store, redis):
    settings = make_settings(tmp_path)
    payload = os.urandom(1000)
    async with serving(settings, store, redis) as srv:
        uid = await srv.create(len(payload))
        resp = await srv.patch(uid, 0, payload[:900])
        assert resp.status_code == 204, resp.text
        assert resp.headers["upload-offset"] == "900"

        # 200 bytes announced where only 100 fit: the first 50 are written, the rest refused.
        reader, writer = await send_raw(srv.port, raw_patch_head(srv.port, uid, 900, 200), b"x" * 50)
        await until(lambda: file_size(srv.data_file(uid)) == 950, "the server wrote the first 50 bytes")
        writer.write(b"y" * 150)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), WAIT)
        writer.close()
        assert status_line.split()[1] == b"400", status_line
        assert srv.uploads.info(uid).offset == 900

        resp = await srv.patch(uid, 900, payload[900:])
        assert resp.status_code == 204, resp.text
        path = srv.uploads.path_of(uid)
        assert path is not None
        assert path.read_bytes() == payload


# -- 2. API key, size limit ----------------------------------------------------------------


async def test_every_route_but_options_needs_the_key(tmp_path, store, redis):
    settings = make_settings(tmp_path)
    async with serving(settings, store, redis) as srv:
        # OPTIONS (discovery) is open, and advertises the extensions.
        for path in ("/api/uploads", "/api/uploads/"):
            resp = await srv.http.options(path, headers=TUS)
            assert resp.status_code == 204, (path, resp.text)
            extensions = {e.strip() for e in resp.headers["tus-extension"].split(",")}
            assert {"creation", "termination", "expiration"} <= extensions
            assert resp.headers["tus-version"] == "1.0.0"
            assert resp.headers["tus-max-size"] == str(settings.max_upload_bytes)

        for headers in (TUS, {**TUS, "Authorization": "Bearer wrong-key"}, {**TUS, "Authorization": KEY}):
            resp = await srv.http.post("/api/uploads", headers={**headers, "Upload-Length": "10"})
            assert_error(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"] == "Bearer"
        assert not [p for p in settings.path("uploads").glob("*") if p.name != ".locks"]

        uid = await srv.create(10, **{"Upload-Metadata": "filename bm90ZXMudHh0"})
        assert (await srv.head(uid, headers=TUS)).status_code == 401
        no_key = {**TUS, "Content-Type": "application/offset+octet-stream"}
        assert_error(await srv.patch(uid, 0, b"0123456789", headers=no_key), 401, "unauthorized")
        assert_error(await srv.http.delete(f"/api/uploads/{uid}", headers=TUS), 401, "unauthorized")
        # Nothing of the refused PATCH reached the disk, and the DELETE deleted nothing.
        head = await srv.head(uid)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == "0"
        assert file_size(srv.data_file(uid)) == 0
        assert srv.uploads.info(uid).filename == "notes.txt"

        # The tuspy client without the key gets the 401 too.
        src = tmp_path / "small.bin"
        src.write_bytes(b"abc")
        with pytest.raises(TusCommunicationError) as exc:
            await in_thread(lambda: TusClient(srv.tus_url).uploader(file_path=str(src)).upload())
        assert exc.value.status_code == 401


async def test_upload_length_over_the_maximum_is_413(tmp_path, store, redis):
    limit = 64 * 1024
    settings = make_settings(tmp_path, max_upload_bytes=limit)
    async with serving(settings, store, redis) as srv:
        resp = await srv.http.post("/api/uploads", headers={**AUTH, **TUS, "Upload-Length": str(limit + 1)})
        assert_error(resp, 413, "payload_too_large")
        assert resp.headers["tus-max-size"] == str(limit)
        assert not [p for p in settings.path("uploads").glob("*") if p.name != ".locks"]

        # creation-with-upload: a body longer than the declared length is refused as well
        resp = await srv.http.post(
            "/api/uploads",
            headers={**AUTH, **TUS, "Upload-Length": "10", "Content-Type": "application/offset+octet-stream"},
            content=b"z" * 20,
        )
        assert_error(resp, 400, "bad_request")
        # concatenation (which tuspyserver cannot do on a storage backend) is refused up front
        resp = await srv.http.post(
            "/api/uploads", headers={**AUTH, **TUS, "Upload-Length": "10", "Upload-Concat": "partial"}
        )
        assert resp.status_code == 501
        assert not [p for p in settings.path("uploads").glob("*") if p.name != ".locks"]

        # exactly the maximum is fine
        uid = await srv.create(limit)
        assert srv.uploads.info(uid).size == limit

        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(limit + 1))
        with pytest.raises(TusCommunicationError) as exc:
            await in_thread(lambda: TusClient(srv.tus_url, headers=dict(AUTH)).uploader(file_path=str(big)).upload())
        assert exc.value.status_code == 413


# -- 3. expiry -----------------------------------------------------------------------------


async def test_expired_unfinished_uploads_are_swept_and_complete_ones_kept(tmp_path, store, redis):
    settings = make_settings(tmp_path, upload_expiry_seconds=4.0)  # room for the PATCHes below on a busy machine
    whole = tmp_path / "whole.bin"
    whole.write_bytes(os.urandom(5000))
    async with serving(settings, store, redis) as srv:
        resp = await srv.http.post("/api/uploads", headers={**AUTH, **TUS, "Upload-Length": "5000"})
        assert resp.status_code == 201
        unfinished = resp.headers["location"].rsplit("/", 1)[1]
        # Upload-Expires is the configured second, not tuspyserver's whole day.
        expires = parsedate_to_datetime(resp.headers["upload-expires"]).timestamp()
        assert expires < time.time() + 3600
        assert (await srv.patch(unfinished, 0, b"a" * 1000)).status_code == 204
        assert srv.uploads.info(unfinished).expires_at is not None

        complete = await srv.upload_whole(whole, chunk_size=2000)
        assert srv.uploads.path_of(complete) is not None

        while time.time() <= expires + 1:  # until both are past their expiry
            await asyncio.sleep(0.1)

        # Expired but not yet swept: the protocol already says 410 Gone.
        assert (await srv.head(unfinished)).status_code == 410
        assert (await srv.patch(unfinished, 1000, b"b" * 10)).status_code == 410
        assert srv.uploads.info(unfinished) is None
        assert srv.data_file(unfinished).exists()

        assert await srv.uploads.sweep_expired() == 1
        assert not srv.data_file(unfinished).exists()
        assert not srv.info_file(unfinished).exists()
        assert (await srv.head(unfinished)).status_code == 404

        # The complete one stays, whole and resumable-looking (HEAD 200), without an expiry.
        path = srv.uploads.path_of(complete)
        assert path is not None and path.read_bytes() == whole.read_bytes()
        assert srv.uploads.info(complete).expires_at is None
        assert (await srv.head(complete)).status_code == 200
        assert await srv.uploads.sweep_expired() == 0

        # The background loop does the same, and stops when asked.
        third = await srv.create(100)
        stop = asyncio.Event()
        task = asyncio.create_task(srv.uploads.run_sweeper(stop, interval=0.05))
        await until(lambda: not srv.data_file(third).exists(), "the sweeper removed the expired upload")
        stop.set()
        await asyncio.wait_for(task, WAIT)
        assert not srv.info_file(third).exists()
        assert srv.uploads.path_of(complete) is not None


# -- 4. ids, termination -------------------------------------------------------------------


async def test_path_of_refuses_malformed_ids_without_touching_the_filesystem(tmp_path, store, redis):
    settings = make_settings(tmp_path)
    async with serving(settings, store, redis) as srv:
        src = tmp_path / "clip.bin"
        src.write_bytes(os.urandom(3000))
        uid = await srv.upload_whole(src)
        assert srv.uploads.path_of(uid) is not None  # the control: a real, complete upload

        # A decoy next to the uploads dir that looks like a complete upload.
        decoy = json.loads(srv.info_file(uid).read_text())
        settings.path("secret").write_bytes(src.read_bytes())
        settings.path("secret.info").write_text(json.dumps(decoy))

        malformed = [
            "../secret", "..", ".", "", "x" * 1000, "../etc/passwd", "/etc/passwd", f"../uploads/{uid}",
            uid.upper(), uid + "\x00", uid + "/", uid[:-1], uid + "0", f"{uid}.info", None, 42,
        ]
        opened: list[str] = []
        watching = True
        this_thread = threading.get_ident()  # not the app's worker threads

        def audit(event: str, args: tuple) -> None:
            if watching and event in ("open", "os.listdir", "os.scandir") and threading.get_ident() == this_thread:
                opened.append(str(args[0]))

        sys.addaudithook(audit)
        try:
            for bad in malformed:
                assert srv.uploads.path_of(bad) is None, bad
                assert srv.uploads.info(bad) is None, bad
        finally:
            watching = False
        assert opened == []  # refused before any file was opened

        # unknown but well-formed: looked up in the uploads dir only, and not found
        assert srv.uploads.path_of("0" * 32) is None

        for bad in ("..%2Fsecret", "%2e%2e", uid.upper()):
            assert_error(await srv.http.delete(f"/api/uploads/{bad}", headers=AUTH | TUS), 404, "not_found")
            assert (await srv.head(bad)).status_code == 404
        assert settings.path("secret").exists() and settings.path("secret.info").exists()


async def test_termination_removes_the_upload(tmp_path, store, redis):
    settings = make_settings(tmp_path)
    src = tmp_path / "part.bin"
    data = os.urandom(4 * CHUNK)
    src.write_bytes(data)
    async with serving(settings, store, redis) as srv:
        def two_chunks():
            up = TusClient(srv.tus_url, headers=dict(AUTH)).uploader(file_path=str(src), chunk_size=CHUNK)
            up.upload(stop_at=2 * CHUNK)
            return up.url

        uid = (await in_thread(two_chunks)).rsplit("/", 1)[1]
        assert srv.uploads.info(uid).offset == 2 * CHUNK

        resp = await srv.http.delete(f"/api/uploads/{uid}", headers=AUTH | TUS)
        assert resp.status_code == 204, resp.text
        assert not srv.data_file(uid).exists() and not srv.info_file(uid).exists()
        assert (await srv.head(uid)).status_code == 404
        assert srv.uploads.info(uid) is None and srv.uploads.path_of(uid) is None
        assert_error(await srv.http.delete(f"/api/uploads/{uid}", headers=AUTH | TUS), 404, "not_found")
        # the old URL cannot be resumed
        assert (await srv.patch(uid, 2 * CHUNK, data[2 * CHUNK :])).status_code == 404

        # A complete upload can be terminated too, or discarded by whoever consumed it.
        uploaded = []
        for _ in range(2):
            uploaded.append(await srv.upload_whole(src))
        deleted, consumed = uploaded
        assert srv.uploads.path_of(deleted).read_bytes() == data
        assert (await srv.http.delete(f"/api/uploads/{deleted}", headers=AUTH | TUS)).status_code == 204
        assert srv.uploads.path_of(deleted) is None and not srv.data_file(deleted).exists()

        assert srv.uploads.path_of(consumed).read_bytes() == data
        assert await srv.uploads.discard(consumed) is True
        assert srv.uploads.path_of(consumed) is None and not srv.data_file(consumed).exists()
        assert await srv.uploads.discard(consumed) is False
        assert (await srv.head(consumed)).status_code == 404
