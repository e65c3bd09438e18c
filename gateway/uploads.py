"""Resumable uploads, tus 1.0 (core, creation, termination, expiration) at ``/api/uploads``.

tuspyserver speaks the protocol. This module configures it and closes the gaps it leaves,
through its own extension points (a storage backend, the pre-create hook, route
dependencies) rather than by patching it:

- **Auth.** Every route but OPTIONS needs ``Authorization: Bearer KEY``. The key check is a
  route dependency that runs first: tuspyserver's own ``auth`` option is resolved *after* the
  PATCH body dependency, so an unauthenticated PATCH would be written to disk before its 401.
- **Size.** tuspyserver enforces ``max_size`` only while bytes arrive; the pre-create hook
  refuses a larger ``Upload-Length`` up front with 413, and bounds creation-with-upload
  bodies (which tuspyserver reads whole into memory, unchecked).
- **Storage.** A ``storage`` backend (``_Storage``, a ``LocalFileStorage``) rather than
  tuspyserver's default file code, which does blocking I/O and polls its file lock with
  ``time.sleep`` on the event loop, and checks ids only by ``realpath``.
- **Ids.** The server generates them (``uuid4().hex``). Every id-to-path step goes through
  ``_Storage._path``, which accepts exactly 32 lowercase hex digits and nothing else.
- **Expiry.** An unfinished upload expires ``upload_expiry_seconds`` after its creation
  (tuspyserver only counts whole days, so the storage backend stamps the exact time).
  ``sweep_expired`` removes expired unfinished uploads, data and metadata. A *complete*
  upload never expires: it is kept until a job consumes it (``discard``) or a client
  terminates it (DELETE).

On disk, under ``DATA_DIR/uploads/``: ``<id>`` (the bytes), ``<id>.info`` (tuspyserver's JSON
sidecar) and ``.locks/`` (its per-upload lock files).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import re
import time
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from tuspyserver import create_tus_router
from tuspyserver.lock import acquire_upload_lock
from tuspyserver.storage.local import LocalFileStorage

from gateway.auth import require
from gateway.errors import ApiError
from records.settings import Settings

__all__ = ["PREFIX", "UploadInfo", "Uploads", "valid_upload_id"]

log = logging.getLogger(__name__)

PREFIX = "/api/uploads"
CREATION_BODY_MAX = 64 * 1024**2  # creation-with-upload bodies (tuspyserver buffers them whole)
_ID = re.compile(r"[0-9a-f]{32}")
# tuspyserver's HEAD answers 400 unless the metadata has a filename and a filetype, though tus
# makes Upload-Metadata optional: missing ones are stored as these defaults at creation. The
# default filename is the upload id itself, which no client can have sent, so ``info`` can
# tell it from a real one.
_DEFAULT_FILETYPE = "application/octet-stream"


def valid_upload_id(upload_id: object) -> bool:
    return isinstance(upload_id, str) and _ID.fullmatch(upload_id) is not None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _http_date_ts(value: object) -> float | None:
    """tuspyserver's ``expires``: an RFC 7231 date (or an ISO one, or a timestamp)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        pass
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _is_complete(info: dict) -> bool:
    size = info.get("size")
    return isinstance(size, int) and not info.get("defer_length") and info.get("offset") == size


