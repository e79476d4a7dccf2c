//! Sinks: where records go. A sink checks or creates its table before the
//! run starts, then writes each batch atomically (one transaction for a
//! database) together with the checkpoint that covers it. Sinks are
//! synchronous to the pipeline; a database sink drives sqlx on a runtime of
//! its own inside (see `db`). The SQL both database sinks need is written
//! once in [`sql`].
//!
//! Adding a sink: a folder with a type implementing [`Sink`], a variant of
//! [`SinkSpec`] with its URL form, and its line in [`SinkSpec::open`].

mod csv;
pub(crate) mod failures;
mod plan;
mod postgres;
pub(crate) mod sql;
mod sqlite;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub(crate) use failures::list_failures;
pub(crate) use sqlite::open_state;

use crate::checkpoint::{runs, CheckpointUpdate, RunEnd, RunSpec, RunStart};
use crate::db::{self, Conn, Url};
use crate::events::Shared;
use crate::pool::Cancel;
use crate::record::{Quoted, Record, Schema, Value};
use crate::source::queue::broker::InTransaction;
use crate::source::queue::Lookup;
use sql::EarlierRow;

/// Why a record cannot be stored, or None when it can.
pub(crate) type Checker = Box<dyn Fn(&Record) -> Option<Refusal> + Send + Sync>;

/// A batch as the sink sends it (see [`Sink::encoder`]).
pub(crate) type Encoder = Box<dyn Fn(&[Record]) -> Vec<u8> + Send + Sync>;

/// What a sink cannot store of a record, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) reason: String,
    /// The values it cannot hold (indexes into the record).
    pub(crate) columns: Vec<usize>,
    /// The key is among them: no row can be written at all.
    pub(crate) key: bool,
}

/// A destination for records.
pub(crate) trait Sink: Send {
    /// Creates the table, or checks that an existing one fits `schema`.
    /// An error here is a configuration error (exit 2).
    fn prepare(&mut self, schema: &Schema) -> Result<()>;
    /// Opens the run's bookkeeping: a new run, or an unfinished one resumed.
    /// `None` when this sink cannot keep checkpoints (CSV on stdout or a device).
    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>>;
    /// Stores where the run's cursor range ends (`query --cursor`), after
    /// `start_run` and before any batch (see [`runs::set_cursor`]).
    fn set_cursor(&mut self, _upto: &str) -> Result<()> {
        bail!("this sink keeps no run records")
    }
    /// Says why this sink cannot store a record (checked before batching,
    /// so one such record fails its item instead of its whole batch). Asked
    /// once after `prepare`; the check then runs apart from the sink, which
    /// is busy writing on its own thread.
    fn checker(&self) -> Option<Checker> {
        None
    }
    /// Encodes a batch into what `write` sends, on the batcher's thread, so
    /// that encoding the next batch overlaps the database writing this one
    /// (asked once after `prepare`, as `checker`). None: nothing to encode.
    fn encoder(&self) -> Option<Encoder> {
        None
    }
    /// Writes one batch, all or nothing, upserting on the schema's key,
    /// together with the checkpoint that covers it; `encoded` is what the
    /// sink's encoder made of `batch`, when it has one.
    fn write(
        &mut self,
        batch: &[Record],
        encoded: Option<&[u8]>,
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()>;
    /// `--incremental`: hands `each` every row of the table (after
    /// `prepare`), `processors` being the columns this run's processors
    /// write; returns how finely the table keeps a time, in nanoseconds.
    /// Only a database sink keeps rows to compare with.
    fn earlier_rows(
        &mut self,
        _processors: &[String],
        _each: &mut dyn FnMut(EarlierRow),
    ) -> Result<i64> {
        bail!("this sink keeps no rows to compare with")
    }
    /// `--prune`: deletes the rows of `keys` (items gone from the source)
    /// in one transaction together with `checkpoint`.
    fn remove(&mut self, _keys: &[Value], _checkpoint: Option<&CheckpointUpdate>) -> Result<()> {
        bail!("this sink cannot remove rows")
    }
    /// A queue run: which message ids have a record without an error in
    /// the table, asked on a connection of the look-up's own (the sink is
    /// busy on its thread). Only a database sink keeps rows to look up.
    fn lookup(&self) -> Result<Lookup> {
        bail!("this sink keeps no rows to look up")
    }
    /// A queue run whose queue lives in a database: when it is this sink's,
    /// the sink takes `offer`'s statement into each transaction, with the
    /// ids of the messages the batch is done with, and says true.
    fn consume_in_transaction(&mut self, _offer: &InTransaction) -> Result<bool> {
        Ok(false)
    }
    /// Commits survive a crash of the machine, not only of the process
    /// (a queue run acks what a commit holds).
    fn durable(&mut self) -> Result<()> {
        Ok(())
    }
    /// Records how the run ended (after the last batch).
    fn end_run(&mut self, end: &RunEnd) -> Result<()>;
    /// Makes everything written durable and closes the sink.
    fn finish(&mut self) -> Result<()>;
}

/// Another run (or another program) holds the sink: the run is refused at
/// once, to be tried again later (exit 75, EX_TEMPFAIL).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Busy(pub(crate) String);

/// A write given up because the run was interrupted while it waited for the
/// database (locked by another program, or gone and being reconnected): the
/// batch is not committed, and a resume redoes its items. Not a failure of
/// the run, which ends interrupted.
#[derive(Debug, thiserror::Error)]
#[error("interrupted while {0}")]
pub(crate) struct Stopped(pub(crate) &'static str);

/// Where the `--sink` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SinkSpec {
    Database(Url),
    Csv(PathBuf),
    Stdout,
}

impl SinkSpec {
    /// Parses `sqlite:PATH`, `postgres://…`, `csv:PATH`, `-`, or a bare
    /// path ending in `.db`, `.sqlite`, `.sqlite3` or `.csv`.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        if url == "-" || url == "csv:-" {
            return Ok(SinkSpec::Stdout);
        }
        if let Some(database) = Url::parse(url) {
            return database
                .map(SinkSpec::Database)
                .map_err(|e| e.context("unsupported sink"));
        }
        if let Some(path) = url.strip_prefix("csv:") {
            if path.is_empty() {
                bail!("sink {} names no file", Quoted(url));
            }
            return Ok(SinkSpec::Csv(path.into()));
        }
        let lower = url.to_ascii_lowercase();
        if lower.ends_with(".db") || lower.ends_with(".sqlite") || lower.ends_with(".sqlite3") {
            return Ok(SinkSpec::Database(Url::Sqlite(url.into())));
        }
        if lower.ends_with(".csv") {
            return Ok(SinkSpec::Csv(url.into()));
        }
        bail!(
            "unsupported sink {}: use postgres://…, sqlite:PATH, csv:PATH, - (CSV on stdout), \
             or a path ending in .db, .sqlite or .csv",
            Quoted(&crate::redact::redact(url))
        )
    }

    /// Opens the sink; `table` is used by database sinks.
    /// Waits for the database (a lock, a reconnect) stop when `cancel` is
    /// interrupted.
    pub(crate) fn open(
        &self,
        table: &str,
        events: &Shared,
        cancel: &Cancel,
    ) -> Result<Box<dyn Sink>> {
        Ok(match self {
            SinkSpec::Database(Url::Postgres(url)) => Box::new(postgres::PostgresSink::open(
                url,
                table,
                events.clone(),
                cancel.clone(),
            )?),
            SinkSpec::Database(Url::Sqlite(path)) => {
                Box::new(sqlite::SqliteSink::open(path, table, cancel.clone())?)
            }
            SinkSpec::Csv(path) => Box::new(csv::CsvSink::create(path, cancel.clone())?),
            SinkSpec::Stdout => Box::new(csv::CsvSink::stdout()),
        })
    }

    /// Rows per transaction unless `--batch-size` says otherwise (a batch
    /// also ends at 32 MiB of data). Measured on 1M rows (docs/DESIGN.md):
    /// each Postgres transaction costs the server far more than its round
    /// trips (autovacuum and autoanalyze run behind many small commits), so
    /// 50,000-row batches load 25-30 % faster than 5,000-row ones; SQLite is
    /// fastest at about 5,000 (1,000: 3.2 s, 5,000: 2.5 s, 20,000: 2.7 s). A
    /// CSV batch ends with an fsync, and a smaller one loses less work to a
    /// SIGKILL.
    pub(crate) fn default_batch_size(&self) -> usize {
        match self {
            SinkSpec::Database(Url::Postgres(_)) => 50_000,
            SinkSpec::Database(Url::Sqlite(_)) => 5000,
            _ => 1000,
        }
    }

    /// Every file this sink writes (with SQLite's journal companions), so
    /// the walk can leave them out.
    pub(crate) fn own_files(&self) -> Vec<PathBuf> {
        let with_suffix = |p: &Path, s: &str| {
            let mut name = p.as_os_str().to_owned();
            name.push(s);
            PathBuf::from(name)
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
    pub(crate) fn keeps_checkpoints(&self) -> bool {
        matches!(self, SinkSpec::Database(_)) || self.state_path().is_some()
    }

    /// The SQLite file holding this sink's bookkeeping, if it keeps any there.
    pub(crate) fn state_path(&self) -> Option<PathBuf> {
        match self {
            SinkSpec::Database(Url::Postgres(_)) | SinkSpec::Stdout => None,
            SinkSpec::Database(Url::Sqlite(path)) => Some(path.clone()),
            SinkSpec::Csv(path) => csv::state_path(path),
        }
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Database(url) => url.fmt(f),
            SinkSpec::Csv(p) => write!(f, "csv:{}", p.display()),
            SinkSpec::Stdout => write!(f, "csv on stdout"),
        }
    }
}

