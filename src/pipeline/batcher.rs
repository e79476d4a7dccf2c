//! The batcher: the calling thread's part of a run. It takes outcomes from
//! the workers, turns them into sink batches (`batch_size` records, or
//! whatever is pending once the flush interval passes), plans the
//! checkpoint each batch carries, and queues both to the committer.
//! Fail-fast and the per-record sink check happen here, where every outcome
//! passes once.

use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::committer::{Committer, Job};
use super::finish::{Failure, FirstFailure, Summary};
use super::log;
use crate::checkpoint::{Ledger, Seq};
use crate::events::Shared;
use crate::processor::Outcome;
use crate::record::{Record, Value};
use crate::sink::{Checker, Encoder};
use crate::source::shard::Shard;
use crate::source::Source;

/// Groups outcomes into sink batches.
pub(super) struct Batcher<'a, S> {
    pub(super) committer: Committer<'a>,
    pub(super) checker: Option<&'a Checker>,
    pub(super) encoder: Option<&'a Encoder>,
    pub(super) source: &'a S,
    pub(super) failure: &'a FirstFailure<'a>,
    pub(super) ledger: &'a Ledger,
    pub(super) events: &'a Shared,
    pub(super) checkpoint: bool,
    pub(super) batch_size: usize,
    pub(super) flush_interval: Duration,
    pub(super) abort: bool,
    /// `--prune`: once everything is committed, delete the rows of items gone.
    pub(super) prune: bool,
    /// `--shard`: only this shard's items, and rows, are the run's.
    pub(super) shard: Option<Shard>,
    /// A queue: each batch lists the messages it is done with.
    pub(super) acks: bool,
}

/// One finished item on its way to the sink.
struct Entry {
    /// None: done without a row (a vanished file, a row the sink cannot hold).
    record: Option<Record>,
    /// None: not checkpointed (failed under fail-fast: a resume retries it).
    seq: Option<Seq>,
    ok: bool,
    failed: bool,
    /// A poison message: set aside with its record, not acked.
    poison: bool,
}

/// One batch in the making.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    rows: usize,
    /// Rows held back by the last commit: only `batch_size` new rows call
    /// for another.
    held_rows: usize,
    /// Since when entries beyond the watermark have been held back.
    held_since: Option<Instant>,
    /// Bytes of the records added since the last commit.
    bytes: u64,
}

/// A batch is written once its new records hold this much data, whatever
/// `--batch-size` says: three batches (gathering, queued, in the sink) are
/// what a run holds of records, and rows can be large (64 KiB bodies).
const BATCH_BYTES: u64 = 32 << 20;

impl Batch {
    fn push(&mut self, entry: Entry) {
        self.rows += entry.record.is_some() as usize;
        self.bytes += entry.record.as_ref().map_or(0, Record::size);
        self.entries.push(entry);
    }

    fn full(&self, rows: usize) -> bool {
        self.rows - self.held_rows >= rows || self.bytes >= BATCH_BYTES
    }
}

