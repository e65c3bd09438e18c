"""Postgres access for VOD jobs: the job table, shard results and job notifications.

Every change a subscriber should see (status, progress, error) is written with its ``vod``
notification in one transaction, through the same outbox as clips.
"""
from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import msgspec

from records.store import enqueue_notification, iso, where_clause
from records.webhook_store import enqueue_webhook_event
from records.wire import VodError, VodJob, vod_stream_key
from records.redact import redact_url


def new_vod_id() -> str:
    return secrets.token_hex(6)


def vod_view(row: dict) -> VodJob:
    error = msgspec.convert(row["error"], VodError) if row["error"] else None
    source = f"upload:{row['upload_id']}" if row["upload_id"] else redact_url(row["url"] or "")
    return VodJob(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        progress=round(float(row["progress"]), 4),
        duration=row["duration"],
        clips=row["clips"],
        error=error,
        created_at=iso(row["created_at"]),
        started_at=iso(row["started_at"]),
        finished_at=iso(row["finished_at"]),
        source=source,
        cut_mode=row["cut_mode"],
        settings=row["settings"],
        cpu=row["cpu"],
    )


class NewVod(msgspec.Struct):
    name: str
    url: str | None
    upload_id: str | None
    settings: dict


class VodStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def create_jobs(self, items: list[NewVod]) -> list[dict]:
        """Queue a batch, all or nothing, in submission order."""
        batch_id = secrets.token_hex(6)
        rows = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                for item in items:
                    row = await conn.fetchrow(
                        """INSERT INTO vod_jobs (id, batch_id, name, url, upload_id, settings)
                           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
                        new_vod_id(), batch_id, item.name, item.url, item.upload_id, item.settings,
                    )
                    rows.append(dict(row))
                    await self._notify(conn, rows[-1])
        return rows

    async def get(self, vod_id: str) -> dict | None:
        row = await self.pool.fetchrow("SELECT * FROM vod_jobs WHERE id = $1", vod_id)
        return dict(row) if row else None

    async def list(self, *, status: str | None = None, before: int | None = None, limit: int = 50) -> list[dict]:
        """Newest first; ``before`` is the ``seq`` cursor of the previous page."""
        where, args = where_clause(("status = ${}", status), ("seq < ${}", before))
        args.append(limit)
        rows = await self.pool.fetch(f"SELECT * FROM vod_jobs {where} ORDER BY seq DESC LIMIT ${len(args)}", *args)
        return [dict(r) for r in rows]

    async def runnable(self, limit: int) -> list[dict]:
        """Running jobs (to resume after a restart), then queued ones in submission order."""
        rows = await self.pool.fetch(
            "SELECT * FROM vod_jobs WHERE status IN ('running', 'queued') "
            "ORDER BY status = 'queued', seq LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def update(self, vod_id: str, *, only_if_active: bool = True, **fields: Any) -> dict | None:
        """Set ``fields`` (and notify subscribers); None when the job is gone or already final."""
        names = list(fields)
        sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        guard = " AND status IN ('queued', 'running')" if only_if_active else ""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"UPDATE vod_jobs SET {sets} WHERE id = $1{guard} RETURNING *", vod_id, *fields.values()
                )
                if row is None:
                    return None
                await self._notify(conn, dict(row))
        return dict(row)

    async def start(self, vod_id: str) -> dict | None:
        return await self.update(vod_id, status="running", started_at=_now())

    async def finish(self, vod_id: str, status: str, error: VodError | None = None, **more: Any) -> dict | None:
        fields: dict[str, Any] = {"status": status, "finished_at": _now(), **more}
        if status == "done":
            fields["progress"] = 1.0
        if error is not None:
            fields["error"] = msgspec.to_builtins(error)
        return await self.update(vod_id, **fields)

    async def cancel(self, vod_id: str) -> dict | None:
        """Cancel a queued or running job (None: no such job; a final job is returned as it is)."""
        row = await self.update(vod_id, status="cancelled", finished_at=_now())
        return row if row is not None else await self.get(vod_id)

    async def upload_in_use(self, upload_id: str) -> bool:
        """Whether a queued or running job still reads this upload."""
        return await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM vod_jobs WHERE upload_id = $1 AND status IN ('queued', 'running'))", upload_id
        )

    async def status_of(self, vod_id: str) -> str | None:
        return await self.pool.fetchval("SELECT status FROM vod_jobs WHERE id = $1", vod_id)

    # -- shards ---------------------------------------------------------------------------
    async def save_shard(self, vod_id: str, idx: int, result: dict, cpu: dict) -> None:
        await self.pool.execute(
            "INSERT INTO vod_shards (vod_id, idx, result, cpu) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (vod_id, idx) DO NOTHING",
            vod_id, idx, result, cpu,
        )

    async def shards(self, vod_id: str) -> dict[int, dict]:
        rows = await self.pool.fetch("SELECT idx, result FROM vod_shards WHERE vod_id = $1", vod_id)
        return {r["idx"]: r["result"] for r in rows}

    async def shard_cpu(self, vod_id: str) -> dict[str, float]:
        """CPU seconds per stage, summed over the job's shards."""
        total: dict[str, float] = {}
        for row in await self.pool.fetch("SELECT cpu FROM vod_shards WHERE vod_id = $1", vod_id):
            for stage, seconds in row["cpu"].items():
                total[stage] = total.get(stage, 0.0) + seconds
        return total

    async def committed_moments(self, vod_id: str) -> set[int]:
        rows = await self.pool.fetch("SELECT moment_seq FROM clips WHERE vod_id = $1", vod_id)
        return {r["moment_seq"] for r in rows}

    async def _notify(self, conn: asyncpg.Connection, row: dict) -> None:
        view = msgspec.to_builtins(vod_view(row))
        await enqueue_notification(conn, vod_stream_key(row["id"]), "vod", view)
        if row["status"] in ("done", "failed"):  # once: a final job is not updated again (``update``'s guard)
            event = "vod.finished" if row["status"] == "done" else "vod.failed"
            await enqueue_webhook_event(conn, event, view, channel_id=None, lane=f"vod:{row['id']}")


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)
