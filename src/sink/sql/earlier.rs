//! The SQL of `--incremental` and `--prune`, written once for both
//! databases: reading what an earlier run left in a files table (each
//! row's path, size and mtime, whether it is current for this run's
//! processors, and the poison ledger's `failures`, `failed_run` and
//! `error`), and deleting the rows of files that are gone.

use super::{quote_ident, Dialect};
use crate::record::Schema;

/// One row of an earlier run, as the files source compares it.
pub(crate) struct EarlierRow {
    /// The path's bytes (a non-UTF-8 path is a BLOB in SQLite).
    pub(crate) path: Vec<u8>,
    pub(crate) size: Option<i64>,
    /// RFC 3339 UTC text, at the database's resolution.
    pub(crate) mtime: Option<String>,
    /// Written without an error, and holding every column this run's
    /// processors write (non-NULL: a processor that succeeded never leaves
    /// one of its columns NULL).
    pub(crate) current: bool,
    /// Consecutive runs this file, at this size and mtime, failed in
    /// (`--incremental` writes it with every record; NULL after a success).
    pub(crate) failures: Option<i64>,
    /// The run that counted the last failure: a resume of that same run
    /// must not count it again.
    pub(crate) failed_run: Option<i64>,
    /// The row's error (NULL after a success).
    pub(crate) error: Option<String>,
}

/// The columns the poison ledger adds to a files table with `--incremental`.
pub(crate) const LEDGER_COLUMNS: [&str; 2] = ["failures", "failed_run"];

/// `SELECT path, size, mtime, current, failures, failed_run, error FROM
/// table` in the dialect's terms, `processors` being the columns this run's
/// processors write. A column `has` denies (a dry run reads a table the run
/// would first add columns to) reads as NULL.
pub(crate) fn select_earlier<D: Dialect>(
    table: &str,
    processors: &[String],
    has: &dyn Fn(&str) -> bool,
) -> String {
    let col = |name: &str| match has(name) {
        true => quote_ident(name),
        false => "NULL".to_owned(),
    };
    let mut current = vec![format!("{} IS NULL", col("error"))];
    current.extend(processors.iter().map(|c| format!("{} IS NOT NULL", col(c))));
    format!(
        "SELECT {}, CAST({} AS BIGINT), {}, ({}), CAST({} AS BIGINT), CAST({} AS BIGINT), {} FROM {}",
        D::bytes(&col("path")),
        col("size"),
        D::time_text(&col("mtime")),
        current.join(" AND "),
        col("failures"),
        col("failed_run"),
        col("error"),
        quote_ident(table)
    )
}

/// The columns of `schema` a processor writes (those a row must hold to be
/// current).
pub(crate) fn processor_columns(schema: &Schema) -> Vec<String> {
    schema
        .columns
        .iter()
        .filter(|c| {
            schema
                .stale
                .as_ref()
                .is_some_and(|s| s.columns.contains(&c.name))
        })
        .map(|c| c.name.clone())
        .collect()
}

/// `DELETE FROM table WHERE key IN ($1, …, $n)`.
pub(crate) fn delete_keys(table: &str, key: &str, n: usize) -> String {
    let params: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "DELETE FROM {} WHERE {} IN ({})",
        quote_ident(table),
        quote_ident(key),
        params.join(", ")
    )
}

/// Keys per DELETE statement (far under either database's parameter limit).
pub(crate) const DELETE_CHUNK: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::sql::{Postgres, Sqlite};

    #[test]
    fn the_earlier_rows_are_read_as_bytes_text_and_one_flag() {
        let cols = ["sha256".to_string(), "lines".to_string()];
        assert_eq!(
            select_earlier::<Sqlite>("t", &cols, &|_| true),
            "SELECT CAST(\"path\" AS BLOB), CAST(\"size\" AS BIGINT), \"mtime\", \
             (\"error\" IS NULL AND \"sha256\" IS NOT NULL AND \"lines\" IS NOT NULL), \
             CAST(\"failures\" AS BIGINT), CAST(\"failed_run\" AS BIGINT), \"error\" FROM \"t\""
        );
        // A column the table lacks yet (a dry run) reads as NULL.
        let old = select_earlier::<Sqlite>("t", &cols[..1], &|c| !c.starts_with("fail"));
        assert!(
            old.contains("CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), \"error\""),
            "{old}"
        );
        let pg = select_earlier::<Postgres>("t", &[], &|_| true);
        assert!(
            pg.starts_with("SELECT convert_to(\"path\", 'UTF8'), "),
            "{pg}"
        );
        assert!(pg.contains("to_char(\"mtime\" AT TIME ZONE 'UTC'"), "{pg}");
        assert_eq!(
            delete_keys("t", "path", 2),
            "DELETE FROM \"t\" WHERE \"path\" IN ($1, $2)"
        );
    }
}
