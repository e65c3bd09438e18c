-- Clip exports (POST /api/clips/{id}/exports): a clip rendered to another aspect, reframed and
-- captioned, by a Ray task. The row is the truth about each one; its file is in the data dir.
CREATE TABLE exports (
    id          text PRIMARY KEY,
    seq         bigserial UNIQUE,          -- creation order: queued exports start in this order
    clip_id     text NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
    channel_id  text,                      -- the clip's owner, whose subscribers get the export event
    vod_id      text,
    options     jsonb NOT NULL,            -- records.wire.ExportOptions
    status      text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts    integer NOT NULL DEFAULT 0, -- runs started: one cut short by a restart is queued again while few
    path        text,                      -- the MP4, once done
    error       text,                      -- once failed
    width       integer,
    height      integer,
    duration    double precision,
    cpu         double precision,          -- CPU seconds of the render
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX exports_clip ON exports (clip_id, seq);
CREATE INDEX exports_unfinished ON exports (status, seq) WHERE status IN ('queued', 'running');
