//! The `query` source: the rows of a SQL query on SQLite or Postgres, read
//! page by page with keyset pagination — the query wrapped as a subquery
//! with `WHERE key > $last ORDER BY key LIMIT n` — never OFFSET, so page
//! 10,000 costs what page 1 costs. Pages are fetched on the source's own
//! thread, so reading the next page overlaps with processing the current.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use crossbeam_channel::Sender;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Column as _, Connection, Executor, PgConnection, Row, TypeInfo, ValueRef};

use super::Source;
use crate::checkpoint::{redact, Dispatch, ItemKey, Ledger, Seq};
use crate::pool::Cancel;
use crate::record::{Column, ColumnType, Value};
use crate::sink::quote_ident;

/// Rows sent to the workers at once: enough that threads are not woken per
/// row, few enough that memory stays small (queue capacity × this).
const ROWS_PER_CHUNK: usize = 128;

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum SourceDb {
    Sqlite(PathBuf),
    /// The URL as given (with any password): never printed, see `Display`.
    Postgres(String),
}

impl SourceDb {
    pub fn parse(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(SourceDb::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite:")
            .map(|p| p.strip_prefix("//").unwrap_or(p));
        match path {
            Some(p) if !p.is_empty() && !p.starts_with(':') && !p.starts_with("file:") => {
                Ok(SourceDb::Sqlite(p.into()))
            }
            _ => bail!(
                "unsupported --from {:?}: use sqlite:PATH or postgres://…",
                redact(url)
            ),
        }
    }
}

impl std::fmt::Display for SourceDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceDb::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            SourceDb::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// One row of the query: its key and its values, in column order.
#[derive(Debug, Clone)]
pub struct RowItem {
    pub key: ItemKey,
    pub values: Vec<Value>,
}

/// The query source.
#[derive(Debug, Clone)]
pub struct QuerySource {
    pub from: SourceDb,
    pub sql: String,
    pub key: String,
    pub page_size: usize,
    /// The result of [`QuerySource::describe`], once done (it may scan).
    pub shape: Option<Shape>,
}

/// The query's columns, as checked before the run starts.
#[derive(Debug, Clone)]
pub struct Shape {
    pub columns: Vec<Column>,
    pub key: usize,
}

/// An open connection to either database.
enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

impl QuerySource {
    async fn connect(&self) -> Result<Conn> {
        Ok(match &self.from {
            SourceDb::Sqlite(path) => {
                if !path.exists() {
                    bail!("{}: no such database", path.display());
                }
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                Conn::Sqlite(
                    rusqlite::Connection::open_with_flags(path, flags).with_context(|| {
                        format!("cannot open SQLite database {}", path.display())
                    })?,
                )
            }
            SourceDb::Postgres(url) => {
                let opts: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
                    anyhow::anyhow!(
                        "bad Postgres URL {}: {}",
                        redact(url),
                        redact(&e.to_string())
                    )
                })?;
                Conn::Postgres(PgConnection::connect_with(&opts).await.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot connect to {}: {}",
                        redact(url),
                        redact(&e.to_string())
                    )
                })?)
            }
        })
    }

    /// The page query: the user's query as a subquery, keyset-paginated.
    /// `$1` is the last key (when `after`), the last `$` the page size + 1
    /// (one row of look-ahead shows a duplicate key across a page boundary).
    fn page_sql(&self, after: bool) -> String {
        let key = quote_ident(&self.key);
        let (cond, limit) = if after {
            (format!(" AND {key} > $1"), "$2")
        } else {
            (String::new(), "$1")
        };
        format!(
            "SELECT * FROM ({}) AS batchproc_q WHERE {key} IS NOT NULL{cond} ORDER BY {key} LIMIT {limit}",
            self.sql
        )
    }

    /// Checks the query before any work: it parses, has the key column with
    /// an integer or text type, no NULL keys, and only supported types.
    pub fn describe(&self) -> Result<Shape> {
        let rt = runtime()?;
        rt.block_on(async {
            let mut conn = self.connect().await?;
            let probe = format!("SELECT * FROM ({}) AS batchproc_q LIMIT 0", self.sql);
            let columns: Vec<Column> = match &mut conn {
                Conn::Sqlite(c) => {
                    let stmt = c.prepare(&probe).context("--sql")?;
                    stmt.columns()
                        .iter()
                        .map(|col| Column::new(col.name(), sqlite_type(col.decl_type().unwrap_or(""))))
                        .collect()
                }
                Conn::Postgres(c) => {
                    let d = c.describe(&probe).await.context("--sql")?;
                    d.columns()
                        .iter()
                        .map(|col| {
                            let ty = col.type_info().name();
                            pg_type(ty).map(|t| Column::new(col.name(), t)).with_context(|| {
                                format!(
                                    "column {:?} has type {ty}, which batchproc cannot carry yet; cast it in --sql (e.g. ::text)",
                                    col.name()
                                )
                            })
                        })
                        .collect::<Result<_>>()?
                }
            };
            let key = columns
                .iter()
                .position(|c| c.name == self.key)
                .with_context(|| format!("--key {:?} is not a column of the query", self.key))?;
            if !matches!(columns[key].ty, ColumnType::Int | ColumnType::Text) {
                bail!("--key {:?} must be an integer or text column", self.key);
            }
            let nulls = format!(
                "SELECT 1 AS one FROM ({}) AS batchproc_q WHERE {} IS NULL LIMIT 1",
                self.sql,
                quote_ident(&self.key)
            );
            let has_null = match &mut conn {
                Conn::Sqlite(c) => c.prepare(&nulls)?.exists([])?,
                Conn::Postgres(c) => sqlx::query(&nulls).fetch_optional(&mut *c).await?.is_some(),
            };
            if has_null {
                bail!("--key {:?} has NULL values: every row needs a key", self.key);
            }
            Ok(Shape { columns, key })
        })
    }

    async fn page(
        &self,
        conn: &mut Conn,
        shape: &Shape,
        after: Option<&ItemKey>,
    ) -> Result<Vec<RowItem>> {
        let sql = self.page_sql(after.is_some());
        let limit = self.page_size as i64 + 1;
        match conn {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&sql)?;
                let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(2);
                match after {
                    Some(ItemKey::Int(i)) => params.push((*i).into()),
                    Some(ItemKey::Text(s)) => params.push(s.clone().into()),
                    _ => {}
                }
                params.push(limit.into());
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut items = Vec::with_capacity(self.page_size + 1);
                while let Some(row) = rows.next()? {
                    items.push(sqlite_row(row, shape)?);
                }
                Ok(items)
            }
            Conn::Postgres(c) => {
                let mut q = sqlx::query(&sql);
                q = match after {
                    Some(ItemKey::Int(i)) => q.bind(*i),
                    Some(ItemKey::Text(s)) => q.bind(s.as_str()),
                    _ => q,
                };
                let rows = q.bind(limit).fetch_all(&mut *c).await?;
                rows.iter().map(|r| pg_row(r, shape)).collect()
            }
        }
    }
}

