-- Bookkeeping for exact resume: one row per run, and the checkpoint rows of
-- items committed beyond the run's contiguous watermark. Both are written in
-- the same transaction as the records they cover.
CREATE TABLE IF NOT EXISTS batchproc_runs (
    id              BIGSERIAL PRIMARY KEY,
    fingerprint     TEXT    NOT NULL,
    command         TEXT    NOT NULL,  -- the command line, passwords redacted
    sink_table      TEXT,
    status          TEXT    NOT NULL
                    CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    ok              BIGINT  NOT NULL DEFAULT 0,
    failed          BIGINT  NOT NULL DEFAULT 0,
    skipped         BIGINT  NOT NULL DEFAULT 0,
    attempts        BIGINT  NOT NULL DEFAULT 1,
    -- Every item up to and including this key (source order) is committed.
    watermark_root  BIGINT,
    watermark_key   BYTEA,
    csv_length      BIGINT,
    started_at      TEXT    NOT NULL,
    finished_at     TEXT
);

CREATE INDEX IF NOT EXISTS batchproc_runs_fingerprint ON batchproc_runs (fingerprint, id);

CREATE TABLE IF NOT EXISTS batchproc_checkpoints (
    run_id  BIGINT NOT NULL REFERENCES batchproc_runs (id) ON DELETE CASCADE,
    root    BIGINT NOT NULL,
    key     BYTEA  NOT NULL,
    PRIMARY KEY (run_id, root, key)
);
