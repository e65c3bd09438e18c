-- Export progress: the fraction of a render done (vod.export.rendering reports it from the Ray
-- task; vod.export_jobs stores it about once a second). 1 once done; 0 when queued again.
ALTER TABLE exports
    ADD COLUMN progress real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1);
UPDATE exports SET progress = 1 WHERE status = 'done';
