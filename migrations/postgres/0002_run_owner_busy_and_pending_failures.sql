-- Who works a run (named when a second run is refused), how busy its
-- workers were, and the failures a resume retries: under fail-fast, the
-- item that stopped the run counts as failed but has no checkpoint.
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS pid BIGINT;
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS host TEXT;
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS peak_busy BIGINT;
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS average_busy DOUBLE PRECISION;
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS retry_pending BIGINT NOT NULL DEFAULT 0;

-- Items committed with an error under --on-error skip, which a resume of
-- the run retries; written in the same transaction as their records.
CREATE TABLE IF NOT EXISTS batchproc_failures (
    run_id  BIGINT NOT NULL REFERENCES batchproc_runs (id) ON DELETE CASCADE,
    root    BIGINT NOT NULL,
    key     BYTEA  NOT NULL,
    PRIMARY KEY (run_id, root, key)
);