impl<S: Source> Batcher<'_, S> {
    /// Consumes outcomes until every worker is done. Once the sink has
    /// failed, the rest of the outcomes are drained unwritten so no worker
    /// blocks on a full channel.
    pub(super) fn drain(mut self, outcomes: Receiver<Vec<(Seq, Outcome)>>) -> Summary {
        let mut summary = Summary::default();
        let mut batch = Batch::default();
        let mut deadline = Instant::now() + self.flush_interval;
        loop {
            let first = match outcomes.recv_deadline(deadline) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Take what else is queued without a look at the clock for each:
            // outcomes come one item at a time.
            let mut done = 0;
            for chunk in std::iter::once(first).chain(outcomes.try_iter().take(1024)) {
                for (seq, outcome) in chunk {
                    // Abandoned in flight: no row, no checkpoint; a resume redoes it.
                    if let Outcome::Abandoned = outcome {
                        continue;
                    }
                    done += 1;
                    self.add(&mut batch, &mut summary, seq, outcome);
                    if batch.full(self.batch_size) {
                        self.flush(&mut batch, false);
                    }
                }
            }
            if done > 0 {
                self.events.progress(done);
            }
            // recv_deadline hands out queued outcomes before it looks at
            // the clock: check it here too.
            if Instant::now() >= deadline {
                self.flush(&mut batch, false);
                deadline = Instant::now() + self.flush_interval;
            }
        }
        self.flush(&mut batch, true);
        if self.prune {
            summary.removed = self.prune();
        }
        summary
    }

    /// `--prune`, after everything else is queued: the rows of items gone
    /// from the source are deleted in one transaction, which also counts
    /// them. Only after a walk that met everything it covers: never once
    /// the run was cancelled (an item failing under fail-fast, an
    /// interrupt, the source or the sink failing), and never when the
    /// source says it cannot tell (a directory it could not read).
    fn prune(&mut self) -> u64 {
        if self.failure.cancelled() {
            self.events
                .warning("--prune: the run stopped early, so no rows were removed");
            return 0;
        }
        let keys = match self.source.gone(self.ledger.resumed_after()) {
            // Another shard's rows are that shard's to remove.
            Ok(keys) => match &self.shard {
                Some(shard) => keys.into_iter().filter(|k| shard.holds_value(k)).collect(),
                None => keys,
            },
            Err(why) => {
                self.events
                    .warning(&format!("--prune: {why}, so no rows were removed"));
                return 0;
            }
        };
        if keys.is_empty() {
            return 0;
        }
        let mut update = self.ledger.plan(&[]);
        update.removed = keys.len() as u64;
        self.ledger.apply(&[], &update);
        let removed = update.removed;
        let job = Job {
            records: Vec::new(),
            encoded: None,
            removed: keys,
            checkpoint: self.checkpoint.then_some(update),
        };
        match self.committer.send(job) {
            Ok(()) => removed,
            Err(_) => 0,
        }
    }

    fn label(&self, seq: Seq) -> String {
        match self.ledger.key(seq) {
            Some(key) => self.source.label(&key),
            None => format!("item {seq}"),
        }
    }

    fn add(&self, batch: &mut Batch, summary: &mut Summary, seq: Seq, outcome: Outcome) {
        // A poison message is settled whatever --on-error says.
        let poison = matches!(outcome, Outcome::Poison { .. });
        let abort = self.abort && !poison;
        let (mut record, mut error, bytes) = match outcome {
            Outcome::Done { record, bytes } => (record, None, bytes),
            Outcome::Failed {
                record,
                error,
                bytes,
                ..
            }
            | Outcome::Poison {
                record,
                error,
                bytes,
            } => (record, Some(error), bytes),
            Outcome::Skipped(reason) => {
                // No row, and nothing to retry; the run goes on.
                let label = self.label(seq);
                self.events.warning(&format!("{label}: {reason}"));
                log::item_skipped(&label, false, &reason);
                self.ledger
                    .skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                batch.push(Entry {
                    record: None,
                    seq: Some(seq),
                    ok: false,
                    failed: false,
                    poison: false,
                });
                return;
            }
            Outcome::Abandoned => return,
        };
        summary.bytes += bytes;
        if let Some(refusal) = self.checker.and_then(|check| check(&record)) {
            if refusal.key {
                // No row can hold this item (a path that is not UTF-8 as a
                // Postgres key): it fails without one.
                summary.failed += 1;
                let label = self.label(seq);
                let line = format!("{label}: {}", refusal.reason);
                if abort {
                    self.failure.set(Failure::Item(line));
                    return;
                }
                self.events.warning(&line);
                log::item_skipped(&label, true, &refusal.reason);
                batch.push(Entry {
                    record: None,
                    seq: Some(seq),
                    ok: false,
                    failed: true,
                    poison: false,
                });
                return;
            }
            // As any failed item: a row with the error, and NULL where the
            // sink cannot hold the value (SQLite holds them all).
            for column in &refusal.columns {
                record.values[*column] = Value::Null;
            }
            let message = match error {
                Some(earlier) => format!("{earlier}; {}", refusal.reason),
                None => refusal.reason,
            };
            if let Some(last) = record.values.last_mut() {
                *last = Value::Text(message.clone());
            }
            if abort {
                let line = format!("{}: {message}", self.label(seq));
                self.failure.set(Failure::Item(line));
            }
            error = Some(message);
        }
        let failed = error.is_some();
        match &error {
            Some(error) => {
                summary.failed += 1;
                if !abort {
                    let label = self.label(seq);
                    self.events.warning(&format!("{label}: {error}"));
                    log::item_skipped(&label, true, error);
                }
            }
            None => summary.ok += 1,
        }
        // Fail-fast: the failed item's row says so (an earlier run's row must
        // not look current), but it gets no checkpoint: a resume retries it.
        let checkpointed = !(failed && abort);
        batch.push(Entry {
            record: Some(record),
            seq: checkpointed.then_some(seq),
            ok: !failed,
            failed: failed && checkpointed,
            poison,
        });
    }

    /// Commits what is pending; after the sink failed, drops it.
    fn flush(&mut self, batch: &mut Batch, last: bool) {
        if self.failure.sink_failed() {
            *batch = Batch::default();
            return;
        }
        if self.commit(batch, last).is_err() {
            // The committer's own error is the run's failure already.
            *batch = Batch::default();
        }
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
        batch.held_rows = batch.rows;
        batch.bytes = 0;
        batch.entries = held;
        // Unchanged items the watermark passed need a write of their own
        // (their count goes with the watermark); without checkpoints only
        // the ledger moves on, so the window does not fill up with them.
        if entries.is_empty() && update.cleared.is_empty() {
            if update.unchanged == 0 {
                return Ok(());
            }
            if !self.checkpoint {
                self.ledger.apply(&[], &update);
                return Ok(());
            }
        }
        update.ok = entries.iter().filter(|e| e.ok).count() as u64;
        update.failed = 0;
        for entry in &entries {
            let Some(seq) = entry.seq else { continue };
            match (self.ledger.retried(seq), entry.failed) {
                // An earlier failure, counted already and listed until it
                // passes (or is skipped: gone).
                (Some((key, true)), false) => update.cleared.push(key),
                (Some((_, true)), true) => {}
                (Some((key, false)), true) => {
                    update.failed += 1;
                    update.failures.push(key);
                }
                (None, true) => {
                    update.failed += 1;
                    update.failures.extend(self.ledger.key(seq));
                }
                (_, false) => {}
            }
        }
        if self.acks {
            // Before `apply`, which may let the ledger forget the keys.
            for entry in &entries {
                let Some(key) = entry.seq.and_then(|seq| self.ledger.key(seq)) else {
                    continue;
                };
                match entry.poison {
                    true => update.poison.push(key),
                    false => update.acks.push(key),
                }
            }
        }
        let records: Vec<Record> = entries.iter_mut().filter_map(|e| e.record.take()).collect();
        // The ledger moves on as the batch is queued: if its write fails,
        // no later batch commits, and the run ends failed and resumable.
        self.ledger.apply(&seqs(&entries), &update);
        let encoded = self
            .encoder
            .filter(|_| !records.is_empty())
            .map(|encode| encode(&records));
        self.committer.send(Job {
            records,
            encoded,
            removed: Vec::new(),
            checkpoint: self.checkpoint.then_some(update),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: usize) -> Entry {
        Entry {
            record: Some(Record {
                values: vec![Value::Text("x".repeat(bytes))],
            }),
            seq: None,
            ok: true,
            failed: false,
            poison: false,
        }
    }

    #[test]
    fn a_batch_is_full_at_its_rows_or_at_32_mib() {
        let mut batch = Batch::default();
        for _ in 0..3 {
            batch.push(entry(10));
        }
        assert!(!batch.full(4) && batch.full(3));
        let mut batch = Batch::default();
        for _ in 0..31 {
            batch.push(entry(1 << 20));
        }
        assert!(!batch.full(1_000_000));
        batch.push(entry(1 << 20));
        assert!(batch.full(1_000_000));
    }
}
