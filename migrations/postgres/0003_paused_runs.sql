-- A run stopped by --max-runtime with items left is recorded as 'paused'.
--
-- 0001 wrote the CHECK on the status column, which Postgres named
-- batchproc_runs_status_check; it is looked up by what it checks rather
-- than by that name, so a constraint named otherwise (a table made by hand)
-- is replaced too. The re-added one keeps the usual name.
DO $$
DECLARE
    name TEXT;
BEGIN
    FOR name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'batchproc_runs'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%status%'
    LOOP
        EXECUTE format('ALTER TABLE batchproc_runs DROP CONSTRAINT %I', name);
    END LOOP;
END $$;

ALTER TABLE batchproc_runs ADD CONSTRAINT batchproc_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'paused'));
