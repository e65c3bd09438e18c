-- Pause and resume (POST /api/channels/{id}/pause, /resume): a paused channel keeps its row,
-- settings, stream key, ring folder and clips, but has no stream actor, takes no publish and
-- does not count against the stream limit. Its status is 'paused' until it is resumed; the
-- channel.status trigger (008_webhooks.sql) announces both changes like any other, and while
-- paused_at is set no actor heartbeat or supervisor verdict may write another status
-- (records/store.py).
ALTER TABLE channels ADD COLUMN paused_at timestamptz;  -- NULL: not paused
