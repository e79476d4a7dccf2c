//! Sinks: where records go. A sink checks or creates its table before the
//! run starts, then writes each batch atomically (one transaction for a
//! database). Sinks are synchronous to the pipeline; a database sink runs its
//! own async driver (sqlx on a tokio runtime) inside.

pub mod csv;
pub mod postgres;
pub mod sqlite;

use anyhow::{bail, Result};

use crate::checkpoint::{CheckpointUpdate, RunSpec, RunStart};
use crate::record::{Column, Record, Schema};
use crate::RunStatus;

/// Why a record cannot be stored, or None when it can.
pub type Checker = Box<dyn Fn(&Record) -> Option<String> + Send + Sync>;

/// A destination for records.
pub trait Sink: Send {
    /// Creates the table, or checks that an existing one fits `schema`.
    /// An error here is a configuration error (exit 2).
    fn prepare(&mut self, schema: &Schema) -> Result<()>;
    /// Opens the run's bookkeeping: a new run, or an unfinished one resumed.
    /// `None` when this sink cannot keep checkpoints (CSV on stdout or a device).
    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>>;
    /// Says why this sink cannot store a record (checked before batching,
    /// so one such record fails its item instead of its whole batch). Asked
    /// once after `prepare`; the check then runs apart from the sink, which
    /// is busy writing on its own thread.
    fn checker(&self) -> Option<Checker> {
        None
    }
    /// Writes one batch, all or nothing, upserting on the schema's key,
    /// together with the checkpoint that covers it.
    fn write(&mut self, batch: &[Record], checkpoint: Option<&CheckpointUpdate>) -> Result<()>;
    /// Records how the run ended (after the last batch).
    fn end_run(&mut self, status: RunStatus, skipped: u64) -> Result<()>;
    /// Makes everything written durable and closes the sink.
    fn finish(&mut self) -> Result<()>;
}

/// The bookkeeping status name of a run's end.
pub fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
    }
}

/// Where the `--sink` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// The URL as given (with any password): never printed, see `Display`.
    Postgres(String),
    Sqlite(std::path::PathBuf),
    Csv(std::path::PathBuf),
    Stdout,
}

impl SinkSpec {
    /// Parses `sqlite:PATH`, `csv:PATH`, `-`, or a bare path ending in
    /// `.db`, `.sqlite` or `.csv`.
    pub fn parse(url: &str) -> Result<Self> {
        if url == "-" {
            return Ok(SinkSpec::Stdout);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(SinkSpec::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.starts_with(':') || path.starts_with("file:") {
                bail!("unsupported sink {url:?}: give the SQLite database as a file path (no in-memory or URI databases)");
            }
            return non_empty(path).map(|p| SinkSpec::Sqlite(p.into()));
        }
        if let Some(path) = url.strip_prefix("csv:") {
            if path == "-" {
                return Ok(SinkSpec::Stdout);
            }
            return non_empty(path).map(|p| SinkSpec::Csv(p.into()));
        }
        let lower = url.to_ascii_lowercase();
        if lower.ends_with(".db") || lower.ends_with(".sqlite") || lower.ends_with(".sqlite3") {
            return Ok(SinkSpec::Sqlite(url.into()));
        }
        if lower.ends_with(".csv") {
            return Ok(SinkSpec::Csv(url.into()));
        }
        bail!(
            "unsupported sink {:?}: use postgres://…, sqlite:PATH, csv:PATH, - (CSV on stdout), \
             or a path ending in .db, .sqlite or .csv",
            crate::checkpoint::redact(url)
        )
    }

    /// Opens the sink; `table` is used by database sinks.
    pub fn open(&self, table: &str) -> Result<Box<dyn Sink>> {
        Ok(match self {
            SinkSpec::Postgres(url) => Box::new(postgres::PostgresSink::open(url, table)?),
            SinkSpec::Sqlite(path) => Box::new(sqlite::SqliteSink::open(path, table)?),
            SinkSpec::Csv(path) => Box::new(csv::CsvSink::create(path)?),
            SinkSpec::Stdout => Box::new(csv::CsvSink::stdout()),
        })
    }
}

impl SinkSpec {
    /// Every file this sink writes (with SQLite's journal companions), so
    /// the walk can leave them out.
    pub fn own_files(&self) -> Vec<std::path::PathBuf> {
        let with_suffix = |p: &std::path::Path, s: &str| {
            let mut name = p.as_os_str().to_owned();
            name.push(s);
            std::path::PathBuf::from(name)
        };
        let mut files = Vec::new();
        if let SinkSpec::Csv(path) = self {
            files.push(path.clone());
        }
        if let Some(db) = self.state_path() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                files.push(with_suffix(&db, suffix));
            }
        }
        files
    }

    /// True when runs into this sink can be resumed.
    pub fn keeps_checkpoints(&self) -> bool {
        matches!(self, SinkSpec::Postgres(_)) || self.state_path().is_some()
    }

    /// The SQLite file holding this sink's bookkeeping, if it keeps any there.
    pub fn state_path(&self) -> Option<std::path::PathBuf> {
        match self {
            SinkSpec::Postgres(_) => None,
            SinkSpec::Sqlite(path) => Some(path.clone()),
            SinkSpec::Csv(path) => csv::state_path(path),
            SinkSpec::Stdout => None,
        }
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Postgres(url) => f.write_str(&crate::checkpoint::redact(url)),
            SinkSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            SinkSpec::Csv(p) => write!(f, "csv:{}", p.display()),
            SinkSpec::Stdout => write!(f, "csv on stdout"),
        }
    }
}

