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

from records.retention import RetentionLimits, stored_limits
from records.webhook_store import cancel_clip_webhooks, enqueue_webhook_event
from records.wire import (
    ChannelCreate,
    ChannelView,
    ClipRecord,
    Health,
    Ingest,
    MomentEvent,
    Signal,
    Word,
    clip_id_from_seq,
    clip_stream_key,
    vod_stream_key,
)

OUTBOX_CHANNEL = "livecut_outbox"  # pg_notify channel that wakes the relay
COMMAND_TIMEOUT = 30.0  # seconds any one statement may take: a hung server must not hang a caller forever
MIGRATE_TIMEOUT = 600.0  # a migration may rewrite a big table
PAUSED_REASON = "paused through the API"  # status_reason of a pause (010_channel_pause.sql)
RESUMED_REASON = "resumed through the API"

# The next clip number of a channel or VOD job (see 005_clip_order.sql): the UPDATE locks the
# owner's row until the commit, so a channel's ids are in commit order; the database clock
# keeps ids roughly time-ordered across channels (list_clips without a channel).
_NEXT_CLIP_SEQ = (
    "UPDATE {table} SET clip_seq = greatest(clip_seq + 1, (extract(epoch FROM clock_timestamp()) * 1e6)::bigint) "
    "WHERE id = $1 RETURNING clip_seq"
)


class CommitRejected(Exception):
    """A commit that cannot succeed however often it is retried (its channel or job is gone)."""


class StreamLimitReached(Exception):
    """A paused channel cannot resume: the stream limit's channels are all active."""


