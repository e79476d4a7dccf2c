//! The Postgres sink: a typed table keyed by the schema's key column. Each
//! batch is sent with COPY straight into the table while its keys are new;
//! once a batch meets a key already there, batches go with COPY into a
//! session-local staging table, then are upserted (`INSERT … ON CONFLICT …
//! DO UPDATE`). Either way in the same transaction as the run's checkpoint
//! rows, which live in the same database. A connection lost
//! mid-run is re-opened with backoff (backon) and the batch retried: the
//! transaction that died with it left nothing behind. An advisory lock on
//! the pipeline's fingerprint keeps a second run of the same pipeline out.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use backon::BackoffBuilder;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use tokio::runtime::Runtime;

use super::{
    add_columns_sql, check_existing, create_table_sql, quote_ident, stale_clears, status_name,
    Checker, ExistingColumn, Sink,
};
use crate::checkpoint::{postgres as store, redact, CheckpointUpdate, RunSpec, RunStart};
use crate::record::{ColumnType, Record, Schema, Value};
use crate::RunStatus;

/// How long to keep trying to reconnect before the run fails.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
const STAGE: &str = "batchproc_stage";

pub struct PostgresSink {
    rt: Runtime,
    inner: Inner,
}

/// Everything but the runtime, so `rt.block_on(inner.…)` borrows apart.
struct Inner {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    table: String,
    schema: Option<Schema>,
    run_id: Option<i64>,
    /// The advisory lock key held for this run (re-taken after a reconnect).
    lock: Option<String>,
    copy_sql: String,
    upsert_sql: String,
    /// COPY straight into the table, which is a plain insert.
    direct_sql: String,
    /// Whether to try `direct_sql` first: true until a batch meets a key
    /// already in the table, after which every batch takes the upsert path.
    direct: bool,
}

impl PostgresSink {
    pub fn open(url: &str, table: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            anyhow::anyhow!(
                "bad Postgres URL {}: {}",
                redact(url),
                redact(&e.to_string())
            )
        })?;
        // Like SQLite's synchronous=NORMAL: a commit returns before its WAL
        // is flushed. A server crash may lose the last commits, but records
        // and checkpoint go together, so a resume redoes exactly those.
        let options = options.options([("synchronous_commit", "off")]);
        let mut conn = rt.block_on(connect(&options)).map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to {}: {}",
                redact(url),
                redact(&e.to_string())
            )
        })?;
        rt.block_on(store::migrate(&mut conn))?;
        Ok(PostgresSink {
            rt,
            inner: Inner {
                options,
                conn: Some(conn),
                table: table.to_owned(),
                schema: None,
                run_id: None,
                lock: None,
                copy_sql: String::new(),
                upsert_sql: String::new(),
                direct_sql: String::new(),
                direct: true,
            },
        })
    }
}

impl Inner {
    async fn write(
        &mut self,
        batch: &[Record],
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        loop {
            match self.try_write(batch, checkpoint).await {
                Ok(()) => return Ok(()),
                Err(e) if connection_lost(&e) => {
                    crate::progress::say(&format!(
                        "batchproc: warning: Postgres connection lost ({}); reconnecting",
                        redact(&e.to_string())
                    ));
                    self.conn = None;
                    self.reconnect().await?;
                }
                Err(e) => return Err(anyhow::Error::new(e)),
            }
        }
    }

