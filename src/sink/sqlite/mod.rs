//! The SQLite sink (the embedded default): one typed table keyed by the
//! schema's key column, written with multi-row upserts, one transaction per
//! batch together with its checkpoint. WAL with `synchronous=NORMAL`: a
//! killed process never loses a committed batch and never leaves a
//! half-written one.

pub(super) mod table;

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sqlx::{Connection, SqliteConnection};
use tokio::runtime::Runtime;

use super::sql::{self, Dialect, EarlierRow};
use super::{Busy, Sink};
use crate::checkpoint::{runs, CheckpointUpdate, RunEnd, RunSpec, RunStart};
use crate::db::{self, Conn};
use crate::pool::Cancel;
use crate::record::{Record, Schema, Value};
use table::Insert;

/// A SQLite file a run writes (the SQLite sink's database, the CSV sink's
/// state file), held for the run: two runs on one sink would process every
/// item twice. The hold is an advisory `flock` on the file, which dies with
/// the process (a SIGKILLed run leaves nothing to clean up); SQLite's own
/// locks are `fcntl` byte ranges, which `flock` does not touch on Linux.
pub(crate) struct StateDb {
    pub(crate) rt: Runtime,
    pub(crate) conn: SqliteConnection,
    /// Interrupted, waits for a lock another program holds stop.
    pub(crate) cancel: Cancel,
    _held: File,
}

