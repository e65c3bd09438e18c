"""The one URL policy: which URLs the server may open for a user, and where it may connect.

A channel's or VOD job's URL comes from an API client, and the server fetches it from inside
the deployment: unchecked, it reads local files or reaches loopback, private, link-local
(cloud metadata at 169.254.169.254) or multicast addresses, and its error messages tell which
private ports are open. The API (``gateway.api``, ``gateway.vods``) and every source kind
(HTTP, HLS and streamlink in ``stream_actor.sources.url``, RTSP in
``stream_actor.sources.rtsp``, VOD in ``vod.sources``/``vod.probe``) use this module, and
only this one:

1. **Static check** (``UrlPolicy.check``, no network): the scheme must be one the source kind
   opens (``SCHEMES``); no whitespace or control characters; local paths and ``file://``
   only with the operator's permission. A host written as an address is judged as the
   address it denotes, in every form the C library accepts: ``127.1``, ``2130706433``,
   ``0x7f.1``, ``0177.0.0.1`` (``inet_aton``), ``[::ffff:127.0.0.1]`` and other IPv6 forms
   carrying an IPv4 address (mapped, 6to4, Teredo, NAT64).
2. **Resolve once** (``UrlPolicy.resolve``): a name is resolved, and refused if *any*
   address it has is not public (or in the operator's ``allow_networks``).
3. **Connect to the checked address** (``UrlPolicy.connect``): the socket is connected by
   this module to an address step 2 checked, never by a library that resolves the name
   again, so DNS rebinding between check and connect has nothing to hit. The peer of every
   connection is therefore known; a connection whose peer is not known is never used.
   Who calls ``connect``:

   * requests sessions (streamlink's, the preflight): ``records.guarded_http.GuardedAdapter``,
     a mounted ``HTTPAdapter`` whose urllib3 connections open their socket here. TLS (SNI,
     certificate) and the ``Host`` header still use the name. Each redirect hop is a new
     request, so it is checked the same way;
   * FFmpeg's HTTP(S) (direct media opens, VOD probing, shards and cuts):
     ``records.guarded_http.EgressProxy``, a per-process proxy on loopback given to FFmpeg
     as ``http_proxy``. FFmpeg sends HTTPS as ``CONNECT host:port`` (TLS end to end, SNI
     intact) and HTTP in absolute form; the proxy connects through this policy, so every
     FFmpeg connection, each redirect and reconnect included, is checked. Rewriting the URL
     to the IP literal was rejected: FFmpeg then sends no SNI, which breaks HTTPS on CDNs;
     checking FFmpeg's peer after it connected was rejected too: the request is sent by then;
   * RTSP: ``stream_actor.sources.rtsp_gate.RtspGate``, a one-connection relay FFmpeg's rtsp
     demuxer talks to: it connects to the checked address and reads the camera's answers,
     so a redirect (FFmpeg follows 3xx itself) is handed back to the plugin, which checks
     the new URL like the first, and a ``Transport`` ``source=`` cannot send UDP elsewhere.
4. Refusals raise ``UnsafeUrl`` **before any connection** to the refused address, with a
   message that depends only on the URL (never on whether something listens there): an
   API client cannot use status texts as a port scanner.

``--allow-private-urls`` (``UrlPolicy(allow_private=True)``) allows everything, as before;
``allow_networks`` allows listed networks only (an operator allow-list, e.g. a camera LAN;
the tests use it to make a loopback address count as "public").
"""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "ALLOW_HINT",
    "SCHEMES",
    "Target",
    "UnsafeUrl",
    "UrlPolicy",
    "literal_address",
    "network_url",
    "public_address",
]

ALLOW_HINT = "start the server with --allow-private-urls (LIVECUT_ALLOW_PRIVATE_URLS=1) to allow it"

#: The schemes each source kind opens. streamlink wraps http(s) URLs in ``hls://`` and
#: friends; scheme-less site URLs (``twitch.tv/name``) mean https.
SCHEMES: dict[str, frozenset[str]] = {
    "http": frozenset({"http", "https"}),
    "rtsp": frozenset({"rtsp", "rtsps"}),
    "rtmp": frozenset({"rtmp", "rtmps"}),
}
ALL_KINDS = tuple(SCHEMES)
WRAPPER_SCHEMES = frozenset({"hls", "hlsvariant", "dash", "httpstream"})
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}


class UnsafeUrl(ValueError):
    """A URL, redirect or address the operator did not allow."""


