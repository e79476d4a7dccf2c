//! The SQLite sink (the embedded default): one typed table keyed by the
//! schema's key column, written with multi-row upserts, one transaction per
//! batch. WAL with `synchronous=NORMAL`: a killed process never loses a
//! committed batch and never leaves a half-written one.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};
use tokio::runtime::Runtime;

use super::{
    add_columns_sql, check_existing, create_table_sql, quote_ident, stale_clears, status_name,
    ExistingColumn, Sink,
};
use crate::checkpoint::{sqlite as store, CheckpointUpdate, RunSpec, RunStart};
use crate::record::{ColumnType, Record, Schema, Value};
use crate::RunStatus;

/// SQLite's default limit on bound parameters per statement.
const MAX_PARAMS: usize = 32766;
/// Rows per INSERT statement: past a few hundred, longer statements gain nothing.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// A connection to the SQLite file at `path` (created if missing), on a
/// private current-thread runtime: the pipeline's threads stay synchronous.
pub fn connect(path: &Path) -> Result<(Runtime, SqliteConnection)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(30));
    let conn = rt
        .block_on(SqliteConnection::connect_with(&options))
        .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    Ok((rt, conn))
}

pub struct SqliteSink {
    rt: Runtime,
    conn: Option<SqliteConnection>,
    table: String,
    run_id: Option<i64>,
    /// `INSERT … VALUES` head, the `(?, …)` group for one row, and the upsert tail.
    insert: Option<Insert>,
}

struct Insert {
    head: String,
    row: String,
    tail: String,
    rows_per_statement: usize,
}

impl SqliteSink {
    pub fn open(path: &Path, table: &str) -> Result<Self> {
        let (rt, mut conn) = connect(path)?;
        rt.block_on(store::migrate(&mut conn))?;
        Ok(SqliteSink {
            rt,
            conn: Some(conn),
            table: table.to_owned(),
            run_id: None,
            insert: None,
        })
    }
}

impl Sink for SqliteSink {
    fn prepare(&mut self, schema: &Schema) -> Result<()> {
        let table = self.table.clone();
        let rt = &self.rt;
        let conn = self.conn.as_mut().expect("sink used after finish");
        let existing = rt.block_on(async {
            let existing = prepare_table(&mut *conn, &table, schema).await?;
            // Find out now, not after all the work, if another process holds
            // the database locked (this waits up to the busy timeout).
            let tx = conn
                .begin_with("BEGIN IMMEDIATE")
                .await
                .context("database is locked")?;
            tx.rollback().await?;
            anyhow::Ok(existing)
        })?;
        let clears = stale_clears(&table, schema, &existing, "IS");
        self.insert = Some(Insert::new(&table, schema, &clears));
        Ok(())
    }

    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>> {
        let conn = self.conn.as_mut().expect("sink used after finish");
        let start = self.rt.block_on(store::start_run(conn, spec))?;
        self.run_id = Some(start.run_id);
        Ok(Some(start))
    }

    fn write(&mut self, batch: &[Record], checkpoint: Option<&CheckpointUpdate>) -> Result<()> {
        if batch.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        let insert = self.insert.take().context("sink not prepared")?;
        let checkpoint = checkpoint.zip(self.run_id);
        let result = {
            let rt = &self.rt;
            let conn = self.conn.as_mut().expect("sink used after finish");
            rt.block_on(write_batch(conn, &insert, batch, checkpoint))
        };
        self.insert = Some(insert);
        result.with_context(|| format!("writing to table {}", self.table))
    }

    fn end_run(&mut self, status: RunStatus, skipped: u64) -> Result<()> {
        if let (Some(conn), Some(run_id)) = (self.conn.as_mut(), self.run_id) {
            self.rt
                .block_on(store::end_run(conn, run_id, status_name(status), skipped))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            self.rt.block_on(conn.close()).context("closing SQLite")?;
        }
        Ok(())
    }
}

impl Drop for SqliteSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Insert {
    fn new(table: &str, schema: &Schema, extra_updates: &[String]) -> Self {
        let names: Vec<String> = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let key = &names[schema.key];
        let mut updates: Vec<String> = names
            .iter()
            .filter(|n| *n != key)
            .map(|n| format!("{n} = excluded.{n}"))
            .collect();
        // Computed against the row as it was: SQLite evaluates every SET
        // expression before assigning any.
        updates.extend_from_slice(extra_updates);
        let row = format!("({})", vec!["?"; names.len()].join(", "));
        Insert {
            head: format!(
                "INSERT INTO {} ({}) VALUES ",
                quote_ident(table),
                names.join(", ")
            ),
            row,
            tail: format!(" ON CONFLICT ({key}) DO UPDATE SET {}", updates.join(", ")),
            rows_per_statement: (MAX_PARAMS / names.len()).clamp(1, MAX_ROWS_PER_STATEMENT),
        }
    }

