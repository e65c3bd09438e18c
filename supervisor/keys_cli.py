"""``livecut keys create|list|revoke``: scoped API keys, straight in Postgres.

Works with or without a running ``livecut up``: with ``DATABASE_URL`` it connects there;
otherwise it attaches to the embedded PostgreSQL of ``--data-dir`` (the embedded server is
shared by every process that opens the same data dir, and stopped by the last one to
leave, so a running ``livecut up`` keeps it). Pending migrations are applied first, so the
keys table exists even before the first ``livecut up`` of this version.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from records.key_store import MAX_NAME, SCOPES, ApiKey, KeyStore
from records.store import Store


def add_parser(sub) -> None:
    keys = sub.add_parser(
        "keys", help="create, list and revoke scoped API keys",
        description="Talks to PostgreSQL directly: DATABASE_URL, or the embedded one in --data-dir "
        "(also while `livecut up` runs on it). Scopes: admin (everything), ingest (channels, stream "
        "keys, uploads, VOD jobs, and what read allows), read (feed, clips, media, listings).",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", default=os.environ.get("LIVECUT_DATA_DIR", "data"), help="the data dir of `livecut up` (default ./data); unused with DATABASE_URL")
    create = keys_sub.add_parser("create", parents=[where], help="create a key; prints it once, alone on the last line")
    create.add_argument("--scope", required=True, choices=SCOPES, help="what the key may do")
    create.add_argument("--name", default="", help=f"a label for the key (at most {MAX_NAME} characters)")
    listing = keys_sub.add_parser("list", parents=[where], help="a table of the keys (never their secrets)")
    listing.add_argument("--active", action="store_true", help="leave revoked keys out")
    revoke = keys_sub.add_parser("revoke", parents=[where], help="revoke a key by its id; gateways refuse it within seconds")
    revoke.add_argument("id", help="the key's id (from `livecut keys list`)")


def _dsn(data_dir: str) -> tuple[str, object | None]:
    if dsn := os.environ.get("DATABASE_URL"):
        return dsn, None
    from records.embedded import start_postgres

    return start_postgres(Path(data_dir).resolve())  # the handle keeps it up until we exit


def _table(keys: list[ApiKey]) -> str:
    rows = [("ID", "SCOPE", "NAME", "CREATED", "LAST USED", "REVOKED")]
    rows += [(k.id, k.scope, k.name or "-", k.created_at or "-", k.last_used_at or "-", k.revoked_at or "-") for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


async def _run(args: argparse.Namespace, dsn: str) -> int:
    store = await Store.connect(dsn, min_size=1, max_size=1)
    try:
        await store.migrate()
        keys = KeyStore(store.pool)
        if args.keys_command == "create":
            try:
                created = await keys.create(args.scope, args.name)
            except ValueError as exc:
                print(f"livecut keys: {exc}", file=sys.stderr)
                return 2
            print(f"created {created.scope} key {created.id}{f' ({created.name})' if created.name else ''}; "
                  "it is shown only now:")
            print(created.key)
            return 0
        if args.keys_command == "list":
            print(_table(await keys.list(include_revoked=not args.active)))
            return 0
        revoked = await keys.revoke(args.id)
        if revoked is None:
            print(f"livecut keys: no key {args.id!r}", file=sys.stderr)
            return 1
        print(f"revoked key {revoked.id} at {revoked.revoked_at}")
        return 0
    finally:
        await store.close()


def main(args: argparse.Namespace) -> int:
    try:
        dsn, _handle = _dsn(args.data_dir)
        return asyncio.run(_run(args, dsn))
    except (OSError, RuntimeError) as exc:
        print(f"livecut keys: cannot reach PostgreSQL: {exc}", file=sys.stderr)
        return 1