# -- addresses ---------------------------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def _ipv4_numeric(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as ``inet_aton`` reads it (what getaddrinfo and FFmpeg connect to): one to
    four dot-separated parts, each decimal, octal (leading 0) or hex (0x); the last part
    fills the remaining bytes. ``127.1`` is 127.0.0.1, ``2130706433`` is 127.0.0.1."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    values = [int(p, 16) if p[:2].lower() == "0x" and len(p) > 2 else int(p, 8) if p.startswith("0") and len(p) > 1
              else 0 if p.lower() == "0x" else int(p) for p in parts]
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    return ipaddress.IPv4Address(number << (8 * (4 - len(head))) | last)


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` denotes when it is written as one (any form), else None."""
    host = host.strip().strip("[]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    return _ipv4_numeric(host)


def public_address(addr) -> bool:
    """Whether ``addr`` (text or ipaddress object) is a public unicast address; IPv6 forms
    that carry an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by it too."""
    if isinstance(addr, str):
        addr = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and addr.teredo is not None:
            embedded = addr.teredo[1]
        if embedded is None and addr in _NAT64:  # DNS64: judged by the IPv4 address only
            return public_address(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if embedded is not None and not public_address(embedded):
            return False
    return bool(
        addr.is_global
        and not addr.is_multicast
        and not addr.is_private
        and not addr.is_loopback
        and not addr.is_link_local
        and not addr.is_reserved
        and not addr.is_unspecified
    )


def _local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in ("localhost", "localhost.localdomain", "") or host.endswith(".localhost")


# -- URLs --------------------------------------------------------------------------------

_LOCAL_PATH = re.compile(r"^(/|\./|\.\./|~|[a-zA-Z]:[\\/])")
_OPAQUE_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")
_HOST_PORT = re.compile(r"^[^:/]+:[0-9]+(/|$)")


def network_url(url: str) -> str:
    """The URL that ``url`` fetches first: unwraps ``hls://`` and friends and gives
    scheme-less site URLs (``twitch.tv/name``) streamlink's default https."""
    if "://" not in url:
        if _OPAQUE_SCHEME.match(url) and not _HOST_PORT.match(url):  # javascript:…, data:…
            return url
        return "https://" + url
    scheme = url.split("://", 1)[0]
    if scheme.lower() in WRAPPER_SCHEMES:
        return network_url(url[len(scheme) + 3:])
    return url


def is_local(url: str) -> bool:
    """A local path or ``file:`` URL (never fetched over the network)."""
    return url.lower().startswith("file:") or bool(_LOCAL_PATH.match(url))


@dataclass(frozen=True)
class Target:
    """Where a network URL points: scheme, host as written (no brackets), port."""

    url: str  # the network URL (wrappers removed)
    scheme: str
    host: str
    port: int

    @property
    def literal(self):
        return literal_address(self.host)


def parse_target(url: str) -> Target:
    """The network target of ``url``; ``UnsafeUrl`` when it has none or is malformed."""
    target = network_url(url)
    parts = urlsplit(target)
    try:
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"the url is malformed: {exc}") from None
    if not host:
        raise UnsafeUrl("the url has no host")
    scheme = parts.scheme.lower()
    return Target(target, scheme, host, port or DEFAULT_PORTS.get(scheme, 0))


# -- the policy --------------------------------------------------------------------------

def _valid_host_name(host: str) -> bool:
    """Whether ``host`` can be put on the wire as a DNS name (IDNA for non-ASCII labels)."""
    try:
        host.rstrip(".").encode("idna")
    except UnicodeError:
        return False
    return True


#: How names are resolved when a policy names no resolver (``socket.getaddrinfo``'s shape).
system_resolver: Callable = socket.getaddrinfo


class _Cache:
    """Checked answers for a short while, so each HLS segment does not resolve again (what
    is cached was checked, and connections go to exactly these addresses)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._entries: dict[tuple, tuple[float, list]] = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._entries.get(key)
            return hit[1] if hit and time.monotonic() - hit[0] < self.ttl else None

    def put(self, key, addrs) -> None:
        with self._lock:
            if len(self._entries) > 256:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), addrs)


_cache = _Cache()


@dataclass(frozen=True)
class UrlPolicy:
    """The operator's URL policy. Frozen and picklable: it travels to Ray workers.

    ``allow_private``: everything is allowed (``--allow-private-urls``).
    ``allow_networks``: networks allowed besides public addresses (CIDR texts).
    ``resolver``: resolves names (``getaddrinfo``'s signature); None: the system's.
    """

    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    resolver: Callable | None = field(default=None, compare=False)

    # -- judging addresses

    def allows(self, addr) -> bool:
        if self.allow_private:
            return True
        if isinstance(addr, str):
            addr = ipaddress.ip_address(addr.split("%", 1)[0])
        for net in self.allow_networks:
            network = ipaddress.ip_network(net, strict=False)
            if addr.version == network.version and addr in network:
                return True
        return public_address(addr)

    # -- static checks (no network)

    def check(self, url: str, kinds: Iterable[str] = ALL_KINDS) -> Target | None:
        """Refuse what may never be opened, before any network access. Returns the network
        target, or None for a local file (allowed only with ``allow_private``)."""
        if not url or url != url.strip():
            raise UnsafeUrl("the url is empty or has surrounding whitespace")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise UnsafeUrl("the url contains whitespace or control characters")
        if is_local(url):
            if not self.allow_private:
                raise UnsafeUrl(f"local files are not allowed as url sources; {ALLOW_HINT}")
            return None
        schemes = frozenset().union(*(SCHEMES[k] for k in kinds))
        raw_scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if raw_scheme in WRAPPER_SCHEMES and "http" not in kinds:
            raise UnsafeUrl(f"url scheme {raw_scheme!r} is not allowed here")
        inner = network_url(url)
        if is_local(inner) and raw_scheme in WRAPPER_SCHEMES:  # hls://file:///x
            if not self.allow_private:
                raise UnsafeUrl(f"local files are not allowed as url sources; {ALLOW_HINT}")
            return None
        scheme = urlsplit(inner).scheme.lower()
        if scheme not in schemes:
            raise UnsafeUrl(
                f"url scheme {scheme or 'none'!r} is not allowed (allowed: {', '.join(sorted(schemes))}"
                + (", or hls:// around http(s)" if "http" in kinds else "") + ")"
            )
        target = parse_target(url)
        if target.literal is None and not _valid_host_name(target.host):
            raise UnsafeUrl(f"url host {target.host!r} is not a valid host name")
        if not self.allow_private:
            literal = target.literal
            if _local_name(target.host) or (literal is not None and not self.allows(literal)):
                raise UnsafeUrl(f"url host {target.host!r} is a loopback or private address; {ALLOW_HINT}")
        return target

    # -- resolving and connecting

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each one allowed; ``UnsafeUrl`` if any is not, and
        ``OSError`` when it does not resolve (a network problem, to retry)."""
        host = host.strip("[]")
        literal = literal_address(host)
        if literal is not None:
            if not self.allows(literal):
                raise UnsafeUrl(f"url host {host!r} is a loopback or private address; {ALLOW_HINT}")
            return [str(literal)]
        if not self.allow_private and _local_name(host):
            raise UnsafeUrl(f"url host {host!r} is a loopback address; {ALLOW_HINT}")
        key = (host.lower(), port, self.allow_private, self.allow_networks)
        cached = _cache.get(key) if self.resolver is None else None
        if cached is not None:
            return cached
        try:
            infos = (self.resolver or system_resolver)(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
        except UnicodeError:  # a name IDNA cannot encode: no resolver could find it
            raise UnsafeUrl(f"url host {host!r} is not a valid host name") from None
        addrs = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
        if not addrs:
            raise OSError(f"host {host!r} resolves to no address")
        if not all(self.allows(a) for a in addrs):
            raise UnsafeUrl(
                f"url host {host!r} resolves to a loopback, private, link-local or multicast address; {ALLOW_HINT}"
            )
        if self.resolver is None:
            _cache.put(key, addrs)
        return addrs

    def check_resolved(self, url: str, kinds: Iterable[str] = ALL_KINDS) -> Target | None:
        """``check`` and ``resolve``: what the API does before it stores a URL."""
        target = self.check(url, kinds)
        if target is not None and not self.allow_private:
            self.resolve(target.host, target.port)
        return target

    def connect(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        *,
        source_address=None,
        socket_options=None,
    ) -> socket.socket:
        """A TCP connection to ``host``: resolved once, every address checked, connected
        to a checked address (tried in the resolver's order)."""
        addrs = self.resolve(host, port)
        last: OSError | None = None
        for addr in addrs:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for level, name, value in socket_options or ():
                    sock.setsockopt(level, name, value)
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect((addr, port))
            except OSError as exc:
                sock.close()
                last = exc
                continue
            return sock
        raise last or OSError(f"cannot connect to {host!r}")
