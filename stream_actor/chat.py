"""Twitch chat in: an anonymous, read-only IRC client, and the feed into the chat detector.

Twitch chat is IRC (``irc.chat.twitch.tv:6697`` over TLS) with IRCv3 message tags. A
read-only login needs no account: nick ``justinfan<digits>``, any password (by custom
``SCHMOOPIIE``). :class:`TwitchChatClient` connects, asks for the Twitch capabilities
(``CAP REQ :twitch.tv/tags twitch.tv/commands``, then ``CAP END``: servers without them,
such as a plain ircd, answer NAK and carry on), logs in, joins ``#<login>``, answers
``PING``, and turns each ``PRIVMSG`` into a :class:`~detectors.chat.ChatMessage` stamped
with its wall-clock receive time (``time.time()``). A lost connection, an ``ERROR`` or a
Twitch ``RECONNECT`` reconnects with exponential backoff until ``stop`` is set.

Threading: iterate :meth:`TwitchChatClient.batches` in one thread (blocking socket reads
with a short timeout, so ``stop`` is seen within ``interval``); ``close()`` may be called
from any thread. :class:`ChatFeed` is that thread's loop for the stream actor: it maps
receive times to stream time with the actor's ``session_origin`` (wall, stream time at
the session's first packet), feeds :class:`~detectors.chat.ChatActivityDetector` (also
advancing it when the chat is quiet) and hands the signals on. Chat received while no
session is live has no stream time and is dropped.
"""
from __future__ import annotations

import logging
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import msgspec

from detectors.chat import ChatActivityDetector, ChatMessage
from records.wire import Signal
from stream_actor.sources.base import AnyEvent, Backoff

log = logging.getLogger(__name__)

__all__ = [
    "ChatFeed",
    "TwitchChatClient",
    "emote_count",
    "parse_irc_line",
    "to_stream_time",
    "twitch_login_from_url",
]

TWITCH_HOST = "irc.chat.twitch.tv"
TWITCH_TLS_PORT = 6697
ANONYMOUS_PASSWORD = "SCHMOOPIIE"

_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_LOGIN = re.compile(r"^[a-zA-Z0-9_]{1,25}$")
_TWITCH_URL = re.compile(r"^(?:https?://)?(?:www\.|m\.|go\.)?twitch\.tv/([a-zA-Z0-9_]{1,25})/?(?:[?#].*)?$", re.I)
_NOT_CHANNELS = frozenset({
    "directory", "videos", "settings", "subscriptions", "inventory", "wallet", "downloads",
    "search", "p", "jobs", "turbo", "store", "login", "signup", "friends", "messages",
})


# -- IRC lines ---------------------------------------------------------------------------


def parse_irc_line(line: str) -> tuple[dict[str, str], str | None, str, list[str]]:
    """One IRC line (without CR LF) as ``(tags, prefix, command, params)``.

    IRCv3 tags (``@k=v;k2`` before the prefix) are unescaped (``\\:`` ``\\s`` ``\\\\``
    ``\\r`` ``\\n``); a tag without a value is ``""``. The command is upper-cased
    (numerics stay as they are); the trailing parameter (after `` :``) is the last of
    ``params``. Raises ``ValueError`` for a line with no command.
    """
    rest = line.rstrip("\r\n")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if not item:
                continue
            key, _, value = item.partition("=")
            tags[key] = _unescape_tag(value)
        rest = rest.lstrip(" ")
    prefix = None
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = rest.split()
    if not words:
        raise ValueError(f"no IRC command in {line!r}")
    params = words[1:] + ([trailing] if trailing is not None else [])
    return tags, prefix, words[0].upper(), params


