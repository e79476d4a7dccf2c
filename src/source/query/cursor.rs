//! `query --cursor COLUMN`: incremental runs. A run reads only the rows
//! whose cursor value lies in its range `(after, upto]`: `after` is where
//! the pipeline's last succeeded run ended, `upto` the largest value in the
//! query when this run started, read once and stored on the run's row, so
//! a resume reads the very same range (exactly-once holds as it does for
//! any run: the range only narrows the query, the keyset paging on `--key`
//! is unchanged). Rows arriving later, beyond `upto`, are the next run's.
//!
//! Values keep their type: a bound is bound as an integer, a text or a
//! timestamp, never spliced into SQL, and compared by the database itself
//! (text in the column's collation, which Rust could not reproduce). The
//! run rows store a bound as text, `TAG:VALUE` (see [`Value::encode`]).
//!
//! A NULL in the cursor column is never beyond any cursor: only a first
//! run (no cursor yet) reads such rows, with every other row up to `upto`.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use crate::record::{ColumnType, Quoted};

/// The Postgres types a cursor column may have: those with a total order
/// that a bound of [`Value`] compares with as the column's own values do.
const PG_TYPES: [&str; 10] = [
    "INT2",
    "INT4",
    "INT8",
    "TEXT",
    "VARCHAR",
    "BPCHAR",
    "NAME",
    "TIMESTAMPTZ",
    "TIMESTAMP",
    "DATE",
];

/// Checks the cursor column's type before any work: `sqlite` the type
/// batchproc reads a SQLite column as, else `pg` the Postgres type name.
pub(super) fn check_type(column: &str, sqlite: Option<ColumnType>, pg: &str) -> Result<()> {
    let ok = match sqlite {
        // SQLite timestamps are text (ISO 8601) or integers (Unix time).
        Some(ty) => matches!(ty, ColumnType::Int | ColumnType::Text),
        None => PG_TYPES.contains(&pg),
    };
    if !ok {
        let ty = sqlite.map_or(pg, |t| t.name());
        bail!(
            "--cursor {} has type {ty}; a cursor must be an integer, text, timestamp or date column",
            Quoted(column)
        );
    }
    Ok(())
}

/// A value of the cursor column, with its type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Int(i64),
    Text(String),
    /// `timestamptz`.
    Time(DateTime<Utc>),
    /// `timestamp` (without time zone).
    Local(NaiveDateTime),
    Date(NaiveDate),
}

const LOCAL: &str = "%Y-%m-%dT%H:%M:%S%.f";

impl Value {
    /// The stored form: `int:42`, `text:…`, `timestamptz:2024-05-01T10:00:00.123456Z`,
    /// `timestamp:…`, `date:2024-05-01`; exact (every digit a timestamp has).
    pub(super) fn encode(&self) -> String {
        match self {
            Value::Int(i) => format!("int:{i}"),
            Value::Text(s) => format!("text:{s}"),
            Value::Time(t) => format!(
                "timestamptz:{}",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
            Value::Local(t) => format!("timestamp:{}", t.format(LOCAL)),
            Value::Date(d) => format!("date:{d}"),
        }
    }

    pub(super) fn decode(stored: &str) -> Result<Self> {
        let parsed = stored.split_once(':').and_then(|(tag, v)| {
            Some(match tag {
                "int" => Value::Int(v.parse().ok()?),
                "text" => Value::Text(v.to_owned()),
                "timestamptz" => Value::Time(DateTime::parse_from_rfc3339(v).ok()?.to_utc()),
                "timestamp" => Value::Local(NaiveDateTime::parse_from_str(v, LOCAL).ok()?),
                "date" => Value::Date(v.parse().ok()?),
                _ => return None,
            })
        });
        parsed.with_context(|| format!("corrupt cursor value {}", Quoted(stored)))
    }

    /// The value as a person reads it.
    pub(super) fn show(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Text(s) => Quoted(s).to_string(),
            Value::Time(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            Value::Local(t) => t.format(LOCAL).to_string(),
            Value::Date(d) => d.to_string(),
        }
    }

    /// A SQLite value, as the query returned it (Integer or Text).
    pub(super) fn from_sqlite(v: rusqlite::types::ValueRef) -> Result<Option<Self>> {
        use rusqlite::types::ValueRef;
        Ok(Some(match v {
            ValueRef::Null => return Ok(None),
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Text(b) => Value::Text(
                String::from_utf8(b.to_vec()).context("--cursor: a value is not UTF-8")?,
            ),
            ValueRef::Real(_) | ValueRef::Blob(_) => {
                bail!("--cursor: the column holds a REAL or BLOB value; cast it in --sql")
            }
        }))
    }

    /// Column 0 of a Postgres row, by its type (checked by [`check_type`]).
    pub(super) fn from_pg(row: &PgRow) -> Result<Option<Self>> {
        use sqlx::{Column as _, TypeInfo, ValueRef};
        if row.try_get_raw(0)?.is_null() {
            return Ok(None);
        }
        Ok(Some(match row.column(0).type_info().name() {
            "INT2" => Value::Int(row.try_get::<i16, _>(0)?.into()),
            "INT4" => Value::Int(row.try_get::<i32, _>(0)?.into()),
            "INT8" => Value::Int(row.try_get(0)?),
            "TIMESTAMPTZ" => Value::Time(row.try_get(0)?),
            "TIMESTAMP" => Value::Local(row.try_get(0)?),
            "DATE" => Value::Date(row.try_get(0)?),
            _ => Value::Text(row.try_get(0)?),
        }))
    }

    pub(super) fn to_sqlite(&self) -> rusqlite::types::Value {
        match self {
            Value::Int(i) => (*i).into(),
            Value::Text(s) => s.clone().into(),
            // Not read from SQLite (see from_sqlite); as text if it were.
            other => other.show().into(),
        }
    }

    pub(super) fn bind<'q>(
        &'q self,
        q: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        match self {
            Value::Int(i) => q.bind(*i),
            Value::Text(s) => q.bind(s.as_str()),
            Value::Time(t) => q.bind(*t),
            Value::Local(t) => q.bind(*t),
            Value::Date(d) => q.bind(*d),
        }
    }
}

