"""Runs ``livecut up`` as a real subprocess for end-to-end tests and benchmarks."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def asr_server_processes() -> list:
    """This machine's ASR server processes (Ray titles an actor's process ray::<class>)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("ray::AsrServer" in part for part in p.info["cmdline"] or ()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _PortTaken(Exception):
    pass


class LivecutProcess:
    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str = "",
        redis_url: str = "",
        api_key: str = "test-api-key",
        extra_args: list[str] | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.port = free_port()
        self.rtmp_port = free_port()
        self.env = {**os.environ, "LIVECUT_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
        self.env.pop("RAY_ADDRESS", None)
        # tests and benches poll the API far past a user's budget: rate limits have their own test
        for name in ("LIVECUT_RATE_LIMIT", "LIVECUT_MEDIA_RATE_LIMIT", "LIVECUT_CONNECT_RATE_LIMIT"):
            self.env.setdefault(name, "1000000")
        for name, value in (("DATABASE_URL", database_url), ("REDIS_URL", redis_url)):
            if value:
                self.env[name] = value
            else:
                self.env.pop(name, None)
        self.args = [
            sys.executable, "-m", "supervisor.cli", "up",
            "--port", str(self.port), "--rtmp-port", str(self.rtmp_port),
            "--data-dir", str(self.data_dir), *(extra_args or []),
        ]
        self.process: subprocess.Popen | None = None
        self.leftovers: list[str] = []
        self.log_path = self.data_dir / "livecut.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rtmp_url(self, stream_key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{stream_key}"

    def start(self, timeout: float = 180.0, port_retries: int = 3) -> "LivecutProcess":
        """Start and wait for /healthz. ``free_port`` can only pick ports that were free a
        moment ago: when another process takes one first, start again on fresh ports."""
        for attempt in range(port_retries + 1):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if attempt == port_retries:
                    raise
                self.port, self.rtmp_port = free_port(), free_port()
                self.args[self.args.index("--port") + 1] = str(self.port)
                self.args[self.args.index("--rtmp-port") + 1] = str(self.rtmp_port)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> "LivecutProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log_from = log.tell()
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # so stop() can also reap anything left in its group
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self._log_since(log_from).lower():
                    raise _PortTaken()
                raise RuntimeError(f"livecut up exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"livecut up did not become healthy in {timeout}s:\n{self.log_tail()}")

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self, timeout: float = 90.0) -> int:
        """SIGINT like Ctrl-C, then wait; kill the group only if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise
        self.leftovers = self._wait_group_empty(15.0)
        return code

    def _wait_group_empty(self, timeout: float) -> list[str]:
        """Processes still in livecut's process group (Ray's, the demo publisher...) after it exited."""
        import psutil

        deadline = time.monotonic() + timeout
        while True:
            left = []
            for proc in psutil.process_iter(["pid", "cmdline"]):
                try:
                    if os.getpgid(proc.pid) == self.process.pid:
                        left.append(" ".join(proc.info["cmdline"] or [])[:120])
                except (ProcessLookupError, psutil.Error):
                    continue
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)

    def wait_channel(self, channel_id: str, predicate, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        channel = {}
        while time.monotonic() < deadline:
            channel = self.api("GET", f"/api/channels/{channel_id}").json()
            if predicate(channel):
                return channel
            time.sleep(0.5)
        raise TimeoutError(f"channel never matched: {channel}\n{self.log_tail()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ClipSubscriber:
    """A python-socketio client that records each ``clip`` event with its arrival time, for a
    channel or for VOD jobs (``vod_ids``; their ``vod`` job events are kept too)."""

    def __init__(
        self, base_url: str, api_key: str, channel_id: str | None = None, last_clip_id: str | None = None,
        *, vod_ids: list[str] = (),
    ):
        import socketio

        self.clips: list[dict] = []
        self.arrivals: list[float] = []
        self.acks: list[dict] = []
        self.vod_events: list[dict] = []
        self.changed = threading.Condition()
        self.client = socketio.Client(reconnection=True)
        self.channel_id = channel_id
        self.vod_ids = list(vod_ids)
        self.last_clip_id = last_clip_id

        @self.client.on("vod")
        def on_vod(data):
            with self.changed:
                self.vod_events.append(data)
                self.changed.notify_all()

        @self.client.on("clip")
        def on_clip(data):
            with self.changed:
                self.clips.append(data)
                self.arrivals.append(time.time())
                self.last_clip_id = data["id"]
                self.changed.notify_all()

        @self.client.on("connect")
        def on_connect():
            topics = [{"channel_id": self.channel_id}] if self.channel_id else []
            topics += [{"vod_id": vod_id} for vod_id in self.vod_ids]
            for payload in topics:
                if self.last_clip_id:
                    payload["last_clip_id"] = self.last_clip_id
                self.client.emit("subscribe", payload, callback=self.acks.append)

        self.client.connect(base_url, auth={"token": api_key}, transports=["websocket"], wait_timeout=10)

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.clips) < count and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(left)
            return list(self.clips)

    def wait_until(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked at each event)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self) and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(min(left, 1.0))
            return predicate(self)

    def close(self) -> None:
        self.client.disconnect()
