"""A real RTSP server for the tests: GStreamer's gst-rtsp-server, serving a file as a camera.

Two halves in one file:

* run as a script by Debian's system Python (``/usr/bin/python3``, which has ``gi``; the
  project's venv does not), it is the server: GStreamer's ``GstRtspServer`` serving an MP4
  (H.264 and, when present, AAC) at ``rtsp://127.0.0.1:PORT/MOUNT``, paced in real time by
  the pipeline clock like a live camera, over RTP/TCP (interleaved) and RTP/UDP, with
  optional HTTP basic auth. It prints ``READY <port>`` once it listens and runs until
  SIGTERM/SIGINT (or SIGKILL: a camera losing power).

      /usr/bin/python3 tests/rtsp_server.py --file in.mp4 --port 8554 [--mount /cam]
          [--audio] [--no-sprop] [--user U --password P]

* imported by the tests (the venv), ``RtspServer`` starts, stops (gracefully or by
  SIGKILL), pauses (SIGSTOP: a stalled camera whose TCP connection stays open) and
  restarts that process on the same port, and ``require_gst_rtsp_server()`` fails the
  test loudly when a Debian package is missing (test peers are never skipped).

The Debian packages the server needs are ``DEBIAN_PACKAGES``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: What ``deploy/test.sh`` installs for this server (Debian 12 names).
DEBIAN_PACKAGES = (
    "python3-gi",  # the gi bindings for /usr/bin/python3
    "gir1.2-gst-rtsp-server-1.0",  # GstRtspServer (pulls libgstrtspserver-1.0-0, gir1.2-gstreamer-1.0)
    "gstreamer1.0-plugins-base",  # appsink/appsrc (gst-rtsp-server's RTP over TCP)
    "gstreamer1.0-plugins-good",  # qtdemux, aacparse, rtph264pay, rtpmp4gpay, capssetter, rtpbin, udp
    "gstreamer1.0-plugins-bad",  # h264parse
)
SYSTEM_PYTHON = "/usr/bin/python3"
ELEMENTS = (  # what the pipelines and gst-rtsp-server itself use (appsink/appsrc: RTP over TCP)
    "filesrc", "qtdemux", "h264parse", "aacparse", "rtph264pay", "rtpmp4gpay", "capssetter", "rtpbin", "udpsrc",
    "multiudpsink", "appsink", "appsrc",
)
SCRIPT = Path(__file__).resolve()


# --- the server (system python + gi) ----------------------------------------------------


def _pipeline(path: str, audio: bool, sprop: bool = True) -> str:
    # config-interval=-1: SPS/PPS before every IDR, as cameras send them, so a client that
    # joins (or rejoins) mid-stream can start at the next keyframe.
    video = f'filesrc location="{path}" ! qtdemux name=d d.video_0 ! queue ! h264parse ! '
    if sprop:
        video += "rtph264pay name=pay0 pt=96 config-interval=-1"
    else:  # an SDP without sprop-parameter-sets (some cameras): the SPS only comes in-band
        video += (
            "rtph264pay pt=96 config-interval=-1 ! capssetter name=pay0 replace=true "
            'caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96,packetization-mode=1"'
        )
    if audio:
        video += " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97"
    return f"( {video} )"


def serve(argv: list[str]) -> int:
    import argparse

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    p = argparse.ArgumentParser(description="serve a file over RTSP with gst-rtsp-server")
    p.add_argument("--file", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mount", default="/cam")
    p.add_argument("--audio", action="store_true", help="the file has an AAC track to serve")
    p.add_argument("--no-sprop", action="store_true", help="leave the H.264 parameter sets out of the SDP")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    a = p.parse_args(argv)

    Gst.init(None)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        print(f"MISSING GStreamer elements: {' '.join(missing)}", flush=True)
        return 3

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_pipeline(a.file, a.audio, sprop=not a.no_sprop))
    factory.set_shared(True)  # one pipeline for every client, like a camera's encoder
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(a.mount, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"FAILED to listen on 127.0.0.1:{a.port}", flush=True)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


# --- the test-side wrapper (project venv) ---------------------------------------------


def require_gst_rtsp_server() -> None:
    """Fail the calling test loudly unless the real server can run here."""
    import pytest

    hint = f"install the Debian packages: apt-get install {' '.join(DEBIAN_PACKAGES)} (deploy/test.sh does)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.fail(f"required test peer: {SYSTEM_PYTHON} (Debian's python3) is missing; {hint}")
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        f"m = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None];"
        "print(' '.join(m))"
    )
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"required test peer gst-rtsp-server cannot be checked ({e}); {hint}")
    if out.returncode != 0:
        pytest.fail(f"required test peer gst-rtsp-server is not usable:\n{out.stderr.strip()[-800:]}\n{hint}")
    if out.stdout.strip():
        pytest.fail(f"required GStreamer elements are missing: {out.stdout.strip()}; {hint}")


class RtspServer:
    """One gst-rtsp-server process serving ``file``; restartable on the same port."""

    def __init__(
        self,
        file: Path,
        port: int,
        *,
        mount: str = "/cam",
        audio: bool = True,
        user: str = "",
        password: str = "",
        sprop: bool = True,
        log_path: Path | None = None,
    ) -> None:
        self.file, self.port, self.mount, self.audio = Path(file), port, mount, audio
        self.sprop = sprop
        self.user, self.password = user, password
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.ready_at: float | None = None  # monotonic time the last start began listening
        self.starts = 0

    def url(self, *, user: str | None = None, password: str | None = None) -> str:
        user = self.user if user is None else user
        password = self.password if password is None else password
        cred = f"{user}:{password}@" if user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}{self.mount}"

    def start(self, file: Path | None = None, timeout: float = 20.0) -> RtspServer:
        """Start (again) on the same port, optionally serving another file."""
        assert self.process is None or self.process.poll() is not None, "already running"
        if file is not None:
            self.file = Path(file)
        args = [SYSTEM_PYTHON, str(SCRIPT), "--file", str(self.file), "--port", str(self.port), "--mount", self.mount]
        if self.audio:
            args.append("--audio")
        if not self.sprop:
            args.append("--no-sprop")
        if self.user:
            args += ["--user", self.user, "--password", self.password]
        # The server must not see the venv: gi comes from Debian's python.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        deadline = time.monotonic() + timeout
        while True:
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=True
            )
            line = self._first_line(deadline)
            if line.startswith("READY"):
                break
            self.stop(kill=True)
            if time.monotonic() > deadline or not line.startswith("FAILED to listen"):
                raise RuntimeError(f"RTSP server did not start: {line!r} (exit {self.process.returncode})")
            time.sleep(0.2)  # the port is still held by the previous instance: try again
        self.ready_at = time.monotonic()
        self.starts += 1
        return self

    def _first_line(self, deadline: float) -> str:
        """The server's first line of output ("READY <port>", or why it failed)."""
        import select

        out = self.process.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], 0.1)
            if ready:
                return out.readline().strip()
            if self.process.poll() is not None:
                return out.readline().strip()
        return "(no answer in time)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        """End the server: SIGTERM (graceful), or SIGKILL (the camera loses power)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGCONT)  # in case it was paused
                self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()

    def describe(self, timeout: float = 5.0) -> str:
        """The SDP the server answers to DESCRIBE (what a client learns before SETUP)."""
        import base64
        import socket

        headers = f"CSeq: 1\r\nAccept: application/sdp\r\n"
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers += f"Authorization: Basic {token}\r\n"
        request = f"DESCRIBE rtsp://127.0.0.1:{self.port}{self.mount} RTSP/1.0\r\n{headers}\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as conn:
            conn.sendall(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                0,
            )
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
        if not head.startswith(b"RTSP/1.0 200"):
            raise RuntimeError(f"DESCRIBE failed: {head[:200]!r}")
        return body.decode(errors="replace")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but no byte comes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
