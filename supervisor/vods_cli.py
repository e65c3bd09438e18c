"""``livecut vods``: submit recordings as VOD jobs and follow them, or list the jobs.

``submit`` takes URLs, local files and ``@LIST`` files (one URL or path a line; blank lines
and ``#`` comments skipped; relative paths are relative to the list's folder). Local files
are uploaded first over tus (``tuspy``), one after the other; a dropped connection or a
server error is retried with backoff, resuming at the offset the server reports (HEAD) on
the same upload URL, never from byte 0. Then the whole batch goes in one
``POST /api/vods``, items in the order given, and the jobs are followed over Socket.IO
(``vod`` events), with a poll of ``GET /api/vods/{id}`` for any job not heard of for 2 s,
until every job is final. Progress goes to stderr, results (clips, errors) to stdout.

Exit codes: 0 every job done; 1 a job failed or was cancelled (or an upload, or the API,
failed); 2 a usage error or a batch the server refused; 130 interrupted.

Only light imports here: ``livecut vods`` must not pay for the service's.
"""
from __future__ import annotations

import json
import mimetypes
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from records.backoff import Backoff

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_CHUNK = 8 * 1024 * 1024
MAX_ITEMS = 100  # the server's limit on a batch (gateway.vods.MAX_ITEMS)
FINAL = ("done", "failed", "cancelled")
POLL_EVERY = 2.0  # seconds without news of a job before it is polled
LOST_AFTER = 120.0  # seconds without any answer from the API before following gives up
UPLOAD_ATTEMPTS = 10  # consecutive failed tries (no byte gained) before an upload gives up
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


class CliError(Exception):
    """Ends the command with ``message`` on stderr and exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _api_key() -> str:
    key = os.environ.get("LIVECUT_API_KEY", "").strip()
    if not key:
        raise CliError(
            "LIVECUT_API_KEY is not set: export the API key of the livecut server "
            "(`livecut up` prints it; it is kept in DATA_DIR/api_key)",
            EXIT_USAGE,
        )
    return key


def _error_text(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error response, whatever its body."""
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or response.status_code), str(error.get("message") or response.reason_phrase)
    except (ValueError, AttributeError):
        return str(response.status_code), (response.text.strip()[:300] or response.reason_phrase)


