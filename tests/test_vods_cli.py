"""`livecut vods` on real parts: a real `livecut up` (Ray, PostgreSQL, Redis, gateway, VOD
scheduler), the command run as a subprocess, real tus uploads through a loopback TCP proxy
that cuts one upload connection half-way, generated broadcasts as the recordings.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from bench.broadcast import make_broadcast
from bench.stack import LivecutProcess
from conftest import free_port, stack_on_fresh_database

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
WAIT = 300.0  # the longest a command may take before the test gives up (a deadline, not a measurement)


class CuttingProxy:
    """A loopback TCP proxy in front of livecut. It forwards bytes both ways, records the head
    of every HTTP request it sees (method, path, headers, in arrival order), and once
    ``cut_after`` bytes of PATCH bodies went through it drops that PATCH's connection, both
    sides, without forwarding the rest: once only."""

    def __init__(self, target_port: int, cut_after: int):
        self.target = ("127.0.0.1", target_port)
        self.cut_after = cut_after
        self.patch_bytes = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.cut_at: int | None = None  # index in ``requests`` of the PATCH that was cut
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            pair = (client, upstream)
            threading.Thread(target=self._pump_up, args=pair, daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _close(self, *socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            with self.lock:
                self.sockets.discard(s)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server, parsing the requests (Content-Length bodies; raw after an upgrade)."""
        mode, buf, remaining, patch = "head", b"", 0, False
        try:
            while data := client.recv(65536):
                piece, cut = data, False
                with self.lock:
                    while piece and mode != "raw":
                        if mode == "head":
                            buf += piece
                            head, sep, rest = buf.partition(b"\r\n\r\n")
                            if not sep:
                                piece = b""
                                break
                            lines = head.decode("latin-1").split("\r\n")
                            method, path = lines[0].split(" ")[:2]
                            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                            self.requests.append((method, path, headers))
                            buf, piece = b"", rest
                            patch = method == "PATCH"
                            remaining = int(headers.get("content-length", "0") or 0)
                            if "upgrade" in headers or "chunked" in headers.get("transfer-encoding", ""):
                                mode = "raw"
                            elif remaining:
                                mode = "body"
                        else:
                            n = min(remaining, len(piece))
                            remaining -= n
                            piece = piece[n:]
                            if patch:
                                self.patch_bytes += n
                                if self.cut_at is None and self.patch_bytes >= self.cut_after:
                                    self.cut_at = len(self.requests) - 1
                                    cut = True
                                    break
                            if not remaining:
                                mode = "head"
                if cut:
                    return  # the finally drops both sides, with this piece unforwarded
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(5)
        with self.lock:
            left = list(self.sockets)
        self._close(*left)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_admin_dsn, redis_url, ffmpeg, espeak):
    """A `livecut up` of this module's own, on a fresh database, with 25 s VOD shards."""
    with stack_on_fresh_database(
        tmp_path_factory.mktemp("vodcli") / "data", pg_admin_dsn, redis_url,
        extra_args=["--allow-private-urls", "--vod-shard-seconds", "25"],
    ) as process:
        yield process


@pytest.fixture(scope="module")
def media(tmp_path_factory, ffmpeg, espeak):
    work = tmp_path_factory.mktemp("vodcli-media")
    a, b = work / "match-a.mp4", work / "match-b.mp4"
    make_broadcast(a, duration=32.0)
    make_broadcast(b, duration=36.0)
    return work, a, b


