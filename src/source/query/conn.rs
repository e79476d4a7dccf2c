//! The query source's connection to either database, and the two queries
//! it runs: describing the user's query before the run, and reading it page
//! by page with keyset pagination — the query wrapped as a subquery with
//! `WHERE key > $last ORDER BY key LIMIT n`, never OFFSET, so page 10,000
//! costs what page 1 costs.

use anyhow::{bail, Context, Result};
use sqlx::{Column as _, Executor, PgConnection, TypeInfo};

use super::types::{pg_type, pg_values, sqlite_type, sqlite_values};
use super::Shape;
use crate::checkpoint::ItemKey;
use crate::db::{self, Url};
use crate::record::{Column, ColumnType, Value};
use crate::sink::sql::quote_ident;

/// An open connection to either database. SQLite is read with rusqlite:
/// sqlx-sqlite hands every row across threads (a wakeup per row), which
/// measured 3-4× slower here.
pub(super) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

/// A database in WAL mode is read through its `-shm` file, which SQLite
/// creates beside it when missing; in a directory the user cannot write,
/// SQLite's answer is only `unable to open database file`, so say why.
fn check_wal_readable(path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let mut header = [0u8; 20];
    let wal = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header.starts_with(b"SQLite format 3\0") && header[18] == 2);
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    if wal && !std::path::Path::new(&shm).exists() {
        let dir = db::directory_of(path);
        if !db::writable(dir) {
            bail!(
                "{} is in WAL mode and has no -shm file, which SQLite must create to read it, \
                 but directory {} is not writable; open it once where it can be written \
                 (or switch it to journal_mode=DELETE)",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

impl Conn {
    pub(super) async fn open(from: &Url) -> Result<Conn> {
        Ok(match from {
            Url::Sqlite(path) => {
                if !path.exists() {
                    bail!("{}: no such database", path.display());
                }
                check_wal_readable(path)?;
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                Conn::Sqlite(
                    rusqlite::Connection::open_with_flags(path, flags).with_context(|| {
                        format!("cannot open SQLite database {}", path.display())
                    })?,
                )
            }
            Url::Postgres(url) => Conn::Postgres(db::postgres(url).await?),
        })
    }

    /// Prepares the user's query on its own (nothing runs), so a mistake
    /// is reported where the user made it (`near "SELEKT"`), not inside
    /// the wrapper batchproc puts around it.
    async fn check(&mut self, sql: &str) -> Result<()> {
        let sql = inner(sql);
        match self {
            Conn::Sqlite(c) => {
                c.prepare(sql).map_err(sqlite_error)?;
            }
            Conn::Postgres(c) => {
                c.describe(sql).await.map_err(pg_error)?;
            }
        }
        Ok(())
    }

    /// Checks the query before any work: it parses, has the key column with
    /// an integer or text type, no NULL keys, and only supported types.
    pub(super) async fn describe(&mut self, sql: &str, key: &str) -> Result<Shape> {
        self.check(sql).await.context("--sql")?;
        let sql = inner(sql);
        let probe = format!("SELECT * FROM ({sql}\n) AS batchproc_q LIMIT 0");
        let columns: Vec<Column> = match self {
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
                                "column \"{}\" has type {ty}, which batchproc cannot carry yet; cast it in --sql (e.g. ::text)",
                                col.name()
                            )
                        })
                    })
                    .collect::<Result<_>>()?
            }
        };
        let index = columns
            .iter()
            .position(|c| c.name == key)
            .with_context(|| format!("--key \"{key}\" is not a column of the query"))?;
        if !matches!(columns[index].ty, ColumnType::Int | ColumnType::Text) {
            bail!("--key \"{key}\" must be an integer or text column");
        }
        let nulls = format!(
            "SELECT 1 AS one FROM ({sql}\n) AS batchproc_q WHERE {} IS NULL LIMIT 1",
            quote_ident(key)
        );
        let has_null = match self {
            Conn::Sqlite(c) => c.prepare(&nulls)?.exists([])?,
            Conn::Postgres(c) => sqlx::query(&nulls).fetch_optional(&mut *c).await?.is_some(),
        };
        if has_null {
            bail!("--key \"{key}\" has NULL values: every row needs a key");
        }
        Ok(Shape {
            columns,
            key: index,
        })
    }

    /// Up to `limit` rows of the query after the key `after`, in key order.
    pub(super) async fn page(
        &mut self,
        sql: &str,
        shape: &Shape,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let cmp = after.map(|_| ">");
        self.rows(sql, shape, after, cmp, limit).await
    }

    /// The row whose key is `key`, if the query still has it.
    pub(super) async fn row(
        &mut self,
        sql: &str,
        shape: &Shape,
        key: &ItemKey,
    ) -> Result<Option<Vec<Value>>> {
        let rows = self.rows(sql, shape, Some(key), Some("="), 1).await?;
        Ok(rows.into_iter().next())
    }

    /// Rows in key order, those whose key is `cmp` `key` when given.
    async fn rows(
        &mut self,
        sql: &str,
        shape: &Shape,
        after: Option<&ItemKey>,
        cmp: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let sql = page_sql(sql, &shape.columns[shape.key].name, cmp);
        let limit = limit as i64;
        match self {
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
                let mut page = Vec::new();
                while let Some(row) = rows.next()? {
                    page.push(sqlite_values(row, &shape.columns)?);
                }
                Ok(page)
            }
            Conn::Postgres(c) => {
                let mut q = sqlx::query(&sql);
                q = match after {
                    Some(ItemKey::Int(i)) => q.bind(*i),
                    Some(ItemKey::Text(s)) => q.bind(s.as_str()),
                    _ => q,
                };
                let rows = q.bind(limit).fetch_all(&mut *c).await?;
                rows.iter()
                    .map(|r| pg_values(r, shape.columns.len()))
                    .collect()
            }
        }
    }

    /// The number of rows after `after` (for a progress bar).
    pub(super) async fn count(
        &mut self,
        sql: &str,
        key: &str,
        after: Option<&ItemKey>,
    ) -> Result<u64> {
        let key = quote_ident(key);
        let cond = if after.is_some() {
            format!(" AND {key} > $1")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT count(*) FROM ({}\n) AS batchproc_q WHERE {key} IS NOT NULL{cond}",
            inner(sql)
        );
        let n: i64 = match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare(&sql)?;
                match after {
                    Some(ItemKey::Int(i)) => stmt.query_row([i], |r| r.get(0))?,
                    Some(ItemKey::Text(s)) => stmt.query_row([s], |r| r.get(0))?,
                    _ => stmt.query_row([], |r| r.get(0))?,
                }
            }
            Conn::Postgres(c) => {
                let q = sqlx::query_scalar(&sql);
                let q = match after {
                    Some(ItemKey::Int(i)) => q.bind(*i),
                    Some(ItemKey::Text(s)) => q.bind(s.as_str()),
                    _ => q,
                };
                q.fetch_one(&mut *c).await?
            }
        };
        Ok(n as u64)
    }
}

