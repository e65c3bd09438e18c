"""HTTP that goes only where the URL policy allows (``records.url_policy``), for both
HTTP clients the server has:

* ``GuardedAdapter``: a requests ``HTTPAdapter`` to mount on a session (streamlink's). Its
  urllib3 connections open their sockets through ``UrlPolicy.connect``: the name is
  resolved once, checked, and connected to by address; TLS and ``Host`` keep the name.
  Redirect hops are requests like any other. ``file://`` is refused by ``RefusingAdapter``.
  A request through a proxy is refused (the proxy would choose the peer, so the guard could
  not know it), and ``guard_session`` stops the session from taking proxies from the
  environment.
* ``EgressProxy`` and ``ffmpeg_options``: FFmpeg cannot be handed a socket, so it is given
  a proxy instead (FFmpeg's ``http_proxy`` option): a per-process HTTP proxy on loopback
  that takes ``CONNECT host:port`` (FFmpeg's HTTPS: TLS stays end to end, SNI intact) and
  absolute-form requests (FFmpeg's HTTP), and connects through the policy. Every
  connection FFmpeg makes for a URL, each redirect and reconnect included, is checked; a
  refused one gets ``403`` before anything is connected, and the proxy keeps the reason
  for the caller (``EgressProxy.refusal``). The proxy demands a per-process secret
  (``Proxy-Authorization``), so other local users cannot use it.
"""
from __future__ import annotations

import base64
import inspect
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable

from requests.adapters import BaseAdapter, HTTPAdapter
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from records.url_policy import ALLOW_HINT, UnsafeUrl, UrlPolicy, parse_target

__all__ = ["GuardedAdapter", "RefusingAdapter", "EgressProxy", "egress_proxy", "ffmpeg_options", "guard_session"]

log = logging.getLogger(__name__)

# The guard subclasses urllib3's connections and overrides ``_new_conn`` (where urllib3 2.x
# opens the socket, to ``_dns_host``). Should a release rename either, the override would
# silently stop guarding: refuse to load instead.
if not callable(getattr(HTTPConnection, "_new_conn", None)) or "self._dns_host" not in inspect.getsource(HTTPConnection):
    raise ImportError("urllib3's HTTPConnection has no _new_conn/_dns_host: the URL guard cannot work with this urllib3")


# -- requests ------------------------------------------------------------------------------


