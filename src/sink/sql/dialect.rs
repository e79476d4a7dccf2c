//! What the database sinks' SQL does differently on each database: the
//! column types it creates, which existing column types it accepts, and
//! null-safe equality.

use crate::record::ColumnType;

pub(crate) trait Dialect {
    /// Null-safe equality, for comparing a stored value with a new one.
    const SAME: &'static str;
    /// The type a new column of `ty` is created with.
    fn column_type(ty: ColumnType) -> &'static str;
    /// Whether an existing column declared as `declared` holds `ty` values.
    fn fits(declared: &str, ty: ColumnType) -> bool;
    /// A text (or, in SQLite, possibly BLOB) column's value as bytes.
    fn bytes(column: &str) -> String;
    /// A time column's value as RFC 3339 UTC text.
    fn time_text(column: &str) -> String;
    /// How finely a stored time keeps a file's mtime, in nanoseconds.
    const TIME_RESOLUTION_NS: i64;
}

pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    const SAME: &'static str = "IS";
    /// Times are stored as the RFC 3339 text batchproc wrote, nanoseconds and all.
    const TIME_RESOLUTION_NS: i64 = 1;

    fn bytes(column: &str) -> String {
        format!("CAST({column} AS BLOB)")
    }

    fn time_text(column: &str) -> String {
        column.to_owned()
    }

    fn column_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Int | ColumnType::Bool => "INTEGER",
            ColumnType::Float => "REAL",
            ColumnType::Text | ColumnType::Time => "TEXT",
            ColumnType::Bytes => "BLOB",
        }
    }

    /// SQLite has no column types, only affinities: a column fits when its
    /// declared type has the affinity ours would have.
    fn fits(declared: &str, ty: ColumnType) -> bool {
        affinity(declared) == Self::column_type(ty)
    }
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

pub(crate) struct Postgres;

impl Dialect for Postgres {
    const SAME: &'static str = "IS NOT DISTINCT FROM";
    /// TIMESTAMPTZ keeps microseconds.
    const TIME_RESOLUTION_NS: i64 = 1000;

    fn bytes(column: &str) -> String {
        format!("convert_to({column}, 'UTF8')")
    }

    /// Spelt out, so neither DateStyle nor the session's time zone matters.
    fn time_text(column: &str) -> String {
        format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    }

    fn column_type(ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Int => "BIGINT",
            ColumnType::Float => "DOUBLE PRECISION",
            ColumnType::Text => "TEXT",
            ColumnType::Bytes => "BYTEA",
            ColumnType::Time => "TIMESTAMPTZ",
            ColumnType::Bool => "BOOLEAN",
        }
    }

    /// `declared` is `information_schema.columns.data_type`.
    fn fits(declared: &str, ty: ColumnType) -> bool {
        let accepted: &[&str] = match ty {
            ColumnType::Int => &["bigint", "numeric"],
            ColumnType::Float => &["double precision", "numeric"],
            ColumnType::Text => &["text", "character varying"],
            ColumnType::Bytes => &["bytea"],
            ColumnType::Time => &["timestamp with time zone"],
            ColumnType::Bool => &["boolean"],
        };
        accepted.contains(&declared)
    }
}
