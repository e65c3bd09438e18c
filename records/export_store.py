"""Postgres access for clip exports (009_exports.sql).

An export goes queued → running → done or failed, each step guarded by the status it leaves,
and each written with its ``export`` notification in one transaction (the outbox), on the
stream of the clip's channel or VOD job. While running, its ``progress`` (0..1, migration 012) moves;
that is announced only when it enters a new tenth, so subscribers see it move without a
notification per step. An export left running by a stopped ``livecut up`` is queued again at
the next start (its progress back to 0), or failed once it has been started ``MAX_ATTEMPTS``
times.
"""
from __future__ import annotations

import datetime as dt
import math
import secrets
from typing import Any

import asyncpg
import msgspec

from records.store import enqueue_notification, iso
from records.wire import ExportOptions, ExportView, clip_stream_key, vod_stream_key

__all__ = ["MAX_ATTEMPTS", "ExportStore", "export_view", "download_path"]

MAX_ATTEMPTS = 3  # runs an export may start; one cut short each time (a crash it causes?) then fails


def download_path(clip_id: str, export_id: str) -> str:
    """The export's file under the API (``gateway.exports``), unsigned."""
    return f"/api/clips/{clip_id}/exports/{export_id}/video"


def export_view(row: dict) -> ExportView:
    done = row["status"] == "done"
    return ExportView(
        id=row["id"],
        clip_id=row["clip_id"],
        status=row["status"],
        progress=round(row["progress"], 3),  # a real: 0.99 reads back as 0.9900000095...
        options=msgspec.convert(row["options"], ExportOptions),
        download_url=download_path(row["clip_id"], row["id"]) if done else None,
        error=row["error"],
        channel_id=row["channel_id"],
        vod_id=row["vod_id"],
        created_at=iso(row["created_at"]),
        started_at=iso(row["started_at"]),
        finished_at=iso(row["finished_at"]),
        width=row["width"],
        height=row["height"],
        duration=row["duration"],
        cpu=row["cpu"],
    )


class ExportStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def create(self, clip_id: str, options: ExportOptions) -> dict | None:
        """Queue an export of the clip; None when there is no such clip."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    """INSERT INTO exports (id, clip_id, channel_id, vod_id, options)
                       SELECT $1, id, channel_id, vod_id, $3 FROM clips WHERE id = $2
                       RETURNING *""",
                    secrets.token_hex(6), clip_id, msgspec.to_builtins(options),
                )
                if row is None:
                    return None
                await _notify(conn, dict(row))
        return dict(row)

    async def get(self, clip_id: str, export_id: str) -> dict | None:
        row = await self.pool.fetchrow("SELECT * FROM exports WHERE id = $1 AND clip_id = $2", export_id, clip_id)
        return dict(row) if row else None

    async def list(self, clip_id: str) -> list[dict]:
        """The clip's exports, newest first."""
        rows = await self.pool.fetch("SELECT * FROM exports WHERE clip_id = $1 ORDER BY seq DESC", clip_id)
        return [dict(r) for r in rows]

    async def queued(self, limit: int) -> list[dict]:
        rows = await self.pool.fetch("SELECT * FROM exports WHERE status = 'queued' ORDER BY seq LIMIT $1", limit)
        return [dict(r) for r in rows]

    async def start(self, export_id: str) -> dict | None:
        """queued → running (one more attempt); None when it is not queued any more."""
        return await self._move(export_id, ("queued",), "attempts = attempts + 1", status="running",
                                started_at=_now())

    async def finish(self, export_id: str, *, path: str, width: int, height: int, duration: float,
                     cpu: float) -> dict | None:
        return await self._move(export_id, ("running",), status="done", progress=1.0, finished_at=_now(),
                                path=path, width=width, height=height, duration=duration, cpu=cpu)

    async def progress(self, export_id: str, fraction: float) -> dict | None:
        """Store a running export's progress (0..1); None when it is not running. Its
        notification goes with it only when it enters a new tenth (0 → 0.04 does, as does
        0.38 → 0.41; 0.41 → 0.47 does not)."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    """UPDATE exports SET progress = $2
                       FROM (SELECT progress FROM exports WHERE id = $1 AND status = 'running' FOR UPDATE) AS was
                       WHERE id = $1 AND status = 'running' RETURNING exports.*, was.progress AS was""",
                    export_id, fraction,
                )
                if row is None:
                    return None
                row = dict(row)
                if _tenth(row.pop("was")) < _tenth(row["progress"]):
                    await _notify(conn, row)
        return row

    async def fail(self, export_id: str, error: str) -> dict | None:
        return await self._move(export_id, ("queued", "running"), status="failed", finished_at=_now(),
                                error=error[:1000])

    async def recover(self, keep: list[str] = ()) -> tuple[int, int]:
        """Exports marked running that nothing runs (all but ``keep``, those the caller runs):
        queued again, or failed when they have had their attempts. Returns (queued, failed)."""
        requeued = failed = 0
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    """UPDATE exports SET
                         status = CASE WHEN attempts < $1 THEN 'queued' ELSE 'failed' END,
                         error = CASE WHEN attempts < $1 THEN NULL
                                      ELSE 'interrupted ' || attempts || ' times (livecut stopped, or lost the render, while it ran)' END,
                         finished_at = CASE WHEN attempts < $1 THEN NULL ELSE now() END,
                         progress = CASE WHEN attempts < $1 THEN 0 ELSE progress END
                       WHERE status = 'running' AND NOT id = ANY($2::text[]) RETURNING *""",
                    MAX_ATTEMPTS, list(keep),
                )
                for row in rows:
                    await _notify(conn, dict(row))
                    if row["status"] == "queued":
                        requeued += 1
                    else:
                        failed += 1
        return requeued, failed

    async def _move(self, export_id: str, from_status: tuple[str, ...], *more: str, **fields: Any) -> dict | None:
        """Set ``fields`` (and the SQL assignments ``more``) if the export's status is one of
        ``from_status``, with its notification; None when it is not (or is gone)."""
        sets = [f"{name} = ${i + 3}" for i, name in enumerate(fields)] + list(more)
        args = [export_id, list(from_status), *fields.values()]
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"UPDATE exports SET {', '.join(sets)} WHERE id = $1 AND status = ANY($2::text[]) RETURNING *",
                    *args,
                )
                if row is None:
                    return None
                await _notify(conn, dict(row))
        return dict(row)


async def _notify(conn: asyncpg.Connection, row: dict) -> None:
    stream = clip_stream_key(row["channel_id"]) if row["channel_id"] else vod_stream_key(row["vod_id"])
    payload = msgspec.to_builtins(export_view(row))
    await enqueue_notification(conn, stream, "export", payload, channel_id=row["channel_id"])


def _tenth(progress: float) -> int:
    """The tenth of the way a progress is in: 0 for 0, 1 for (0, 0.1], ... 10 for (0.9, 1]. With
    a little slack, as the column is a real (0.3 reads back as 0.30000001)."""
    return math.ceil(progress * 10 - 1e-4)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