class UploadInfo(msgspec.Struct, frozen=True):
    id: str
    size: int | None  # the declared Upload-Length; None while deferred
    offset: int  # bytes received
    complete: bool
    filename: str | None  # from the tus metadata, for display only; never a path
    created_at: str  # ISO 8601, UTC
    expires_at: str | None  # None once complete: complete uploads are kept until consumed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Storage(LocalFileStorage):
    """tuspyserver's local backend, with strict ids, exact expiry and bounded memory.

    The stock backend buffers a whole PATCH body in memory until its end (20 GiB in one
    request is legal tus) and keeps the bytes of a PATCH refused half-way, which the next
    PATCH would then append after. Here each chunk goes to disk as it arrives, and taking the
    upload's lock cuts the file back to the recorded offset first.
    """

    def __init__(self, files_dir: str, expiry_seconds: float) -> None:
        super().__init__(files_dir)
        self.expiry_seconds = expiry_seconds
        self._fds: dict[str, int] = {}

    def _path(self, uid: str) -> str:
        if not valid_upload_id(uid):
            raise ApiError(404, "not_found", "no such upload")
        return os.path.join(self.files_dir, uid)

    async def list_uids(self) -> list[str]:
        def _do() -> list[str]:
            with contextlib.suppress(FileNotFoundError):
                return [name for name in os.listdir(self.files_dir) if valid_upload_id(name)]
            return []

        return await asyncio.to_thread(_do)

    # -- data ----------------------------------------------------------------------------
    def _open_at_offset(self, uid: str) -> int | None:
        """Open the data file for appending at the offset the metadata records."""
        path = self._path(uid)
        info = read_info_file(self._info_path(uid))
        if info is None or not os.path.exists(path):
            return None  # tuspyserver answers 404 after it re-reads the metadata
        fd = os.open(path, os.O_WRONLY)
        try:
            offset = info.get("offset")
            if isinstance(offset, int) and os.fstat(fd).st_size > offset:
                os.ftruncate(fd, offset)  # the tail of an interrupted or refused PATCH
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.asynccontextmanager
    async def lock(self, uid: str):
        async with super().lock(uid):
            fd = await asyncio.to_thread(self._open_at_offset, uid)
            if fd is not None:
                self._fds[uid] = fd
            try:
                yield
            finally:
                if fd is not None:
                    self._fds.pop(uid, None)
                    os.close(fd)

    async def append(self, uid: str, chunk: bytes) -> None:
        fd = self._fds.get(uid)
        if fd is not None:
            await asyncio.to_thread(_write_all, fd, chunk)
            return

        def _do() -> None:  # outside lock(), which tuspyserver never does
            with open(self._path(uid), "ab") as f:
                f.write(chunk)

        await asyncio.to_thread(_do)

    async def flush(self, uid: str) -> None:
        fd = self._fds.get(uid)
        if fd is not None:
            await asyncio.to_thread(os.fsync, fd)

    # -- metadata ------------------------------------------------------------------------
    async def write_info(self, uid: str, data: dict) -> None:
        data = dict(data)

        def _stamp() -> bool:
            if not os.path.exists(self._path(uid)):
                return False  # terminated or swept meanwhile: don't resurrect its metadata
            stored = read_info_file(self._info_path(uid))
            if stored is not None:
                # Fixed at creation. tuspyserver rewrites them from its in-memory copy (after
                # a creation-with-upload body, say), which lacks what was stamped below.
                for field in ("created_at", "expires", "metadata"):
                    if field in stored:
                        data[field] = stored[field]
            else:  # creation
                now = time.time()
                data["created_at"] = _iso(now)
                data["expires"] = formatdate(now + self.expiry_seconds, usegmt=True)
                metadata = dict(data.get("metadata") or {})
                if not (metadata.get("filename") or metadata.get("name")):
                    metadata["filename"] = uid
                if not (metadata.get("filetype") or metadata.get("type")):
                    metadata["filetype"] = _DEFAULT_FILETYPE
                data["metadata"] = metadata
            if _is_complete(data):
                data["expires"] = None  # kept until consumed (tus: only unfinished uploads expire)
            return True

        if await asyncio.to_thread(_stamp):
            await super().write_info(uid, data)


