"""Scoped API keys in Postgres (``api_keys``): create, list, revoke, look up.

A key is 256 random bits; only its sha256 is stored, so a database dump reveals no key and
a lookup is one indexed equality. The secret is returned once, by ``create``.
Works on a pool or a single connection (the ``livecut keys`` command uses one).
"""
from __future__ import annotations

import hashlib
import secrets
from typing import Literal, Union

import asyncpg
import msgspec

from records.store import iso

Scope = Literal["admin", "ingest", "read"]
SCOPES: tuple[str, ...] = ("read", "ingest", "admin")  # each includes what comes before it
KEY_PREFIX = "lck_"  # recognisable in logs and secret scanners
MAX_NAME = 200


class ApiKey(msgspec.Struct):
    """A key as listed: never its secret."""

    id: str
    name: str
    scope: Scope
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class NewApiKey(msgspec.Struct):
    """A key just created: the only time its secret is shown."""

    id: str
    name: str
    scope: Scope
    created_at: str | None
    key: str


def scope_allows(have: str, need: str) -> bool:
    """``admin`` covers ``ingest``, which covers ``read``."""
    return have in SCOPES and need in SCOPES and SCOPES.index(have) >= SCOPES.index(need)


def key_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


SECRET_LENGTH = len(new_secret())


def looks_like_key(secret: str) -> bool:
    """Shaped like a key ``new_secret`` makes: anything else is refused without a query."""
    return len(secret) == SECRET_LENGTH and secret.startswith(KEY_PREFIX)


def key_view(row) -> ApiKey:
    return ApiKey(
        id=row["id"], name=row["name"], scope=row["scope"], created_at=iso(row["created_at"]),
        last_used_at=iso(row["last_used_at"]), revoked_at=iso(row["revoked_at"]),
    )


class KeyStore:
    def __init__(self, db: Union[asyncpg.Pool, asyncpg.Connection]):
        self.db = db

    async def create(self, scope: str, name: str = "") -> NewApiKey:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)} (got {scope!r})")
        name = name.strip()
        if len(name) > MAX_NAME:
            raise ValueError(f"name is longer than {MAX_NAME} characters")
        secret = new_secret()
        row = await self.db.fetchrow(
            "INSERT INTO api_keys (id, name, scope, key_hash) VALUES ($1, $2, $3, $4) RETURNING *",
            secrets.token_hex(6), name, scope, key_hash(secret),
        )
        return NewApiKey(id=row["id"], name=row["name"], scope=row["scope"], created_at=iso(row["created_at"]), key=secret)

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        rows = await self.db.fetch(
            "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY created_at, id"
        )
        return [key_view(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke (idempotent: a revoked key keeps its first revocation time); None if unknown."""
        row = await self.db.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING *", key_id
        )
        return key_view(row) if row else None

    async def lookup(self, secret: str) -> tuple[str, str] | None:
        """(id, scope) of the live key with this secret, stamping its use; None otherwise."""
        row = await self.db.fetchrow(
            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = $1 AND revoked_at IS NULL RETURNING id, scope",
            key_hash(secret),
        )
        return (row["id"], row["scope"]) if row else None
