-- query --cursor: the range of cursor values a run reads, `after` < value
-- <= `upto`, each in the source's stored form (`int:42`, `text:…`,
-- `timestamptz:…`; '' for none). `cursor_after` is where the pipeline's
-- last succeeded run ended (NULL: there was none); `cursor_upto` is read
-- when the run starts (NULL until then) and kept, so a resume reads the
-- same range; once the run succeeds it is the pipeline's cursor.
ALTER TABLE batchproc_runs ADD COLUMN cursor_after TEXT;
ALTER TABLE batchproc_runs ADD COLUMN cursor_upto TEXT;
