-- Who works a run (named when a second run is refused), how busy its
-- workers were, and the failures a resume retries: under fail-fast, the
-- item that stopped the run counts as failed but has no checkpoint.
ALTER TABLE batchproc_runs ADD COLUMN pid INTEGER;
ALTER TABLE batchproc_runs ADD COLUMN host TEXT;
ALTER TABLE batchproc_runs ADD COLUMN peak_busy INTEGER;
ALTER TABLE batchproc_runs ADD COLUMN average_busy REAL;
ALTER TABLE batchproc_runs ADD COLUMN retry_pending INTEGER NOT NULL DEFAULT 0;

-- Items committed with an error under --on-error skip, which a resume of
-- the run retries; written in the same transaction as their records.
CREATE TABLE IF NOT EXISTS batchproc_failures (
    run_id  INTEGER NOT NULL REFERENCES batchproc_runs (id) ON DELETE CASCADE,
    root    INTEGER NOT NULL,
    key     BLOB    NOT NULL,
    PRIMARY KEY (run_id, root, key)
) WITHOUT ROWID;