class Api:
    """The REST API, with the key on every request."""

    def __init__(self, base: str, key: str, timeout: float = 30.0):
        self.base = base.rstrip("/")
        self.key = key
        self.auth = {"Authorization": f"Bearer {key}"}
        self.http = httpx.Client(base_url=self.base, headers=self.auth, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the livecut API at {self.base}: {exc or type(exc).__name__}") from None
        if response.status_code == 401:
            raise CliError(f"the API at {self.base} refused the key (LIVECUT_API_KEY)", EXIT_USAGE)
        return response

    def json(self, method: str, path: str, **kwargs):
        response = self.call(method, path, **kwargs)
        if response.is_error:
            code, message = _error_text(response)
            raise CliError(f"{method} {path}: {response.status_code} {code}: {message}")
        return response.json()


# -- progress lines ------------------------------------------------------------------------


class Bar:
    def __init__(self, text: str):
        self.text = text
        self.final = False
        self.printed = ""  # the text last written (plain mode)
        self.printed_at = -1e9


class Bars:
    """Progress bars on ``stream``: redrawn in place on a terminal; elsewhere plain lines, at
    most one a second per bar, the final state of each always."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, interval: float = 1.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.live: list[Bar] = []  # terminal: the bars of the region being redrawn
        self.drawn = 0  # terminal: lines of that region on screen
        self.drawn_at = 0.0
        self.pending = False  # terminal: a change not drawn yet
        self.lock = threading.RLock()

    def add(self, text: str) -> Bar:
        with self.lock:
            bar = Bar(text)
            self.live.append(bar)
            self._show(bar, force=True)
            return bar

    def update(self, bar: Bar, text: str, final: bool = False) -> None:
        with self.lock:
            if bar.final:
                return
            if text != bar.text or final:
                self.pending = True
            bar.text, bar.final = text, final
            self._show(bar, force=final)

    def note(self, text: str) -> None:
        """A line of its own (a retry, a warning), above the bars on a terminal."""
        with self.lock:
            if self.tty:
                self._clear()
                self.stream.write(text + "\n")
                self._redraw()
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        with self.lock:
            if self.tty:
                self._redraw()
                self.live, self.drawn = [], 0

    def _show(self, bar: Bar, force: bool) -> None:
        now = time.monotonic()
        if self.tty:
            if force or (self.pending and now - self.drawn_at >= 0.1):
                self._redraw()
            return
        if bar.text != bar.printed and (force or now - bar.printed_at >= self.interval):
            self.stream.write(bar.text + "\n")
            self.stream.flush()
            bar.printed, bar.printed_at = bar.text, now

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _redraw(self) -> None:
        self._clear()
        width = max(20, _terminal_width() - 1)
        for bar in self.live:
            self.stream.write(bar.text[:width] + "\n")
        # Finished bars at the top never change again: they leave the region, as plain lines.
        while self.live and self.live[0].final:
            self.live.pop(0)
        self.drawn = len(self.live)
        self.drawn_at = time.monotonic()
        self.pending = False
        self.stream.flush()


def _terminal_width() -> int:
    """Columns of the terminal on stderr (``COLUMNS`` first); 100 when it does not say."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except (OSError, ValueError):
            columns = 0
    return columns if columns > 0 else 100


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _meter(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


# -- uploads -------------------------------------------------------------------------------


def _tus_uploader_class():
    """tuspy's uploader with timeouts on every request, no retries of its own (``upload_file``
    retries with backoff and resumes at the server's offset) and a body that reports the
    bytes sent."""
    import requests
    from tusclient.exceptions import TusCommunicationError, TusUploadFailed
    from tusclient.request import TusRequest
    from tusclient.uploader import Uploader

    timeout = (10, 120)  # connect; then between reads, after the body went

    class _Body:
        """A PATCH body: its length up front (Content-Length), its bytes read in blocks."""

        def __init__(self, data: bytes, sent: Callable[[int], None]):
            self.data, self.pos, self.sent = data, 0, sent

        def __len__(self) -> int:
            return len(self.data) - self.pos

        def read(self, size: int = -1) -> bytes:
            end = len(self.data) if size is None or size < 0 else min(len(self.data), self.pos + size)
            block = self.data[self.pos:end]
            self.pos = end
            if block:
                self.sent(self.pos)
            return block

    class _Request(TusRequest):
        def __init__(self, uploader):
            super().__init__(uploader)
            self.on_sent = uploader.on_sent

        def perform(self):
            try:
                chunk = self.file.read(self._content_length)
                self.add_checksum(chunk)
                resp = requests.patch(
                    self._url, data=_Body(chunk, self.on_sent), headers=self._request_headers,
                    verify=self.verify_tls_cert, cert=self.client_cert, timeout=timeout,
                )
                self.status_code = resp.status_code
                self.response_content = resp.content
                self.response_headers = {k.lower(): v for k, v in resp.headers.items()}
            except requests.exceptions.RequestException as error:
                raise TusUploadFailed(error) from None

    class _Uploader(Uploader):
        on_sent: Callable[[int], None] = staticmethod(lambda n: None)

        def create_url(self):
            try:
                resp = requests.post(self.client.url, headers=self.get_url_creation_headers(),
                                     verify=self.verify_tls_cert, cert=self.client_cert, timeout=timeout)
            except requests.exceptions.RequestException as error:
                raise TusCommunicationError(error) from None
            url = resp.headers.get("location")
            if resp.status_code >= 300 or url is None:
                raise TusCommunicationError(_tus_message(resp), resp.status_code, resp.content)
            return urljoin(self.client.url, url)

        def get_offset(self):
            try:
                resp = requests.head(self.url, headers=self.get_headers(), verify=self.verify_tls_cert,
                                     cert=self.client_cert, timeout=timeout)
            except requests.exceptions.RequestException as error:
                raise TusCommunicationError(error) from None
            offset = resp.headers.get("upload-offset")
            if resp.status_code >= 300 or offset is None or not offset.isdigit():
                raise TusCommunicationError(_tus_message(resp), resp.status_code, resp.content)
            return int(offset)

        def _do_request(self):
            self.request = _Request(self)
            self.request.perform()
            if not 200 <= self.request.status_code < 300:
                raise TusUploadFailed(_tus_message(self.request), self.request.status_code,
                                      self.request.response_content)
            if not str(self.request.response_headers.get("upload-offset", "")).isdigit():
                raise TusUploadFailed("the server's answer has no Upload-Offset", self.request.status_code)

    return _Uploader, TusCommunicationError


def _tus_message(resp) -> str:
    status = getattr(resp, "status_code", None)
    content = getattr(resp, "content", None) or getattr(resp, "response_content", None) or b""
    try:
        error = json.loads(content).get("error") or {}
        detail = error.get("message") or ""
    except (ValueError, AttributeError, TypeError):
        detail = content.decode("utf-8", "replace").strip()[:200] if isinstance(content, bytes) else ""
    return f"the server answered {status}" + (f": {detail}" if detail else "")


def _retryable(status: int | None) -> bool:
    """A failure worth another try: no answer at all, a server error, a conflict or a lock."""
    return status is None or status >= 500 or status in (408, 409, 423, 429)


def upload_file(api: Api, path: Path, chunk_size: int, bars: Bars, *, label: str,
                sleep: Callable[[float], None] = time.sleep) -> str:
    """Upload ``path`` over tus; its upload id. Resumable: see the module docstring."""
    try:
        return _upload(api, path, chunk_size, bars, label, sleep)
    except OSError as exc:  # the local file: unreadable, or gone meanwhile
        raise CliError(f"upload {label}: cannot read {path}: {exc}") from None


def _upload(api: Api, path: Path, chunk_size: int, bars: Bars, label: str, sleep: Callable[[float], None]) -> str:
    from tusclient.client import TusClient

    uploader_class, TusCommunicationError = _tus_uploader_class()
    size = path.stat().st_size
    bar = bars.add(f"upload {label}: 0%")

    def show(done: int, final: bool = False) -> None:
        fraction = done / size if size else 1.0
        text = f"upload {label}: {int(fraction * 100)}%"
        if bars.tty:
            text = f"upload {label}: {_meter(fraction)} {int(fraction * 100):3d}% {_size(done)} of {_size(size)}"
        elif final:
            text += f" ({_size(size)})"
        bars.update(bar, text, final=final)

    client = TusClient(f"{api.base}/api/uploads", headers=dict(api.auth))
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    with open(path, "rb") as stream:
        uploader = uploader_class(file_stream=stream, client=client, chunk_size=chunk_size,
                                  metadata={"filename": path.name, "filetype": mime}, retries=0)
        uploader.on_sent = lambda sent: show(min(size, uploader.offset + sent))
        failures, restarted, need_head = 0, False, False
        backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)
        while True:
            try:
                if uploader.url is None:
                    uploader.set_url(uploader.create_url())  # kept: every retry resumes this upload
                    uploader.offset = 0
                elif need_head:
                    uploader.offset = uploader.get_offset()  # where the server is, not where we were
                    show(uploader.offset)
                need_head = False
                if uploader.offset >= size:
                    break
                before = uploader.offset
                uploader.upload_chunk()
                if uploader.offset > before:
                    failures = 0
                    backoff.reset()
                show(uploader.offset)
            except TusCommunicationError as exc:
                status = exc.status_code
                reason = str(exc) or f"status {status}"
                if status is None:
                    reason = f"connection lost: {reason[:200]}"
                if status == 401:
                    raise CliError(f"upload {label}: the server refused the key (LIVECUT_API_KEY)", EXIT_USAGE) from None
                if status in (404, 410) and uploader.url is not None and not restarted:
                    bars.note(f"upload {label}: the server no longer has the upload ({reason}); starting it again")
                    uploader.url, restarted = None, True
                    continue
                failures += 1
                if not _retryable(status) or failures >= UPLOAD_ATTEMPTS:
                    tries = "" if not _retryable(status) else f" after {failures} tries"
                    raise CliError(f"upload {label} failed{tries}: {reason}") from None
                delay = backoff.next()
                bars.note(f"upload {label}: {reason}; resuming in {delay:.1f} s from the server's offset")
                sleep(delay)
                need_head = uploader.url is not None
        show(size, final=True)
        return uploader.url.rstrip("/").rsplit("/", 1)[-1]


def discard_uploads(api: Api, upload_ids: list[str]) -> None:
    """Terminate (tus DELETE) uploads no job will consume; a complete upload is otherwise kept."""
    for upload_id in upload_ids:
        try:
            api.http.delete(f"/api/uploads/{upload_id}", headers=TUS_HEADERS)
        except httpx.HTTPError:
            pass


# -- submit --------------------------------------------------------------------------------


@dataclass
class Source:
    given: str  # as written on the command line or in the list
    path: Path | None  # a local file to upload
    url: str | None

    @property
    def label(self) -> str:
        if self.path is not None:
            return self.path.name
        return unquote(urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]) or self.url


