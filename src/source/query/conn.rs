//! The query source's connection to either database, and the queries it
//! runs: describing the user's query before the run, and reading it page
//! by page with keyset pagination — the query wrapped as a subquery with
//! `WHERE key > $last ORDER BY key LIMIT n`, never OFFSET, so page 10,000
//! costs what page 1 costs; with `--cursor`, also the range's upper bound
//! (`max`), and every read narrowed to the range.

use anyhow::{bail, Context, Result};
use sqlx::{Column as _, Executor, PgConnection, Row, TypeInfo};

use super::cursor::{self, Range};
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
    /// an integer or text type, no NULL keys, only supported types, and the
    /// cursor column (if any) with a type a cursor can have.
    pub(super) async fn describe(
        &mut self,
        sql: &str,
        key: &str,
        cursor: Option<&str>,
    ) -> Result<Shape> {
        self.check(sql).await.context("--sql")?;
        let sql = inner(sql);
        let probe = format!("SELECT * FROM ({sql}\n) AS batchproc_q LIMIT 0");
        // The Postgres type names, for the cursor's check.
        let mut pg_types = Vec::new();
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
                pg_types = d
                    .columns()
                    .iter()
                    .map(|col| col.type_info().name().to_owned())
                    .collect();
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
        if let Some(cursor) = cursor {
            let at = columns
                .iter()
                .position(|c| c.name == cursor)
                .with_context(|| format!("--cursor \"{cursor}\" is not a column of the query"))?;
            let sqlite = matches!(self, Conn::Sqlite(_)).then_some(columns[at].ty);
            cursor::check_type(cursor, sqlite, pg_types.get(at).map_or("", |t| t.as_str()))?;
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

    /// Up to `limit` rows of the query after the key `after`, in key order,
    /// within the cursor range when there is one.
    pub(super) async fn page(
        &mut self,
        sql: &str,
        shape: &Shape,
        range: Option<&Range>,
        after: Option<&ItemKey>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let key = shape.columns[shape.key].name.as_str();
        let mut params = Params::default();
        let cond = conditions(key, range, after.map(|k| (">", k)), &mut params);
        let limit = params.mark(Param::Int(limit as i64));
        let sql = format!(
            "SELECT * FROM ({}\n) AS batchproc_q WHERE {cond} ORDER BY {} LIMIT {limit}",
            inner(sql),
            quote_ident(key)
        );
        self.rows(&sql, shape, &params).await
    }

    /// The row whose key is `key`, if the query (within the cursor range)
    /// still has it.
    pub(super) async fn row(
        &mut self,
        sql: &str,
        shape: &Shape,
        range: Option<&Range>,
        key: &ItemKey,
    ) -> Result<Option<Vec<Value>>> {
        let name = shape.columns[shape.key].name.as_str();
        let mut params = Params::default();
        let cond = conditions(name, range, Some(("=", key)), &mut params);
        let sql = format!(
            "SELECT * FROM ({}\n) AS batchproc_q WHERE {cond}",
            inner(sql)
        );
        let rows = self.rows(&sql, shape, &params).await?;
        Ok(rows.into_iter().next())
    }

    /// The rows of a statement made by [`conditions`].
    async fn rows(
        &mut self,
        sql: &str,
        shape: &Shape,
        params: &Params<'_>,
    ) -> Result<Vec<Vec<Value>>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(params.sqlite())?;
                let mut page = Vec::new();
                while let Some(row) = rows.next()? {
                    page.push(sqlite_values(row, &shape.columns)?);
                }
                Ok(page)
            }
            Conn::Postgres(c) => {
                let rows = params.bind(sqlx::query(sql)).fetch_all(&mut *c).await?;
                rows.iter()
                    .map(|r| pg_values(r, shape.columns.len()))
                    .collect()
            }
        }
    }

    /// The number of rows after `after` within the cursor range (for a
    /// progress bar).
    pub(super) async fn count(
        &mut self,
        sql: &str,
        key: &str,
        range: Option<&Range>,
        after: Option<&ItemKey>,
    ) -> Result<u64> {
        let mut params = Params::default();
        let cond = conditions(key, range, after.map(|k| (">", k)), &mut params);
        let sql = format!(
            "SELECT count(*) FROM ({}\n) AS batchproc_q WHERE {cond}",
            inner(sql)
        );
        let n: i64 = match self {
            Conn::Sqlite(c) => c.prepare(&sql)?.query_row(params.sqlite(), |r| r.get(0))?,
            Conn::Postgres(c) => params
                .bind(sqlx::query(&sql))
                .fetch_one(&mut *c)
                .await?
                .try_get(0)?,
        };
        Ok(n as u64)
    }

    /// The largest value of the cursor column `column` beyond `after`
    /// (every value when None): the upper bound of a run's range.
    pub(super) async fn bound(
        &mut self,
        sql: &str,
        column: &str,
        after: Option<&cursor::Value>,
    ) -> Result<Option<cursor::Value>> {
        let col = quote_ident(column);
        let mut params = Params::default();
        let cond = match after {
            Some(v) => format!(" WHERE {col} > {}", params.mark(Param::Cursor(v))),
            None => String::new(),
        };
        let sql = format!(
            "SELECT max({col}) FROM ({}\n) AS batchproc_q{cond}",
            inner(sql)
        );
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare(&sql)?;
                let mut rows = stmt.query(params.sqlite())?;
                let row = rows.next()?.context("max() returned no row")?;
                cursor::Value::from_sqlite(row.get_ref(0)?)
            }
            Conn::Postgres(c) => {
                let row = params.bind(sqlx::query(&sql)).fetch_one(&mut *c).await?;
                cursor::Value::from_pg(&row)
            }
        }
    }
}

