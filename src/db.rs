//! Databases, in one place: the tokio runtime a database user drives sqlx
//! on, database URLs (`sqlite:PATH`, `postgres://…`, shown through
//! [`redact`]), connecting to either kind, and [`Conn`], which lets the
//! bookkeeping SQL (checkpoint::runs) be written once for both.
//!
//! Each database user (the sink's committer thread, the query source's
//! thread) has a current-thread runtime of its own and `block_on`s it: they
//! live on different OS threads, and one shared runtime would make them take
//! turns driving its I/O.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::runtime::Runtime;

use crate::pool::Cancel;
use crate::record::Quoted;
use crate::redact::redact;
use crate::sink::Stopped;

/// A current-thread runtime for one thread's database work.
pub(crate) fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// A database named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Url {
    Sqlite(PathBuf),
    /// The URL as given, with any password: shown only through `Display`.
    Postgres(String),
}

impl Url {
    /// `postgres://…`, `postgresql://…` or `sqlite:PATH` (also
    /// `sqlite://PATH`); None for anything else. A SQLite URL naming no file
    /// (in-memory or `file:` URIs) is an error: a run needs a file to resume from.
    pub(crate) fn parse(url: &str) -> Option<Result<Url>> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(Ok(Url::Postgres(url.to_owned())));
        }
        let path = url.strip_prefix("sqlite:")?;
        let path = path.strip_prefix("//").unwrap_or(path);
        Some(if path.is_empty() {
            Err(anyhow!("{} names no database file", Quoted(url)))
        } else if path.starts_with(':') || path.starts_with("file:") {
            Err(anyhow!(
                "{}: give the SQLite database as a file path (no in-memory or URI databases)",
                Quoted(&redact(url))
            ))
        } else {
            Ok(Url::Sqlite(path.into()))
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Url::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Url::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// Connects to a SQLite file (created if missing) as a sink or state file,
/// changing nothing in it yet, and not waiting for a lock another program
/// holds: the checks before a run refuse at once instead (see
/// [`sqlite_set_up`]).
pub(crate) async fn sqlite(path: &Path) -> Result<SqliteConnection> {
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open SQLite database {}", path.display()))
}

/// Says in words why `path` cannot be a file (SQLite's own answer for
/// both is `unable to open database file`).
pub(crate) fn check_file_path(path: &Path, what: &str) -> Result<()> {
    let dir = directory_of(path);
    if !dir.is_dir() {
        bail!(
            "cannot create {what} {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("{} is a directory, not a {what} file", path.display());
    }
    if path.exists() && !writable(path) {
        bail!(
            "{what} {} is not writable (permission denied)",
            path.display()
        );
    }
    // Also for an existing file: SQLite's journal and the CSV sink's state
    // file are created beside it.
    if !writable(dir) {
        bail!(
            "cannot write {what} {}: directory {} is not writable (permission denied)",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The directory a file is (or would be) in: `.` for a bare name.
pub(crate) fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether this process may write `path` (its effective ids and
/// capabilities, as the write itself would be checked).
pub(crate) fn writable(path: &Path) -> bool {
    use rustix::fs::{accessat, Access, AtFlags, CWD};
    accessat(CWD, path, Access::WRITE_OK, AtFlags::EACCESS).is_ok()
}

/// How long a write during a run waits for a lock another program holds on
/// the database (a reader in rollback-journal mode, `sqlite3` mid-write)
/// before the batch fails.
pub(crate) const SQLITE_BUSY_WAIT: Duration = Duration::from_secs(30);

/// SQLite's own busy wait, per try: between tries batchproc looks at the
/// cancel token, so Ctrl-C never waits out the whole of SQLITE_BUSY_WAIT.
const SQLITE_BUSY_SLICE: Duration = Duration::from_millis(100);

/// Runs `work` in a write transaction (`BEGIN IMMEDIATE`, so the lock is
/// taken first and only the begin can be busy), committed if it succeeds
/// and rolled back if not. A lock another program holds is waited for up to
/// SQLITE_BUSY_WAIT, and no longer once `cancel` is interrupted: the work is
/// then not done ([`Stopped`]). The transaction is spelled out in SQL
/// because a sqlx `Transaction` borrowed in a retry loop cannot be returned
/// from it.
pub(crate) async fn sqlite_write<T>(
    conn: &mut SqliteConnection,
    cancel: &Cancel,
    work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
) -> Result<T> {
    use sqlx::Executor;
    let started = std::time::Instant::now();
    while let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        if !is_sqlite_busy(&e) {
            return Err(e.into());
        }
        if cancel.is_interrupted() {
            bail!(Stopped(
                "waiting for a lock another program holds on the database"
            ));
        }
        if started.elapsed() >= SQLITE_BUSY_WAIT {
            return Err(anyhow::Error::new(e).context(format!(
                "the database stayed locked by another program for {}s",
                SQLITE_BUSY_WAIT.as_secs()
            )));
        }
    }
    match work(&mut *conn).await {
        Ok(done) => match conn.execute("COMMIT").await {
            Ok(_) => Ok(done),
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Readies a SQLite file once the run's checks passed: WAL with
/// `synchronous=NORMAL` (a killed process never loses a committed
/// transaction), batchproc's bookkeeping tables, and the busy wait for the
/// run's writes.
pub(crate) async fn sqlite_set_up(conn: &mut SqliteConnection) -> Result<()> {
    use sqlx::Executor;
    conn.execute("PRAGMA journal_mode = WAL")
        .await
        .map_err(sqlite_busy)?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    migrate(Conn::Sqlite(conn)).await.map_err(sqlite_busy)?;
    conn.execute(format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_SLICE.as_millis()).as_str())
        .await?;
    Ok(())
}

/// SQLITE_BUSY before the run starts: another program holds the database,
/// and batchproc refuses at once rather than wait (exit 75, try later).
pub(crate) fn sqlite_busy(e: impl Into<anyhow::Error>) -> anyhow::Error {
    let e = e.into();
    let busy = e
        .chain()
        .any(|c| c.downcast_ref::<sqlx::Error>().is_some_and(is_sqlite_busy));
    if busy {
        anyhow::Error::new(crate::sink::Busy(
            "the database is locked by another program; try again when it is done".into(),
        ))
    } else {
        e
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED, or one of their extended codes.
fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)))
}

/// The connection options of a Postgres URL; a bad URL's error never shows
/// its password.
pub(crate) fn postgres_options(url: &str) -> Result<PgConnectOptions> {
    url.parse().map_err(|e: sqlx::Error| {
        anyhow!(
            "bad Postgres URL {}: {}",
            redact(url),
            redact(&e.to_string())
        )
    })
}

/// Connects to Postgres, giving up after 10 s (a server that accepts the
/// TCP connection but never answers must not hang a run).
pub(crate) async fn postgres_with(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(options))
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Connects to the Postgres database at `url`, for a message that names it.
pub(crate) async fn postgres(url: &str) -> Result<PgConnection> {
    let options = postgres_options(url)?;
    postgres_with(&options)
        .await
        .map_err(|e| cannot_connect(url, &e))
}

/// `cannot connect to postgres://user:***@host/db: <cause>`.
pub(crate) fn cannot_connect(url: &str, e: &sqlx::Error) -> anyhow::Error {
    anyhow!(
        "cannot connect to {}: {}",
        redact(url),
        redact(&e.to_string())
    )
}

/// Postgres errors after which the same work may succeed on a new
/// connection (the sink's batches, the pgmq queue's statements).
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// A connection to either database, for SQL written once for both (both
/// drivers take `$N` placeholders). [`on_conn!`] runs one
/// body against whichever it is.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed again for one call that takes a `Conn`.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// `on_conn!(conn, |c| body)`: `body` with `c` the `&mut` connection of
/// either kind. The body is written once and type-checked for each driver.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::Conn::Sqlite($c) => $body,
            $crate::db::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// The bookkeeping tables' migrations for this connection's database.
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The versions of the bookkeeping migrations this database has not had
/// yet (a sink an older batchproc wrote), changing nothing.
pub(crate) async fn pending_migrations(mut conn: Conn<'_>) -> Result<Vec<i64>> {
    let migrator = match conn {
        Conn::Sqlite(_) => &SQLITE,
        Conn::Postgres(_) => &POSTGRES,
    };
    let applied: Vec<i64> = on_conn!(&mut conn, |c| {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut **c)
            .await
            .unwrap_or_default()
    });
    Ok(migrator
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}

pub(crate) async fn migrate(conn: Conn<'_>) -> Result<()> {
    match conn {
        Conn::Sqlite(c) => SQLITE.run(c).await,
        Conn::Postgres(c) => POSTGRES.run(c).await,
    }
    .context("applying batchproc's bookkeeping migrations")
}

/// Fails unless `url` is a database URL this module knows.
pub(crate) fn parse_database(url: &str, what: &str) -> Result<Url> {
    match Url::parse(url) {
        Some(parsed) => parsed,
        None => bail!(
            "unsupported {what} {}: use sqlite:PATH or postgres://…",
            Quoted(&redact(url))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_without_passwords() {
        let pg = Url::parse("postgresql://u:pw@h/d").unwrap().unwrap();
        assert_eq!(pg.to_string(), "postgresql://u:***@h/d");
        let lite = Url::parse("sqlite://out.db").unwrap().unwrap();
        assert_eq!(lite, Url::Sqlite("out.db".into()));
        assert!(Url::parse("sqlite::memory:").unwrap().is_err());
        assert!(Url::parse("sqlite:").unwrap().is_err());
        assert!(Url::parse("mysql://h/d").is_none());
    }
}
