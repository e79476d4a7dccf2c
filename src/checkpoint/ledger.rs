//! The ledger: which items of this attempt of a run are dispatched and which
//! are committed, in the order the source yielded them. It plans each batch's
//! checkpoint (the new watermark, and the rows for items committed beyond
//! it) and bounds how far the source may run ahead of the watermark.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{CheckpointUpdate, ItemKey, ResumePoint};
use crate::pool::Cancel;

/// An item's place in the source's order within one attempt of a run.
pub(crate) type Seq = u64;

/// An item beyond the watermark, in source order.
#[derive(Debug)]
struct Entry {
    key: ItemKey,
    committed: bool,
    /// Has a checkpoint row (committed beyond the watermark of its time).
    persisted: bool,
    /// Tried again out of source order (see [`Ledger::dispatch_retry`]).
    retry: bool,
    /// Unchanged since an earlier run (`--incremental`): committed as it
    /// is met, with nothing to write; counted when the watermark passes it.
    unchanged: bool,
}

#[derive(Debug, Default)]
struct Tracker {
    /// Items the source has reached and the watermark has not passed, in
    /// the order the source yielded them: `window[i]` has sequence number
    /// `base + i`. Workers and batches name items by that number, so the
    /// per-item bookkeeping is index arithmetic, not key hashing.
    window: VecDeque<Entry>,
    base: Seq,
    /// Checkpoint rows of an earlier attempt the source has not reached yet.
    resumed: HashSet<ItemKey>,
    watermark: Option<ItemKey>,
    /// Earlier failures this attempt retries, until the driver takes them.
    to_retry: Vec<ItemKey>,
    /// Items being retried, by sequence number, and whether each was an
    /// earlier failure (true) or turned up under one (a directory's files).
    retries: HashMap<Seq, (ItemKey, bool)>,
    /// Earlier failures whose item is gone from the source.
    gone: Vec<ItemKey>,
    /// Unchanged items met while nothing was pending: the watermark moved
    /// past them at once, and the next update counts them.
    passed: u64,
}

impl Tracker {
    fn push(&mut self, key: ItemKey, committed: bool) -> Seq {
        self.window.push_back(Entry {
            key,
            committed,
            persisted: committed,
            retry: false,
            unchanged: false,
        });
        self.base + self.window.len() as Seq - 1
    }

    fn entry(&mut self, seq: Seq) -> Option<&mut Entry> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.window.get_mut(index)
    }
}

/// Shared by the source driver (which dispatches) and the batcher (which
/// commits). The watermark follows the order the source yields items in,
/// so the ledger never compares keys for order (a database's collation may
/// order text keys differently from Rust), only for equality.
#[derive(Debug)]
pub(crate) struct Ledger {
    tracker: Mutex<Tracker>,
    room: Condvar,
    window: usize,
    /// Where the run resumes: the source starts after this key.
    start: Option<ItemKey>,
    /// Items met but not processed (not regular files, vanished).
    pub(crate) skipped: AtomicU64,
    /// Items unchanged since an earlier run, passed without a worker.
    pub(crate) unchanged: AtomicU64,
    /// Of the skipped, those quarantined by the poison ledger.
    pub(crate) quarantined: AtomicU64,
}

/// What the source driver should do with an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// Queue it, under this sequence number.
    Go(Seq),
    /// An earlier attempt committed it.
    Done,
    /// The window is full: send what is held back (the watermark may be
    /// waiting for it), wait for room, and dispatch the key again.
    Full(ItemKey),
}