def _unescape_tag(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 < len(value):
                nxt = value[i + 1]
                out.append(_TAG_ESCAPES.get(nxt, nxt))
            i += 2  # a lone trailing backslash is dropped
            continue
        out.append(c)
        i += 1
    return "".join(out)


def emote_count(tag: str | None) -> int:
    """Native emotes in a message from its ``emotes`` tag (``25:0-4,12-16/1902:6-10``: 3)."""
    if not tag:
        return 0
    count = 0
    for item in tag.split("/"):
        _, _, ranges = item.partition(":")
        count += len([r for r in ranges.split(",") if r])
    return count


def nick_of(prefix: str | None) -> str:
    return (prefix or "").partition("!")[0].partition("@")[0]


def twitch_login_from_url(url: str | None) -> str | None:
    """The channel login of a Twitch channel URL (``https://www.twitch.tv/<login>``), or
    None for other URLs (VODs, clips, other sites)."""
    if not url:
        return None
    m = _TWITCH_URL.match(url.strip())
    if not m or m.group(1).lower() in _NOT_CHANNELS:
        return None
    return m.group(1).lower()


# -- the client ----------------------------------------------------------------------------


class TwitchChatClient:
    """Anonymous read-only chat of one channel; see the module docstring.

    ``host``, ``port`` and ``tls`` point it anywhere (tests use a plain ircd on loopback);
    ``password`` None sends no ``PASS``. Status for health and tests: ``joined`` is set
    while the channel is joined, ``connects`` counts connection attempts, ``last_error``
    says why the last connection failed or ended.
    """

    def __init__(
        self,
        channel_login: str,
        host: str = TWITCH_HOST,
        port: int = TWITCH_TLS_PORT,
        tls: bool = True,
        nick: str | None = None,
        password: str | None = ANONYMOUS_PASSWORD,
        *,
        connect_timeout: float = 10.0,
        ping_after: float = 240.0,  # silence before we PING the server ourselves...
        dead_after: float = 60.0,  # ...and after that, silence before reconnecting
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        login = channel_login.lstrip("#").lower()
        if not _LOGIN.match(login):
            raise ValueError(f"not a Twitch channel login: {channel_login!r}")
        self.channel = "#" + login
        self.host, self.port, self.tls = host, port, tls
        self.nick = nick or f"justinfan{random.randint(10000, 99999999)}"
        self.password = password
        self.connect_timeout = connect_timeout
        self.ping_after, self.dead_after = ping_after, dead_after
        self.backoff = Backoff(*backoff)
        self.joined = threading.Event()
        self.connects = 0
        self.messages = 0  # PRIVMSGs received
        self.last_error: str | None = None
        self._closed = threading.Event()
        self._reconnect_now = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def batches(self, stop: threading.Event, interval: float = 0.5) -> Iterator[list[ChatMessage]]:
        """Yield the messages received since the last yield, at least every ``interval``
        seconds (an empty list when the chat is quiet or disconnected), until ``stop``
        is set or :meth:`close` is called. Each message's ``t`` is its wall-clock
        receive time. Reconnects (with backoff) by itself."""
        stopped = AnyEvent(stop, self._closed)
        while not stopped.is_set():
            try:
                yield from self._session(stopped, interval)
            except Exception as e:  # network, TLS, protocol: reconnect (the chat must not die)
                if not stopped.is_set():
                    self.last_error = f"{type(e).__name__}: {e}"
                    if not isinstance(e, OSError):
                        log.warning("chat %s: unexpected error", self.channel, exc_info=True)
            finally:
                self.joined.clear()
                self._disconnect()
            if stopped.is_set():
                return
            if self._reconnect_now:  # Twitch's RECONNECT: the server asked, come back at once
                self._reconnect_now = False
                continue
            log.info("chat %s: disconnected (%s); reconnecting in %.0f s", self.channel, self.last_error, self.backoff.delay)
            # Wait in interval steps, yielding empty batches so the caller's detector advances.
            deadline = time.monotonic() + self.backoff.next()
            while not stopped.is_set() and time.monotonic() < deadline:
                stopped.wait(min(interval, max(0.0, deadline - time.monotonic())))
                yield []

    def close(self) -> None:
        """Stop :meth:`batches` (from any thread) and drop the connection."""
        self._closed.set()
        self._disconnect()

    # -- one connection ------------------------------------------------------------

    def _connect(self) -> socket.socket:
        self.connects += 1
        raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            if self.tls:
                context = ssl.create_default_context()
                sock = context.wrap_socket(raw, server_hostname=self.host)
            else:
                sock = raw
            sock.settimeout(None)
        except BaseException:
            raw.close()
            raise
        with self._lock:
            self._sock = sock
        if self._closed.is_set():
            self._disconnect()
            raise ConnectionError("closed")
        return sock

    def _disconnect(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _send(self, sock: socket.socket, *lines: str) -> None:
        sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def _session(self, stopped: AnyEvent, interval: float) -> Iterator[list[ChatMessage]]:
        sock = self._connect()
        hello = ["CAP REQ :twitch.tv/tags twitch.tv/commands"]
        if self.password is not None:
            hello.append(f"PASS {self.password}")
        # USER is needed by RFC servers; Twitch ignores it. CAP END ends negotiation on
        # servers that hold registration until it (ngircd does); Twitch accepts it.
        hello += [f"NICK {self.nick}", f"USER {self.nick} 0 * :{self.nick}", "CAP END"]
        self._send(sock, *hello)
        sock.settimeout(min(interval, 0.25))
        buf = b""
        batch: list[ChatMessage] = []
        last_yield = last_heard = time.monotonic()
        pinged = False
        while not stopped.is_set():
            try:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                buf += data
                last_heard, pinged = time.monotonic(), False
            except (socket.timeout, ssl.SSLWantReadError):
                pass
            received = time.time()
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                if line and (msg := self._handle(sock, line, received)) is not None:
                    batch.append(msg)
            now = time.monotonic()
            if now - last_heard > self.ping_after + self.dead_after:
                raise ConnectionError(f"no answer from the server for {now - last_heard:.0f} s")
            if now - last_heard > self.ping_after and not pinged:
                self._send(sock, "PING :livecut")
                pinged = True
            if batch or now - last_yield >= interval:
                out, batch = batch, []
                last_yield = now
                yield out
        if batch:
            yield batch

    def _handle(self, sock: socket.socket, line: str, received: float) -> ChatMessage | None:
        try:
            tags, prefix, command, params = parse_irc_line(line)
        except ValueError:
            return None
        if command == "PING":
            self._send(sock, "PONG :" + (params[-1] if params else ""))
        elif command == "PRIVMSG" and len(params) >= 2 and params[0].lower() == self.channel:
            self.messages += 1
            text = params[1]
            if text.startswith("\x01ACTION ") and text.endswith("\x01"):  # /me
                text = text[8:-1]
            user = tags.get("user-id") or nick_of(prefix).lower()
            return ChatMessage(t=received, user=user, text=text, emotes=emote_count(tags.get("emotes")))
        elif command == "JOIN" and params and params[0].lower() == self.channel and nick_of(prefix).lower() == self.nick.lower():
            self.joined.set()
            self.backoff.reset()
            self.last_error = None
            log.info("chat %s: joined %s:%s", self.channel, self.host, self.port)
        elif command == "001":
            self._send(sock, f"JOIN {self.channel}")
        elif command == "RECONNECT":  # Twitch is restarting this server: come back at once
            self._reconnect_now = True
            raise ConnectionError("the server asked to reconnect")
        elif command == "ERROR":
            raise ConnectionError(f"server error: {params[-1] if params else line}")
        elif command == "NOTICE" and params and "authentication failed" in params[-1].lower():
            raise ConnectionError(f"login refused: {params[-1]}")
        elif command in ("433", "432"):  # nick in use / erroneous: pick another anonymous one
            self.nick = f"justinfan{random.randint(10000, 99999999)}"
            self._send(sock, f"NICK {self.nick}")
        elif command in ("471", "473", "474", "475", "403"):  # cannot join
            raise ConnectionError(f"cannot join {self.channel}: {params[-1] if params else command}")
        return None


# -- into the detector --------------------------------------------------------------------


def to_stream_time(messages: list[ChatMessage], origin: tuple[float, float]) -> list[ChatMessage]:
    """Messages stamped with wall-clock time, re-stamped in stream time by ``origin``
    = (wall clock, stream time) of one instant (the actor's ``session_origin``)."""
    wall0, t0 = origin
    return [msgspec.structs.replace(m, t=t0 + (m.t - wall0)) for m in messages]


class ChatFeed:
    """The stream actor's chat thread: ``run(stop)`` reads the chat, maps it to stream
    time with ``origin()`` (None while not live: the chat is dropped), feeds the
    detector, advances it to "now" on quiet batches, and passes non-empty signal lists
    to ``on_signals``. Returns when ``stop`` is set (or ``close()`` is called)."""

    def __init__(
        self,
        client: TwitchChatClient,
        detector: ChatActivityDetector,
        origin: Callable[[], tuple[float, float] | None],
        on_signals: Callable[[list[Signal]], None],
        *,
        interval: float = 0.5,
    ) -> None:
        self.client = client
        self.detector = detector
        self.origin = origin
        self.on_signals = on_signals
        self.interval = interval
        self.signals: list[Signal] = []  # everything emitted (for tests and status)

    def run(self, stop: threading.Event) -> None:
        for batch in self.client.batches(stop, self.interval):
            origin = self.origin()
            if origin is None:
                continue
            now = origin[1] + (time.time() - origin[0])
            signals = self.detector.push(to_stream_time(batch, origin)) + self.detector.advance(now)
            if signals:
                self.signals += signals
                try:
                    self.on_signals(signals)
                except Exception:  # a consumer error must not end the chat
                    log.exception("chat %s: signal consumer failed", self.client.channel)

    def close(self) -> None:
        self.client.close()