def livecut(*args: str, key: str | None = "", timeout: float = WAIT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LIVECUT_API_KEY", "LIVECUT_API")}
    if key is not None:
        env["LIVECUT_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "supervisor.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def _duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / av.time_base


def _uploads_on_disk(stack: LivecutProcess) -> set[str]:
    folder = stack.data_dir / "uploads"
    return {p.name for p in folder.iterdir() if re.fullmatch(r"[0-9a-f]{32}", p.name)} if folder.exists() else set()


def test_submit_uploads_resume_after_a_cut_and_a_failed_url_exits_1(stack, media):
    work, a, b = media
    size_a = a.stat().st_size
    chunk = max(16 * 1024, size_a // 10)
    missing = f"http://127.0.0.1:{free_port()}/missing.mp4"
    listing = work / "more.txt"
    listing.write_text(f"# a recording that is not there\n\n  {missing}  \n# the end\n")
    proxy = CuttingProxy(stack.port, cut_after=size_a // 2)
    try:
        result = livecut("vods", "submit", str(a), str(b), f"@{listing}", "--api", proxy.url,
                         "--chunk-size", str(chunk), key=stack.api_key)
    finally:
        proxy.close()
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 1, shown

    # The connection was cut half-way through the first file, and the upload went on where the
    # server had got to (HEAD, then PATCH from a non-zero offset), on the same upload URL.
    assert proxy.cut_at is not None, shown
    method, cut_path, cut_headers = proxy.requests[proxy.cut_at]
    assert method == "PATCH" and cut_path.startswith("/api/uploads/")
    creations = [r for r in proxy.requests if r[0] == "POST" and r[1].rstrip("/") == "/api/uploads"]
    assert len(creations) == 2, proxy.requests  # one per file: the cut file was not created again
    after = [(m, h) for m, p, h in proxy.requests[proxy.cut_at + 1:] if p == cut_path]
    assert after and after[0][0] == "HEAD", after
    resumed = [int(h["upload-offset"]) for m, h in after if m == "PATCH"]
    assert resumed and resumed[0] > 0, after
    assert all(offset > 0 for offset in resumed), after  # never restarted from byte 0
    assert "resuming" in result.stderr

    # Progress on stderr (not a terminal: plain lines): each upload reaches 100%.
    for name in ("match-a.mp4", "match-b.mp4"):
        assert re.search(rf"^upload {re.escape(name)}: 100%", result.stderr, re.M), shown

    # stdout: each job's outcome, in the order given.
    outcomes = re.findall(r"^(\S+)  (\S+): (\w+)", result.stdout, re.M)
    assert [(n, s) for _, n, s in outcomes] == [("match-a.mp4", "done"), ("match-b.mp4", "done"),
                                               ("missing.mp4", "failed")], shown
    assert "error unreachable:" in result.stdout, shown
    ids = {n: i for i, n, _ in outcomes}
    for name in ("match-a.mp4", "match-b.mp4", "missing.mp4"):
        status = "done" if name != "missing.mp4" else "failed"
        assert re.search(rf"^job {ids[name][:8]}… {re.escape(name)}: {status}", result.stderr, re.M), shown

    # The server has what was uploaded, whole: the jobs read the recordings to their end.
    clips_total = 0
    for name, path in (("match-a.mp4", a), ("match-b.mp4", b)):
        job = stack.api("GET", f"/api/vods/{ids[name]}").json()
        assert job["status"] == "done" and job["source"].startswith("upload:"), job
        assert job["duration"] == pytest.approx(_duration(path), abs=0.2), job
        clips = stack.api("GET", "/api/clips", params={"vod_id": job["id"], "limit": 200}).json()["items"]
        clips_total += len(clips)
        assert job["clips"] == len(clips)
        for clip in clips:  # every clip printed, with its video URL (signed when it was printed)
            path = re.escape(clip["video_url"].split("?", 1)[0])
            assert re.search(rf"^  {re.escape(clip['id'])}  .*score .*{path}\?exp=\d+&sig=[\w-]+$",
                             result.stdout, re.M), shown
    assert clips_total >= 1, shown  # each broadcast has a planted moment at 20 s
    failed = stack.api("GET", f"/api/vods/{ids['missing.mp4']}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "unreachable", failed


def test_no_wait_prints_ids_and_list_shows_them(stack):
    base = f"http://127.0.0.1:{free_port()}"
    result = livecut("vods", "submit", "--no-wait", "--name-prefix", "nowait-", f"{base}/one.mp4", f"{base}/two.mp4",
                     "--api", stack.base_url, key=stack.api_key, timeout=60)
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 2 and len(set(ids)) == 2, result.stdout
    for vod_id in ids:
        assert stack.api("GET", f"/api/vods/{vod_id}").status_code == 200

    table = livecut("vods", "list", "--api", stack.base_url, key=stack.api_key, timeout=60)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["ID", "STATUS", "PROGRESS", "CLIPS", "NAME", "ERROR"]
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert set(ids) <= set(rows), table.stdout
    assert "nowait-one.mp4" in rows[ids[0]] and "nowait-two.mp4" in rows[ids[1]], table.stdout

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(stack.api("GET", f"/api/vods/{i}").json()["status"] == "failed" for i in ids):
            break
        time.sleep(1)
    failed = livecut("vods", "list", "--status", "failed", "--api", stack.base_url, key=stack.api_key, timeout=60)
    assert failed.returncode == 0, failed.stderr
    rows = {line.split()[0]: line.split() for line in failed.stdout.splitlines()[1:]}
    assert set(ids) <= set(rows), failed.stdout
    assert all(rows[i][1] == "failed" and rows[i][-1] == "unreachable" for i in ids), failed.stdout
    done = livecut("vods", "list", "--status", "done", "--api", stack.base_url, key=stack.api_key, timeout=60)
    assert done.returncode == 0 and not set(ids) & {ln.split()[0] for ln in done.stdout.splitlines()[1:]}, done.stdout


def test_usage_errors_and_a_refused_batch_exit_2(stack, media):
    work, a, _ = media
    missing_key = livecut("vods", "list", "--api", stack.base_url, key=None, timeout=60)
    assert missing_key.returncode == 2 and "LIVECUT_API_KEY is not set" in missing_key.stderr, missing_key.stderr

    no_list = livecut("vods", "submit", f"@{work / 'no-such-list.txt'}", "--api", stack.base_url,
                      key=stack.api_key, timeout=60)
    assert no_list.returncode == 2 and "cannot read the list" in no_list.stderr, no_list.stderr

    bad_settings = livecut("vods", "submit", "http://127.0.0.1:1/x.mp4", "--settings", "[1]",
                           "--api", stack.base_url, key=stack.api_key, timeout=60)
    assert bad_settings.returncode == 2 and "--settings" in bad_settings.stderr, bad_settings.stderr

    # A batch the server refuses: nothing is queued, the message names the item, and the file
    # uploaded for it first is not left behind on the server.
    before = _uploads_on_disk(stack)
    jobs_before = {j["id"] for j in stack.api("GET", "/api/vods", params={"limit": 200}).json()["items"]}
    refused = livecut("vods", "submit", str(a), "http://127.0.0.1:1/x.mp4", "ftp://x/y",
                      "--api", stack.base_url, key=stack.api_key, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "refused" in refused.stderr and "items[2]" in refused.stderr and "'ftp://x/y'" in refused.stderr, refused.stderr
    assert refused.stdout == ""
    assert {j["id"] for j in stack.api("GET", "/api/vods", params={"limit": 200}).json()["items"]} == jobs_before
    assert _uploads_on_disk(stack) <= before

    wrong_key = livecut("vods", "list", "--api", stack.base_url, key="not-the-key", timeout=60)
    assert wrong_key.returncode == 2 and "refused the key" in wrong_key.stderr, wrong_key.stderr