impl Source for QuerySource {
    type Item = RowItem;

    fn run(
        self,
        queue: Sender<Vec<(Seq, RowItem)>>,
        ledger: &Ledger,
        cancel: &Cancel,
    ) -> Result<()> {
        let shape = match &self.shape {
            Some(shape) => shape.clone(),
            None => self.describe()?,
        };
        let rt = runtime()?;
        rt.block_on(async {
            let mut conn = self.connect().await?;
            let mut after = ledger.resumed_after().cloned();
            loop {
                let mut rows = self.page(&mut conn, &shape, after.as_ref()).await?;
                let more = rows.len() > self.page_size;
                if more {
                    let extra = rows.pop().expect("page_size + 1 rows");
                    if Some(&extra.key) == rows.last().map(|r| &r.key) {
                        bail!(
                            "--key {:?} is not unique: {:?} appears more than once",
                            self.key,
                            extra.key
                        );
                    }
                }
                for pair in rows.windows(2) {
                    if pair[0].key == pair[1].key {
                        bail!(
                            "--key {:?} is not unique: {:?} appears more than once",
                            self.key,
                            pair[0].key
                        );
                    }
                }
                after = rows.last().map(|r| r.key.clone()).or(after);
                let mut chunk = Vec::with_capacity(ROWS_PER_CHUNK);
                for row in rows {
                    if cancel.is_cancelled() {
                        return Ok(());
                    }
                    match ledger.dispatch(row.key.clone(), cancel) {
                        Dispatch::Go(seq) => chunk.push((seq, row)),
                        Dispatch::Done => {}
                        Dispatch::Cancelled => return Ok(()),
                    }
                    if chunk.len() == ROWS_PER_CHUNK {
                        let full =
                            std::mem::replace(&mut chunk, Vec::with_capacity(ROWS_PER_CHUNK));
                        if queue.send(full).is_err() {
                            return Ok(());
                        }
                    }
                }
                if !chunk.is_empty() && queue.send(chunk).is_err() {
                    return Ok(());
                }
                if !more || cancel.is_cancelled() {
                    return Ok(());
                }
            }
        })
    }
}

