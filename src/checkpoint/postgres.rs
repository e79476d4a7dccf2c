//! The bookkeeping tables (`batchproc_runs`, `batchproc_checkpoints`) in
//! Postgres, in the sink's own database, written in the same transaction as
//! each batch. The schema lives in migrations/postgres (sqlx's migrator).

type Conn = sqlx::PgConnection;
type DbRow = sqlx::postgres::PgRow;
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

include!("store.rs");