/// Opens and holds the SQLite file at `path` (created if missing), changing
/// nothing in it; another run holding it is a [`Busy`] error that names it.
pub(crate) fn open_state(path: &Path, cancel: Cancel) -> Result<StateDb> {
    db::check_file_path(path, "SQLite database")?;
    let rt = db::runtime()?;
    let mut conn = rt.block_on(db::sqlite(path))?;
    let held = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    match held.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let who = rt
                .block_on(runs::live_run(Conn::Sqlite(&mut conn), None))
                .unwrap_or_else(|| "another batchproc run".into());
            bail!(Busy(format!(
                "{who} is working on {}; try again when it ends",
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    Ok(StateDb {
        rt,
        conn,
        cancel,
        _held: held,
    })
}

impl StateDb {
    /// Readies the file for the run (WAL, bookkeeping tables), once the
    /// checks before it passed.
    pub(crate) fn set_up(&mut self) -> Result<()> {
        self.rt.block_on(db::sqlite_set_up(&mut self.conn))
    }

    /// Runs `work` in a write transaction (see [`db::sqlite_write`]).
    pub(crate) fn write<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        self.rt
            .block_on(db::sqlite_write(&mut self.conn, &self.cancel, work))
    }
}

pub(crate) struct SqliteSink {
    /// None once finished.
    db: Option<StateDb>,
    path: PathBuf,
    table: String,
    /// The key column, once prepared.
    key: String,
    run_id: Option<i64>,
    insert: Option<Insert>,
}

impl SqliteSink {
    pub(crate) fn open(path: &Path, table: &str, cancel: Cancel) -> Result<Self> {
        Ok(SqliteSink {
            db: Some(open_state(path, cancel)?),
            path: path.to_owned(),
            table: table.to_owned(),
            key: String::new(),
            run_id: None,
            insert: None,
        })
    }

    fn db(&mut self) -> &mut StateDb {
        self.db.as_mut().expect("sink used after finish")
    }
}

impl Sink for SqliteSink {
    fn prepare(&mut self, schema: &Schema) -> Result<()> {
        let table = self.table.clone();
        let StateDb { rt, conn, .. } = self.db();
        let existing = rt.block_on(async {
            // Checked before anything changes: a refused run leaves the
            // database as it found it (no bookkeeping tables, no WAL).
            let plan = table::plan(&mut *conn, &table, schema)
                .await
                .map_err(db::sqlite_busy)?;
            // Another program holding the database refuses the run now, not
            // after all the work.
            let tx = conn
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db::sqlite_busy)?;
            tx.rollback().await?;
            db::sqlite_set_up(&mut *conn).await?;
            for statement in &plan.statements {
                sqlx::query(statement).execute(&mut *conn).await?;
            }
            anyhow::Ok(plan.existing)
        })?;
        self.insert = Some(Insert::new(&table, schema, &existing));
        self.key = schema.key_column().name.clone();
        Ok(())
    }

    /// Read on a connection of rusqlite's: sqlx-sqlite hands every row
    /// across threads (see the query source), and a re-run reads them all.
    fn earlier_rows(
        &mut self,
        processors: &[String],
        each: &mut dyn FnMut(EarlierRow),
    ) -> Result<i64> {
        let sql = sql::select_earlier::<sql::Sqlite>(&self.table, processors, &|_| true);
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let mut statement = conn.prepare(&sql)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            each(EarlierRow {
                path: row.get(0)?,
                size: row.get(1).ok().flatten(),
                // Anything but batchproc's own text (a user's value)
                // reads as changed.
                mtime: row.get(2).ok().flatten(),
                current: row.get(3).unwrap_or(false),
                failures: row.get(4).ok().flatten(),
                failed_run: row.get(5).ok().flatten(),
                error: row.get(6).ok().flatten(),
            });
        }
        Ok(sql::Sqlite::TIME_RESOLUTION_NS)
    }

    /// On a read-only connection of rusqlite's: in WAL mode it reads
    /// beside the sink's writes. The ids go as one JSON array.
    fn lookup(&self) -> Result<crate::source::queue::Lookup> {
        let sql = format!(
            "SELECT {key} FROM {table} WHERE {key} IN (SELECT value FROM json_each(?1)) \
             AND error IS NULL",
            key = sql::quote_ident(&self.key),
            table = sql::quote_ident(&self.table),
        );
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(Box::new(move |ids: &[i64]| {
            let ids = serde_json::to_string(ids)?;
            let mut statement = conn.prepare_cached(&sql)?;
            let found = statement
                .query_map([ids], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            Ok(found)
        }))
    }

    fn durable(&mut self) -> Result<()> {
        let StateDb { rt, conn, .. } = self.db();
        rt.block_on(sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn))?;
        Ok(())
    }

    fn remove(&mut self, keys: &[Value], checkpoint: Option<&CheckpointUpdate>) -> Result<()> {
        let (table, key) = (self.table.clone(), self.key.clone());
        let checkpoint = checkpoint.zip(self.run_id);
        self.db()
            .write(async |conn| {
                for chunk in keys.chunks(sql::DELETE_CHUNK) {
                    let sql = sql::delete_keys(&table, &key, chunk.len());
                    let mut query = sqlx::query(&sql);
                    for value in chunk {
                        query = bind(query, value);
                    }
                    query.execute(&mut *conn).await?;
                }
                if let Some((update, run_id)) = checkpoint {
                    runs::record(Conn::Sqlite(conn), run_id, update, None).await?;
                }
                Ok(())
            })
            .with_context(|| format!("removing rows from table {}", self.table))
    }

    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>> {
        let start = self
            .db()
            .write(async |conn| runs::start_run(Conn::Sqlite(conn), spec).await)?;
        self.run_id = Some(start.run_id);
        Ok(Some(start))
    }

    fn write(
        &mut self,
        batch: &[Record],
        _encoded: Option<&[u8]>,
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        if batch.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let insert = self.insert.take().context("sink not prepared")?;
        let checkpoint = checkpoint.zip(self.run_id);
        let written = self
            .db()
            .write(async |conn| write_batch(conn, &insert, batch, checkpoint).await);
        self.insert = Some(insert);
        written.with_context(|| format!("writing to table {}", self.table))
    }

    fn set_cursor(&mut self, upto: &str) -> Result<()> {
        let run_id = self.run_id.context("no run started")?;
        self.db()
            .write(async |conn| runs::set_cursor(Conn::Sqlite(conn), run_id, upto).await)
    }

    fn end_run(&mut self, end: &RunEnd) -> Result<()> {
        if let Some(run_id) = self.run_id {
            self.db()
                .write(async |conn| runs::end_run(Conn::Sqlite(conn), run_id, end).await)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(db) = self.db.take() {
            db.rt.block_on(db.conn.close()).context("closing SQLite")?;
        }
        Ok(())
    }
}

impl Drop for SqliteSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

async fn write_batch(
    conn: &mut SqliteConnection,
    insert: &Insert,
    batch: &[Record],
    checkpoint: Option<(&CheckpointUpdate, i64)>,
) -> Result<()> {
    // Full chunks share one statement; a remainder is split into powers of
    // two, so at most a handful of distinct statements are ever prepared
    // (sqlx caches each).
    let mut rest = batch;
    while !rest.is_empty() {
        let rows = if rest.len() >= insert.rows_per_statement {
            insert.rows_per_statement
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(rows);
        rest = tail;
        let sql = insert.sql(rows);
        let mut query = sqlx::query(&sql);
        for record in chunk {
            for value in &record.values {
                query = bind(query, value);
            }
        }
        query.execute(&mut *conn).await?;
    }
    if let Some((update, run_id)) = checkpoint {
        runs::record(Conn::Sqlite(conn), run_id, update, None).await?;
    }
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds one value as SQLite stores it.
fn bind<'q>(query: Query<'q>, value: &'q Value) -> Query<'q> {
    match value {
        Value::Null => query.bind(None::<String>),
        Value::Int(i) => query.bind(*i),
        Value::Float(f) => query.bind(*f),
        Value::Text(s) => query.bind(s.as_str()),
        // Non-UTF-8 paths go into the TEXT column as BLOBs: SQLite keeps
        // each value's own type, so nothing is lost.
        Value::Bytes(b) => query.bind(b.as_slice()),
        Value::Time(t) => query.bind(Value::format_time(t)),
        Value::Bool(b) => query.bind(*b),
    }
}
