//! The `tracing` events a run emits, all in one place, so that their
//! names, levels and fields (what a log shipper keys on) are written down
//! once. The library only emits; whoever installs a subscriber decides what
//! is shown (the `batchproc` binary: `cli/log.rs`). Without one, each call
//! costs a check of a static flag.
//!
//! Levels: a run's start and end, retries and items the run went on without
//! are `info` (a handful of lines per run, or one per troubled item); each
//! batch commit is `debug` (a 1M-row run into SQLite commits 200 batches,
//! and a slow run flushes one a second: too many lines for `-v`, just what
//! a throughput question needs). Nothing is `warn` or `error`: those
//! reach the user as `Events` warnings and the run's error already, and
//! must not show twice in the default output.
//!
//! Field names follow `--summary-json` (`run_id`, `ok`, `failed`,
//! `skipped`, `bytes`, `elapsed_seconds`, `sink`), durations are seconds
//! as numbers, texts are `&str`/`String` values (quoted in text lines,
//! plain strings in JSON), and every text that could hold a URL passes
//! through [`redact`] here (the binary's writer redacts again, as a net).

use std::time::Duration;

use tracing::{debug, info};

use super::finish::Report;
use super::Error;
use crate::redact::redact;

/// The target of every event, whichever file emits it: `RUST_LOG` and the
/// `-v` filters select the run's events by it, and log lines do not change
/// when code moves between modules.
pub const TARGET: &str = "batchproc";

/// What a run's start line says about it.
pub(super) struct Start<'a> {
    pub(super) run_id: Option<i64>,
    /// `files` or `query`.
    pub(super) source: &'a str,
    pub(super) sink: &'a str,
    pub(super) table: &'a str,
    pub(super) min_workers: usize,
    pub(super) max_workers: usize,
    pub(super) resume: bool,
    /// `I/N` under `--shard`.
    pub(super) shard: Option<String>,
}

/// The run has its sink and bookkeeping and starts work.
pub(super) fn run_started(start: &Start) {
    info!(
        target: TARGET,
        run_id = start.run_id,
        source = start.source,
        command = redact(&crate::checkpoint::command_line()),
        sink = redact(start.sink),
        table = start.table,
        workers = start.max_workers,
        min_workers = start.min_workers,
        resume = start.resume,
        shard = start.shard.as_deref(),
        "run started"
    );
}

/// How the run ended: a report, or the error that ended it after it started.
pub(super) fn run_ended(result: &Result<Report, Error>) {
    let (report, error) = match result {
        Ok(report) => (report, None),
        Err(e @ Error::Failed(_, report)) => (report.as_ref(), Some(e.to_string())),
        // Refused before the start line (busy, misconfigured, cancelled):
        // the error line on stderr says it all.
        Err(_) => return,
    };
    let status = report.status.name();
    let s = &report.summary;
    let error = error.or_else(|| report.failure.clone()).map(|e| redact(&e));
    info!(
        target: TARGET,
        run_id = report.run_id,
        status,
        ok = s.ok,
        failed = s.failed,
        skipped = s.skipped,
        bytes = s.bytes,
        elapsed_seconds = s.elapsed.as_secs_f64(),
        workers_peak_busy = s.pool.peak_busy,
        workers_average_busy = s.pool.average_busy,
        error,
        "run ended"
    );
}

/// A batch is committed: `rows` records (and its checkpoint) in one
/// transaction, which took `took` in the sink (the wait behind the
/// batch before it not included).
pub(super) fn batch_committed(batch: u64, rows: usize, checkpoint: bool, took: Duration) {
    debug!(
        target: TARGET,
        batch,
        rows,
        checkpoint,
        elapsed_seconds = took.as_secs_f64(),
        "batch committed"
    );
}

/// Try `attempt` of `item` failed with `cause`, which may pass: the item
/// runs again after `wait`.
pub(super) fn retrying(item: &str, attempt: u32, max_attempts: u32, wait: Duration, cause: &str) {
    info!(
        target: TARGET,
        item = redact(item),
        attempt,
        max_attempts,
        wait_seconds = wait.as_secs_f64(),
        cause = redact(cause),
        "retrying item"
    );
}

/// The run went on without `item`: it failed under `--on-error skip`
/// (`failed`; its row holds the error), or it was met but not processed (a
/// vanished file, not a regular file: no row, counted as skipped).
pub(super) fn item_skipped(item: &str, failed: bool, cause: &str) {
    info!(
        target: TARGET,
        item = redact(item),
        failed,
        cause = redact(cause),
        "item skipped"
    );
}

/// The run passed `item` without opening it: it failed in `failures`
/// consecutive runs (`--max-failures`) and has not changed since (the
/// poison ledger); `cause` is its last error. Emitted where the source
/// driver decides not to hand the item out.
pub(crate) fn item_quarantined(item: &str, failures: i64, cause: &str) {
    info!(
        target: TARGET,
        item = redact(item),
        failures,
        cause = redact(cause),
        "item quarantined"
    );
}

/// The lease keeper could not extend the leases of `messages` queue
/// messages (it tries again at its next turn).
pub(crate) fn lease_not_extended(messages: usize, cause: &anyhow::Error) {
    info!(
        target: TARGET,
        messages,
        cause = redact(&crate::record::error_line(cause)),
        "lease not extended"
    );
}

/// Queue messages whose records committed could not be acknowledged: they
/// will be delivered again and recognised then.
pub(crate) fn ack_failed(messages: usize, cause: &anyhow::Error) {
    info!(
        target: TARGET,
        messages,
        cause = redact(&crate::record::error_line(cause)),
        "messages not acknowledged"
    );
}