    /// Replaces a dead connection: reconnects with backoff, then restores
    /// the session state (staging table, advisory lock).
    async fn reconnect(&mut self) -> Result<()> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_total_delay(Some(RECONNECT_FOR))
            .with_max_times(usize::MAX)
            .with_jitter()
            .build();
        let mut conn = loop {
            match connect(&self.options).await {
                Ok(conn) => break conn,
                Err(e) => match delays.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => bail!("connection lost and not back within {RECONNECT_FOR:?}: {e}"),
                },
            }
        };
        if let Some(schema) = &self.schema {
            create_stage(&mut conn, schema).await?;
        }
        if let Some(fingerprint) = &self.lock {
            take_lock(&mut conn, fingerprint).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    async fn try_write(
        &mut self,
        batch: &[Record],
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<(), sqlx::Error> {
        let conn = self.conn.as_mut().expect("connected");
        let csv = (!batch.is_empty()).then(|| copy_csv(batch));
        loop {
            let mut tx = conn.begin().await?;
            if let Some(csv) = &csv {
                if self.direct {
                    // New keys (a first run, a fresh table) need no upsert:
                    // COPY them straight in, which halves what the server
                    // writes. A key already there aborts the COPY with a
                    // unique violation: the transaction is rolled back (with
                    // nothing of it kept) and redone through staging.
                    match copy_in(&mut tx, &self.direct_sql, csv).await {
                        Ok(()) => {}
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                            tx.rollback().await?;
                            self.direct = false;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    copy_in(&mut tx, &self.copy_sql, csv).await?;
                    sqlx::query(&self.upsert_sql).execute(&mut *tx).await?;
                }
            }
            if let (Some(update), Some(run_id)) = (checkpoint, self.run_id) {
                store::record(&mut tx, run_id, update, None)
                    .await
                    .map_err(|e| match e.downcast::<sqlx::Error>() {
                        Ok(e) => e,
                        Err(e) => sqlx::Error::Protocol(e.to_string()),
                    })?;
            }
            return tx.commit().await;
        }
    }
}

async fn copy_in(conn: &mut PgConnection, sql: &str, csv: &[u8]) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    copy.send(csv).await?;
    copy.finish().await.map(drop)
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(options))
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Errors after which the same batch may succeed on a new connection.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

async fn take_lock(conn: &mut PgConnection, fingerprint: &str) -> Result<()> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(fingerprint)
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        bail!("another batchproc run of this pipeline is working on this database; try again when it ends");
    }
    Ok(())
}

impl Sink for PostgresSink {
    fn prepare(&mut self, schema: &Schema) -> Result<()> {
        let inner = &mut self.inner;
        let table = inner.table.clone();
        let conn = inner.conn.as_mut().expect("connected");
        let existing = self.rt.block_on(async {
            let existing = prepare_table(conn, &table, schema).await?;
            create_stage(conn, schema).await?;
            anyhow::Ok(existing)
        })?;
        let names: Vec<String> = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let cols = names.join(", ");
        let key = &names[schema.key];
        let mut updates: Vec<String> = names
            .iter()
            .filter(|n| *n != key)
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        updates.extend(stale_clears(
            &table,
            schema,
            &existing,
            "IS NOT DISTINCT FROM",
        ));
        inner.copy_sql = format!("COPY {STAGE} ({cols}) FROM STDIN (FORMAT csv)");
        inner.direct_sql = format!(
            "COPY {} ({cols}) FROM STDIN (FORMAT csv)",
            quote_ident(&table)
        );
        inner.upsert_sql = format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {STAGE} ON CONFLICT ({key}) DO UPDATE SET {}",
            quote_ident(&table),
            updates.join(", ")
        );
        inner.schema = Some(schema.clone());
        Ok(())
    }

    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>> {
        let inner = &mut self.inner;
        let conn = inner.conn.as_mut().expect("connected");
        let start = self.rt.block_on(async {
            take_lock(conn, &spec.fingerprint).await?;
            store::start_run(conn, spec).await
        })?;
        inner.lock = Some(spec.fingerprint.clone());
        inner.run_id = Some(start.run_id);
        Ok(Some(start))
    }

    fn checker(&self) -> Option<Checker> {
        let types: Vec<(String, ColumnType)> = self
            .inner
            .schema
            .as_ref()?
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect();
        Some(Box::new(move |record: &Record| {
            record
                .values
                .iter()
                .zip(&types)
                .find_map(|(v, (name, ty))| match (v, ty) {
                    (Value::Bytes(_), ColumnType::Text) => Some(format!(
                        "{name} is not valid UTF-8, which a Postgres TEXT column cannot hold"
                    )),
                    (Value::Text(s), _) if s.as_bytes().contains(&0) => Some(format!(
                        "{name} contains a NUL character, which Postgres text cannot hold"
                    )),
                    _ => None,
                })
        }))
    }

    fn write(&mut self, batch: &[Record], checkpoint: Option<&CheckpointUpdate>) -> Result<()> {
        self.rt
            .block_on(self.inner.write(batch, checkpoint))
            .with_context(|| format!("writing to table {}", self.inner.table))
    }

    fn end_run(&mut self, status: RunStatus, skipped: u64) -> Result<()> {
        if let (Some(conn), Some(run_id)) = (self.inner.conn.as_mut(), self.inner.run_id) {
            self.rt
                .block_on(store::end_run(conn, run_id, status_name(status), skipped))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(conn) = self.inner.conn.take() {
            self.rt
                .block_on(conn.close())
                .context("closing Postgres connection")?;
        }
        Ok(())
    }
}

