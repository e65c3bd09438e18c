"""Who may call what: scoped API keys as ``Authorization: Bearer KEY``, signed media URLs.

Scopes nest: ``admin`` (everything) covers ``ingest`` (channels, their stream keys, uploads
and VOD submissions), which covers ``read`` (feed, clips, media, listings). A missing,
unknown or revoked key answers 401; a key without the route's scope 403 ``forbidden``.

The key ``livecut up`` prints (``LIVECUT_API_KEY`` or ``<data dir>/api_key``) is an admin
key outside the table; an empty one authorises nobody (fail closed). Keys from the
``api_keys`` table are looked up by hash and cached for ``CACHE_SECONDS``, so a revocation
elsewhere (``livecut keys revoke``, another gateway) takes effect within that time.

Each check also counts the request against the rate limits (``gateway.rate_limit``): per
key once it is known, per client address otherwise.
"""
from __future__ import annotations

import hmac
import logging
import time

import msgspec
from fastapi import Request

from gateway.errors import ApiError, forbidden, unauthorized
from records.key_store import KeyStore, key_hash, looks_like_key, scope_allows

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
CACHE_ENTRIES = 10_000  # bounded: unknown keys are cached too, and anyone can send those
MAX_KEY = 256


class Principal(msgspec.Struct, frozen=True):
    key_id: str
    scope: str


def key_matches(candidate: object, api_key: str) -> bool:
    """Constant-time comparison; anything that is not a non-empty string fails."""
    if not api_key or not isinstance(candidate, str) or not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), api_key.encode("utf-8"))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Authenticator:
    """Resolves a presented key to its ``Principal`` (or None), with a short cache."""

    def __init__(self, api_key: str, keys: KeyStore | None):
        self.api_key = api_key
        self.keys = keys
        # the key printed at start, as a key id (rate limits, logs): another key, another id
        self.bootstrap = Principal(f"bootstrap-{key_hash(api_key).hex()[:8]}", "admin")
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    def forget(self) -> None:
        """Drop cached lookups (after a revocation through this gateway: at once here)."""
        self._cache.clear()

    async def principal(self, token: object) -> Principal | None:
        if not isinstance(token, str) or not token or len(token) > MAX_KEY:
            return None
        if key_matches(token, self.api_key):
            return self.bootstrap
        if self.keys is None or not looks_like_key(token):
            return None
        digest = key_hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = await self.keys.lookup(token)
        except Exception as exc:  # asyncpg/OS errors: answer in the error shape, not a crash
            log.warning("API key lookup failed: %s", exc)
            raise ApiError(503, "unavailable", "the database is unavailable; retry shortly") from None
        principal = Principal(*found) if found else None
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, principal)
        return principal


async def admit(auth: Authenticator, limiter, token: object, address: str, need: str, bucket: str) -> Principal:
    """The principal of ``token``, if its key has scope ``need``; counts the call in ``bucket``
    (``limiter``: a ``gateway.rate_limit.RateLimiter`` or None). For HTTP routes and Socket.IO
    connects alike."""
    principal = await auth.principal(token)
    if limiter is not None:  # guessing keys costs the guesser's address its budget
        await limiter.hit(bucket, f"key:{principal.key_id}" if principal else f"ip:{address}")
    if principal is None:
        raise unauthorized()
    if not scope_allows(principal.scope, need):
        raise forbidden(f"this API key's scope ({principal.scope}) does not allow this; it needs {need}")
    return principal


async def authorize(request: Request, token: object, need: str, bucket: str) -> Principal:
    """``admit`` for an HTTP request; the principal is kept on ``request.state``."""
    state = request.app.state
    principal = await admit(state.auth, getattr(state, "limiter", None), token, client_address(request), need, bucket)
    request.state.principal = principal
    return principal


def require(need: str, bucket: str = "api"):
    """Route dependency: a Bearer key with scope ``need``."""

    async def dependency(request: Request) -> None:
        await authorize(request, bearer_token(request), need, bucket)

    return dependency


def require_media():
    """Route dependency for clip media: a valid ``?exp=&sig=`` signature of this path, or a
    Bearer key with ``read`` scope. A signature that is present but wrong or expired is 403."""

    async def dependency(request: Request) -> None:
        query = request.query_params
        if "sig" in query or "exp" in query:
            limiter = getattr(request.app.state, "limiter", None)
            if limiter is not None:  # a signed link carries no key: count its address
                await limiter.hit("media", f"ip:{client_address(request)}")
            if not request.app.state.signer.verify(request.url.path, query.get("exp"), query.get("sig")):
                raise forbidden("the media link is invalid or has expired; fetch the clip again for a fresh one")
            return
        await authorize(request, bearer_token(request), "read", "media")

    return dependency
