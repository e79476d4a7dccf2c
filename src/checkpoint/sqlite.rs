//! The bookkeeping tables (`batchproc_runs`, `batchproc_checkpoints`) in
//! SQLite: used by the SQLite sink inside its batch transactions and by the
//! CSV sink in its state file. The schema lives in migrations/sqlite and is
//! applied with sqlx's migrator: a no-op when current, an upgrade when older.

type Conn = sqlx::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

include!("store.rs");
