//! `batchproc failures`: the rows of a files table that hold an error, most
//! consecutive failed runs first (the poison ledger's `failures`, written by
//! `--incremental` runs), each with its last error. Read-only: SQLite is
//! opened as a dry run opens it, Postgres only reads.

use anyhow::{bail, Result};
use sqlx::Row;

use super::sql::{self, Dialect};
use super::{plan::read_only, validate_table_name, SinkSpec};
use crate::db::{self, Conn, Url};

/// One failed item, as `batchproc failures` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailureRow {
    pub path: String,
    /// Consecutive runs it failed in (None: written by a run without
    /// `--incremental`, which does not count).
    pub failures: Option<i64>,
    pub error: String,
}

/// The failed rows of `table` in the sink at `url` with at least `min`
/// consecutive failures (0: every row with an error).
pub(crate) fn list_failures(url: &str, table: &str, min: i64) -> Result<Vec<FailureRow>> {
    validate_table_name(table)?;
    match SinkSpec::parse(url)? {
        SinkSpec::Database(Url::Postgres(url)) => db::runtime()?.block_on(async {
            let mut conn = db::postgres(&url).await?;
            read(Conn::Postgres(&mut conn), table, min).await
        }),
        SinkSpec::Database(Url::Sqlite(path)) => {
            if !path.exists() {
                bail!("{}: no such database", path.display());
            }
            db::runtime()?.block_on(async {
                let mut conn = read_only(&path).await?;
                read(Conn::Sqlite(&mut conn), table, min).await
            })
        }
        other => bail!(
            "{other} keeps no rows to list: failures are read from a SQLite or Postgres table"
        ),
    }
}

async fn read(mut conn: Conn<'_>, table: &str, min: i64) -> Result<Vec<FailureRow>> {
    let columns_sql = match conn {
        Conn::Sqlite(_) => "SELECT name FROM pragma_table_info($1)",
        Conn::Postgres(_) => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let columns: Vec<String> = db::on_conn!(&mut conn, |c| {
        sqlx::query_scalar(columns_sql)
            .bind(table)
            .fetch_all(&mut **c)
            .await?
    });
    let has = |name: &str| columns.iter().any(|c| c.eq_ignore_ascii_case(name));
    if columns.is_empty() {
        bail!("no table {table} in this sink (name it with --table)");
    }
    if !(has("path") && has("error")) {
        bail!("table {table} has no path and error columns: not a table of the files command");
    }
    // A table no --incremental run wrote has no count: every error is one.
    let failures = match has("failures") {
        true => "CAST(\"failures\" AS BIGINT)",
        false => "CAST(NULL AS BIGINT)",
    };
    let path = match conn {
        Conn::Sqlite(_) => sql::Sqlite::bytes("\"path\""),
        Conn::Postgres(_) => sql::Postgres::bytes("\"path\""),
    };
    let select = format!(
        "SELECT {path}, {failures}, \"error\" FROM {} WHERE \"error\" IS NOT NULL \
         AND COALESCE({failures}, 0) >= $1 ORDER BY COALESCE({failures}, 0) DESC, \"path\"",
        sql::quote_ident(table)
    );
    let rows = db::on_conn!(&mut conn, |c| {
        let mut out = Vec::new();
        for row in sqlx::query(&select).bind(min).fetch_all(&mut **c).await? {
            let path: Vec<u8> = row.try_get(0)?;
            out.push(FailureRow {
                path: String::from_utf8_lossy(&path).into_owned(),
                failures: row.try_get(1)?,
                error: row.try_get(2)?,
            });
        }
        out
    });
    Ok(rows)
}
