-- --shard I/N: which shard of its pipeline a run handled (`2/3`), for
-- `batchproc runs`; NULL for a run of the whole source. The shard is in the
-- fingerprint too, which is what keeps shards' runs apart.
ALTER TABLE batchproc_runs ADD COLUMN shard TEXT;
