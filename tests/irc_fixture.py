"""A real IRC server for the chat tests (Debian's ngircd on loopback) and a scripted chat.

``Ngircd`` writes a minimal config into a temp dir, starts ``ngircd -n -f CONF`` on a free
127.0.0.1 port, waits until it accepts, and stops it (SIGTERM, then SIGKILL). The config
is what a Twitch-style client needs from a stock ircd:

* ``Password = SCHMOOPIIE`` with ``PAM = no``: Twitch's anonymous login sends ``PASS``;
  with PAM off and no global password ngircd refuses *any* PASS ("Bad password?").
* ``MaxNickLength = 30``: the default (9, RFC 2812) refuses ``justinfan12345``.
* ``MaxPenaltyTime = 0`` (no flood penalties: scripted chat sends fast),
  ``MaxConnectionsIP = 0`` (the chatters all come from 127.0.0.1; the default is 5).
* ``Ident = no``, ``DNS = no``: no lookups delaying each connection;
  ``IncludeDir`` an empty dir of its own, so no system snippets are read (not the dir
  of the config itself: ngircd would read ``ngircd.conf`` twice and complain).
* No ``PidFile``: ngircd started as root drops to ``nobody`` (it refuses to run as root)
  and could not write one in a root-only temp dir.

ngircd answers ``CAP REQ :twitch.tv/tags ...`` with NAK and holds registration until
``CAP END`` (the client sends it). It relays no IRCv3 tags, so emotes over this server
are counted from the text.

``ScriptedChat`` is a crowd of registered IRC users in one channel that sends a
``script`` of ``(seconds from start, user index, text)`` on schedule from one thread; a
drain thread reads (and answers PINGs on) every chatter's socket, so the server never
drops a chatter for a full send queue.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

NGIRCD = "/usr/sbin/ngircd"
PASSWORD = "SCHMOOPIIE"

CONFIG = """\
[Global]
  Name = irc.livecut.test
  Info = livecut chat test server
  Listen = 127.0.0.1
  Ports = {port}
  MotdPhrase = "livecut test"
  Password = {password}
  AdminInfo1 = livecut tests
  AdminInfo2 = loopback
  AdminEMail = tests@livecut.invalid
[Limits]
  MaxConnectionsIP = 0
  MaxNickLength = 30
  MaxPenaltyTime = 0
  MaxJoins = 0
  PingTimeout = 120
[Options]
  PAM = no
  Ident = no
  DNS = no
  IncludeDir = {dir}
"""


def ngircd_path() -> str:
    """The ngircd binary; fails the test loudly when the Debian package is missing."""
    import shutil

    import pytest

    path = shutil.which("ngircd") or (NGIRCD if os.access(NGIRCD, os.X_OK) else None)
    if not path:
        pytest.fail("required test peer 'ngircd' is not installed (apt-get install ngircd; deploy/test.sh installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ngircd:
    def __init__(self, workdir: Path, binary: str = NGIRCD) -> None:
        self.workdir = Path(workdir)
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "ngircd.log"

    def start(self, timeout: float = 10.0, port: int | None = None) -> Ngircd:
        """Start on ``port`` (a restart on the same port), else on a free one."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(1 if port else 3):  # a free port may be taken before ngircd binds it
            self.port = port or _free_port()
            conf = self.workdir / "ngircd.conf"
            include = self.workdir / "conf.d"  # empty; not the config's own dir, or it reads itself twice
            include.mkdir(exist_ok=True)
            conf.write_text(CONFIG.format(port=self.port, password=PASSWORD, dir=include))
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "-n", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"ngircd did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class IrcUser:
    """A plain registered IRC user (blocking socket), for the scripted chat."""

    def __init__(self, host: str, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        self.lock = threading.Lock()  # the script and the drain thread both send
        self.send(f"PASS {PASSWORD}", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.wait_for(lambda line: line.split()[1:2] == ["001"], "welcome")

    def send(self, *lines: str) -> None:
        with self.lock:
            self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def wait_for(self, pred, what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                elif line.startswith("ERROR"):
                    raise ConnectionError(f"{self.nick}: {line}")
                elif pred(line):
                    return
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(4096)
            self.sock.settimeout(5)
            if not data:
                raise ConnectionError(f"{self.nick}: closed while waiting for {what}")
            self.buf += data
        raise TimeoutError(f"{self.nick}: no {what} in {timeout} s")

    def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        self.wait_for(lambda line: line.split()[1:3] == ["366", self.nick], f"JOIN {channel}")

    def close(self) -> None:
        try:
            self.send("QUIT :bye")
        except OSError:
            pass
        self.sock.close()


class ScriptedChat:
    """``users`` chatters in ``channel``; :meth:`play` sends a script on schedule."""

    def __init__(self, host: str, port: int, channel: str, users: int, prefix: str = "viewer") -> None:
        self.channel = channel
        self.users: list[IrcUser] = []
        self.sent: list[tuple[float, int, str]] = []  # (wall clock, user, text) as sent
        self._stop = threading.Event()
        self._drain: threading.Thread | None = None
        try:
            for i in range(users):
                user = IrcUser(host, port, f"{prefix}{i:02d}")
                user.join(channel)
                self.users.append(user)
        except BaseException:
            self.close()
            raise
        self._drain = threading.Thread(target=self._drain_all, name="irc-drain", daemon=True)
        self._drain.start()

    def _drain_all(self) -> None:
        sel = selectors.DefaultSelector()
        for user in self.users:
            sel.register(user.sock, selectors.EVENT_READ, user)
        while not self._stop.is_set():
            for key, _ in sel.select(0.2):
                user: IrcUser = key.data
                try:
                    data = user.sock.recv(65536)  # readable: returns at once
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(user.sock)
                    continue
                user.buf += data
                *lines, user.buf = user.buf.split(b"\n")
                for raw in lines:
                    if raw.startswith(b"PING"):
                        user.send("PONG" + raw[4:].rstrip(b"\r").decode("utf-8", "replace"))
        sel.close()

    def play(self, script: list[tuple[float, int, str]], start: float | None = None, stop: threading.Event | None = None) -> None:
        """Send each ``(offset, user, text)`` at wall clock ``start + offset`` (now if
        None), in offset order, blocking until done."""
        start = time.time() if start is None else start
        for offset, index, text in sorted(script, key=lambda x: x[0]):
            delay = start + offset - time.time()
            if delay > 0 and (stop or self._stop).wait(delay):
                return
            user = self.users[index % len(self.users)]
            user.send(f"PRIVMSG {self.channel} :{text}")
            self.sent.append((time.time(), index % len(self.users), text))

    def close(self) -> None:
        self._stop.set()
        if self._drain is not None:
            self._drain.join(2)
        for user in self.users:
            user.close()