impl Ledger {
    /// A ledger starting from an earlier attempt's resume point; the source
    /// may run at most `window` items ahead of the watermark.
    pub(crate) fn new(point: ResumePoint, window: usize) -> Self {
        Ledger {
            start: point.watermark.clone(),
            tracker: Mutex::new(Tracker {
                resumed: point.done,
                watermark: point.watermark,
                to_retry: point.retry,
                ..Tracker::default()
            }),
            room: Condvar::new(),
            window: window.max(1),
            skipped: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watermark the run resumed from: the source starts after it.
    pub(crate) fn resumed_after(&self) -> Option<&ItemKey> {
        self.start.as_ref()
    }

    /// Checkpoint rows of an earlier attempt not reached yet.
    #[cfg(test)]
    pub(crate) fn resumed_rows(&self) -> usize {
        self.lock().resumed.len()
    }

    /// Registers the source's next item (in source order): done already,
    /// to be queued, or to wait until the window has room. Never blocks.
    pub(crate) fn dispatch(&self, key: ItemKey) -> Dispatch {
        let mut t = self.lock();
        if !t.resumed.is_empty() && t.resumed.remove(&key) {
            t.push(key, true);
            return Dispatch::Done;
        }
        if t.window.len() >= self.window {
            return Dispatch::Full(key);
        }
        Dispatch::Go(t.push(key, false))
    }

    /// Registers an item unchanged since an earlier run (`--incremental`):
    /// nothing to process or write, so it is committed as it is met. While
    /// nothing before it is pending, the watermark moves past it at once
    /// (no entry: a tree of unchanged files never fills the window);
    /// otherwise it waits in the window like any committed item. Either
    /// way it is counted in the update whose watermark passes it, so a
    /// resume after a kill meets it again rather than counting it twice.
    /// An item an earlier attempt committed is `Done`, as in `dispatch`.
    pub(crate) fn pass(&self, key: ItemKey) -> Dispatch {
        let mut t = self.lock();
        if !t.resumed.is_empty() && t.resumed.remove(&key) {
            t.push(key, true);
            return Dispatch::Done;
        }
        if t.window.is_empty() {
            t.watermark = Some(key);
            t.passed += 1;
        } else if t.window.len() >= self.window {
            return Dispatch::Full(key);
        } else {
            t.window.push_back(Entry {
                key,
                committed: true,
                persisted: false,
                retry: false,
                unchanged: true,
            });
        }
        drop(t);
        self.unchanged.fetch_add(1, Ordering::Relaxed);
        Dispatch::Done
    }

    /// The earlier failures to retry, once (for the driver).
    pub(crate) fn take_retries(&self) -> Vec<ItemKey> {
        std::mem::take(&mut self.lock().to_retry)
    }

    /// Registers an item tried again before the source's own order: an
    /// earlier failure (`known`), or an item found under one. It never
    /// holds the watermark back nor gets a checkpoint row (it lies at or
    /// below the watermark, or has a checkpoint row already); what its
    /// commit clears or adds is in `batchproc_failures`.
    pub(crate) fn dispatch_retry(&self, key: ItemKey, known: bool) -> Seq {
        let mut t = self.lock();
        t.window.push_back(Entry {
            key: key.clone(),
            committed: false,
            persisted: false,
            retry: true,
            unchanged: false,
        });
        let seq = t.base + t.window.len() as Seq - 1;
        t.retries.insert(seq, (key, known));
        seq
    }

    /// An earlier failure whose item is no longer in the source: its
    /// failure is cleared with the next batch.
    pub(crate) fn gone(&self, key: ItemKey) {
        self.lock().gone.push(key);
    }

    /// For an item being retried: its key, and whether it was an earlier
    /// failure.
    pub(crate) fn retried(&self, seq: Seq) -> Option<(ItemKey, bool)> {
        self.lock().retries.get(&seq).cloned()
    }

    /// Waits until the window has room; false if the run was cancelled first.
    pub(crate) fn wait_for_room(&self, cancel: &Cancel) -> bool {
        let mut t = self.lock();
        while t.window.len() >= self.window {
            if cancel.is_cancelled() {
                return false;
            }
            t = self
                .room
                .wait_timeout(t, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The key of a dispatched item not yet passed by the watermark, for a
    /// message that names it.
    pub(crate) fn key(&self, seq: Seq) -> Option<ItemKey> {
        let mut t = self.lock();
        if let Some((key, _)) = t.retries.get(&seq) {
            return Some(key.clone());
        }
        t.entry(seq).map(|e| e.key.clone())
    }

    /// Plans the bookkeeping for committing the items `seqs` without
    /// changing the ledger: the batch may yet fail.
    pub(crate) fn plan(&self, seqs: &[Seq]) -> CheckpointUpdate {
        let t = self.lock();
        let mut batch: Vec<Seq> = seqs.to_vec();
        batch.sort_unstable();
        let mut watermark = t.watermark.clone();
        let mut delete = Vec::new();
        // The contiguous prefix: window entries committed before, or in
        // this batch (walked in step with the sorted batch).
        let mut next_in_batch = batch.iter().peekable();
        let mut prefix_end = t.base;
        let mut unchanged = t.passed;
        for (seq, entry) in (t.base..).zip(&t.window) {
            while next_in_batch.next_if(|s| **s < seq).is_some() {}
            let in_batch = next_in_batch.next_if(|s| **s == seq).is_some();
            if entry.retry {
                // Out of source order: passed over, never a watermark.
                prefix_end = seq + 1;
                continue;
            }
            if !(entry.committed || in_batch) {
                break;
            }
            watermark = Some(entry.key.clone());
            prefix_end = seq + 1;
            unchanged += entry.unchanged as u64;
            if entry.persisted {
                delete.push(entry.key.clone());
            }
        }
        let beyond: Vec<Seq> = batch.into_iter().filter(|s| *s >= prefix_end).collect();
        let insert = beyond
            .iter()
            .filter_map(|s| t.window.get((s - t.base) as usize))
            .map(|e| e.key.clone())
            .collect();
        CheckpointUpdate {
            watermark,
            insert,
            delete,
            beyond,
            cleared: t.gone.clone(),
            unchanged,
            upto: prefix_end,
            ..CheckpointUpdate::default()
        }
    }

    /// Records that a planned update of the items `seqs` was committed.
    pub(crate) fn apply(&self, seqs: &[Seq], update: &CheckpointUpdate) {
        let mut t = self.lock();
        for seq in seqs {
            if let Some(entry) = t.entry(*seq) {
                entry.committed = true;
            }
        }
        for seq in &update.beyond {
            if let Some(entry) = t.entry(*seq) {
                entry.persisted = true;
            }
        }
        for seq in seqs {
            t.retries.remove(seq);
        }
        t.gone.retain(|key| !update.cleared.contains(key));
        // The planned prefix goes, no further: an item the driver added
        // since (an unchanged one, one an earlier attempt committed) is
        // counted or deleted by the next plan. Retried items go with the
        // prefix, committed or not: their outcome is followed by `retries`.
        let mut popped_unchanged = 0;
        let mut popped = false;
        while t.base < update.upto && t.window.front().is_some_and(|e| e.committed || e.retry) {
            let entry = t.window.pop_front().expect("checked above");
            popped_unchanged += entry.unchanged as u64;
            popped = true;
            t.base += 1;
        }
        // What the plan counted beyond those entries was passed while
        // nothing was pending; more may have been passed since.
        t.passed = t.passed.saturating_sub(update.unchanged - popped_unchanged);
        // With nothing popped the plan's watermark is the one it started
        // from, and `pass` may have moved past it meanwhile.
        if popped {
            t.watermark = update.watermark.clone();
        }
        drop(t);
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> ItemKey {
        ItemKey::path(0, p)
    }

    fn go(ledger: &Ledger, p: &str) -> Seq {
        match ledger.dispatch(key(p)) {
            Dispatch::Go(seq) => seq,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn watermark_advances_only_over_a_contiguous_prefix() {
        let ledger = Ledger::new(ResumePoint::default(), 100);
        let [s1, s2, s3, s4] = ["d/1", "d/2", "d/3", "d/4"].map(|p| go(&ledger, p));
        // 4 and 2 finish first: no prefix yet, both become checkpoint rows.
        let u = ledger.plan(&[s4, s2]);
        assert_eq!(u.watermark, None);
        assert_eq!(u.insert, [key("d/2"), key("d/4")]);
        ledger.apply(&[s4, s2], &u);
        // 1 finishes: the prefix is 1..2; row for 2 is deleted, 4 stays.
        let u = ledger.plan(&[s1]);
        assert_eq!(u.watermark, Some(key("d/2")));
        assert_eq!(u.delete, [key("d/2")]);
        assert!(u.insert.is_empty());
        ledger.apply(&[s1], &u);
        // 3 finishes: everything dispatched is done, watermark jumps to 4.
        let u = ledger.plan(&[s3]);
        assert_eq!(u.watermark, Some(key("d/4")));
        assert_eq!(u.delete, [key("d/4")]);
        ledger.apply(&[s3], &u);
        // The window is empty again and numbering goes on.
        assert_eq!(go(&ledger, "d/5"), s4 + 1);
    }

    #[test]
    fn a_batch_spanning_the_prefix_and_beyond_splits() {
        let ledger = Ledger::new(ResumePoint::default(), 100);
        let seqs = ["d/1", "d/2", "d/3", "d/4", "d/5"].map(|p| go(&ledger, p));
        // 1, 2 and 5 commit together while 3 and 4 are in flight.
        let batch = [seqs[4], seqs[0], seqs[1]];
        let u = ledger.plan(&batch);
        assert_eq!(u.watermark, Some(key("d/2")));
        assert_eq!(u.insert, [key("d/5")]);
        assert_eq!(u.beyond, [seqs[4]]);
        assert!(u.delete.is_empty());
        ledger.apply(&batch, &u);
        let u = ledger.plan(&[seqs[3], seqs[2]]);
        assert_eq!(u.watermark, Some(key("d/5")));
        assert_eq!(u.delete, [key("d/5")]);
        assert!(u.insert.is_empty());
    }

    #[test]
    fn resumed_rows_are_skipped_and_cleared_once_passed() {
        // An earlier attempt committed d/2 and d/9 beyond its watermark d/1.
        let point = ResumePoint {
            watermark: Some(key("d/1")),
            done: [key("d/2"), key("d/9")].into(),
            retry: Vec::new(),
        };
        let ledger = Ledger::new(point, 100);
        assert_eq!(ledger.resumed_after(), Some(&key("d/1")));
        assert_eq!(ledger.dispatch(key("d/2")), Dispatch::Done);
        let s3 = go(&ledger, "d/3");
        // d/3 commits: the watermark passes d/2, whose row goes; d/9 has
        // not been reached, so its row stays and it is still skipped later.
        let u = ledger.plan(&[s3]);
        assert_eq!(u.watermark, Some(key("d/3")));
        assert_eq!(u.delete, [key("d/2")]);
        ledger.apply(&[s3], &u);
        assert_eq!(ledger.resumed_rows(), 1);
        assert_eq!(ledger.dispatch(key("d/9")), Dispatch::Done);
    }

    #[test]
    fn retried_items_never_hold_the_watermark_nor_get_checkpoint_rows() {
        let point = ResumePoint {
            watermark: Some(key("d/5")),
            retry: vec![key("d/2")],
            ..ResumePoint::default()
        };
        let ledger = Ledger::new(point, 100);
        assert_eq!(ledger.take_retries(), [key("d/2")]);
        let again = ledger.dispatch_retry(key("d/2"), true);
        let s6 = go(&ledger, "d/6");
        // d/6 commits while d/2's retry is in flight: the watermark moves.
        let u = ledger.plan(&[s6]);
        assert_eq!(u.watermark, Some(key("d/6")));
        assert!(u.insert.is_empty());
        ledger.apply(&[s6], &u);
        // The retry commits later: no watermark of its own, no row; it is
        // still named by its key.
        assert_eq!(ledger.retried(again), Some((key("d/2"), true)));
        assert_eq!(ledger.key(again), Some(key("d/2")));
        let u = ledger.plan(&[again]);
        assert_eq!(u.watermark, Some(key("d/6")));
        assert!(u.insert.is_empty() && u.beyond.is_empty());
        ledger.apply(&[again], &u);
        assert_eq!(ledger.retried(again), None);
        // A failure whose item is gone is cleared with the next batch.
        ledger.gone(key("d/3"));
        let s7 = go(&ledger, "d/7");
        let u = ledger.plan(&[s7]);
        assert_eq!(u.cleared, [key("d/3")]);
        ledger.apply(&[s7], &u);
        assert!(ledger.plan(&[]).cleared.is_empty());
    }

    #[test]
    fn unchanged_items_are_counted_once_by_the_update_whose_watermark_passes_them() {
        let point = ResumePoint {
            watermark: None,
            done: [key("d/5")].into(),
            retry: Vec::new(),
        };
        let ledger = Ledger::new(point, 100);
        // Nothing pending: passed at once, no entry.
        assert_eq!(ledger.pass(key("d/1")), Dispatch::Done);
        let s2 = go(&ledger, "d/2");
        // Behind d/2 in flight: waits in the window.
        assert_eq!(ledger.pass(key("d/3")), Dispatch::Done);
        let u = ledger.plan(&[]);
        assert_eq!((u.watermark.clone(), u.unchanged), (Some(key("d/1")), 1));
        ledger.apply(&[], &u);
        // Planned, then more met before the apply: left for the next plan.
        let u = ledger.plan(&[s2]);
        assert_eq!((u.watermark.clone(), u.unchanged), (Some(key("d/3")), 1));
        ledger.pass(key("d/4"));
        ledger.apply(&[s2], &u);
        let u = ledger.plan(&[]);
        assert_eq!((u.watermark.clone(), u.unchanged), (Some(key("d/4")), 1));
        ledger.apply(&[], &u);
        // An item an earlier attempt committed is not counted unchanged.
        assert_eq!(ledger.pass(key("d/5")), Dispatch::Done);
        let u = ledger.plan(&[]);
        assert_eq!(
            (u.watermark, u.unchanged, u.delete),
            (Some(key("d/5")), 0, vec![key("d/5")])
        );
        assert_eq!(ledger.unchanged.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_window_holds_the_source_back_until_the_watermark_moves() {
        let ledger = Ledger::new(ResumePoint::default(), 2);
        let s1 = go(&ledger, "d/1");
        go(&ledger, "d/2");
        assert_eq!(ledger.dispatch(key("d/3")), Dispatch::Full(key("d/3")));
        let cancel = Cancel::new();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| ledger.wait_for_room(&cancel));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiting.is_finished(), "the window of 2 let a third in");
            let u = ledger.plan(&[s1]);
            ledger.apply(&[s1], &u);
            assert!(waiting.join().unwrap());
        });
        assert_eq!(ledger.dispatch(key("d/3")), Dispatch::Go(2));
        // Checkpointed items fill the window too: a cancel ends the wait.
        let cancel = Cancel::new();
        cancel.cancel_with(crate::pool::CancelReason::Interrupted);
        assert!(!ledger.wait_for_room(&cancel));
    }
}
