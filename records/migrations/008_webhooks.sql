-- Webhooks: receivers outside the deployment that get signed events (Standard Webhooks).
-- The API is gateway/webhooks.py, the SQL records/webhook_store.py, the sender
-- supervisor/webhook_delivery.py.
CREATE TABLE webhooks (
    id              text PRIMARY KEY,
    url             text NOT NULL,
    events          text[] NOT NULL,   -- clip.created, vod.finished, vod.failed, channel.status
    channel_id      text,              -- only this channel's events; NULL: every channel and VOD job
    format          text NOT NULL DEFAULT 'standard' CHECK (format IN ('standard', 'discord')),
    secret          text NOT NULL,     -- whsec_<base64>: signs every delivery
    created_at      timestamptz NOT NULL DEFAULT now(),
    failing_since   timestamptz,       -- the first failed attempt since the last success
    disabled_at     timestamptz,       -- a 410 answer, or failing for days: nothing more is sent
    disabled_reason text NOT NULL DEFAULT ''
);

-- The webhook outbox: one row per event and webhook, written in the transaction of what caused
-- the event. Delivered in id order per (webhook, lane); a lane is a channel ('<channel id>'),
-- a VOD job ('vod:<id>') or the pings (''). ``next_attempt_at`` is also the lease of an attempt
-- in flight, so two senders never take the same row.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    webhook_id      text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        text NOT NULL,     -- the webhook-id header: the same on every attempt and redelivery
    type            text NOT NULL,
    lane            text NOT NULL,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    data            jsonb NOT NULL,    -- the payload's "data"; clip media as unsigned paths
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX webhook_deliveries_lanes ON webhook_deliveries (webhook_id, lane, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id);

-- The delivery log: every attempt, with the receiver's status code or why there was none.
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Queue an event for every enabled webhook that wants it (in the caller's transaction) and wake
-- the senders; returns how many deliveries were queued. ``channel`` NULL: a VOD job's event,
-- for webhooks without a channel filter only.
CREATE FUNCTION webhook_enqueue(event_type text, channel text, lane text, data jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    event_id text := 'msg_' || replace(gen_random_uuid()::text, '-', '');
    queued integer;
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, type, lane, data)
    SELECT w.id, event_id, event_type, lane, data FROM webhooks w
    WHERE w.disabled_at IS NULL AND event_type = ANY (w.events)
      AND (w.channel_id IS NULL OR w.channel_id = channel);
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('livecut_webhooks', lane);
    END IF;
    RETURN queued;
END $$;

-- channel.status: every writer of a channel's status (the actor's heartbeat, the supervisor's
-- restarts, a deletion) goes through this trigger, in its own transaction.
CREATE FUNCTION webhook_channel_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_enqueue('channel.status', NEW.id, NEW.id, jsonb_build_object(
        'channel_id', NEW.id, 'status', NEW.status, 'status_reason', NEW.status_reason,
        'previous_status', OLD.status));
    RETURN NULL;
END $$;

CREATE TRIGGER channels_status_webhook AFTER UPDATE OF status ON channels
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION webhook_channel_status();