def expand_sources(arguments: list[str]) -> list[Source]:
    """URLs, files and ``@LIST`` files → the batch's items, in order."""
    sources: list[Source] = []
    for argument in arguments:
        if argument.startswith("@") and len(argument) > 1:
            list_path = Path(argument[1:]).expanduser()
            try:
                lines = list_path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(f"cannot read the list {list_path}: {exc}", EXIT_USAGE) from None
            for line in lines:
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                sources.append(_source(entry, base=list_path.parent))
        else:
            sources.append(_source(argument, base=None))
    return sources


def _source(entry: str, base: Path | None) -> Source:
    candidate = Path(entry).expanduser()
    if base is not None and not candidate.is_absolute():
        candidate = base / candidate
    if "://" not in entry and candidate.is_file():
        return Source(entry, candidate.resolve(), None)
    return Source(entry, None, entry)


def parse_settings(text: str | None) -> dict:
    if not text:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--settings: cannot read {text[1:]}: {exc}", EXIT_USAGE) from None
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--settings is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(settings, dict):
        raise CliError("--settings must be a JSON object, e.g. '{\"profile\": \"gaming\"}'", EXIT_USAGE)
    return settings


def submit(args, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.chunk_size <= 0:
        raise CliError("--chunk-size must be a positive number of bytes", EXIT_USAGE)
    settings = parse_settings(args.settings)
    sources = expand_sources(args.sources)
    if not sources:
        raise CliError("nothing to submit: give URLs, files or @LIST files (the lists were empty)", EXIT_USAGE)
    if len(sources) > MAX_ITEMS:
        raise CliError(f"a batch has at most {MAX_ITEMS} items ({len(sources)} given)", EXIT_USAGE)
    api = Api(args.api, _api_key())
    bars = Bars(err)
    uploaded: list[str] = []
    accepted = False
    try:
        items = []
        for source in sources:
            item: dict = {}
            if source.path is not None:
                item["upload_id"] = upload_file(api, source.path, args.chunk_size, bars, label=source.label)
                uploaded.append(item["upload_id"])
                item["name"] = (args.name_prefix or "") + source.label
            else:
                item["url"] = source.url
                if args.name_prefix:
                    item["name"] = args.name_prefix + source.label
            if settings:
                item["settings"] = settings
            items.append(item)
        response = api.call("POST", "/api/vods", json={"items": items}, timeout=120)
        if response.status_code in (400, 413, 422):
            _, message = _error_text(response)
            raise CliError(f"the batch was refused: {message}{_which_item(message, sources)}", EXIT_USAGE)
        if response.is_error:
            code, message = _error_text(response)
            raise CliError(f"POST /api/vods: {response.status_code} {code}: {message}")
        jobs = response.json()["items"]
        accepted = True
    finally:
        if not accepted and uploaded:
            discard_uploads(api, uploaded)
    if args.no_wait:
        bars.close()
        for job in jobs:
            out.write(job["id"] + "\n")
        out.flush()
        api.close()
        return EXIT_OK
    try:
        final = Follower(api, jobs, bars).run()
    except KeyboardInterrupt:
        bars.close()
        err.write("stopped following; the jobs go on on the server (livecut vods list):\n")
        for job in jobs:
            err.write(f"  {job['id']}\n")
        return EXIT_INTERRUPTED
    finally:
        bars.close()
    code = report(api, final, out)
    api.close()
    return code


def _which_item(message: str, sources: list[Source]) -> str:
    match = re.search(r"items\[(\d+)\]", message)
    if match and int(match.group(1)) < len(sources):
        return f" (items[{match.group(1)}] is {sources[int(match.group(1))].given!r})"
    return ""


class Follower:
    """Follows jobs to their end: Socket.IO ``vod`` events, and a poll of any job not heard of
    for ``POLL_EVERY`` seconds, so a missed event (or no socket at all) never hangs it."""

    def __init__(self, api: Api, jobs: list[dict], bars: Bars):
        self.api = api
        self.order = [job["id"] for job in jobs]
        self.jobs = {job["id"]: job for job in jobs}
        self.heard = {job["id"]: time.monotonic() for job in jobs}
        self.bars = bars
        self.bar = {job["id"]: bars.add(self._text(job)) for job in jobs}
        self.changed = threading.Condition()
        self.contact = time.monotonic()  # the last answer or event from the server
        self.sio = None

    def _text(self, job: dict) -> str:
        name = job.get("name") or ""
        head = f"job {job['id'][:8]}… {name}"
        status = job.get("status", "?")
        percent = int(round(100 * float(job.get("progress") or 0.0)))
        if status == "done":
            percent = 100
        clips = job.get("clips") or 0
        tail = f", {clips} clip{'s' if clips != 1 else ''}" if clips else ""
        if status in ("failed", "cancelled"):
            error = job.get("error") or {}
            return f"{head}: {status}" + (f" ({error.get('code')})" if error.get("code") else "")
        if self.bars.tty:
            return f"{head}: {_meter(percent / 100)} {status} {percent:3d}%{tail}"
        return f"{head}: {status} {percent}%{tail}"

    def _merge(self, job: dict) -> None:
        if not isinstance(job, dict) or job.get("id") not in self.jobs:
            return
        with self.changed:
            vid = job["id"]
            self.contact = self.heard[vid] = time.monotonic()
            if self.jobs[vid].get("status") in FINAL and job.get("status") not in FINAL:
                return  # a stale answer
            self.jobs[vid] = job
            self.changed.notify_all()

    def _connect(self) -> None:
        try:
            import socketio

            sio = socketio.Client(reconnection=True, logger=False, engineio_logger=False)

            @sio.on("vod")
            def on_vod(data):
                self._merge(data)

            @sio.on("connect")
            def on_connect():
                for vid in self.order:
                    if self.jobs[vid].get("status") not in FINAL:
                        sio.emit("subscribe", {"vod_id": vid})

            self.sio = sio
            sio.connect(self.api.base, auth={"token": self.api.key}, wait_timeout=10)
        except Exception as exc:  # no socket: polling alone still gets there
            self.bars.note(f"(no live updates, polling instead: {exc or type(exc).__name__})")

    def _poll(self) -> None:
        now = time.monotonic()
        for vid in self.order:
            if self.jobs[vid].get("status") in FINAL or now - self.heard[vid] < POLL_EVERY:
                continue
            try:
                response = self.api.http.get(f"/api/vods/{vid}")
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                self._merge(response.json())
            elif response.status_code == 404:  # gone from the server: nothing more will come
                self._merge({**self.jobs[vid], "status": "failed",
                             "error": {"code": "not_found", "message": "the job is gone from the server"}})
            else:
                self.contact = time.monotonic()

    def _render(self) -> None:
        for vid in self.order:
            job = self.jobs[vid]
            self.bars.update(self.bar[vid], self._text(job), final=job.get("status") in FINAL)

    def run(self) -> list[dict]:
        threading.Thread(target=self._connect, name="livecut-vods-socket", daemon=True).start()
        try:
            while True:
                with self.changed:
                    self._render()
                    if all(self.jobs[vid].get("status") in FINAL for vid in self.order):
                        break
                    self.changed.wait(0.5)
                self._poll()
                if time.monotonic() - self.contact > LOST_AFTER:
                    raise CliError(f"no answer from the API at {self.api.base} for {LOST_AFTER:.0f} s; "
                                   "the jobs may go on (livecut vods list)")
        finally:
            if self.sio is not None:
                try:
                    self.sio.disconnect()
                except Exception:
                    pass
        return [self.jobs[vid] for vid in self.order]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}" if hours else f"{int(minutes)}:{secs:04.1f}"