/// One parameter of a statement, bound with its own type.
enum Param<'a> {
    Int(i64),
    Key(&'a ItemKey),
    Cursor(&'a cursor::Value),
}

/// A statement's parameters, numbered `$1`, `$2`, … in the order added
/// (the order they appear in, which rusqlite binds by).
#[derive(Default)]
struct Params<'a>(Vec<Param<'a>>);

impl<'a> Params<'a> {
    /// Adds a parameter; its placeholder.
    fn mark(&mut self, p: Param<'a>) -> String {
        self.0.push(p);
        format!("${}", self.0.len())
    }

    fn sqlite(&self) -> rusqlite::ParamsFromIter<Vec<rusqlite::types::Value>> {
        let values = self.0.iter().map(|p| match p {
            Param::Int(i) | Param::Key(ItemKey::Int(i)) => (*i).into(),
            Param::Key(ItemKey::Text(s)) => s.clone().into(),
            Param::Key(ItemKey::Path { .. }) => unreachable!("a query key is no path"),
            Param::Cursor(v) => v.to_sqlite(),
        });
        rusqlite::params_from_iter(values.collect())
    }

    fn bind<'q>(&'q self, mut q: PgQuery<'q>) -> PgQuery<'q> {
        for p in &self.0 {
            q = match p {
                Param::Int(i) | Param::Key(ItemKey::Int(i)) => q.bind(*i),
                Param::Key(ItemKey::Text(s)) => q.bind(s.as_str()),
                Param::Key(ItemKey::Path { .. }) => unreachable!("a query key is no path"),
                Param::Cursor(v) => v.bind(q),
            };
        }
        q
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The WHERE conditions of a read: a key (never NULL), the cursor range,
/// and the key compared with `cmp` (`> last`, `= key`) when given.
fn conditions<'a>(
    key: &str,
    range: Option<&'a Range>,
    cmp: Option<(&str, &'a ItemKey)>,
    params: &mut Params<'a>,
) -> String {
    let key = quote_ident(key);
    let mut cond = format!("{key} IS NOT NULL");
    if let Some(range) = range {
        let mut mark = |v: &'a cursor::Value| params.mark(Param::Cursor(v));
        cond += &format!(" AND {}", range.condition(&mut mark));
    }
    if let Some((cmp, k)) = cmp {
        cond += &format!(" AND {key} {cmp} {}", params.mark(Param::Key(k)));
    }
    cond
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
