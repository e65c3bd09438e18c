-- Workspace-wide settings, one JSON value per name; Postgres is the truth. 'retention': the
-- global clip retention limits (records.retention.RetentionLimits), which `livecut up
-- --retention-days/--retention-bytes` writes at start when given and PUT /api/settings/retention
-- (the console's Settings page) changes; the retention sweeper reads them on every pass.
CREATE TABLE workspace_settings (
    name       text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