def _guarded_pools(policy: UrlPolicy, on_violation: Callable[[UnsafeUrl], None] | None):
    """Pool classes whose connections connect through ``policy``."""

    class _Connect:
        def _new_conn(self) -> socket.socket:
            timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
            try:
                return policy.connect(
                    self._dns_host, self.port, timeout,
                    source_address=self.source_address, socket_options=self.socket_options,
                )
            except UnsafeUrl as exc:
                if on_violation is not None:
                    on_violation(exc)  # streamlink wraps errors: the caller hears it first
                raise
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
            except OSError as exc:
                raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc

    class Connection(_Connect, HTTPConnection):
        pass

    class TlsConnection(_Connect, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TlsPool(HTTPSConnectionPool):
        ConnectionCls = TlsConnection

    return {"http": Pool, "https": TlsPool}


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose direct connections go through ``UrlPolicy.connect``."""

    def __init__(self, policy: UrlPolicy, on_violation: Callable[[UnsafeUrl], None] | None = None, **kwargs) -> None:
        self.policy = policy
        self.on_violation = on_violation
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _guarded_pools(self.policy, self.on_violation)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if select_proxy(request.url, proxies):  # the proxy would connect: the peer is unknown
            exc = UnsafeUrl("requests through a proxy are refused: the url guard cannot see where they connect; "
                            + ALLOW_HINT)
            if self.on_violation is not None:
                self.on_violation(exc)
            raise exc
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


class RefusingAdapter(BaseAdapter):
    """Mounted on schemes that are never fetched (``file://``)."""

    def __init__(self, on_violation: Callable[[UnsafeUrl], None] | None = None) -> None:
        super().__init__()
        self.on_violation = on_violation

    def send(self, request, **kwargs):
        exc = UnsafeUrl(f"request to a {request.url.split(':', 1)[0]!r} url refused; local files are not allowed")
        if self.on_violation is not None:
            self.on_violation(exc)
        raise exc

    def close(self) -> None:
        pass


def guard_session(session, policy: UrlPolicy, on_violation: Callable[[UnsafeUrl], None] | None = None) -> None:
    """Mount the guarded adapters on a requests session (nothing when all is allowed)."""
    if policy.allow_private:
        return
    session.trust_env = False  # no proxies from the environment: every peer must be a checked address
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardedAdapter(policy, on_violation))
    session.mount("file://", RefusingAdapter(on_violation))


# -- FFmpeg --------------------------------------------------------------------------------

MAX_HEAD = 32 * 1024  # a request head larger than this is refused
HEAD_TIMEOUT = 30.0  # seconds a client has to send its request head


class EgressProxy:
    """A loopback HTTP proxy that connects only through ``policy`` (see the module text)."""

    def __init__(self, policy: UrlPolicy, connect_timeout: float = 15.0) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.secret = secrets.token_urlsafe(18)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._refusals: dict[str, str] = {}  # ticket → why the last refusal, for callers to report
        threading.Thread(target=self._accept, name="egress-proxy", daemon=True).start()

    def url(self, ticket: str = "livecut") -> str:
        """The proxy URL to give FFmpeg; refusals are kept under ``ticket`` (a name that
        tells one caller's opens from another's)."""
        return f"http://{ticket}:{self.secret}@127.0.0.1:{self.port}"

    def refusal(self, ticket: str = "livecut") -> str | None:
        """Why the proxy last refused a connection for ``ticket``, if it did."""
        with self._lock:
            return self._refusals.get(ticket)

    def _ticket(self, auth: str | None) -> str | None:
        """The ticket of a request with the right secret, else None."""
        if not auth or not auth.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeError):
            return None
        return user if secrets.compare_digest(password, self.secret) else None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="egress-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(HEAD_TIMEOUT)
            head = _read_head(client)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            target_text, _, version = rest.rpartition(" ")
            headers = [line for line in lines[1:] if line]
            auth = next((h.split(":", 1)[1].strip() for h in headers
                         if h.lower().startswith("proxy-authorization:")), None)
            ticket = self._ticket(auth)
            if ticket is None:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Proxy-Authenticate: Basic realm=\"livecut\"\r\nContent-Length: 0\r\n\r\n")
                return
            if method == "CONNECT":
                host, _, port_text = target_text.rpartition(":")
                host, port = host.strip("[]"), int(port_text)
                forward = b""
            else:
                target = parse_target(target_text)
                if target.scheme != "http":
                    raise UnsafeUrl(f"url scheme {target.scheme!r} is not allowed through the proxy")
                host, port = target.host, target.port
                path = target_text.split("://", 1)[1]
                path = path[path.find("/"):] if "/" in path else "/"
                kept = [h for h in headers if not h.lower().startswith(("proxy-authorization:", "proxy-connection:"))]
                forward = ("\r\n".join([f"{method} {path} {version}", *kept]) + "\r\n\r\n").encode("latin-1")
            try:
                upstream = self.policy.connect(host, port, self.connect_timeout)
            except UnsafeUrl as exc:
                with self._lock:
                    if len(self._refusals) > 1024:
                        self._refusals.clear()
                    self._refusals[ticket] = str(exc)
                body = str(exc).encode()
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: "
                               + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                return
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(forward)
            client.settimeout(None)
            upstream.settimeout(None)
            _pipe(client, upstream)
        except (OSError, ValueError, UnicodeError):
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass


def _read_head(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, extra = data.partition(b"\r\n\r\n")
    if extra:  # a request body arrived with the head: not something FFmpeg sends for input
        return None
    return head


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side ends."""

    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    other = threading.Thread(target=copy, args=(b, a), name="egress-proxy-pipe", daemon=True)
    other.start()
    copy(a, b)
    other.join()


_proxies: dict[UrlPolicy, EgressProxy] = {}
_proxies_lock = threading.Lock()


def egress_proxy(policy: UrlPolicy) -> EgressProxy:
    """This process's proxy for ``policy`` (started on first use)."""
    with _proxies_lock:
        proxy = _proxies.get(policy)
        if proxy is None:
            proxy = _proxies[policy] = EgressProxy(policy)
        return proxy


def ffmpeg_options(url: str, policy: UrlPolicy, ticket: str = "livecut") -> dict[str, str]:
    """FFmpeg input options that send its HTTP(S) for ``url`` through the guard (none when
    everything is allowed or ``url`` is not HTTP). ``egress_proxy(policy).refusal(ticket)``
    then says why an open failed, if the guard refused it."""
    if policy.allow_private or not url.lower().startswith(("http://", "https://")):
        return {}
    if os.environ.get("no_proxy"):  # FFmpeg connects directly to the hosts it lists, redirects included
        raise UnsafeUrl("the no_proxy environment variable would let FFmpeg bypass the url guard; unset it "
                        "for the server, or " + ALLOW_HINT)
    return {
        "http_proxy": egress_proxy(policy).url(ticket),
        # no protocol that connects on its own (rtmp, ftp, udp, ...) or reads files, in nested
        # opens (HLS segments, redirects) either
        "protocol_whitelist": "http,https,tls,tcp,httpproxy,crypto,data",
    }