def _snippet(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def job_clips(api: Api, vod_id: str) -> list[dict]:
    clips, before = [], None
    while True:
        params = {"vod_id": vod_id, "limit": 200, **({"before": before} if before else {})}
        page = api.json("GET", "/api/clips", params=params)
        clips.extend(page["items"])
        before = page.get("next")
        if not before:
            return sorted(clips, key=lambda c: (c.get("stream_start") or 0.0, c["id"]))


def report(api: Api, jobs: list[dict], out: TextIO) -> int:
    """Each job's outcome and clips on ``out``; the exit code."""
    code = EXIT_OK
    for job in jobs:
        status = job["status"]
        duration = f", {job['duration']:.1f} s" if job.get("duration") else ""
        if status == "done":
            clips = job_clips(api, job["id"])
            out.write(f"{job['id']}  {job['name']}: done{duration}, {len(clips)} clip{'s' if len(clips) != 1 else ''}\n")
            for clip in clips:
                out.write(
                    f"  {clip['id']}  {_clock(clip.get('stream_start'))}–{_clock(clip.get('stream_end'))}"
                    f"  score {float(clip.get('score') or 0):.2f}  \"{_snippet(clip.get('transcript'))}\""
                    f"  {urljoin(api.base + '/', clip.get('video_url') or '')}\n"
                )
        else:
            code = EXIT_FAILED
            error = job.get("error") or {}
            out.write(f"{job['id']}  {job['name']}: {status}{duration}\n")
            if error:
                out.write(f"  error {error.get('code')}: {error.get('message')}\n")
    out.flush()
    return code


# -- list ----------------------------------------------------------------------------------


def list_jobs(args, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.limit <= 0:
        raise CliError("--limit must be positive", EXIT_USAGE)
    api = Api(args.api, _api_key())
    rows, before = [], None
    while len(rows) < args.limit:
        params = {"limit": min(200, args.limit - len(rows))}
        if args.status:
            params["status"] = args.status
        if before:
            params["before"] = before
        page = api.json("GET", "/api/vods", params=params)
        rows.extend(page["items"])
        before = page.get("next")
        if not before:
            break
    api.close()
    table = [("ID", "STATUS", "PROGRESS", "CLIPS", "NAME", "ERROR")]
    for job in rows:
        name = job.get("name") or ""
        table.append((
            job["id"], job["status"], f"{int(round(100 * float(job.get('progress') or 0)))}%", str(job.get("clips", 0)),
            name if len(name) <= 40 else name[:39] + "…", (job.get("error") or {}).get("code") or "",
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write("  ".join(cell.ljust(w) if i != 2 and i != 3 else cell.rjust(w)
                            for i, (cell, w) in enumerate(zip(row, widths))).rstrip() + "\n")
    if not rows:
        out.write("(no jobs)\n")
    out.flush()
    return EXIT_OK


def main(args) -> int:
    """Run ``livecut vods SUBCOMMAND`` (parsed by ``supervisor.cli``); the exit code."""
    try:
        if args.vods_command == "submit":
            return submit(args)
        return list_jobs(args)
    except CliError as exc:
        sys.stderr.write(f"livecut vods: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("livecut vods: interrupted\n")
        return EXIT_INTERRUPTED