def commit_can_never_succeed(exc: BaseException) -> bool:
    """Whether retrying a write that raised ``exc`` is pointless: bad data or a broken constraint
    (SQLSTATE classes 22 and 23), an owner that is gone, a value that cannot be encoded. Anything
    else (no connection, a timeout, a server shutting down, a full disk) may pass later."""
    if isinstance(exc, CommitRejected):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in ("22", "23")
    return isinstance(exc, (ValueError, TypeError, msgspec.EncodeError))


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
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 5, command_timeout: float = COMMAND_TIMEOUT
    ) -> "Store":
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=command_timeout
        )
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
                await conn.execute("SELECT pg_advisory_xact_lock(7451)", timeout=MIGRATE_TIMEOUT)  # another may be migrating
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
                )
                done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
                for f in files:
                    if f.name in done:
                        continue
                    await conn.execute(f.read_text(), timeout=MIGRATE_TIMEOUT)
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
                if not await self._lock_room_for_one(conn, limit):
                    return None
                return await self._insert_channel(conn, body, settings)

    @staticmethod
    async def _lock_room_for_one(conn: asyncpg.Connection, limit: int | None) -> bool:
        """Whether one more channel may be active under ``limit`` (None: no limit). Takes the
        admission lock for the caller's transaction, so what it counted holds until the commit.
        Active: neither deleted nor paused."""
        await conn.execute("SELECT pg_advisory_xact_lock(7452)")
        if limit is None:
            return True
        active = await conn.fetchval("SELECT count(*) FROM channels WHERE deleted_at IS NULL AND paused_at IS NULL")
        return active < limit

    async def channel_by_stream_key(self, stream_key: str) -> dict | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM channels WHERE stream_key = $1 AND deleted_at IS NULL", stream_key
        )
        return dict(row) if row else None

    async def rotate_stream_key(self, channel_id: str) -> dict | None:
        """A new stream key for an RTMP channel; the edge looks keys up here on each publish,
        so the old one opens nothing from now on."""
        row = await self.pool.fetchrow(
            "UPDATE channels SET stream_key = $2 WHERE id = $1 AND deleted_at IS NULL AND source = 'rtmp' RETURNING *",
            channel_id, secrets.token_urlsafe(18),
        )
        return dict(row) if row else None

    async def pause_channel(self, channel_id: str) -> dict | None:
        """Pause (idempotent): status ``paused`` until resumed, which no heartbeat or supervisor
        verdict overwrites meanwhile. The supervisor stops the actor (its ring folder stays) and
        the edge refuses publishes. None: no such channel."""
        row = await self.pool.fetchrow(
            "UPDATE channels SET paused_at = coalesce(paused_at, now()), status = 'paused', status_reason = $2 "
            "WHERE id = $1 AND deleted_at IS NULL RETURNING *",
            channel_id, PAUSED_REASON,
        )
        return dict(row) if row else None

    async def resume_channel(self, channel_id: str, limit: int | None) -> dict | None:
        """Resume (idempotent): status ``waiting``, and the supervisor starts its actor again.
        It counts against ``limit`` again, checked under the admission lock like a creation:
        ``StreamLimitReached`` when full. None: no such channel."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT * FROM channels WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", channel_id
                )
                if row is None or row["paused_at"] is None:  # unknown, or active already
                    return dict(row) if row else None
                if not await self._lock_room_for_one(conn, limit):
                    raise StreamLimitReached(channel_id)
                return dict(await conn.fetchrow(
                    "UPDATE channels SET paused_at = NULL, status = 'waiting', status_reason = $2 "
                    "WHERE id = $1 RETURNING *",
                    channel_id, RESUMED_REASON,
                ))

    async def delete_channel(self, channel_id: str) -> bool:
        """Soft delete: the channel stops, its clips stay."""
        result = await self.pool.execute(
            "UPDATE channels SET deleted_at = now(), status = 'offline' WHERE id = $1 AND deleted_at IS NULL",
            channel_id,
        )
        return result.endswith(" 1")

    async def set_status(self, channel_id: str, status: str, reason: str = "") -> None:
        """The supervisor's verdict; not on a paused channel (it stays ``paused``)."""
        await self.pool.execute(
            "UPDATE channels SET status = $2, status_reason = $3 WHERE id = $1 AND paused_at IS NULL",
            channel_id, status, reason,
        )

    async def report_health(self, channel_id: str, status: str, health: Health, reason: str = "") -> None:
        """The actor's heartbeat: its own status and reason replace whatever was said before.
        Not on a paused channel: the last heartbeat of its stopping actor must not hide the pause."""
        await self.pool.execute(
            "UPDATE channels SET status = $2, status_reason = $4, health = $3, health_at = now() "
            "WHERE id = $1 AND deleted_at IS NULL AND paused_at IS NULL",
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

    async def record_pending_moment(self, channel_id: str, event: MomentEvent, key: str | None = None) -> int | None:
        """A moment whose clip is not cut yet: if the actor dies now, its restart reports it lost.

        With ``key`` (the clip's commit key) it is settled by key, and recorded at most once: None
        when the commit (or its loss) got there first."""
        return await self.pool.fetchval(
            """INSERT INTO events (channel_id, kind, stream_time, score, signals, commit_key)
               VALUES ($1, 'moment_pending', $2, $3, $4, $5)
               ON CONFLICT (channel_id, commit_key) WHERE commit_key IS NOT NULL DO NOTHING RETURNING id""",
            channel_id, event.t, event.score, event.signals, key,
        )

    async def lose_moment(self, channel_id: str, event: MomentEvent, detail: str, key: str | None = None) -> None:
        await self.pool.execute(
            """INSERT INTO events (channel_id, kind, stream_time, score, signals, detail, commit_key)
               VALUES ($1, 'clip_lost', $2, $3, $4, $5, $6)
               ON CONFLICT (channel_id, commit_key) WHERE commit_key IS NOT NULL
               DO UPDATE SET kind = 'clip_lost', detail = EXCLUDED.detail""",
            channel_id, event.t, event.score, event.signals, detail, key,
        )

    async def lose_pending_moments(self, channel_id: str, detail: str, keep: tuple[str, ...] | list[str] = ()) -> int:
        """Moments a previous run of the channel's actor detected but never cut: now reported lost
        (except those of the commit keys in ``keep``: cut and journaled, their commits replay)."""
        result = await self.pool.execute(
            "UPDATE events SET kind = 'clip_lost', detail = $2 WHERE channel_id = $1 AND kind = 'moment_pending' "
            "AND (commit_key IS NULL OR NOT commit_key = ANY($3::text[]))",
            channel_id, detail, list(keep),
        )
        return int(result.split()[-1])

    async def referenced_paths(self, paths: list[str]) -> set[str]:
        """Those of ``paths`` that a clip row points at (its video or its thumbnail)."""
        rows = await self.pool.fetch(
            "SELECT video_path, thumbnail_path FROM clips WHERE video_path = ANY($1::text[]) "
            "OR thumbnail_path = ANY($1::text[])",
            paths,
        )
        wanted = set(paths)
        return {p for r in rows for p in (r["video_path"], r["thumbnail_path"]) if p in wanted}

    async def commit_clip(self, clip: ClipRecord, event: MomentEvent, base_url: str = "") -> ClipRecord:
        """Insert the clip, its event and its notification in one transaction (the outbox), under
        an id Postgres gives it now: the owner's next clip number (``records.wire.clip_id_from_seq``), so
        a channel's (or job's) ids are in commit order whatever clock the cutting host has.

        Idempotent: a live clip is keyed by ``commit_key`` (by default the ``id`` it was given,
        which is not kept), a VOD clip (``clip.vod_id``) by (job, moment); a second commit
        returns the first one's row. A VOD clip has no channel event; its notification goes to
        the job's stream. Raises ``CommitRejected`` when the channel or job does not exist."""
        key = (clip.commit_key or clip.id or None) if clip.vod_id is None else None
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                table, owner = ("vod_jobs", clip.vod_id) if clip.vod_id is not None else ("channels", clip.channel_id)
                seq = await conn.fetchval(_NEXT_CLIP_SEQ.format(table=table), owner)
                if seq is None:
                    raise CommitRejected(f"no {'VOD job' if clip.vod_id else 'channel'} {owner!r} to commit a clip to")
                # under the owner's lock: a replay (a retry after a lost reply, a resumed job) finds its first commit
                existing = await conn.fetchrow(
                    "SELECT * FROM clips WHERE (channel_id = $1 AND commit_key = $2) OR (vod_id = $3 AND moment_seq = $4)",
                    clip.channel_id, key, clip.vod_id, clip.moment_seq,
                )
                if existing is not None:
                    return clip_record(existing)
                row = await conn.fetchrow(
                    """INSERT INTO clips (id, channel_id, stream_start, stream_end, score, signals, transcript,
                                          video_path, thumbnail_path, duration, triggers, vod_id, moment_seq, commit_key,
                                          words)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                       RETURNING id, created_at""",
                    clip_id_from_seq(seq), clip.channel_id, clip.stream_start, clip.stream_end, clip.score, clip.signals,
                    clip.transcript, clip.video_path, clip.thumbnail_path, clip.duration, clip.triggers,
                    clip.vod_id, clip.moment_seq, key, clip.words,
                )
                stored = msgspec.structs.replace(
                    clip, id=row["id"], commit_key=key, created_at=iso(row["created_at"])
                )
                if clip.vod_id is not None:
                    await conn.execute("UPDATE vod_jobs SET clips = clips + 1 WHERE id = $1", clip.vod_id)
                    stream = vod_stream_key(clip.vod_id)
                else:
                    stream = clip_stream_key(clip.channel_id)
                    # settles the moment's pending row (same key) if it has one
                    await conn.execute(
                        """INSERT INTO events (channel_id, kind, stream_time, score, signals, clip_id, commit_key)
                           VALUES ($1, 'moment', $2, $3, $4, $5, $6)
                           ON CONFLICT (channel_id, commit_key) WHERE commit_key IS NOT NULL
                           DO UPDATE SET kind = 'moment', clip_id = EXCLUDED.clip_id, detail = ''""",
                        clip.channel_id, event.t, event.score, event.signals, stored.id, key,
                    )
                payload = msgspec.to_builtins(stored.notification(base_url))
                await enqueue_notification(conn, stream, "clip", payload, channel_id=clip.channel_id)
                # webhooks (008_webhooks.sql): the same clip object, in the same transaction
                await enqueue_webhook_event(
                    conn, "clip.created", payload, channel_id=clip.channel_id,
                    lane=clip.channel_id if clip.vod_id is None else f"vod:{clip.vod_id}",
                )
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

    async def search_clips(
        self,
        query: str,
        *,
        channel_id: str | None = None,
        vod_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[tuple[ClipRecord, float]]:
        """Clips whose transcript matches ``query`` (web-search syntax: words, "a phrase",
        -word, or), best first: ``ts_rank`` (more and denser matches rank higher), ties newest
        first. ``after`` is the last (rank, id) of the previous page."""
        where, args = where_clause(
            ("channel_id = ${}", channel_id),
            ("vod_id = ${}", vod_id),
            ("created_at >= ${}", since),
            ("created_at < ${}", until),
            ("transcript_tsv @@ websearch_to_tsquery('english', ${})", query),
        )
        rank = f"ts_rank(transcript_tsv, websearch_to_tsquery('english', ${len(args)}))"
        page = ""
        if after is not None:
            args += [after[0], after[1]]
            page = f"WHERE (rank, id) < (${len(args) - 1}::real, ${len(args)})"
        args.append(limit)
        rows = await self.pool.fetch(
            f"""SELECT * FROM (SELECT *, {rank} AS rank FROM clips {where}) ranked {page}
                ORDER BY rank DESC, id DESC LIMIT ${len(args)}""",
            *args,
        )
        return [(clip_record(r), r["rank"]) for r in rows]

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
        """Clips and events ever inserted, and undelivered notifications: counters the
        database's triggers keep (migration 004), so reading them costs one small scan."""
        rows = await self.pool.fetch("SELECT name, value FROM stat_counters")
        return {r["name"]: r["value"] for r in rows}

    # -- outbox ---------------------------------------------------------------------------
    async def pending_notifications(self, limit: int = 100) -> list[dict]:
        rows = await self.pool.fetch(
            "SELECT id, channel_id, stream, kind, payload FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def mark_delivered(self, ids: list[int]) -> None:
        await self.pool.execute("UPDATE outbox SET delivered_at = now() WHERE id = ANY($1::bigint[])", ids)

    # -- retention (006_retention.sql) ----------------------------------------------------
    async def unmeasured_clips(self, limit: int = 500) -> list[dict]:
        """Clips whose size is not known yet: ``id``, ``video_path``, ``thumbnail_path``."""
        rows = await self.pool.fetch(
            "SELECT id, video_path, thumbnail_path FROM clips WHERE bytes IS NULL ORDER BY id LIMIT $1", limit
        )
        return [dict(r) for r in rows]

    async def set_clip_bytes(self, sizes: dict[str, int]) -> None:
        await self.pool.execute(
            "UPDATE clips SET bytes = s.bytes FROM unnest($1::text[], $2::bigint[]) AS s(id, bytes) WHERE clips.id = s.id",
            list(sizes), list(sizes.values()),
        )

    async def retention_usage(self) -> tuple[list[dict], dict[str, dict]]:
        """Every clip's ``id``, ``channel_id``, ``age_seconds`` (by the database's clock) and
        ``bytes`` (0 while unmeasured), and each channel's ``retention`` settings (deleted
        channels included: their clips stay under their limits)."""
        clips = await self.pool.fetch(
            "SELECT id, channel_id, extract(epoch FROM now() - created_at)::float8 AS age_seconds, "
            "coalesce(bytes, 0) AS bytes FROM clips"
        )
        channels = await self.pool.fetch(
            "SELECT id, settings->'retention' AS retention FROM channels WHERE settings ? 'retention'"
        )
        return [dict(r) for r in clips], {r["id"]: r["retention"] for r in channels}

    # -- workspace retention limits (011_workspace_settings.sql) ---------------------------
    async def retention_limits(self) -> RetentionLimits:
        """The global limits in force: none until set (``records.retention.stored_limits``)."""
        return stored_limits(await self.pool.fetchval("SELECT value FROM workspace_settings WHERE name = 'retention'"))

    async def set_retention_limits(self, limits: RetentionLimits) -> None:
        await self.pool.execute(
            "INSERT INTO workspace_settings (name, value) VALUES ('retention', $1) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()",
            msgspec.to_builtins(limits),
        )

    async def retention_totals(self) -> tuple[int, int, list[dict]]:
        """What the limits weigh on: the number of clips, their measured bytes (a clip counts 0
        until the sweeper measures it), and the channels, not deleted, with ``retention``
        settings of their own (``id``, ``name``, ``retention``), oldest first."""
        clips, size = await self.pool.fetchrow("SELECT count(*), coalesce(sum(bytes), 0)::bigint FROM clips")
        channels = await self.pool.fetch(
            "SELECT id, name, settings->'retention' AS retention FROM channels "
            "WHERE settings ? 'retention' AND deleted_at IS NULL ORDER BY created_at, id"
        )
        return clips, size, [dict(r) for r in channels]

    async def delete_clips(self, reasons: dict[str, str]) -> list[dict]:
        """Delete the clips (id → why) and record each deletion, in one transaction: from its
        commit on, no listing, resume or undelivered notification points at the files, which
        the caller removes next (then ``files_removed``). Returns the deleted rows' ``id``,
        ``video_path`` and ``thumbnail_path``; ids that are no clip are skipped."""
        ids = list(reasons)
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    "DELETE FROM clips WHERE id = ANY($1::text[]) "
                    "RETURNING id, channel_id, vod_id, video_path, thumbnail_path, bytes, stream_start",
                    ids,
                )
                if not rows:
                    return []
                gone = [r["id"] for r in rows]
                await conn.executemany(
                    """INSERT INTO clip_deletions (clip_id, channel_id, vod_id, video_path, thumbnail_path, bytes, reason)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (clip_id) DO NOTHING""",
                    [(r["id"], r["channel_id"], r["vod_id"], r["video_path"], r["thumbnail_path"], r["bytes"],
                      reasons[r["id"]]) for r in rows],
                )
                await conn.executemany(
                    "INSERT INTO events (channel_id, kind, stream_time, detail, clip_id) VALUES ($1, 'clip_deleted', $2, $3, $4)",
                    [(r["channel_id"], r["stream_start"], reasons[r["id"]], r["id"]) for r in rows if r["channel_id"]],
                )
                # a notification not relayed yet would announce a clip that is gone
                await conn.execute(
                    "UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL AND kind = 'clip' "
                    "AND payload->>'id' = ANY($1::text[])",
                    gone,
                )
                await cancel_clip_webhooks(conn, gone)  # the same for webhooks (008_webhooks.sql)
        return [{"id": r["id"], "video_path": r["video_path"], "thumbnail_path": r["thumbnail_path"]} for r in rows]

    async def pending_file_removals(self, limit: int = 500) -> list[dict]:
        """Deleted clips whose files may still be on disk (a removal cut short by a crash)."""
        rows = await self.pool.fetch(
            "SELECT clip_id AS id, video_path, thumbnail_path FROM clip_deletions "
            "WHERE files_removed_at IS NULL ORDER BY deleted_at LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def files_removed(self, ids: list[str]) -> None:
        await self.pool.execute(
            "UPDATE clip_deletions SET files_removed_at = now() WHERE clip_id = ANY($1::text[])", ids
        )


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
        commit_key=row["commit_key"],
        words=msgspec.convert(row["words"], list[Word]),
    )


def channel_view(row: dict, rtmp_url: str, *, reveal_stream_key: bool = False) -> ChannelView:
    """A channel as the API shows it; its stream key only when asked (on create and rotate)."""
    health = msgspec.convert(row["health"], Health) if row.get("health") else None
    ingest = None
    if row["source"] == "rtmp":
        ingest = Ingest(rtmp_url=rtmp_url, stream_key=row["stream_key"] if reveal_stream_key else None)
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
        paused=row.get("paused_at") is not None,
    )
