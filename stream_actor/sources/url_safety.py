"""Which URLs a URL source may open, and keeping URL secrets out of logs.

A channel's URL comes from an API client, and the stream actor fetches it from inside
the deployment: without checks it could read local files or reach loopback, private,
link-local (cloud metadata at 169.254.169.254) or multicast addresses. Unless the
operator allows it (``livecut up --allow-private-urls``, passed to the plugin as the
option ``allow_private``):

* ``check_url`` refuses local paths and ``file://``, schemes other than HTTP(S) (and
  streamlink's ``hls://``-style wrappers around them), and URLs with whitespace or
  control characters (streamlink reads text after a space as request parameters, such
  as a proxy);
* ``check_host`` resolves a host name and refuses it if *any* address it resolves to
  is not a public unicast address (IPv4-mapped, 6to4, Teredo and NAT64 addresses are
  judged by the IPv4 address they carry);
* ``guard_http`` applies ``check_host`` to every request of a requests session before
  it is sent, redirects included (requests sends each hop through ``Session.send``),
  and checks the peer address of each response's connection (the address actually
  connected to, which defeats DNS rebinding between the check and the connect).

``UnsafeUrl`` is the error; its message says what was refused and how to allow it.

Secrets: URLs can carry credentials (``user:pass@``) and tokens in the query string.
``redact_url`` and ``redact_text`` (every URL inside a text) are what logs and status
texts use: the shared ``redact.py`` (password and secret-looking parameter values
masked), or, should it fail to import, scheme + host + path only.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = [
    "UnsafeUrl",
    "check_url",
    "check_host",
    "public_address",
    "guard_http",
    "redact_url",
    "redact_text",
    "display_url",
]

log = logging.getLogger(__name__)

ALLOW_HINT = "start the server with --allow-private-urls (LIVECUT_ALLOW_PRIVATE_URLS=1) to allow it"

#: Schemes a network URL may have; streamlink wrappers name an inner http(s) URL.
NETWORK_SCHEMES = {"http", "https"}
WRAPPER_SCHEMES = {"hls", "hlsvariant", "dash", "httpstream"}


class UnsafeUrl(ValueError):
    """A URL (or a redirect, or an address it resolves to) the operator did not allow."""


# -- redaction -------------------------------------------------------------------------

try:  # the shared helpers (stream_actor/sources/redact.py)
    from .redact import redact_text as _shared_redact_text
    from .redact import redact_url as _shared_redact
except Exception:  # noqa: BLE001 - absent or broken: scheme + host + path only
    _shared_redact = _shared_redact_text = None


def _scheme_host_path(url: str) -> str:
    """``scheme://host[:port]/path``: no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    if not parts.scheme and not parts.netloc:  # a path, or a scheme-less site URL
        return url.split("?", 1)[0].split("#", 1)[0]
    if ":" in host:
        host = f"[{host}]"
    path = parts.path
    if parts.scheme.lower() in WRAPPER_SCHEMES and "://" in url[len(parts.scheme) + 3:]:
        inner = url[len(parts.scheme) + 3:]
        return f"{parts.scheme}://{_scheme_host_path(inner)}"
    return f"{parts.scheme}://{host}{port}{path}"


def redact_url(url: str) -> str:
    """``url`` without its secrets, for logs and status texts."""
    if _shared_redact is not None:
        try:
            return _shared_redact(url)
        except Exception:  # noqa: BLE001
            pass
    return _scheme_host_path(url)


display_url = redact_url

_URL_IN_TEXT = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'"<>()\[\]{}]+""")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (error messages quote URLs)."""
    if _shared_redact_text is not None:
        try:
            return _shared_redact_text(text)
        except Exception:  # noqa: BLE001
            pass
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


# -- static checks ---------------------------------------------------------------------

_LOCAL = re.compile(r"^(/|\./|\.\./|~|[a-zA-Z]:[\\/])")


def network_url(url: str) -> str:
    """The http(s) URL that ``url`` fetches first: unwraps ``hls://`` and friends and
    gives scheme-less site URLs (``twitch.tv/name``) streamlink's default https."""
    if "://" not in url:
        return "https://" + url
    scheme = url.split("://", 1)[0]
    if scheme.lower() in WRAPPER_SCHEMES:
        return network_url(url[len(scheme) + 3:])
    return url


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse what may never be opened, before any network access (no DNS here)."""
    if not url or url != url.strip():
        raise UnsafeUrl("the url is empty or has surrounding whitespace")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("the url contains whitespace or control characters")
    lowered = url.lower()
    if lowered.startswith("file:") or _LOCAL.match(url):
        if not allow_private:
            raise UnsafeUrl(f"local files are not allowed as url sources; {ALLOW_HINT}")
        return
    target = network_url(url)
    parts = urlsplit(target)
    if parts.scheme.lower() not in NETWORK_SCHEMES:
        if parts.scheme.lower() == "file" and allow_private:
            return
        raise UnsafeUrl(
            f"url scheme {parts.scheme!r} is not allowed (http, https, or hls:// around them)"
        )
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise UnsafeUrl(f"the url is malformed: {exc}") from None
    if not host:
        raise UnsafeUrl("the url has no host")
    if not allow_private:
        literal = _literal_address(host)
        if _is_local_name(host) or (literal is not None and not public_address(literal)):
            raise UnsafeUrl(f"url host {host!r} is a loopback or private address; {ALLOW_HINT}")


def _is_local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in ("localhost", "localhost.localdomain") or host.endswith(".localhost")


def _literal_address(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


# -- addresses -------------------------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def public_address(addr) -> bool:
    """Whether ``addr`` (str or ipaddress object) is a public unicast address."""
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


class _ResolveCache:
    """Short-lived cache of host checks, so each HLS segment fetch does not re-resolve."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._entries.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            return None

    def put(self, key, addrs) -> None:
        with self._lock:
            if len(self._entries) > 256:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), addrs)


