//! The SQL both database sinks generate, written once: creating the table
//! or checking an existing one, adding the columns it lacks, and the upsert
//! that writes a record (with the rule that clears columns gone stale), and
//! what `--incremental` reads and `--prune` deletes ([`earlier`]). What
//! differs between the databases is a small [`Dialect`].

mod dialect;
mod earlier;

use anyhow::Result;

pub(crate) use dialect::{Dialect, Postgres, Sqlite};
pub(crate) use earlier::{
    delete_keys, processor_columns, select_earlier, EarlierRow, DELETE_CHUNK, LEDGER_COLUMNS,
};

use crate::record::{Column, Schema};

/// Quotes an identifier that `validate_table_name`, the query's own column
/// names or the processor registry supplied. Always quoted, never spliced bare.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column of an existing table, as its database describes it.
pub(crate) struct ExistingColumn {
    pub(crate) name: String,
    /// The declared type, for messages and the dialect's fit check.
    pub(crate) declared: String,
    pub(crate) not_null: bool,
    pub(crate) has_default: bool,
    pub(crate) generated: bool,
}

/// What preparing a table takes: the statements to run, and the names of
/// the columns the table had before (which the upsert may have to clear).
pub(crate) struct TablePlan {
    pub(crate) statements: Vec<String>,
    pub(crate) existing: Vec<String>,
}

/// Creates the table when `existing` is empty; otherwise checks it (see
/// [`check_existing`]) and adds the columns it lacks. The caller runs the
/// dialect's own checks (a unique key, no STRICT table) before the plan.
pub(crate) fn plan_table<D: Dialect>(
    table: &str,
    schema: &Schema,
    existing: &[ExistingColumn],
) -> Result<TablePlan> {
    if existing.is_empty() {
        return Ok(TablePlan {
            statements: vec![create_table::<D>(table, schema)],
            existing: Vec::new(),
        });
    }
    let missing = check_existing::<D>(table, schema, existing)?;
    let statements = missing
        .iter()
        .map(|c| {
            format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                quote_ident(table),
                quote_ident(&c.name),
                D::column_type(c.ty)
            )
        })
        .collect();
    Ok(TablePlan {
        statements,
        existing: existing.iter().map(|e| e.name.clone()).collect(),
    })
}

/// `CREATE TABLE IF NOT EXISTS` with the schema's columns, keyed on its key.
pub(crate) fn create_table<D: Dialect>(table: &str, schema: &Schema) -> String {
    let cols: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = if i == schema.key {
                " PRIMARY KEY NOT NULL"
            } else {
                ""
            };
            format!("{} {}{key}", quote_ident(&c.name), D::column_type(c.ty))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_ident(table),
        cols.join(", ")
    )
}

/// The rules every database sink applies to an existing table: each column
/// this run writes must fit its type, be nullable (failed items leave it
/// NULL; the key excepted) and not generated; no other column may demand a
/// value. Returns the columns the table lacks (to be added). Names match
/// case-insensitively, as SQL identifiers do.
fn check_existing<'s, D: Dialect>(
    table: &str,
    schema: &'s Schema,
    existing: &[ExistingColumn],
) -> Result<Vec<&'s Column>> {
    let incompatible = |why: String| anyhow::anyhow!("table \"{table}\" is incompatible: {why}");
    let key = &schema.key_column().name;
    let mut missing = Vec::new();
    for col in &schema.columns {
        let Some(found) = existing
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(&col.name))
        else {
            missing.push(col);
            continue;
        };
        if found.generated {
            return Err(incompatible(format!(
                "column \"{}\" is a generated column",
                col.name
            )));
        }
        if found.not_null && col.name != *key {
            return Err(incompatible(format!(
                "column \"{}\" is NOT NULL, and this run leaves it NULL for failed items",
                col.name
            )));
        }
        if !D::fits(&found.declared, col.ty) {
            return Err(incompatible(format!(
                "column \"{}\" has type \"{}\", this run writes {}",
                col.name,
                found.declared,
                D::column_type(col.ty)
            )));
        }
    }
    for e in existing {
        let ours = schema
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&e.name));
        if !ours && e.not_null && !e.has_default {
            return Err(incompatible(format!(
                "column \"{}\" is NOT NULL without a default, and this run does not write it",
                e.name
            )));
        }
    }
    Ok(missing)
}

