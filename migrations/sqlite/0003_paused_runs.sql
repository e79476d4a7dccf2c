-- A run stopped by --max-runtime with items left is recorded as 'paused'.
--
-- SQLite cannot change a CHECK constraint, so batchproc_runs is rebuilt:
-- made anew, filled, the old one dropped and the new one renamed. sqlx runs
-- this inside a transaction with foreign_keys ON, where the pragma cannot
-- be switched off; dropping batchproc_runs would then delete every
-- checkpoint and failure row through ON DELETE CASCADE. So those two tables
-- are set aside first (copied into TEMP tables, dropped) and made again
-- after the rename. That way no table ever refers to a table being dropped
-- or renamed, and the outcome is the same whatever legacy_alter_table says.

CREATE TABLE batchproc_runs_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint     TEXT    NOT NULL,
    command         TEXT    NOT NULL,  -- the command line, passwords redacted
    sink_table      TEXT,
    status          TEXT    NOT NULL
                    CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'paused')),
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
    finished_at     TEXT,
    pid             INTEGER,
    host            TEXT,
    peak_busy       INTEGER,
    average_busy    REAL,
    retry_pending   INTEGER NOT NULL DEFAULT 0
);

INSERT INTO batchproc_runs_new (
    id, fingerprint, command, sink_table, status, ok, failed, skipped, attempts,
    watermark_root, watermark_key, csv_length, started_at, finished_at,
    pid, host, peak_busy, average_busy, retry_pending)
SELECT
    id, fingerprint, command, sink_table, status, ok, failed, skipped, attempts,
    watermark_root, watermark_key, csv_length, started_at, finished_at,
    pid, host, peak_busy, average_busy, retry_pending
FROM batchproc_runs;

-- AUTOINCREMENT never hands out an id again, even that of a deleted run:
-- the new table takes over the old one's counter.
DELETE FROM sqlite_sequence WHERE name = 'batchproc_runs_new';
UPDATE sqlite_sequence SET name = 'batchproc_runs_new' WHERE name = 'batchproc_runs';

CREATE TEMP TABLE batchproc_checkpoints_kept AS SELECT run_id, root, key FROM batchproc_checkpoints;
CREATE TEMP TABLE batchproc_failures_kept AS SELECT run_id, root, key FROM batchproc_failures;
DROP TABLE batchproc_checkpoints;
DROP TABLE batchproc_failures;

DROP TABLE batchproc_runs;
ALTER TABLE batchproc_runs_new RENAME TO batchproc_runs;
CREATE INDEX batchproc_runs_fingerprint ON batchproc_runs (fingerprint, id);

-- As 0001 and 0002 made them.
CREATE TABLE batchproc_checkpoints (
    run_id  INTEGER NOT NULL REFERENCES batchproc_runs (id) ON DELETE CASCADE,
    root    INTEGER NOT NULL,
    key     BLOB    NOT NULL,
    PRIMARY KEY (run_id, root, key)
) WITHOUT ROWID;

CREATE TABLE batchproc_failures (
    run_id  INTEGER NOT NULL REFERENCES batchproc_runs (id) ON DELETE CASCADE,
    root    INTEGER NOT NULL,
    key     BLOB    NOT NULL,
    PRIMARY KEY (run_id, root, key)
) WITHOUT ROWID;

INSERT INTO batchproc_checkpoints (run_id, root, key)
    SELECT run_id, root, key FROM batchproc_checkpoints_kept;
INSERT INTO batchproc_failures (run_id, root, key)
    SELECT run_id, root, key FROM batchproc_failures_kept;
DROP TABLE batchproc_checkpoints_kept;
DROP TABLE batchproc_failures_kept;
