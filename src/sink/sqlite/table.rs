//! The SQLite sink's table: what an existing table looks like (pragmas), the
//! checks only SQLite needs (a unique key with BINARY collation, no STRICT
//! table), and the multi-row upsert statements.

use anyhow::{bail, Result};
use sqlx::{Row, SqliteConnection};

use crate::record::Schema;
use crate::sink::sql::{self, ExistingColumn, Sqlite};

/// SQLite's default limit on bound parameters per statement.
const MAX_PARAMS: usize = 32766;
/// Rows per INSERT statement: past a few hundred, longer statements gain nothing.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// Checks an existing table (changing nothing); the statements that create
/// or extend it, and the names of the columns it had before.
pub(in crate::sink) async fn plan(
    conn: &mut SqliteConnection,
    table: &str,
    schema: &Schema,
) -> Result<sql::TablePlan> {
    let existing: Vec<ExistingColumn> = sqlx::query(
        r#"SELECT name, type, "notnull", dflt_value, hidden FROM pragma_table_xinfo(?)"#,
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| ExistingColumn {
        name: r.get("name"),
        declared: r.get("type"),
        not_null: r.get::<i64, _>("notnull") != 0,
        has_default: r.get::<Option<String>, _>("dflt_value").is_some(),
        generated: r.get::<i64, _>("hidden") != 0,
    })
    .collect();
    let plan = sql::plan_table::<Sqlite>(table, schema, &existing)?;
    if !existing.is_empty() {
        let strict: Option<i64> = sqlx::query_scalar("SELECT strict FROM pragma_table_list(?)")
            .bind(table)
            .fetch_optional(&mut *conn)
            .await?;
        if strict == Some(1) {
            bail!("table \"{table}\" is incompatible: STRICT tables cannot hold paths that are not UTF-8 (stored as BLOBs)");
        }
        let key = &schema.key_column().name;
        if !has_unique_index_on(conn, table, key).await? {
            bail!("table \"{table}\" is incompatible: column \"{key}\" is not unique (needs a PRIMARY KEY or UNIQUE index on it alone, with the default BINARY collation and no WHERE clause)");
        }
    }
    Ok(plan)
}

async fn has_unique_index_on(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
) -> Result<bool> {
    // An INTEGER PRIMARY KEY is the rowid itself: unique, and no index lists it.
    let pk: Vec<(String, String)> =
        sqlx::query_as("SELECT name, upper(type) FROM pragma_table_info(?) WHERE pk > 0")
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
    if let [(name, ty)] = pk.as_slice() {
        if name.eq_ignore_ascii_case(column) && ty == "INTEGER" {
            return Ok(true);
        }
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        r#"SELECT name FROM pragma_index_list(?) WHERE "unique" = 1 AND partial = 0"#,
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    for name in indexes {
        // A NOCASE key would merge paths that differ only in case.
        let cols: Vec<(Option<String>, String)> =
            sqlx::query_as("SELECT name, coll FROM pragma_index_xinfo(?) WHERE key = 1")
                .bind(&name)
                .fetch_all(&mut *conn)
                .await?;
        if let [(Some(col), coll)] = cols.as_slice() {
            if col.eq_ignore_ascii_case(column) && coll.eq_ignore_ascii_case("BINARY") {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The upsert of a batch, as statements of up to a few hundred rows each.
pub(super) struct Insert {
    /// `INSERT INTO t (…) VALUES `, the `(?, …)` of one row, and the upsert tail.
    head: String,
    row: String,
    tail: String,
    pub(super) rows_per_statement: usize,
}

impl Insert {
    pub(super) fn new(table: &str, schema: &Schema, existing: &[String]) -> Self {
        let width = schema.columns.len();
        Insert {
            head: format!(
                "INSERT INTO {} ({}) VALUES ",
                sql::quote_ident(table),
                sql::column_list(schema)
            ),
            row: format!("({})", vec!["?"; width].join(", ")),
            tail: sql::on_conflict::<Sqlite>(table, schema, existing),
            rows_per_statement: (MAX_PARAMS / width).clamp(1, MAX_ROWS_PER_STATEMENT),
        }
    }

    /// The statement for `rows` rows.
    pub(super) fn sql(&self, rows: usize) -> String {
        let mut sql = self.head.clone();
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&self.row);
        }
        sql.push_str(&self.tail);
        sql
    }
}