/// The runs recorded in the sink at `url`, newest first.
pub(crate) fn list_runs(url: &str) -> Result<Vec<crate::checkpoint::RunRow>> {
    let spec = SinkSpec::parse(url)?;
    if let SinkSpec::Database(Url::Postgres(url)) = &spec {
        return db::runtime()?.block_on(async {
            let mut conn = db::postgres(url).await?;
            db::migrate(Conn::Postgres(&mut conn)).await?;
            runs::list_runs(Conn::Postgres(&mut conn)).await
        });
    }
    let Some(path) = spec.state_path() else {
        bail!("{spec} keeps no run records");
    };
    if !path.exists() {
        bail!(
            "{}: no such database (no run has written to {spec})",
            path.display()
        );
    }
    // Read while a run may hold the file: no lock, no change of mode.
    let rt = db::runtime()?;
    rt.block_on(async {
        let mut conn = db::sqlite(&path).await?;
        sqlx::Executor::execute(&mut conn, "PRAGMA busy_timeout = 5000").await?;
        db::migrate(Conn::Sqlite(&mut conn)).await?;
        runs::list_runs(Conn::Sqlite(&mut conn)).await
    })
    .with_context(|| format!("reading runs from {}", path.display()))
}

/// Checks a table name: an SQL identifier of letters, digits and `_`, not
/// starting with a digit. Names are also always quoted, so this is belt and braces.
pub(crate) fn validate_table_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("invalid table name {}: use letters, digits and _ (not starting with a digit), at most 63 characters", Quoted(name));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("sqlite_")
        || lower.starts_with("batchproc_")
        || lower == "_sqlx_migrations"
    {
        bail!("invalid table name \"{name}\": the prefix is reserved");
    }
    Ok(())
}
