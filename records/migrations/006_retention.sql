-- Clip retention. Each clip's size on disk (video and thumbnail), NULL until measured: the
-- retention sweeper measures unmeasured rows (those from before this migration, and new
-- ones) from their files, so the sizes of old clips never hold up the migration.
ALTER TABLE clips ADD COLUMN bytes bigint;
CREATE INDEX clips_unmeasured ON clips (id) WHERE bytes IS NULL;

-- Every deleted clip (retention or DELETE /api/clips/{id}): the row goes first, in the same
-- transaction as this record; its files are removed afterwards, and a removal interrupted by
-- a crash is finished on the next sweep (files_removed_at still NULL).
CREATE TABLE clip_deletions (
    clip_id          text PRIMARY KEY,
    channel_id       text,
    vod_id           text,
    video_path       text NOT NULL,
    thumbnail_path   text NOT NULL,
    bytes            bigint,
    reason           text NOT NULL,
    deleted_at       timestamptz NOT NULL DEFAULT now(),
    files_removed_at timestamptz
);
CREATE INDEX clip_deletions_pending ON clip_deletions (deleted_at) WHERE files_removed_at IS NULL;
