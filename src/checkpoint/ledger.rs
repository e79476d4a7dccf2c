//! The ledger: which items of this attempt of a run are dispatched and which
//! are committed, in the order the source yielded them. It plans each batch's
//! checkpoint (the new watermark, and the rows for items committed beyond
//! it) and bounds how far the source may run ahead of the watermark.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
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
}

impl Tracker {
    fn push(&mut self, key: ItemKey, committed: bool) -> Seq {
        self.window.push_back(Entry {
            key,
            committed,
            persisted: committed,
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
                ..Tracker::default()
            }),
            room: Condvar::new(),
            window: window.max(1),
            skipped: AtomicU64::new(0),
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
        self.lock().entry(seq).map(|e| e.key.clone())
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
        for (seq, entry) in (t.base..).zip(&t.window) {
            while next_in_batch.next_if(|s| **s < seq).is_some() {}
            let in_batch = next_in_batch.next_if(|s| **s == seq).is_some();
            if !(entry.committed || in_batch) {
                break;
            }
            watermark = Some(entry.key.clone());
            prefix_end = seq + 1;
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
        while t.window.front().is_some_and(|e| e.committed) {
            t.window.pop_front();
            t.base += 1;
        }
        t.watermark = update.watermark.clone();
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
        cancel.cancel(crate::pool::CancelReason::Interrupted);
        assert!(!ledger.wait_for_room(&cancel));
    }
}