/// The batch as COPY's CSV: text always quoted (so an empty string is not
/// NULL), NULL as an unquoted empty field, bytes as `\x` hex.
fn copy_csv(batch: &[Record]) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(batch.len() * 128);
    for record in batch {
        for (i, value) in record.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match value {
                Value::Null => {}
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Float(f) => {
                    let _ = write!(out, "{f:?}");
                }
                Value::Text(s) => {
                    out.push('"');
                    if s.contains('"') {
                        out.push_str(&s.replace('"', "\"\""));
                    } else {
                        out.push_str(s);
                    }
                    out.push('"');
                }
                Value::Bytes(b) => {
                    out.push_str("\\x");
                    for byte in b {
                        let _ = write!(out, "{byte:02x}");
                    }
                }
                Value::Time(t) => out.push_str(&Value::format_time(t)),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int => "BIGINT",
        ColumnType::Float => "DOUBLE PRECISION",
        ColumnType::Text => "TEXT",
        ColumnType::Bytes => "BYTEA",
        ColumnType::Time => "TIMESTAMPTZ",
        ColumnType::Bool => "BOOLEAN",
    }
}

/// The `information_schema` names a compatible existing column may have.
fn accepted(ty: ColumnType) -> &'static [&'static str] {
    match ty {
        ColumnType::Int => &["bigint", "numeric"],
        ColumnType::Float => &["double precision", "numeric"],
        ColumnType::Text => &["text", "character varying"],
        ColumnType::Bytes => &["bytea"],
        ColumnType::Time => &["timestamp with time zone"],
        ColumnType::Bool => &["boolean"],
    }
}

async fn create_stage(conn: &mut PgConnection, schema: &Schema) -> Result<()> {
    let cols: Vec<String> = schema
        .columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), pg_type(c.ty)))
        .collect();
    sqlx::query(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {STAGE} ({}) ON COMMIT DELETE ROWS",
        cols.join(", ")
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates the table, or checks an existing one as the SQLite sink does:
/// right types, a plain unique index on the key, nothing NOT NULL or
/// generated among our columns, nothing required that we do not write.
/// Returns the names of the columns the table had before.
async fn prepare_table(
    conn: &mut PgConnection,
    table: &str,
    schema: &Schema,
) -> Result<Vec<String>> {
    let existing = sqlx::query(
        "SELECT column_name::text AS name, data_type::text AS ty, is_nullable::text AS nullable, \
         column_default::text AS dflt, is_generated::text AS generated \
         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    let key = &schema.key_column().name;
    if existing.is_empty() {
        sqlx::query(&create_table_sql(table, schema, pg_type))
            .execute(&mut *conn)
            .await?;
        return Ok(Vec::new());
    }
    let existing: Vec<ExistingColumn> = existing
        .iter()
        .map(|r| ExistingColumn {
            name: r.get("name"),
            declared: r.get("ty"),
            not_null: r.get::<String, _>("nullable") == "NO",
            has_default: r.get::<Option<String>, _>("dflt").is_some(),
            generated: r.get::<String, _>("generated") == "ALWAYS",
        })
        .collect();
    let names: Vec<String> = existing.iter().map(|e| e.name.clone()).collect();
    let missing = check_existing(table, schema, &existing, |found, col| {
        (!accepted(col.ty).contains(&found.declared.as_str())).then_some(pg_type(col.ty))
    })?;
    let unique: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisunique \
         AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2)",
    )
    .bind(table)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    if !unique {
        bail!("table {table:?} is incompatible: column {key:?} is not unique (needs a PRIMARY KEY or UNIQUE index on it alone, without WHERE)");
    }
    for sql in add_columns_sql(table, &missing, pg_type) {
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    Ok(names)
}
