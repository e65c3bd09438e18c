CREATE TABLE channels (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    source        text NOT NULL,
    url           text,
    stream_key    text UNIQUE,
    settings      jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'waiting',
    status_reason text NOT NULL DEFAULT '',
    health        jsonb,
    health_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    channel_id  text NOT NULL REFERENCES channels(id),
    kind        text NOT NULL,          -- 'moment', 'clip_lost', ...
    stream_time double precision NOT NULL,
    score       double precision NOT NULL DEFAULT 0,
    signals     jsonb NOT NULL DEFAULT '{}',
    detail      text NOT NULL DEFAULT '',
    clip_id     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_channel ON events (channel_id, id);

CREATE TABLE clips (
    id             text PRIMARY KEY,    -- time-ordered, see records.wire.new_clip_id
    channel_id     text NOT NULL REFERENCES channels(id),
    stream_start   double precision NOT NULL,
    stream_end     double precision NOT NULL,
    score          double precision NOT NULL,
    signals        jsonb NOT NULL,
    transcript     text NOT NULL DEFAULT '',
    video_path     text NOT NULL,
    thumbnail_path text NOT NULL,
    duration       double precision NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clips_channel ON clips (channel_id, id);
CREATE INDEX clips_created ON clips (created_at);

-- Notifications committed with their clip; a relay moves them to Redis.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    channel_id   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;
