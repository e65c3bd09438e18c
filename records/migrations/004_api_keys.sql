-- Scoped API keys. Only a hash of each key is stored: the secret is shown once, on create.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    scope        text NOT NULL CHECK (scope IN ('admin', 'ingest', 'read')),
    key_hash     bytea NOT NULL UNIQUE,   -- sha256 of the key (keys are 256-bit random)
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Totals /metrics reports, kept by triggers so a scrape reads three rows instead of
-- counting whole tables. Clips and events count inserts (Prometheus counters only grow);
-- outbox_pending is the number of undelivered notifications.
CREATE TABLE stat_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO stat_counters (name, value) VALUES
    ('clips', (SELECT count(*) FROM clips)),
    ('events', (SELECT count(*) FROM events)),
    ('outbox_pending', (SELECT count(*) FROM outbox WHERE delivered_at IS NULL));

CREATE FUNCTION stat_count_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE stat_counters SET value = value + (SELECT count(*) FROM new_rows) WHERE name = TG_ARGV[0];
    RETURN NULL;
END $$;

CREATE TRIGGER clips_counted AFTER INSERT ON clips
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stat_count_inserts('clips');
CREATE TRIGGER events_counted AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stat_count_inserts('events');

CREATE FUNCTION stat_outbox_pending() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM new_rows WHERE delivered_at IS NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT -count(*) INTO delta FROM old_rows WHERE delivered_at IS NULL;
    ELSE
        SELECT (SELECT count(*) FROM new_rows WHERE delivered_at IS NULL)
             - (SELECT count(*) FROM old_rows WHERE delivered_at IS NULL) INTO delta;
    END IF;
    IF delta <> 0 THEN
        UPDATE stat_counters SET value = value + delta WHERE name = 'outbox_pending';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_pending_insert AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stat_outbox_pending();
CREATE TRIGGER outbox_pending_update AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stat_outbox_pending();
CREATE TRIGGER outbox_pending_delete AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stat_outbox_pending();