/// The page query: the user's query as a subquery, keyset-paginated. `$1`
/// is the last key (when `after`), the last `$` the row limit.
fn page_sql(sql: &str, key: &str, cmp: Option<&str>) -> String {
    let key = quote_ident(key);
    let (cond, limit) = match cmp {
        Some(cmp) => (format!(" AND {key} {cmp} $1"), "$2"),
        None => (String::new(), "$1"),
    };
    format!(
        "SELECT * FROM ({}\n) AS batchproc_q WHERE {key} IS NOT NULL{cond} ORDER BY {key} LIMIT {limit}",
        inner(sql)
    )
}

/// The user's query as it can stand inside a subquery: without the
/// trailing `;` that a query typed for `sqlite3` or `psql` often has. The
/// callers close the subquery on a new line, so a trailing `-- comment`
/// does not swallow it.
fn inner(sql: &str) -> &str {
    sql.trim_end().trim_end_matches(';').trim_end()
}

/// The database's own words for an error in the user's query, with the
/// place it points at, as `sqlite3` and `psql` give them.
fn sqlite_error(e: rusqlite::Error) -> anyhow::Error {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(message)) => anyhow::anyhow!(message),
        other => other.into(),
    }
}

fn pg_error(e: sqlx::Error) -> anyhow::Error {
    let Some(db) = e.as_database_error() else {
        return e.into();
    };
    let message = db.message().to_owned();
    let at = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.position());
    match at {
        Some(sqlx::postgres::PgErrorPosition::Original(n)) => {
            anyhow::anyhow!("{message} (at character {n})")
        }
        _ => anyhow::anyhow!(message),
    }
}