/// The schema's column names, quoted and comma-separated.
pub(crate) fn column_list(schema: &Schema) -> String {
    let names: Vec<String> = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    names.join(", ")
}

/// ` ON CONFLICT (key) DO UPDATE SET …`: every column this run writes takes
/// the new value; a column some processor *not* in this run wrote earlier
/// (`existing` holds the table's columns before the run) is cleared when the
/// item changed, so a rerun with other processors never leaves an old
/// digest next to a new size. Both databases evaluate every SET expression
/// against the row as it was.
pub(crate) fn on_conflict<D: Dialect>(table: &str, schema: &Schema, existing: &[String]) -> String {
    let key = quote_ident(&schema.key_column().name);
    let mut set: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != schema.key)
        .map(|(_, c)| {
            let c = quote_ident(&c.name);
            format!("{c} = excluded.{c}")
        })
        .collect();
    if let Some(stale) = &schema.stale {
        let t = quote_ident(table);
        let same = D::SAME;
        let unchanged: Vec<String> = stale
            .unless_changed
            .iter()
            .map(|c| {
                let c = quote_ident(c);
                format!("{t}.{c} {same} excluded.{c}")
            })
            .collect();
        let unchanged = unchanged.join(" AND ");
        let written = |name: &str| schema.columns.iter().any(|c| c.name == name);
        for name in existing
            .iter()
            .filter(|c| stale.columns.contains(c) && !written(c))
        {
            let c = quote_ident(name);
            set.push(format!(
                "{c} = CASE WHEN {unchanged} THEN {t}.{c} ELSE NULL END"
            ));
        }
    }
    format!(" ON CONFLICT ({key}) DO UPDATE SET {}", set.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ColumnType, Stale};

    fn schema() -> Schema {
        Schema {
            columns: vec![
                Column::new("path", ColumnType::Text),
                Column::new("size", ColumnType::Int),
                Column::new("mtime", ColumnType::Time),
                Column::new("sha256", ColumnType::Text),
                Column::new("error", ColumnType::Text),
            ],
            key: 0,
            stale: Some(Stale {
                unless_changed: vec!["size".into(), "mtime".into()],
                columns: vec!["sha256".into(), "lines".into()],
            }),
        }
    }

    #[test]
    fn the_upsert_clears_only_stale_processor_columns_it_does_not_write() {
        let existing = ["path", "size", "mtime", "lines", "note"].map(String::from);
        let sql = on_conflict::<Postgres>("t", &schema(), &existing);
        assert!(
            sql.starts_with(" ON CONFLICT (\"path\") DO UPDATE SET \"size\" = excluded.\"size\"")
        );
        assert!(sql.contains(
            "\"lines\" = CASE WHEN \"t\".\"size\" IS NOT DISTINCT FROM excluded.\"size\" AND \
             \"t\".\"mtime\" IS NOT DISTINCT FROM excluded.\"mtime\" THEN \"t\".\"lines\" ELSE NULL END"
        ));
        // A column of the user's own is never touched.
        assert!(!sql.contains("note"));
    }

    #[test]
    fn a_new_table_is_created_and_an_old_one_gains_columns() {
        let plan = plan_table::<Sqlite>("t", &schema(), &[]).unwrap();
        assert_eq!(
            plan.statements,
            ["CREATE TABLE IF NOT EXISTS \"t\" (\"path\" TEXT PRIMARY KEY NOT NULL, \"size\" INTEGER, \
              \"mtime\" TEXT, \"sha256\" TEXT, \"error\" TEXT)"]
        );
        let column = |name: &str, declared: &str| ExistingColumn {
            name: name.into(),
            declared: declared.into(),
            not_null: false,
            has_default: false,
            generated: false,
        };
        let existing = [column("PATH", "text"), column("size", "bigint")];
        let plan = plan_table::<Postgres>("t", &schema(), &existing).unwrap();
        assert_eq!(plan.statements.len(), 3, "{:?}", plan.statements);
        assert_eq!(
            plan.statements[0],
            "ALTER TABLE \"t\" ADD COLUMN \"mtime\" TIMESTAMPTZ"
        );
        let wrong = [column("path", "text"), column("size", "text")];
        let err = plan_table::<Postgres>("t", &schema(), &wrong)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "table \"t\" is incompatible: column \"size\" has type \"text\", this run writes BIGINT"
        );
    }
}