/// Declared SQLite types by affinity; expressions without one are text.
fn sqlite_type(name: &str) -> ColumnType {
    let t = name.to_ascii_uppercase();
    if t.contains("INT") || t == "BOOLEAN" {
        ColumnType::Int
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        ColumnType::Float
    } else if t == "BLOB" {
        ColumnType::Bytes
    } else {
        ColumnType::Text
    }
}

/// The Postgres types a query may return, and what they become.
fn pg_type(name: &str) -> Option<ColumnType> {
    Some(match name {
        "INT2" | "INT4" | "INT8" => ColumnType::Int,
        "FLOAT4" | "FLOAT8" => ColumnType::Float,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "JSON" | "JSONB" | "DATE" => {
            ColumnType::Text
        }
        "BYTEA" => ColumnType::Bytes,
        "BOOL" => ColumnType::Bool,
        "TIMESTAMPTZ" | "TIMESTAMP" => ColumnType::Time,
        _ => return None,
    })
}

fn item(shape: &Shape, values: Vec<Value>) -> Result<RowItem> {
    let key = match &values[shape.key] {
        Value::Int(i) => ItemKey::Int(*i),
        Value::Text(s) => ItemKey::Text(s.clone()),
        other => bail!(
            "--key {:?} has a value of another type: {other:?}",
            shape.columns[shape.key].name
        ),
    };
    Ok(RowItem { key, values })
}

fn sqlite_row(row: &rusqlite::Row, shape: &Shape) -> Result<RowItem> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(shape.columns.len());
    for (i, col) in shape.columns.iter().enumerate() {
        let value = match (col.ty, row.get_ref(i)?) {
            (_, ValueRef::Null) => Value::Null,
            (ColumnType::Int, ValueRef::Integer(n)) => Value::Int(n),
            (ColumnType::Float, ValueRef::Integer(n)) => Value::Float(n as f64),
            (ColumnType::Float, ValueRef::Real(f)) => Value::Float(f),
            (ColumnType::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Value::Bytes(b.to_vec()),
            (ColumnType::Text, ValueRef::Integer(n)) => Value::Text(n.to_string()),
            (ColumnType::Text, ValueRef::Real(f)) => Value::Text(f.to_string()),
            // SQLite does not check that TEXT is UTF-8: keep odd bytes as bytes.
            (ColumnType::Text, ValueRef::Text(b) | ValueRef::Blob(b)) => {
                match std::str::from_utf8(b) {
                    Ok(s) => Value::Text(s.to_owned()),
                    Err(_) => Value::Bytes(b.to_vec()),
                }
            }
            (ty, found) => bail!(
                "column {:?}: expected {ty:?}, found a {:?} value",
                col.name,
                found.data_type()
            ),
        };
        values.push(value);
    }
    item(shape, values)
}

fn pg_row(row: &PgRow, shape: &Shape) -> Result<RowItem> {
    let mut values = Vec::with_capacity(shape.columns.len());
    for (i, col) in shape.columns.iter().enumerate() {
        if row.try_get_raw(i)?.is_null() {
            values.push(Value::Null);
            continue;
        }
        let name = row.column(i).type_info().name().to_owned();
        values.push(match name.as_str() {
            "INT2" => Value::Int(row.try_get::<i16, _>(i)?.into()),
            "INT4" => Value::Int(row.try_get::<i32, _>(i)?.into()),
            "INT8" => Value::Int(row.try_get(i)?),
            "FLOAT4" => Value::Float(row.try_get::<f32, _>(i)?.into()),
            "FLOAT8" => Value::Float(row.try_get(i)?),
            "BYTEA" => Value::Bytes(row.try_get(i)?),
            "BOOL" => Value::Bool(row.try_get(i)?),
            "TIMESTAMPTZ" => Value::Time(row.try_get(i)?),
            "TIMESTAMP" => Value::Time(row.try_get::<chrono::NaiveDateTime, _>(i)?.and_utc()),
            "DATE" => Value::Text(row.try_get::<chrono::NaiveDate, _>(i)?.to_string()),
            "JSON" | "JSONB" => Value::Text(row.try_get::<serde_json::Value, _>(i)?.to_string()),
            _ => Value::Text(row.try_get(i)?),
        });
        let _ = col;
    }
    item(shape, values)
}