    fn sql(&self, rows: usize) -> String {
        let mut sql = self.head.clone();
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&self.row);
        }
        sql.push_str(&self.tail);
        sql
    }
}

async fn write_batch(
    conn: &mut SqliteConnection,
    insert: &Insert,
    batch: &[Record],
    checkpoint: Option<(&CheckpointUpdate, i64)>,
) -> Result<()> {
    let mut tx = conn.begin().await?;
    // Full chunks share one statement; a remainder is split into powers of
    // two, so at most a handful of distinct statements are ever prepared.
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
                query = match value {
                    Value::Null => query.bind(None::<String>),
                    Value::Int(i) => query.bind(*i),
                    Value::Float(f) => query.bind(*f),
                    Value::Text(s) => query.bind(s.as_str()),
                    Value::Bytes(b) => query.bind(b.as_slice()),
                    Value::Time(t) => query.bind(Value::format_time(t)),
                    Value::Bool(b) => query.bind(*b),
                };
            }
        }
        query.execute(&mut *tx).await?;
    }
    if let Some((update, run_id)) = checkpoint {
        store::record(&mut tx, run_id, update, None).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// SQLite's column affinity for a declared type (section 3.1 of its datatype docs).
fn affinity(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "TEXT"
    } else if t.contains("BLOB") || t.is_empty() {
        "BLOB"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

fn declared_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int | ColumnType::Bool => "INTEGER",
        ColumnType::Float => "REAL",
        ColumnType::Text | ColumnType::Time => "TEXT",
        ColumnType::Bytes => "BLOB",
    }
}

/// Creates the table, or checks an existing one: every column this run
/// writes must have the right affinity (missing ones are added), the key
/// must be unique, and no other column may demand a value we do not give.
/// Returns the names of the columns the table had before.
async fn prepare_table(
    conn: &mut SqliteConnection,
    table: &str,
    schema: &Schema,
) -> Result<Vec<String>> {
    let existing = sqlx::query(
        r#"SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?)"#,
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    if existing.is_empty() {
        sqlx::query(&create_table_sql(table, schema, declared_type))
            .execute(&mut *conn)
            .await?;
        return Ok(Vec::new());
    }
    let existing: Vec<ExistingColumn> = existing
        .iter()
        .map(|r| ExistingColumn {
            name: r.get("name"),
            declared: r.get("type"),
            not_null: r.get::<i64, _>("notnull") != 0,
            has_default: r.get::<Option<String>, _>("dflt_value").is_some(),
            generated: r.get::<i64, _>("hidden") != 0,
        })
        .collect();
    let names: Vec<String> = existing.iter().map(|e| e.name.clone()).collect();
    let missing = check_existing(table, schema, &existing, |found, col| {
        let want = declared_type(col.ty);
        (affinity(&found.declared) != want).then_some(want)
    })?;
    let strict: Option<i64> = sqlx::query_scalar("SELECT strict FROM pragma_table_list(?)")
        .bind(table)
        .fetch_optional(&mut *conn)
        .await?;
    if strict == Some(1) {
        bail!("table {table:?} is incompatible: STRICT tables cannot hold paths that are not UTF-8 (stored as BLOBs)");
    }
    let key = &schema.key_column().name;
    if !has_unique_index_on(conn, table, key).await? {
        bail!("table {table:?} is incompatible: column {key:?} is not unique (needs a PRIMARY KEY or UNIQUE index on it alone, with the default BINARY collation and no WHERE clause)");
    }
    for sql in add_columns_sql(table, &missing, declared_type) {
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    Ok(names)
}

async fn has_unique_index_on(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
) -> Result<bool> {
    // An INTEGER PRIMARY KEY is the rowid itself: unique, and no index lists it.
    let pk: Vec<(String, String)> =
        sqlx::query_as("SELECT name, upper(type) FROM pragma_table_info(?) WHERE pk > 0")
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
    if let [(name, ty)] = pk.as_slice() {
        if name.eq_ignore_ascii_case(column) && ty == "INTEGER" {
            return Ok(true);
        }
    }
    let indexes =
        sqlx::query(r#"SELECT name FROM pragma_index_list(?) WHERE "unique" = 1 AND partial = 0"#)
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
    for index in indexes {
        let name: String = index.get("name");
        // A NOCASE key would merge paths that differ only in case.
        let cols: Vec<(Option<String>, String)> =
            sqlx::query_as("SELECT name, coll FROM pragma_index_xinfo(?) WHERE key = 1")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?;
        if let [(Some(col), coll)] = cols.as_slice() {
            if col.eq_ignore_ascii_case(column) && coll.eq_ignore_ascii_case("BINARY") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
