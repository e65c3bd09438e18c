-- Each clip's words with their times, relative to the clip's first frame (seconds):
-- [{"start", "end", "text", "probability"}]. Clips from before this migration have none.
ALTER TABLE clips ADD COLUMN words jsonb NOT NULL DEFAULT '[]';

-- Full-text search over transcripts (GET /api/clips?q=...). 'english' stems ("clutched"
-- finds "clutch"); the column is generated, so it can never disagree with the transcript.
ALTER TABLE clips ADD COLUMN transcript_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', transcript)) STORED;
CREATE INDEX clips_transcript_search ON clips USING gin (transcript_tsv);
