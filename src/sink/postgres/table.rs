//! The Postgres sink's tables: what an existing table looks like
//! (`information_schema`), whether its key is unique, and the session's
//! staging table.

use anyhow::{bail, Result};
use sqlx::{PgConnection, Row};

use crate::record::{ColumnType, Schema};
use crate::sink::sql::{self, Dialect, ExistingColumn, Postgres};

/// The session-local table each batch is COPYed into before its upsert.
pub(super) const STAGE: &str = "batchproc_stage";

/// The table's columns before the run, as `prepare` found them.
pub(super) struct Found {
    pub(super) names: Vec<String>,
    /// Every column the run writes has exactly the type batchproc would
    /// create (COPY's binary format needs it: `numeric` is accepted for an
    /// integer, but its binary form is another).
    pub(super) exact: bool,
}

/// Creates the table, or checks and extends an existing one.
pub(super) async fn prepare(
    conn: &mut PgConnection,
    table: &str,
    schema: &Schema,
) -> Result<Found> {
    // Runs that start together (consumers of one queue) would race to
    // create the table: one at a time, in a transaction whose lock ends
    // with it (no session lock, which a pooler in transaction mode breaks).
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("batchproc table {table}"))
        .execute(&mut *tx)
        .await?;
    let (plan, existing) = plan(&mut tx, table, schema).await?;
    for statement in &plan.statements {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let exact = existing.iter().all(|c| {
        schema
            .columns
            .iter()
            .filter(|s| s.name == c.name)
            .all(|s| binary_as_created(&c.declared, s.ty))
    });
    Ok(Found {
        names: plan.existing,
        exact,
    })
}

/// Checks an existing table (changing nothing); the statements that create
/// or extend it, and its columns as they are.
pub(in crate::sink) async fn plan(
    conn: &mut PgConnection,
    table: &str,
    schema: &Schema,
) -> Result<(sql::TablePlan, Vec<ExistingColumn>)> {
    let existing: Vec<ExistingColumn> = sqlx::query(
        "SELECT column_name::text AS name, data_type::text AS ty, is_nullable::text AS nullable, \
         column_default::text AS dflt, is_generated::text AS generated \
         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| ExistingColumn {
        name: r.get("name"),
        declared: r.get("ty"),
        not_null: r.get::<String, _>("nullable") == "NO",
        has_default: r.get::<Option<String>, _>("dflt").is_some(),
        generated: r.get::<String, _>("generated") == "ALWAYS",
    })
    .collect();
    let plan = sql::plan_table::<Postgres>(table, schema, &existing)?;
    let key = &schema.key_column().name;
    if !existing.is_empty() && !has_unique_index_on(conn, table, key).await? {
        bail!("table \"{table}\" is incompatible: column \"{key}\" is not unique (needs a PRIMARY KEY or UNIQUE index on it alone, without WHERE)");
    }
    Ok((plan, existing))
}

async fn has_unique_index_on(conn: &mut PgConnection, table: &str, key: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisunique \
         AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2)",
    )
    .bind(table)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?)
}

/// The staging table (TEMP, emptied at each commit) with the schema's columns.
pub(super) async fn create_stage(conn: &mut PgConnection, schema: &Schema) -> Result<()> {
    let cols: Vec<String> = schema
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                sql::quote_ident(&c.name),
                Postgres::column_type(c.ty)
            )
        })
        .collect();
    sqlx::query(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {STAGE} ({}) ON COMMIT DELETE ROWS",
        cols.join(", ")
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether a column declared `declared` (`information_schema`'s data_type)
/// takes the binary form of the type batchproc creates for `ty`.
fn binary_as_created(declared: &str, ty: ColumnType) -> bool {
    let same: &[&str] = match ty {
        ColumnType::Int => &["bigint"],
        ColumnType::Float => &["double precision"],
        ColumnType::Text => &["text", "character varying"],
        ColumnType::Bytes => &["bytea"],
        ColumnType::Time => &["timestamp with time zone"],
        ColumnType::Bool => &["boolean"],
    };
    same.contains(&declared)
}
