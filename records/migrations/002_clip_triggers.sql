-- The signals that fired for a clip's moment, each with its time, value and detail
-- (e.g. the keyword heard, the HUD event read): what the feed shows beside the contributions.
ALTER TABLE clips ADD COLUMN triggers jsonb NOT NULL DEFAULT '[]';