def read_info_file(path: str | os.PathLike) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Uploads:
    """The tus endpoint (``router``) and what the rest of livecut asks of uploads."""

    def __init__(self, settings: Settings):
        self.max_bytes = settings.max_upload_bytes
        self.expiry_seconds = settings.upload_expiry_seconds
        self._storage = _Storage(str(settings.path("uploads")), self.expiry_seconds)
        self.dir = Path(self._storage.files_dir)  # absolute: path_of's answers travel to Ray workers
        self._locks_dir = os.path.join(self._storage.files_dir, ".locks")
        tus = create_tus_router(
            prefix=PREFIX,
            files_dir=self._storage.files_dir,
            max_size=self.max_bytes,
            # Only the creation response's default; the storage backend stamps the real expiry.
            days_to_keep=max(1, math.ceil(self.expiry_seconds / 86400)),
            on_upload_complete=_log_complete,
            pre_create_dep=_pre_create_dep(self.max_bytes),
            storage=self._storage,
            tags=["uploads"],
        )
        self.router = self._routes(tus, require("ingest", "media"))  # chunks count as media requests

    def _routes(self, tus: APIRouter, key_check) -> APIRouter:
        """tuspyserver's routes, re-added with the key check in front of everything else.

        OPTIONS stays open: it shows only the server's capabilities (version, extensions, max
        size), no upload, and a browser's CORS preflight is an OPTIONS that never carries
        credentials, so a browser tus client could not even start if it asked for a key.
        """
        router = APIRouter()
        for route in tus.routes:
            assert isinstance(route, APIRoute), route
            endpoint = route.endpoint
            methods = set(route.methods or ())
            if "POST" in methods:
                endpoint = self._exact_expiry(endpoint)
            paths = [route.path]
            if methods == {"OPTIONS"}:
                paths.append(route.path.rstrip("/"))  # also at /api/uploads, like POST
            for path in paths:
                router.add_api_route(
                    path,
                    endpoint,
                    methods=sorted(methods),
                    status_code=route.status_code,
                    name=route.name,
                    tags=route.tags,
                    dependencies=list(route.dependencies) + ([] if methods == {"OPTIONS"} else [Depends(key_check)]),
                    include_in_schema=route.include_in_schema,
                    route_class_override=type(route),
                )
        return router

    def _exact_expiry(self, endpoint):
        """The creation route, answering with the stored expiry rather than whole days."""
        storage = self._storage

        @functools.wraps(endpoint)
        async def create(*args, **kwargs):
            response = await endpoint(*args, **kwargs)
            uid = response.headers.get("location", "").rsplit("/", 1)[-1]
            stored = await storage.read_info(uid) if valid_upload_id(uid) else None
            expires = stored.get("expires") if stored else None
            if expires:
                response.headers["Upload-Expires"] = expires
            elif "upload-expires" in response.headers:
                del response.headers["upload-expires"]
            return response

        return create

    # -- what the VOD code uses --------------------------------------------------------------
    def info(self, upload_id: str) -> UploadInfo | None:
        """The upload's state; None when the id is malformed or unknown, or the upload
        expired unfinished."""
        if not valid_upload_id(upload_id):
            return None
        data_path = self.dir / upload_id
        raw = read_info_file(self.dir / f"{upload_id}.info")
        if raw is None:
            return None
        try:
            stored = data_path.stat().st_size
        except OSError:
            return None
        size = raw.get("size")
        size = size if isinstance(size, int) and not isinstance(size, bool) and not raw.get("defer_length") else None
        offset = raw.get("offset")
        offset = offset if isinstance(offset, int) and not isinstance(offset, bool) else 0
        complete = _is_complete(raw) and stored == size
        expires = _http_date_ts(raw.get("expires"))
        if not complete and expires is not None and expires <= time.time():
            return None
        metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        filename = metadata.get("filename") or metadata.get("name")
        if not isinstance(filename, str) or filename == upload_id:
            filename = None
        created_at = raw.get("created_at")
        return UploadInfo(
            id=upload_id,
            size=size,
            offset=offset,
            complete=complete,
            filename=filename,
            created_at=created_at if isinstance(created_at, str) else "",
            expires_at=None if complete or expires is None else _iso(expires),
        )

    def path_of(self, upload_id: str) -> Path | None:
        """The file of a complete upload, else None (unknown, unfinished, expired, malformed)."""
        info = self.info(upload_id)
        if info is None or not info.complete:
            return None
        return self.dir / info.id

    async def discard(self, upload_id: str) -> bool:
        """Remove an upload (a consumed one, say), data and metadata; False if there was none."""
        if not valid_upload_id(upload_id):
            return False
        return await asyncio.to_thread(self._remove, upload_id, True)

    # -- expiry ----------------------------------------------------------------------------
    async def sweep_expired(self) -> int:
        """Remove the unfinished uploads past their expiry; the number removed."""
        return await asyncio.to_thread(self._sweep)

    async def run_sweeper(self, stop: asyncio.Event, interval: float = 60.0) -> None:
        """``sweep_expired`` now and every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                if removed := await self.sweep_expired():
                    log.info("removed %d expired upload(s)", removed)
            except Exception:
                log.exception("upload sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    @contextlib.asynccontextmanager
    async def sweeping(self, interval: float = 60.0):
        """``run_sweeper`` in the background for the duration of the block (an app lifespan)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run_sweeper(stop, interval), name="livecut-upload-sweeper")
        try:
            yield
        finally:
            stop.set()
            await task

    def _sweep(self) -> int:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        now = time.time()
        uids: set[str] = set()
        for name in names:
            base = name.split(".", 1)[0]
            if not valid_upload_id(base):
                continue
            if name in (base, f"{base}.info"):
                uids.add(base)
            elif name == f"{base}.info.tmp":  # a metadata write that never finished
                with contextlib.suppress(OSError):
                    if os.stat(self.dir / name).st_mtime + self.expiry_seconds <= now:
                        os.remove(self.dir / name)
        removed = 0
        for uid in sorted(uids):
            if self._expired(uid, now) and self._remove(uid, blocking=False, expired_at=now):
                removed += 1
        return removed

    def _expired(self, uid: str, now: float) -> bool:
        data_path = self.dir / uid
        info = read_info_file(self.dir / f"{uid}.info")
        if info is None:
            # Data without metadata lives for an instant at creation; older, it's debris.
            with contextlib.suppress(OSError):
                return data_path.stat().st_mtime + self.expiry_seconds <= now
            return True  # neither file readable: whatever is left goes
        if not data_path.exists():
            return True  # metadata of a terminated upload, rewritten by a PATCH in flight
        if _is_complete(info):
            return False
        expires = _http_date_ts(info.get("expires"))
        if expires is None:
            with contextlib.suppress(OSError):
                expires = data_path.stat().st_mtime + self.expiry_seconds
        return expires is not None and expires <= now

    def _remove(self, uid: str, blocking: bool, expired_at: float | None = None) -> bool:
        """Delete data and metadata under the upload's lock; with ``expired_at``, only if the
        upload is still expired then (a PATCH may have completed it meanwhile)."""
        data_path = self.dir / uid
        info_path = self.dir / f"{uid}.info"
        try:
            with acquire_upload_lock(str(data_path), locks_dir=self._locks_dir, blocking=blocking):
                if expired_at is not None and not self._expired(uid, expired_at):
                    return False
                found = False
                for path in (data_path, info_path):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        found = True
                return found
        except OSError as exc:  # held by a PATCH in flight (non-blocking): the next sweep gets it
            log.debug("upload %s not removed: %s", uid, exc)
            return False