fn non_empty(path: &str) -> Result<&str> {
    if path.is_empty() {
        bail!("sink URL has an empty path");
    }
    Ok(path)
}

/// Checks a table name: an SQL identifier of letters, digits and `_`, not
/// starting with a digit. Names are also always quoted, so this is belt and braces.
pub fn validate_table_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("invalid table name {name:?}: use letters, digits and _ (not starting with a digit), at most 63 characters");
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("sqlite_")
        || lower.starts_with("batchproc_")
        || lower == "_sqlx_migrations"
    {
        bail!("invalid table name {name:?}: the prefix is reserved");
    }
    Ok(())
}

/// `CREATE TABLE IF NOT EXISTS` with the schema's columns, keyed on its key.
pub fn create_table_sql(
    table: &str,
    schema: &Schema,
    sql_type: impl Fn(crate::record::ColumnType) -> &'static str,
) -> String {
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
            format!("{} {}{key}", quote_ident(&c.name), sql_type(c.ty))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_ident(table),
        cols.join(", ")
    )
}

/// Upsert assignments that clear the columns of processors *not* in this
/// run when the file changed (size or mtime differ): otherwise a rerun with
/// other processors would leave an old digest next to a new size. `same` is
/// the null-safe equality of the database (`IS`, `IS NOT DISTINCT FROM`).
pub fn stale_clears(table: &str, schema: &Schema, existing: &[String], same: &str) -> Vec<String> {
    let has = |name: &str| schema.columns.iter().any(|c| c.name == name);
    if !(has("size") && has("mtime")) {
        return Vec::new();
    }
    let t = quote_ident(table);
    let known = crate::processor::output_columns();
    existing
        .iter()
        .filter(|c| known.contains(c) && !has(c))
        .map(|c| {
            let c = quote_ident(c);
            format!(
                "{c} = CASE WHEN {t}.\"size\" {same} excluded.\"size\" AND {t}.\"mtime\" {same} excluded.\"mtime\" \
                 THEN {t}.{c} ELSE NULL END"
            )
        })
        .collect()
}

/// `ALTER TABLE … ADD COLUMN` for each column an existing table lacks.
pub fn add_columns_sql(
    table: &str,
    missing: &[&Column],
    sql_type: impl Fn(crate::record::ColumnType) -> &'static str,
) -> Vec<String> {
    missing
        .iter()
        .map(|c| {
            format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                quote_ident(table),
                quote_ident(&c.name),
                sql_type(c.ty)
            )
        })
        .collect()
}

/// A column of an existing table, as its database describes it.
pub struct ExistingColumn {
    pub name: String,
    /// The declared type, for messages.
    pub declared: String,
    pub not_null: bool,
    pub has_default: bool,
    pub generated: bool,
}

/// The rules every database sink applies to an existing table: each column
/// this run writes must fit its type, be nullable (failed items leave it
/// NULL; the key excepted) and not generated; no other column may demand a
/// value. Returns the columns the table lacks (to be added). `misfit` says
/// which type a found column should have had, when it does not fit; names
/// match case-insensitively.
pub fn check_existing<'s>(
    table: &str,
    schema: &'s Schema,
    existing: &[ExistingColumn],
    misfit: impl Fn(&ExistingColumn, &Column) -> Option<&'static str>,
) -> Result<Vec<&'s Column>> {
    let incompatible = |why: String| anyhow::anyhow!("table {table:?} is incompatible: {why}");
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
                "column {:?} is a generated column",
                col.name
            )));
        }
        if found.not_null && col.name != *key {
            return Err(incompatible(format!(
                "column {:?} is NOT NULL, and this run leaves it NULL for failed items",
                col.name
            )));
        }
        if let Some(want) = misfit(found, col) {
            return Err(incompatible(format!(
                "column {:?} has type {:?}, this run writes {want}",
                col.name, found.declared
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
                "column {:?} is NOT NULL without a default, and this run does not write it",
                e.name
            )));
        }
    }
    Ok(missing)
}

/// Quotes an identifier that [`validate_table_name`] or the processor
/// registry already vetted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
