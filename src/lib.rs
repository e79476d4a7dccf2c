//! batchproc: batch jobs over many items, every file under a folder or
//! every row of a query. A source feeds a bounded queue, a pool of worker
//! threads runs processors on each item, and a sink commits the records in
//! batched transactions together with checkpoints, so that a killed run
//! resumes with each record committed exactly once.
//!
//! The `batchproc` command is a thin shell over [`Pipeline`]. The worker
//! pool it runs on is [`pool`], usable on its own for any `T` and `R`.
//!
//! Inside, one folder per stage: `source` (the generic driver, `files/`,
//! `query/`), `processor` (one file per processor and the registry),
//! `pipeline` (a run in parts), `sink` (`sql/` shared by `sqlite/` and
//! `postgres/`, then `csv/`), `checkpoint` (keys, ledger, run records,
//! fingerprint), with `record` (the data that flows), `db` (runtimes,
//! URLs, connecting), `redact` (hiding passwords) and `events` (what a
//! run reports as it goes).
//!
//! A run also emits `tracing` events (start, end, batch commits, retries,
//! skipped items) with the target [`LOG_TARGET`]; without a subscriber
//! they cost nothing worth counting.

mod checkpoint;
mod db;
mod events;
mod pipeline;
pub mod pool;
mod processor;
mod record;
mod redact;
mod sink;
mod source;

pub use checkpoint::RunRow;
pub use events::Events;
pub use pipeline::{Error, OnError, Pipeline, Plan, Rate, Report, RunStatus, Summary, LOG_TARGET};
pub use redact::redact;
pub use sink::failures::FailureRow;

/// The README's Rust examples, run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The processors `-p` accepts, one per line: how each is written, and what
/// it does and writes.
pub fn processors_help() -> String {
    processor::registry::help()
}

/// The rows of a files table (`table`) in a sink that hold an error, most
/// consecutive failed runs first, with at least `min` of them: the poison
/// ledger `--incremental` keeps. Paths and errors come out redacted.
pub fn failures(sink: &str, table: &str, min: i64) -> Result<Vec<FailureRow>, Error> {
    let mut rows = sink::list_failures(sink, table, min).map_err(Error::Config)?;
    for row in &mut rows {
        row.path = redact(&row.path);
        row.error = redact(&row.error);
    }
    Ok(rows)
}

/// The runs recorded in a sink (`sqlite:PATH`, `postgres://…`, or a CSV
/// sink's state file), newest first. Commands are redacted again as they
/// are read: a row written by an older batchproc may hold a password its
/// redaction missed.
pub fn runs(sink: &str) -> Result<Vec<RunRow>, Error> {
    let mut runs = sink::list_runs(sink).map_err(Error::Config)?;
    for run in &mut runs {
        run.command = redact(&run.command);
    }
    Ok(runs)
}