def _pre_create_dep(max_bytes: int):
    """tuspyserver's ``pre_create_dep``: the checks it does not make on POST."""

    async def dependency(request: Request):
        headers = request.headers

        def check(_metadata: dict, upload: dict) -> None:
            if "upload-concat" in headers:
                # tuspyserver cannot concatenate on a storage backend (and would leave the
                # empty final upload behind): refuse it before anything is created.
                raise ApiError(501, "not_implemented", "the concatenation extension is not supported")
            size, deferred = upload.get("size"), upload.get("defer_length")
            if size is None and not deferred:
                raise ApiError(400, "bad_request", "Upload-Length or Upload-Defer-Length: 1 is required")
            if size is not None and size < 0:
                raise ApiError(400, "bad_request", "Upload-Length must not be negative")
            if size is not None and size > max_bytes:
                raise _too_large(max_bytes)
            # creation-with-upload: tuspyserver reads the whole POST body into memory and
            # appends it without checking it against Upload-Length or the maximum.
            body = headers.get("content-length", "0")
            body_len = int(body) if body.isdigit() else 0
            if size is not None and body_len > size:
                raise ApiError(400, "bad_request", "the request body is longer than Upload-Length")
            if body_len > max_bytes:
                raise _too_large(max_bytes)
            if body_len > CREATION_BODY_MAX:
                raise ApiError(
                    413, "payload_too_large",
                    f"a creation request carries at most {CREATION_BODY_MAX} bytes; send the rest with PATCH",
                )

        return check

    return dependency


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"uploads are limited to {max_bytes} bytes", {"Tus-Max-Size": str(max_bytes)}
    )


def _log_complete(path: str, metadata: dict) -> None:
    log.info("upload %s complete", os.path.basename(path))
