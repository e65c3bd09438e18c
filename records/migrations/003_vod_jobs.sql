-- VOD jobs: recordings submitted in batches, analysed as shards (Ray tasks), clipped like live.
CREATE TABLE vod_jobs (
    id          text PRIMARY KEY,
    seq         bigserial UNIQUE,         -- submission order: queued jobs start in this order
    batch_id    text NOT NULL,
    name        text NOT NULL,
    url         text,                     -- a URL source (as submitted)
    upload_id   text,                     -- or a finished tus upload
    settings    jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'queued',
    progress    double precision NOT NULL DEFAULT 0,
    duration    double precision,
    clips       integer NOT NULL DEFAULT 0,
    error       jsonb,                    -- {"code", "message"} when failed
    cut_mode    text,                     -- "copy" | "remux" | "reencode"
    cut_cpu     double precision NOT NULL DEFAULT 0, -- CPU seconds spent cutting its clips so far
    cpu         jsonb,                    -- when done: CPU seconds per stage, shards and cutting
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX vod_jobs_status ON vod_jobs (status, seq);

-- Each shard's detector output (signals and words it owns), kept so a restart redoes only
-- the shards that had not finished.
CREATE TABLE vod_shards (
    vod_id   text NOT NULL REFERENCES vod_jobs(id) ON DELETE CASCADE,
    idx      integer NOT NULL,
    result   jsonb NOT NULL,
    cpu      jsonb NOT NULL DEFAULT '{}', -- CPU seconds per stage
    done_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vod_id, idx)
);

ALTER TABLE clips ALTER COLUMN channel_id DROP NOT NULL;
ALTER TABLE clips ADD COLUMN vod_id text REFERENCES vod_jobs(id);
ALTER TABLE clips ADD COLUMN moment_seq integer;
-- one clip per fused moment of a job, however often the commit is retried or the job resumed
CREATE UNIQUE INDEX clips_vod_moment ON clips (vod_id, moment_seq) WHERE vod_id IS NOT NULL;
CREATE INDEX clips_vod ON clips (vod_id, id) WHERE vod_id IS NOT NULL;

-- The outbox also carries VOD notifications: the Redis stream each row goes to, and its kind.
ALTER TABLE outbox ALTER COLUMN channel_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN stream text;
ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'clip';
