-- --incremental and --prune: items a run found unchanged since an earlier
-- run (not processed, not written), and rows it deleted because their
-- files were gone; each counted in the transaction that covers it.
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS unchanged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batchproc_runs ADD COLUMN IF NOT EXISTS removed BIGINT NOT NULL DEFAULT 0;
