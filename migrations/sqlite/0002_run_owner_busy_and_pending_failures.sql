-- Who works a run (named when a second run is refused), how busy its
-- workers were, and the failures a resume retries: under fail-fast, the
-- item that stopped the run counts as failed but has no checkpoint.
ALTER TABLE batchproc_runs ADD COLUMN pid INTEGER;
ALTER TABLE batchproc_runs ADD COLUMN host TEXT;
ALTER TABLE batchproc_runs ADD COLUMN peak_busy INTEGER;
ALTER TABLE batchproc_runs ADD COLUMN average_busy REAL;
ALTER TABLE batchproc_runs ADD COLUMN retry_pending INTEGER NOT NULL DEFAULT 0;
