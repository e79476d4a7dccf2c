//! The batcher: the main thread's part of a run. It takes outcomes from
//! the workers, turns them into sink batches (full ones, or whatever is
//! pending once the flush interval passes), plans the checkpoint each batch
//! carries, and queues both to the committer. Fail-fast and the per-record
//! sink check happen here, where every outcome passes once.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::checkpoint::{Ledger, Seq};
use crate::commit::{Committer, Job};
use crate::pool::{Cancel, CancelReason};
use crate::progress::{Progress, Summary};
use crate::record::Record;
use crate::sink::Checker;
use crate::work::Outcome;

/// Groups outcomes into sink batches: full batches, or whatever is pending
/// once the flush interval passes, so slow runs still show progress.
pub(crate) struct Batcher<'a> {
    pub(crate) committer: Committer<'a>,
    pub(crate) checker: Option<&'a Checker>,
    pub(crate) label: &'a (dyn Fn(&Record) -> String + Sync),
    pub(crate) first_failure: &'a OnceLock<String>,
    pub(crate) cancel: &'a Cancel,
    pub(crate) ledger: &'a Ledger,
    pub(crate) checkpoint: bool,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) abort: bool,
    pub(crate) progress: &'a Progress,
}

/// One finished item on its way to the sink.
struct Entry {
    /// None: done without a row (a vanished file, a row the sink cannot hold).
    record: Option<Record>,
    /// None: not checkpointed (failed under fail-fast: a resume retries it).
    seq: Option<Seq>,
    ok: bool,
    failed: bool,
}

/// One batch in the making.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    rows: usize,
    /// Since when entries beyond the watermark have been held back.
    held_since: Option<Instant>,
}

impl Batch {
    fn push(&mut self, entry: Entry) {
        self.rows += entry.record.is_some() as usize;
        self.entries.push(entry);
    }
}

impl Batcher<'_> {
    /// Consumes outcomes until every worker is done. A sink error cancels the
    /// run; the rest of the outcomes are then drained unwritten so no worker
    /// blocks on a full channel.
    pub(crate) fn drain(
        mut self,
        outcomes: Receiver<Vec<(Seq, Outcome)>>,
        cancel: &Cancel,
    ) -> (Summary, Option<anyhow::Error>) {
        let mut summary = Summary::default();
        let mut sink_error = None;
        let mut batch = Batch::default();
        let mut deadline = Instant::now() + self.flush_interval;
        loop {
            let flush = match outcomes.recv_deadline(deadline) {
                Ok(chunk) => {
                    for (seq, outcome) in chunk {
                        // Abandoned in flight: no row, no checkpoint; a resume redoes it.
                        if outcome.cancelled {
                            continue;
                        }
                        self.progress.inc();
                        summary.bytes += outcome.bytes;
                        self.add(&mut batch, &mut summary, seq, outcome);
                    }
                    // recv_deadline hands out queued outcomes before it
                    // looks at the clock: check it here too.
                    batch.rows >= self.batch_size || Instant::now() >= deadline
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if flush {
                if sink_error.is_none() {
                    if let Err(e) = self.commit(&mut batch, false) {
                        cancel.cancel(CancelReason::Failed);
                        sink_error = Some(e);
                    }
                }
                if sink_error.is_some() {
                    batch = Batch::default();
                }
                deadline = Instant::now() + self.flush_interval;
            }
        }
        if sink_error.is_none() {
            if let Err(e) = self.commit(&mut batch, true) {
                sink_error = Some(e);
            }
        }
        (summary, sink_error)
    }

    fn add(&self, batch: &mut Batch, summary: &mut Summary, seq: Seq, outcome: Outcome) {
        let path = || (self.label)(&outcome.record);
        if outcome.vanished {
            // Gone before its turn: no row, and nothing to retry.
            self.progress.println(&format!(
                "batchproc: warning: {}: vanished before it was read",
                path()
            ));
            self.ledger.skipped.fetch_add(1, Ordering::Relaxed);
            batch.push(Entry {
                record: None,
                seq: Some(seq),
                ok: false,
                failed: false,
            });
            return;
        }
        if outcome.error.is_none() {
            if let Some(reason) = self.checker.and_then(|check| check(&outcome.record)) {
                // The sink cannot store this row at all (say, a non-UTF-8
                // path in Postgres): the item fails, without a row.
                summary.failed += 1;
                if self.abort {
                    let _ = self.first_failure.set(format!("{}: {reason}", path()));
                    self.cancel.cancel(CancelReason::Failed);
                    return;
                }
                self.progress
                    .println(&format!("batchproc: warning: {}: {reason}", path()));
                batch.push(Entry {
                    record: None,
                    seq: Some(seq),
                    ok: false,
                    failed: true,
                });
                return;
            }
        }
        let failed = outcome.error.is_some();
        if let Some(error) = &outcome.error {
            summary.failed += 1;
            if !self.abort {
                self.progress
                    .println(&format!("batchproc: warning: {}: {error}", path()));
            }
        } else {
            summary.ok += 1;
        }
        // Fail-fast: the failed item's row says so (an earlier run's row must
        // not look current), but it gets no checkpoint: a resume retries it.
        let checkpointed = !(failed && self.abort);
        batch.push(Entry {
            record: Some(outcome.record),
            seq: checkpointed.then_some(seq),
            ok: !failed,
            failed: failed && checkpointed,
        });
    }

    /// Writes a batch with its checkpoint in one transaction, then moves the
    /// ledger on. Items that completed ahead of one still in flight would
    /// each need a checkpoint row (written now, deleted a moment later), so
    /// they are held back for up to one flush interval while the gap closes;
    /// an item stuck longer than that no longer holds anything back.
    fn commit(&mut self, batch: &mut Batch, last: bool) -> Result<()> {
        let mut entries = std::mem::take(&mut batch.entries);
        let seqs = |es: &[Entry]| -> Vec<Seq> { es.iter().filter_map(|e| e.seq).collect() };
        let mut update = self.ledger.plan(&seqs(&entries));
        let may_hold = self.checkpoint
            && !last
            && entries.len() <= 16 * self.batch_size
            && batch
                .held_since
                .is_none_or(|t| t.elapsed() < self.flush_interval);
        let mut held = Vec::new();
        if may_hold && !update.beyond.is_empty() {
            // Both sorted: a merge walk finds the entries beyond the prefix.
            let first_beyond = update.beyond[0];
            let (later, now): (Vec<Entry>, Vec<Entry>) = entries
                .into_iter()
                .partition(|e| e.seq.is_some_and(|s| s >= first_beyond));
            held = later;
            entries = now;
            update = self.ledger.plan(&seqs(&entries));
        }
        batch.held_since = match held.is_empty() {
            true => None,
            false => batch.held_since.or(Some(Instant::now())),
        };
        batch.rows = held.iter().filter(|e| e.record.is_some()).count();
        batch.entries = held;
        if entries.is_empty() {
            return Ok(());
        }
        update.ok = entries.iter().filter(|e| e.ok).count() as u64;
        update.failed = entries.iter().filter(|e| e.failed).count() as u64;
        let records: Vec<Record> = entries.iter_mut().filter_map(|e| e.record.take()).collect();
        // The ledger moves on as the batch is queued: if its write fails,
        // no later batch commits, and the run ends failed and resumable.
        self.ledger.apply(&seqs(&entries), &update);
        self.committer.send(Job {
            records,
            checkpoint: self.checkpoint.then_some(update),
        })?;
        Ok(())
    }
}
