"""One RTSP connection between FFmpeg and a camera, relayed so that the URL policy holds.

FFmpeg's rtsp demuxer resolves the camera's name itself and follows ``3xx`` redirects
itself (any host, any port), and a camera's ``Transport`` answer can name another host to
send UDP to (``source=``). So the RTSP plugin never gives FFmpeg the camera's address: it
gives it the gate's, on loopback, and the gate

* accepts one connection (from this process: checked by its peer port), then connects to
  the camera through ``UrlPolicy.connect`` (resolved once, every address checked, connected
  by address; ``rtsps`` is TLS from the gate, with the camera's name as SNI, unverified as
  FFmpeg's own ``tls_verify`` default);
* passes FFmpeg's bytes to the camera unchanged (requests, and RTCP in ``$`` frames);
* reads the camera's bytes as RTSP: interleaved ``$`` frames pass; a ``3xx`` answer is
  not passed on: its ``Location`` is kept (``redirect``) and both sides are closed, so the
  plugin can check the new URL like the first and open it through a new gate; a
  ``Transport`` header gets ``source=`` set to the camera's checked address (FFmpeg sends
  its UDP punch and RTCP packets there, never to the gate's loopback address or a host
  the camera names);
* shuts both sides down on ``shutdown()``: that wakes a read FFmpeg has blocked on a
  silent camera.

The request URIs FFmpeg sends name the gate (``rtsp://127.0.0.1:PORT/path``); they are not
rewritten, because a Digest ``Authorization`` signs the URI as FFmpeg wrote it. Cameras go
by the path.
"""
from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
from urllib.parse import urlsplit, urlunsplit

from records.url_policy import UrlPolicy, parse_target

__all__ = ["RtspGate", "MAX_HEAD"]

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # an RTSP message head larger than this ends the connection
_STATUS = re.compile(rb"^RTSP/\d\.\d (\d{3})")
_TRANSPORT = re.compile(rb"^transport:", re.I)
_LOCATION = re.compile(rb"^location:", re.I)
_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)", re.I)


def _own_connection(peer: tuple) -> bool:
    """Whether ``peer`` (a connection to the gate) comes from this process."""
    try:
        import psutil

        return any(c.laddr and tuple(c.laddr)[:2] == tuple(peer)[:2]
                   for c in psutil.Process().net_connections(kind="tcp"))
    except Exception:  # noqa: BLE001 - no psutil or /proc: loopback is as far as it goes
        return True


class RtspGate:
    def __init__(self, url: str, policy: UrlPolicy, timeout: float) -> None:
        self.target = parse_target(url)
        self.policy = policy
        self.timeout = timeout
        self.redirect: str | None = None  # the Location of a 3xx the camera answered
        self.error: BaseException | None = None  # why the camera could not be reached
        self.peer: str | None = None  # the camera's address, once connected
        self._url = url
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(timeout * 2 + 5)
        self._client: socket.socket | None = None
        self._camera: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="rtsp-gate", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The URL FFmpeg opens: the camera's, with the gate as host (credentials kept)."""
        parts = urlsplit(self._url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self._listener.getsockname()[1]}"
        return urlunsplit(("rtsp", netloc, parts.path, parts.query, ""))

    # -- the relay

    def _run(self) -> None:
        try:
            while True:
                client, peer = self._listener.accept()
                if _own_connection(peer):
                    break
                client.close()  # another local user: not ours to relay
        except OSError:
            return
        finally:
            self._listener.close()
        try:
            camera = self.policy.connect(self.target.host, self.target.port, self.timeout)
            if self.target.scheme == "rtsps":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # as FFmpeg's tls_verify=0 default
                camera = context.wrap_socket(camera, server_hostname=self.target.host)
            camera.settimeout(None)
        except BaseException as exc:  # noqa: BLE001 - the plugin reports it
            self.error = exc
            client.close()
            return
        with self._lock:
            self._client, self._camera = client, camera
            self.peer = camera.getpeername()[0]
            if self._closed:
                self._shut()
                return
        upstream = threading.Thread(target=self._to_camera, name="rtsp-gate-up", daemon=True)
        upstream.start()
        try:
            self._to_ffmpeg()
        finally:
            self._shut()
            upstream.join(timeout=5)
            for sock in (client, camera):
                try:
                    sock.close()
                except OSError:
                    pass

    def _to_camera(self) -> None:
        try:
            while chunk := self._client.recv(65536):
                self._camera.sendall(chunk)
        except OSError:
            pass
        self._shut()

    def _to_ffmpeg(self) -> None:
        """The camera's bytes, message by message: ``$`` frames as they are, RTSP messages
        checked (``3xx``) and their ``Transport`` pinned to the camera's address."""
        buf = b""
        camera, client = self._camera, self._client
        try:
            while True:
                if buf[:1] == b"$":
                    if len(buf) < 4:
                        chunk = camera.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                        continue
                    size = 4 + int.from_bytes(buf[2:4], "big")
                    while len(buf) < size:
                        chunk = camera.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    client.sendall(buf[:size])
                    buf = buf[size:]
                    continue
                end = buf.find(b"\r\n\r\n")
                if end < 0 or not buf:
                    if len(buf) > MAX_HEAD:
                        return
                    chunk = camera.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    continue
                head, rest = buf[:end], buf[end + 4:]
                lines = head.split(b"\r\n")
                length = next((int(m.group(1)) for line in lines if (m := _CONTENT_LENGTH.match(line))), 0)
                while len(rest) < length:
                    chunk = camera.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                body, buf = rest[:length], rest[length:]
                status = _STATUS.match(lines[0])
                if status and 300 <= int(status.group(1)) < 400:
                    location = next((line.split(b":", 1)[1].strip() for line in lines if _LOCATION.match(line)), b"")
                    self.redirect = location.decode("latin-1") or "(no location)"
                    return  # not passed on: FFmpeg would follow it unchecked
                lines = [self._pin_transport(line) if _TRANSPORT.match(line) else line for line in lines]
                client.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        except OSError:
            return

    def _pin_transport(self, line: bytes) -> bytes:
        """``Transport: …;source=<camera>``: FFmpeg's UDP goes to the checked address."""
        name, _, value = line.partition(b":")
        specs = []
        for spec in value.split(b","):
            params = [p for p in spec.strip().split(b";")
                      if not p.strip().lower().startswith((b"source=", b"destination="))]
            params.append(b"source=" + (self.peer or "").encode())
            specs.append(b";".join(params))
        return name + b": " + b",".join(specs)

    # -- control

    def _shut(self) -> None:
        for sock in (self._client, self._camera):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def shutdown(self) -> None:
        """Wake whatever reads the connection: it sees the connection end."""
        with self._lock:
            self._closed = True
            self._shut()
        try:  # wakes a pending accept (closing alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown()
        self._thread.join(timeout=5)