_cache = _ResolveCache()

#: How host names are resolved for the checks (a seam for tests).
resolve: Callable = socket.getaddrinfo


def check_host(
    host: str,
    port: int | None = None,
    *,
    allow_private: bool,
    resolver: Callable | None = None,
    use_cache: bool = True,
) -> list[str]:
    """Resolve ``host`` and refuse it unless every address is public. Returns the
    addresses. A name that does not resolve raises ``OSError`` (a network problem, to
    retry), not ``UnsafeUrl``."""
    if allow_private:
        return []
    host = host.strip("[]")
    if _is_local_name(host):
        raise UnsafeUrl(f"url host {host!r} is a loopback address; {ALLOW_HINT}")
    key = (host.lower(), port or 0)
    addrs = _cache.get(key) if use_cache else None
    if addrs is None:
        literal = _literal_address(host)
        if literal is not None:
            addrs = [str(literal)]
        else:
            try:
                infos = (resolver or resolve)(host, port or 443, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise OSError(f"cannot resolve host {host!r}: {exc}") from None
            addrs = sorted({info[4][0] for info in infos})
            if not addrs:
                raise OSError(f"host {host!r} resolves to no address")
        bad = [a for a in addrs if not public_address(a)]
        if bad:
            raise UnsafeUrl(
                f"url host {host!r} resolves to a loopback, private, link-local or multicast "
                f"address ({', '.join(bad)}); {ALLOW_HINT}"
            )
        if use_cache:
            _cache.put(key, addrs)
    return addrs


def check_request_url(url: str, *, allow_private: bool) -> None:
    """The checks for one outgoing request (a redirect hop included)."""
    if allow_private:
        return
    parts = urlsplit(url)
    if parts.scheme.lower() not in NETWORK_SCHEMES:
        raise UnsafeUrl(f"request to a {parts.scheme or 'local'!r} url refused; {ALLOW_HINT}")
    if not parts.hostname:
        raise UnsafeUrl("request url has no host")
    check_host(parts.hostname, parts.port, allow_private=False)


# -- requests sessions (streamlink's HTTP) ---------------------------------------------


def _peer_address(response) -> str | None:
    """The IP address the response's connection is connected to, if still known."""
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:  # http.client hands a closing connection's socket to the response
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if sock is None:
        return None
    try:
        return sock.getpeername()[0]
    except (OSError, IndexError, TypeError, AttributeError):
        return None


def guard_http(
    http,
    *,
    allow_private: bool,
    on_violation: Callable[[UnsafeUrl], None] | None = None,
) -> None:
    """Check every request of the requests session ``http`` (each redirect hop too)
    before it is sent, and the address each response came from (not through a proxy:
    proxies are the operator's). ``on_violation`` hears of a refusal first: streamlink
    retries and wraps errors, so the caller may not see ``UnsafeUrl`` itself."""
    if allow_private:
        return

    def refuse(exc: UnsafeUrl) -> UnsafeUrl:
        if on_violation is not None:
            on_violation(exc)
        return exc

    class _Checked:
        """Wraps the transport adapter: the peer address is known once it answers."""

        def __init__(self, inner) -> None:
            self.inner = inner

        def send(self, request, **kwargs):
            response = self.inner.send(request, **kwargs)
            proxies = kwargs.get("proxies") or {}
            scheme = urlsplit(request.url).scheme.lower()
            if not (proxies.get(scheme) or proxies.get("all")):
                peer = _peer_address(response)
                if peer is not None and not public_address(peer):
                    response.close()
                    raise refuse(UnsafeUrl(
                        f"host {urlsplit(request.url).hostname!r} answered from the non-public "
                        f"address {peer}; {ALLOW_HINT}"
                    ))
            return response

        def close(self) -> None:
            self.inner.close()

    original = http.get_adapter

    def get_adapter(url):  # requests calls this for every request and redirect hop
        try:
            check_request_url(url, allow_private=False)
        except UnsafeUrl as exc:
            raise refuse(exc) from None
        return _Checked(original(url))

    http.get_adapter = get_adapter
