//! The SQL of `--incremental` and `--prune`, written once for both
//! databases: reading what an earlier run left in a files table (each
//! row's path, size and mtime, and whether it is current for this run's
//! processors), and deleting the rows of files that are gone.

use super::{quote_ident, Dialect};

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
}

/// `SELECT path, size, mtime, current FROM table` in the dialect's terms,
/// `processors` being the columns this run's processors write.
pub(crate) fn select_earlier<D: Dialect>(table: &str, processors: &[String]) -> String {
    let mut current = vec![format!("{} IS NULL", quote_ident("error"))];
    current.extend(
        processors
            .iter()
            .map(|c| format!("{} IS NOT NULL", quote_ident(c))),
    );
    format!(
        "SELECT {}, CAST({} AS BIGINT), {}, ({}) FROM {}",
        D::bytes(&quote_ident("path")),
        quote_ident("size"),
        D::time_text(&quote_ident("mtime")),
        current.join(" AND "),
        quote_ident(table)
    )
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
            select_earlier::<Sqlite>("t", &cols),
            "SELECT CAST(\"path\" AS BLOB), CAST(\"size\" AS BIGINT), \"mtime\", \
             (\"error\" IS NULL AND \"sha256\" IS NOT NULL AND \"lines\" IS NOT NULL) FROM \"t\""
        );
        let pg = select_earlier::<Postgres>("t", &[]);
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