/// The range of cursor values one run reads: `> after` (None: no cursor
/// yet, so every row, NULLs included) and `<= upto` (None: the query had
/// no value beyond `after` when the run started).
#[derive(Debug, Clone, Default)]
pub(super) struct Range {
    pub(super) column: String,
    pub(super) after: Option<Value>,
    pub(super) upto: Option<Value>,
}

impl Range {
    /// The condition on the cursor column; `mark` adds a value to the
    /// statement's parameters and gives its placeholder.
    pub(super) fn condition<'a>(&'a self, mark: &mut dyn FnMut(&'a Value) -> String) -> String {
        let col = crate::sink::sql::quote_ident(&self.column);
        match (&self.after, &self.upto) {
            (None, None) => format!("{col} IS NULL"),
            (None, Some(upto)) => format!("({col} IS NULL OR {col} <= {})", mark(upto)),
            (Some(after), Some(upto)) => {
                let after = mark(after);
                format!("{col} > {after} AND {col} <= {}", mark(upto))
            }
            // Never made: with nothing beyond `after`, `upto` is `after`.
            (Some(_), None) => "1 = 0".into(),
        }
    }

    /// What this run reads, for a notice.
    pub(super) fn describe(&self) -> String {
        let col = Quoted(&self.column);
        match (&self.after, &self.upto) {
            (None, None) => format!("--cursor {col}: first run; no row has a value yet"),
            (None, Some(upto)) => {
                format!(
                    "--cursor {col}: first run, reading every row up to {}",
                    upto.show()
                )
            }
            (Some(after), Some(upto)) if after == upto => {
                format!("--cursor {col}: no row beyond {}", after.show())
            }
            (Some(after), upto) => format!(
                "--cursor {col}: reading rows after {} up to {}",
                after.show(),
                upto.as_ref().map_or("-".into(), Value::show)
            ),
        }
    }
}

/// The stored form of a bound that may be absent: `""` for none.
pub(super) fn encode(value: Option<&Value>) -> String {
    value.map(Value::encode).unwrap_or_default()
}

pub(super) fn decode(stored: Option<&str>) -> Result<Option<Value>> {
    match stored {
        None | Some("") => Ok(None),
        Some(s) => Value::decode(s).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_stored_form_exactly() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123456Z").unwrap();
        for v in [
            Value::Int(-42),
            Value::Text("a:b é".into()),
            Value::Text(String::new()),
            Value::Time(t.to_utc()),
            Value::Local(t.naive_utc()),
            Value::Local(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap().into()),
            Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
        ] {
            assert_eq!(decode(Some(&encode(Some(&v)))).unwrap(), Some(v));
        }
        assert_eq!(decode(Some("")).unwrap(), None);
        assert!(decode(Some("float:1.5")).is_err());
    }

    #[test]
    fn conditions_bind_the_bounds_in_order() {
        let mut range = Range {
            column: "at".into(),
            ..Range::default()
        };
        let mut params = Vec::new();
        let mut cond = |range: &Range| {
            let mut mark = |v: &Value| {
                params.push(v.clone());
                format!("${}", params.len() + 1)
            };
            range.condition(&mut mark)
        };
        assert_eq!(cond(&range), "\"at\" IS NULL");
        range.upto = Some(Value::Int(9));
        assert_eq!(cond(&range), "(\"at\" IS NULL OR \"at\" <= $2)");
        range.after = Some(Value::Int(3));
        assert_eq!(cond(&range), "\"at\" > $3 AND \"at\" <= $4");
        assert_eq!(params, [Value::Int(9), Value::Int(3), Value::Int(9)]);
    }
}
