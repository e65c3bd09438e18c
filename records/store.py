"""Postgres access through asyncpg: migrations, channels, clips, events and the outbox.

Postgres is the source of truth. A clip row and its notification are written in one
transaction; ``records.outbox`` relays the notification to Redis afterwards.
"""
from __future__ import annotations

import datetime as dt
import secrets
from importlib import resources
from typing import Any

import asyncpg
import msgspec

from records.wire import (
    ChannelCreate,
    ChannelView,
    ClipRecord,
    Health,
    Ingest,
    MomentEvent,
    Signal,
    clip_stream_key,
    vod_stream_key,
)

OUTBOX_CHANNEL = "livecut_outbox"  # pg_notify channel that wakes the relay


def iso(ts: dt.datetime | None) -> str | None:
    return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if ts else None


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: msgspec.json.encode(v).decode(), decoder=msgspec.json.decode, schema="pg_catalog"
    )


class Store:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 5) -> "Store":
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # -- schema ---------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, under an advisory lock; returns those applied."""
        files = sorted(
            (f for f in resources.files("records.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        applied: list[str] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(7451)")
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
                )
                done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
                for f in files:
                    if f.name in done:
                        continue
                    await conn.execute(f.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", f.name)
                    applied.append(f.name)
        return applied

    # -- channels -------------------------------------------------------------------------
    async def create_channel(self, body: ChannelCreate, settings: dict) -> dict:
        async with self.pool.acquire() as conn:
            return await self._insert_channel(conn, body, settings)

    @staticmethod
    async def _insert_channel(conn: asyncpg.Connection, body: ChannelCreate, settings: dict) -> dict:
        stream_key = secrets.token_urlsafe(18) if body.source == "rtmp" else None
        return dict(
            await conn.fetchrow(
                """INSERT INTO channels (id, name, source, url, stream_key, settings)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
                secrets.token_hex(6), body.name, body.source, body.url, stream_key, settings,
            )
        )

    async def get_channel(self, channel_id: str) -> dict | None:
        row = await self.pool.fetchrow("SELECT * FROM channels WHERE id = $1 AND deleted_at IS NULL", channel_id)
        return dict(row) if row else None

    async def last_stream_time(self, channel_id: str) -> tuple[float, float] | None:
        """The stream time the channel's actor last reported, and seconds since (database clock)."""
        row = await self.pool.fetchrow(
            "SELECT (health->>'stream_time')::float8 AS stream_time, "
            "extract(epoch FROM now() - health_at)::float8 AS age FROM channels WHERE id = $1",
            channel_id,
        )
        if row is None or row["stream_time"] is None or row["age"] is None:
            return None
        return row["stream_time"], max(0.0, row["age"])

    async def list_channels(self) -> list[dict]:
        """Active channels; ``health_age`` is seconds since the last heartbeat, by the database's clock."""
        rows = await self.pool.fetch(
            "SELECT *, extract(epoch FROM now() - health_at)::float8 AS health_age "
            "FROM channels WHERE deleted_at IS NULL ORDER BY created_at, id"
        )
        return [dict(r) for r in rows]

    async def create_channel_within(self, body: ChannelCreate, settings: dict, limit: int | None) -> dict | None:
        """Create unless ``limit`` active channels exist already (None when refused).

        Counting and inserting under one advisory lock, so concurrent requests cannot overshoot."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(7452)")
                if limit is not None:
                    active = await conn.fetchval("SELECT count(*) FROM channels WHERE deleted_at IS NULL")
                    if active >= limit:
                        return None
                return await self._insert_channel(conn, body, settings)

    async def channel_by_stream_key(self, stream_key: str) -> dict | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM channels WHERE stream_key = $1 AND deleted_at IS NULL", stream_key
        )
        return dict(row) if row else None

    async def delete_channel(self, channel_id: str) -> bool:
        """Soft delete: the channel stops, its clips stay."""
        result = await self.pool.execute(
            "UPDATE channels SET deleted_at = now(), status = 'offline' WHERE id = $1 AND deleted_at IS NULL",
            channel_id,
        )
        return result.endswith(" 1")

    async def set_status(self, channel_id: str, status: str, reason: str = "") -> None:
        await self.pool.execute(
            "UPDATE channels SET status = $2, status_reason = $3 WHERE id = $1", channel_id, status, reason
        )

    async def report_health(self, channel_id: str, status: str, health: Health, reason: str = "") -> None:
        """The actor's heartbeat: its own status and reason replace whatever was said before."""
        await self.pool.execute(
            "UPDATE channels SET status = $2, status_reason = $4, health = $3, health_at = now() "
            "WHERE id = $1 AND deleted_at IS NULL",
            channel_id, status, msgspec.to_builtins(health), reason,
        )

    # -- events and clips -----------------------------------------------------------------
    async def record_event(
        self, channel_id: str, kind: str, event: MomentEvent, *, detail: str = "", clip_id: str | None = None
    ) -> int:
        return await self.pool.fetchval(
            """INSERT INTO events (channel_id, kind, stream_time, score, signals, detail, clip_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            channel_id, kind, event.t, event.score, event.signals, detail, clip_id,
        )

    async def log_event(self, channel_id: str, kind: str, detail: str, stream_time: float = 0.0) -> int:
        """An operational event on the channel's log (a restart, a lost clip), not a moment."""
        return await self.pool.fetchval(
            "INSERT INTO events (channel_id, kind, stream_time, detail) VALUES ($1, $2, $3, $4) RETURNING id",
            channel_id, kind, stream_time, detail,
        )

    async def record_pending_moment(self, channel_id: str, event: MomentEvent) -> int:
        """A moment whose clip is not cut yet: if the actor dies now, its restart reports it lost."""
        return await self.pool.fetchval(
            """INSERT INTO events (channel_id, kind, stream_time, score, signals)
               VALUES ($1, 'moment_pending', $2, $3, $4) RETURNING id""",
            channel_id, event.t, event.score, event.signals,
        )

    async def lose_moment(self, channel_id: str, event: MomentEvent, detail: str, event_id: int | None) -> None:
        if event_id is None:
            await self.record_event(channel_id, "clip_lost", event, detail=detail)
        else:
            await self.pool.execute("UPDATE events SET kind = 'clip_lost', detail = $2 WHERE id = $1", event_id, detail)

    async def lose_pending_moments(self, channel_id: str, detail: str) -> int:
        """Moments a previous run of the channel's actor detected but never cut: now reported lost."""
        result = await self.pool.execute(
            "UPDATE events SET kind = 'clip_lost', detail = $2 WHERE channel_id = $1 AND kind = 'moment_pending'",
            channel_id, detail,
        )
        return int(result.split()[-1])

    async def commit_clip(
        self, clip: ClipRecord, event: MomentEvent, base_url: str = "", event_id: int | None = None
    ) -> ClipRecord:
        """Insert the clip, its event and its notification in one transaction (the outbox).

        A VOD clip (``clip.vod_id``) has no channel event; its notification goes to the job's
        stream, and a second commit of the same (job, moment) returns the first one's row."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    """INSERT INTO clips (id, channel_id, stream_start, stream_end, score, signals, transcript,
                                          video_path, thumbnail_path, duration, triggers, vod_id, moment_seq)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                       ON CONFLICT DO NOTHING RETURNING created_at""",
                    clip.id, clip.channel_id, clip.stream_start, clip.stream_end, clip.score, clip.signals,
                    clip.transcript, clip.video_path, clip.thumbnail_path, clip.duration, clip.triggers,
                    clip.vod_id, clip.moment_seq,
                )
                if row is None:  # already committed (a retry after a lost reply, a resumed job)
                    existing = await conn.fetchrow(
                        "SELECT * FROM clips WHERE id = $1 OR (vod_id = $2 AND moment_seq = $3)",
                        clip.id, clip.vod_id, clip.moment_seq,
                    )
                    return clip_record(existing)
                stored = msgspec.structs.replace(clip, created_at=iso(row["created_at"]))
                if clip.vod_id is not None:
                    await conn.execute("UPDATE vod_jobs SET clips = clips + 1 WHERE id = $1", clip.vod_id)
                    stream = vod_stream_key(clip.vod_id)
                else:
                    stream = clip_stream_key(clip.channel_id)
                    if event_id is not None:  # the moment was recorded as pending when detected
                        await conn.execute(
                            "UPDATE events SET kind = 'moment', clip_id = $2 WHERE id = $1", event_id, clip.id
                        )
                    else:
                        await conn.execute(
                            """INSERT INTO events (channel_id, kind, stream_time, score, signals, clip_id)
                               VALUES ($1, 'moment', $2, $3, $4, $5)""",
                            clip.channel_id, event.t, event.score, event.signals, clip.id,
                        )
                payload = msgspec.to_builtins(stored.notification(base_url))
                await enqueue_notification(conn, stream, "clip", payload, channel_id=clip.channel_id)
        return stored

    async def get_clip(self, clip_id: str) -> ClipRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM clips WHERE id = $1", clip_id)
        return clip_record(row) if row else None

    async def list_clips(
        self,
        *,
        channel_id: str | None = None,
        vod_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> list[ClipRecord]:
        """Newest first; ``before`` is the cursor (a clip id) from the previous page."""
        where, args = where_clause(
            ("channel_id = ${}", channel_id),
            ("vod_id = ${}", vod_id),
            ("created_at >= ${}", since),
            ("created_at < ${}", until),
            ("id < ${}", before),
        )
        args.append(limit)
        rows = await self.pool.fetch(f"SELECT * FROM clips {where} ORDER BY id DESC LIMIT ${len(args)}", *args)
        return [clip_record(r) for r in rows]

    async def clips_after(
        self, channel_id: str | None, after_id: str, limit: int = 500, *, vod_id: str | None = None
    ) -> list[ClipRecord]:
        """Clips of a channel (or a VOD job) newer than ``after_id``, oldest first (resume)."""
        column, owner = ("vod_id", vod_id) if vod_id is not None else ("channel_id", channel_id)
        rows = await self.pool.fetch(
            f"SELECT * FROM clips WHERE {column} = $1 AND id > $2 ORDER BY id LIMIT $3", owner, after_id, limit
        )
        return [clip_record(r) for r in rows]

    async def events(self, channel_id: str, limit: int = 100) -> list[dict]:
        rows = await self.pool.fetch(
            "SELECT * FROM events WHERE channel_id = $1 ORDER BY id DESC LIMIT $2", channel_id, limit
        )
        return [dict(r) for r in rows]

    async def counts(self) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            "SELECT (SELECT count(*) FROM clips) AS clips, (SELECT count(*) FROM events) AS events, "
            "(SELECT count(*) FROM outbox WHERE delivered_at IS NULL) AS outbox_pending"
        )
        return dict(row)

    # -- outbox ---------------------------------------------------------------------------
    async def pending_notifications(self, limit: int = 100) -> list[dict]:
        rows = await self.pool.fetch(
            "SELECT id, channel_id, stream, kind, payload FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def mark_delivered(self, ids: list[int]) -> None:
        await self.pool.execute("UPDATE outbox SET delivered_at = now() WHERE id = ANY($1::bigint[])", ids)


def where_clause(*conditions: tuple[str, Any]) -> tuple[str, list]:
    """``WHERE`` over the conditions whose value is not None (each SQL with one ``${}``
    placeholder), and their arguments."""
    clauses, args = [], []
    for sql, value in conditions:
        if value is not None:
            args.append(value)
            clauses.append(sql.format(len(args)))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


async def enqueue_notification(
    conn: asyncpg.Connection, stream: str, kind: str, payload: dict, *, channel_id: str | None = None
) -> None:
    """Queue a notification for the Redis ``stream`` in the caller's transaction (the outbox)
    and wake the relay."""
    await conn.execute(
        "INSERT INTO outbox (channel_id, stream, kind, payload) VALUES ($1, $2, $3, $4)",
        channel_id, stream, kind, payload,
    )
    await conn.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, stream)


def clip_record(row: asyncpg.Record) -> ClipRecord:
    return ClipRecord(
        id=row["id"],
        channel_id=row["channel_id"],
        stream_start=row["stream_start"],
        stream_end=row["stream_end"],
        score=row["score"],
        signals=row["signals"],
        transcript=row["transcript"],
        video_path=row["video_path"],
        thumbnail_path=row["thumbnail_path"],
        duration=row["duration"],
        created_at=iso(row["created_at"]),
        triggers=msgspec.convert(row["triggers"], list[Signal]),
        vod_id=row["vod_id"],
        moment_seq=row["moment_seq"],
    )


def channel_view(row: dict, rtmp_url: str) -> ChannelView:
    health = msgspec.convert(row["health"], Health) if row.get("health") else None
    ingest = Ingest(rtmp_url=rtmp_url, stream_key=row["stream_key"]) if row["source"] == "rtmp" else None
    return ChannelView(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        url=row["url"],
        status=row["status"],
        status_reason=row["status_reason"],
        settings=row["settings"],
        health=health,
        health_at=iso(row["health_at"]),
        created_at=iso(row["created_at"]),
        ingest=ingest,
    )
