-- Clip ids are assigned by Postgres at commit, per channel (and per VOD job): the last one
-- given is kept on the owner's row, and the next is greatest(last + 1, the database clock in
-- microseconds). Taking it is an UPDATE of that row, which serialises a channel's commits, so
-- id order is commit order whatever the clock of the host that cut the clip.
ALTER TABLE channels ADD COLUMN clip_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE vod_jobs ADD COLUMN clip_seq bigint NOT NULL DEFAULT 0;

-- Ids from before this migration start with 14 hex digits of the cutting host's clock: new
-- ids must sort after them.
UPDATE channels ch SET clip_seq = m.last FROM (
    SELECT channel_id, max(('x' || lpad(substr(id, 1, 14), 16, '0'))::bit(64)::bigint) AS last
    FROM clips WHERE channel_id IS NOT NULL AND id ~ '^[0-9a-f]{14}' GROUP BY channel_id
) m WHERE ch.id = m.channel_id;
UPDATE vod_jobs j SET clip_seq = m.last FROM (
    SELECT vod_id, max(('x' || lpad(substr(id, 1, 14), 16, '0'))::bit(64)::bigint) AS last
    FROM clips WHERE vod_id IS NOT NULL AND id ~ '^[0-9a-f]{14}' GROUP BY vod_id
) m WHERE j.id = m.vod_id;

-- The key the stream actor named a clip's files and journaled its commit under: a replayed
-- commit finds its clip (and its moment's event) instead of adding a second one.
ALTER TABLE clips ADD COLUMN commit_key text;
CREATE UNIQUE INDEX clips_channel_commit_key ON clips (channel_id, commit_key) WHERE commit_key IS NOT NULL;
ALTER TABLE events ADD COLUMN commit_key text;
CREATE UNIQUE INDEX events_channel_commit_key ON events (channel_id, commit_key) WHERE commit_key IS NOT NULL;
