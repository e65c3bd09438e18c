"""API key checks: ``Authorization: Bearer KEY`` everywhere, ``?token=KEY`` also on media.

An empty configured key authorises nobody (fail closed): the supervisor always sets one.
"""
from __future__ import annotations

import hmac

from fastapi import Request

from gateway.errors import unauthorized


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


def require_key(api_key: str):
    """Dependency: the request carries ``Authorization: Bearer KEY``."""

    async def dependency(request: Request) -> None:
        if not key_matches(bearer_token(request), api_key):
            raise unauthorized()

    return dependency


def require_media_key(api_key: str):
    """Dependency for media: the bearer header, or ``?token=KEY`` (for ``<video src>``)."""

    async def dependency(request: Request) -> None:
        if key_matches(bearer_token(request), api_key):
            return
        if key_matches(request.query_params.get("token"), api_key):
            return
        raise unauthorized()

    return dependency
