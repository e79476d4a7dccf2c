//! The end of a run: the one slot for its first failure, how it ended, the
//! bookkeeping row's last update, and what it reports.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use super::Error;
use crate::checkpoint::{Ending, Ledger, RunEnd};
use crate::events::Shared;
use crate::pool::{Cancel, CancelReason, PoolStats};
use crate::record::error_line;
use crate::sink::Sink;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every item succeeded.
    Succeeded,
    /// The run was aborted by a failed item, or finished with failed items.
    Failed,
    /// Cancelled (SIGINT/SIGTERM) after committing what finished: resumable.
    Interrupted,
    /// Stopped starting items at its maximum runtime, with items left;
    /// what started finished and is committed: resumable.
    Paused,
}

impl RunStatus {
    /// The status as `batchproc_runs`, `--summary-json` and the logs name it.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Paused => "paused",
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub status: RunStatus,
    pub summary: Summary,
    /// The first failed item under fail-fast, as `label: error`.
    pub failure: Option<String>,
    /// The sink, as it may be printed (passwords redacted).
    pub sink: String,
    /// The run's id in the sink's `batchproc_runs` (None with
    /// `--no-checkpoint`).
    pub run_id: Option<i64>,
}

/// Counts of a finished run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    /// Items met but not processed (not regular files, vanished).
    pub skipped: u64,
    /// Of the skipped, items quarantined by the poison ledger (failed in
    /// `--max-failures` consecutive runs, unchanged since). Not kept in
    /// the run records: this run's count only.
    pub quarantined: u64,
    /// Items unchanged since an earlier run (`--incremental`): not
    /// processed, their rows left as they were.
    pub unchanged: u64,
    /// Rows deleted because their items were gone (`--prune`).
    pub removed: u64,
    /// Queue messages delivered again whose record was committed already:
    /// acknowledged without a second record.
    pub redelivered: u64,
    /// Queue messages left held under a lease when the run ended (by a
    /// consumer that may have died): the queue delivers them again once
    /// the lease expires. None for other sources.
    pub held: Option<u64>,
    /// Bytes of the items processed.
    pub bytes: u64,
    pub elapsed: Duration,
    /// How the worker pool was used: tells whether more (or fewer) workers
    /// would have helped. Its `items` counts what the workers took from
    /// the queue: handles on chunks of items, not items.
    pub pool: PoolStats,
}

impl Summary {
    /// `1000 ok, 2 failed in 1.23s (813 items/s, 12.3 MB/s; workers busy: peak 4, avg 3.2)`,
    /// with `, 3 skipped` (or `, 3 skipped (1 quarantined)`), `, 5 unchanged`,
    /// `, 1 removed` and `, 2 redelivered (done before)` after `failed`
    /// when there were any, and a queue's `, held: 0`.
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let items = self.ok + self.failed;
        let mut counts = String::new();
        let skipped = match self.quarantined {
            0 => "skipped".to_owned(),
            q => format!("skipped ({q} quarantined)"),
        };
        for (n, what) in [
            (self.skipped, skipped.as_str()),
            (self.unchanged, "unchanged"),
            (self.removed, "removed"),
            (self.redelivered, "redelivered (done before)"),
        ] {
            if n > 0 {
                counts.push_str(&format!(", {n} {what}"));
            }
        }
        // Always for a queue: a scheduler reads it to know more will come.
        if let Some(held) = self.held {
            counts.push_str(&format!(", held: {held}"));
        }
        format!(
            "{} ok, {} failed{counts} in {:.2}s ({:.0} items/s, {:.1} MB/s; workers busy: peak {}, avg {:.1})",
            self.ok,
            self.failed,
            secs,
            items as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.pool.peak_busy,
            self.pool.average_busy,
        )
    }
}

/// Why a run stopped early.
#[derive(Debug)]
pub(super) enum Failure {
    /// An item failed under fail-fast: `label: error`.
    Item(String),
    /// The source failed (the database went away, a duplicate key).
    Source(anyhow::Error),
    /// The sink failed to write a batch.
    Sink(anyhow::Error),
    /// Not even one worker thread could be started.
    Workers(std::io::Error),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Item(line) => line.clone(),
            Failure::Source(e) => format!("source: {}", error_line(e)),
            Failure::Sink(e) => format!("sink: {}", error_line(e)),
            Failure::Workers(e) => format!("cannot start worker threads: {e}"),
        }
    }
}

/// The first failure of a run: whatever comes first cancels the run; a
/// later one is reported as a warning, so nothing is lost silently.
pub(super) struct FirstFailure<'a> {
    slot: OnceLock<Failure>,
    cancel: &'a Cancel,
    events: &'a Shared,
}

