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
}

pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    const SAME: &'static str = "IS";

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
