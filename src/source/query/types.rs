//! The query's values: which database types a query may return, what each
//! becomes, and a row of either database as the values of a record.

use anyhow::{bail, Result};
use sqlx::postgres::PgRow;
use sqlx::{Column as _, Row, TypeInfo, ValueRef};

use crate::record::{Column, ColumnType, Value};

/// Declared SQLite types by affinity; expressions without one are text.
pub(super) fn sqlite_type(name: &str) -> ColumnType {
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
pub(super) fn pg_type(name: &str) -> Option<ColumnType> {
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

/// A SQLite row's values, by the query's column types.
pub(super) fn sqlite_values(row: &rusqlite::Row, columns: &[Column]) -> Result<Vec<Value>> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
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
                "column \"{}\" is declared {}, and a row has a {} value in it",
                col.name,
                ty.name(),
                sqlite_storage_class(found.data_type())
            ),
        };
        values.push(value);
    }
    Ok(values)
}

fn sqlite_storage_class(t: rusqlite::types::Type) -> &'static str {
    use rusqlite::types::Type;
    match t {
        Type::Null => "NULL",
        Type::Integer => "INTEGER",
        Type::Real => "REAL",
        Type::Text => "TEXT",
        Type::Blob => "BLOB",
    }
}

/// A Postgres row's values (their types were checked by `describe`).
pub(super) fn pg_values(row: &PgRow, width: usize) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(width);
    for i in 0..width {
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
    }
    Ok(values)
}
