"""The ffmpeg CLI pushing FLV into a stream actor's FLV port, as the edge does: token first.

ffmpeg cannot put bytes in front of its output, so it writes FLV to a pipe and a thread
relays it to the socket after the token. Without a token it is the raw intruder.
Imported by the test modules (pytest puts ``tests/`` on ``sys.path``).
"""
from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]


class FlvPusher:
    def __init__(self, media: Path, host: str, port: int, token: str | None, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [*FFMPEG, "-re", "-i", str(media), "-t", str(seconds), "-c", "copy", "-f", "flv", "pipe:1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.sock = socket.create_connection((host, port), timeout=10)
        if token is not None:
            self.sock.sendall(token.encode("ascii"))
        self.sent = 0  # FLV bytes the listener took
        self._relay = threading.Thread(target=self._copy, daemon=True)
        self._relay.start()

    def _copy(self) -> None:
        try:
            while data := self.proc.stdout.read1(65536):
                self.sock.sendall(data)
                self.sent += len(data)
            self.sock.shutdown(socket.SHUT_WR)  # a clean end of the publish
        except OSError:
            pass  # the listener dropped us
        finally:
            self.proc.stdout.close()

    def wait(self, timeout: float) -> None:
        self.proc.wait(timeout)
        self._relay.join(timeout)
        self.sock.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._relay.join(5)
        self.sock.close()