impl<'a> FirstFailure<'a> {
    pub(super) fn new(cancel: &'a Cancel, events: &'a Shared) -> Self {
        FirstFailure {
            slot: OnceLock::new(),
            cancel,
            events,
        }
    }

    pub(super) fn set(&self, failure: Failure) {
        self.cancel.cancel_with(CancelReason::Failed);
        if let Err(later) = self.slot.set(failure) {
            // An item failing after the run stopped says nothing new.
            if !matches!(later, Failure::Item(_)) {
                self.events.warning(&later.describe());
            }
        }
    }

    /// Whether the run was cancelled: failed, or interrupted from outside.
    pub(super) fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether the sink has failed (no batch may be queued after that).
    pub(super) fn sink_failed(&self) -> bool {
        matches!(self.slot.get(), Some(Failure::Sink(_)))
    }

    fn take(self) -> Option<Failure> {
        self.slot.into_inner()
    }
}

/// What the run's threads leave behind.
pub(super) struct Ended<'a> {
    pub(super) failure: FirstFailure<'a>,
    pub(super) summary: Summary,
    pub(super) ledger: &'a Ledger,
    /// The sink's row for this run, if it keeps one.
    pub(super) run_id: Option<i64>,
    /// Fail-fast: a failed item gets no checkpoint (a resume retries it).
    pub(super) abort: bool,
    /// The cutoff (`--max-runtime`) left items unstarted.
    pub(super) paused: bool,
    pub(super) sink_name: String,
}

/// Records how the run ended and closes the sink; the report, or the error
/// that ended the run.
pub(super) fn finish(sink: &mut dyn Sink, ended: Ended, cancel: &Cancel) -> Result<Report, Error> {
    let Ended {
        failure,
        mut summary,
        ledger,
        run_id,
        abort,
        paused,
        sink_name,
    } = ended;
    let recorded = run_id.is_some();
    summary.skipped = ledger.skipped.load(Ordering::Relaxed);
    summary.unchanged = ledger.unchanged.load(Ordering::Relaxed);
    summary.quarantined = ledger.quarantined.load(Ordering::Relaxed);
    let end = |ending| RunEnd {
        ending,
        skipped: summary.skipped,
        retry_pending: if abort { summary.failed } else { 0 },
        peak_busy: summary.pool.peak_busy as u64,
        average_busy: summary.pool.average_busy,
    };
    let failed = |summary: Summary, e: anyhow::Error| {
        let report = Report {
            status: RunStatus::Failed,
            summary,
            failure: None,
            sink: sink_name.clone(),
            run_id,
        };
        Error::Failed(e, Box::new(report))
    };
    let events = failure.events;
    let item_failure = match failure.take() {
        Some(Failure::Item(line)) => Some(line),
        Some(other) => {
            // What finished is committed; the run row says failed if the
            // database still answers, and the run can be resumed.
            if recorded {
                let _ = sink.end_run(&end(Ending::Failed));
            }
            let error = match other {
                Failure::Sink(e) => e.context(format!("sink {sink_name}")),
                Failure::Source(e) => {
                    let _ = sink.finish();
                    e.context("source")
                }
                Failure::Workers(e) => anyhow::Error::new(e).context("cannot start worker threads"),
                Failure::Item(_) => unreachable!("matched above"),
            };
            return Err(failed(summary, error));
        }
        None => None,
    };
    // Stopped without a failure of its own, the run was interrupted from
    // outside (a signal, the caller's token): never a success, whatever it
    // got through. Paused, it is unfinished whatever failed under skip so
    // far: the resume that finishes it says how it ended.
    let status = match (&item_failure, cancel.is_cancelled()) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Interrupted,
        (None, false) if paused => RunStatus::Paused,
        (None, false) if summary.failed > 0 => RunStatus::Failed,
        (None, false) => RunStatus::Succeeded,
    };
    let run_error = |e: anyhow::Error| e.context(format!("sink {sink_name}"));
    if recorded {
        let ending = match status {
            RunStatus::Succeeded => Ending::Succeeded,
            RunStatus::Failed => Ending::Failed,
            RunStatus::Interrupted => Ending::Interrupted,
            RunStatus::Paused => Ending::Paused,
        };
        match sink.end_run(&end(ending)) {
            // Interrupted while the database cannot be reached or is held
            // by another program: what was committed stands, the row still
            // says `running`, and a resume continues the run all the same.
            Err(e) if status == RunStatus::Interrupted => events.warning(&format!(
                "the run's row was not updated: {}",
                error_line(&run_error(e))
            )),
            Err(e) => return Err(failed(summary, run_error(e))),
            Ok(()) => {}
        }
    }
    if let Err(e) = sink.finish() {
        return Err(failed(summary, run_error(e)));
    }
    Ok(Report {
        status,
        summary,
        failure: item_failure,
        sink: sink_name,
        run_id,
    })
}
