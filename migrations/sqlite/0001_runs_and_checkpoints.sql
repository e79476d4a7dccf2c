-- Bookkeeping for exact resume: one row per run, and the checkpoint rows of
-- items committed beyond the run's contiguous watermark. Both are written in
-- the same transaction as the records they cover.
CREATE TABLE IF NOT EXISTS batchproc_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint     TEXT    NOT NULL,
    command         TEXT    NOT NULL,  -- the command line, passwords redacted
    sink_table      TEXT,
    status          TEXT    NOT NULL
                    CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    ok              INTEGER NOT NULL DEFAULT 0,
    failed          INTEGER NOT NULL DEFAULT 0,
    skipped         INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 1,
    -- Every item up to and including this key (walk order) is committed.
    watermark_root  INTEGER,
    watermark_key   BLOB,
    -- CSV sink only: bytes of the CSV file that are committed.
    csv_length      INTEGER,
    started_at      TEXT    NOT NULL,
    finished_at     TEXT
);

CREATE INDEX IF NOT EXISTS batchproc_runs_fingerprint ON batchproc_runs (fingerprint, id);

CREATE TABLE IF NOT EXISTS batchproc_checkpoints (
    run_id  INTEGER NOT NULL REFERENCES batchproc_runs (id) ON DELETE CASCADE,
    root    INTEGER NOT NULL,
    key     BLOB    NOT NULL,
    PRIMARY KEY (run_id, root, key)
) WITHOUT ROWID;
