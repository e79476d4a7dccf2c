//! The source driver: what every source shares. Two threads per run:
//!
//! - the *reader* pulls items from the source (walking, fetching pages),
//!   in groups, into a small bounded channel, so the next page or directory
//!   is read while the items before it are handed out;
//! - the *dispatcher* registers each item with the checkpoint [`Ledger`]
//!   (which numbers it, skips what an earlier attempt committed, and holds
//!   the source back when it runs too far ahead of the watermark), and
//!   hands items to the worker pool's bounded queue in chunks.
//!
//! A chunk is as long as [`Pace`] says: one item while items are slow (so
//! every worker gets one: ten 300 ms commands on four workers take 0.9 s,
//! not 3 s), up to [`MAX_CHUNK`] while they are cheap (so a worker is not
//! woken for every row). A partial chunk goes out as soon as the reader has
//! nothing ready, so a slow source never keeps items from idle workers.
//!
//! A chunk is shared, not owned: it is queued once per worker that may take
//! from it (up to the pool's size), and whoever holds it takes its items one
//! at a time. So an item that turns out slow holds up only the worker it is
//! on; the rest of its chunk goes on with the others.
//!
//! Both threads stop at the run's [`Cutoff`] (which a cancel passes too)
//! and note there whether they left items unstarted.
//!
//! With `--shard I/N`, the reader passes on only the [`Shard`]'s items (and
//! a resume retries only its own): other shards' items are never
//! numbered, queued or checkpointed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};

use super::cutoff::Cutoff;
use super::shard::Shard;
use super::{Found, Source};
use crate::checkpoint::{Dispatch, Ledger, Seq};

/// The most items handed to a worker at once.
pub(crate) const MAX_CHUNK: usize = 128;
/// Items per group from the reader to the dispatcher.
const GROUP: usize = 256;
/// Groups the reader may be ahead of the dispatcher.
const READ_AHEAD: usize = 4;
/// A group, and a chunk, also end at this many bytes of item data (rows
/// of a query can be large): what the read-ahead and the pool's queue hold
/// is bounded in bytes too.
const GROUP_BYTES: u64 = 1 << 20;
/// About how long a chunk should keep a worker busy: long enough that
/// waking a worker (a few µs) is noise, short enough that the last chunks
/// of a run are shared out among the workers.
const CHUNK_TIME: Duration = Duration::from_micros(200);

/// Items for the workers, each with its sequence number, taken one at a
/// time by whichever worker holds a handle on the chunk.
pub(crate) struct Chunk<T> {
    items: Mutex<VecDeque<(Seq, T)>>,
}

impl<T> Chunk<T> {
    fn new(items: VecDeque<(Seq, T)>) -> Self {
        Chunk {
            items: Mutex::new(items),
        }
    }

    /// The next item nobody has taken yet.
    pub(crate) fn take(&self) -> Option<(Seq, T)> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// What the worker pool's queue carries: a handle on a chunk.
pub(crate) type Handle<T> = Arc<Chunk<T>>;

/// What an item costs a worker, measured as the run goes: sets the chunk length.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Nanoseconds per item, a moving average; 0 until the first chunk is done.
    nanos_per_item: AtomicU64,
}

impl Pace {
    /// Items per chunk now: 1 until a cost is known.
    pub(crate) fn chunk_len(&self) -> usize {
        match self.nanos_per_item.load(Ordering::Relaxed) {
            0 => 1,
            nanos => (CHUNK_TIME.as_nanos() as u64 / nanos).clamp(1, MAX_CHUNK as u64) as usize,
        }
    }

    /// A worker took `took` for `items` items.
    pub(crate) fn record(&self, items: usize, took: Duration) {
        if items == 0 {
            return;
        }
        let sample = (took.as_nanos() as u64 / items as u64).max(1);
        // Races between workers lose a sample at worst.
        let old = self.nanos_per_item.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 3 + sample) / 4
        };
        self.nanos_per_item.store(new.max(1), Ordering::Relaxed);
    }
}

/// Where the dispatcher puts chunks: the pool's queue, and how many
/// workers may share a chunk (the pool's largest size).
pub(crate) struct Queue<T> {
    pub(crate) sender: Sender<Handle<T>>,
    pub(crate) sharers: usize,
}

impl<T> Queue<T> {
    /// Queues `items` as one chunk, a handle per worker that may share it;
    /// false once the queue is closed.
    fn send(&self, items: VecDeque<(Seq, T)>) -> bool {
        let handles = items.len().min(self.sharers).max(1);
        let chunk = Arc::new(Chunk::new(items));
        (0..handles).all(|_| self.sender.send(chunk.clone()).is_ok())
    }
}

/// Runs the reader and the dispatcher (on this thread and one more) until
/// the source is exhausted, the queue closes or the cutoff passes. An
/// error from the source is returned; the items before it were handed out.
/// With a `shard`, only its items are handed out.
pub(crate) fn drive<S: Source>(
    source: &S,
    shard: Option<&Shard>,
    ledger: &Ledger,
    queue: Queue<S::Item>,
    pace: &Pace,
    cutoff: &Cutoff,
) -> Result<()> {
    if !retry(source, shard, ledger, &queue, pace, cutoff)? {
        return Ok(());
    }
    let (groups_tx, groups) = bounded(READ_AHEAD);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read(source, shard, ledger, groups_tx, cutoff));
        dispatch::<S>(groups, ledger, queue, pace, cutoff);
        reader.join().expect("the source reader panicked")
    })
}

/// Hands out the earlier failures a resume retries, before the source's
/// own items; false once the queue is closed or the cutoff passed.
fn retry<S: Source>(
    source: &S,
    shard: Option<&Shard>,
    ledger: &Ledger,
    queue: &Queue<S::Item>,
    pace: &Pace,
    cutoff: &Cutoff,
) -> Result<bool> {
    let keys = ledger.take_retries();
    if keys.is_empty() {
        return Ok(true);
    }
    let mut chunk = VecDeque::new();
    for again in source.again(keys, ledger.resumed_after())? {
        if shard.is_some_and(|shard| !shard.keeps_again(&again)) {
            continue;
        }
        if cutoff.passed() {
            // Still listed as failures: the next resume retries them.
            cutoff.hold_back();
            return Ok(false);
        }
        match again.item {
            Some(item) => chunk.push_back((ledger.dispatch_retry(again.key, again.known), item)),
            None => ledger.gone(again.key),
        }
        if chunk.len() >= pace.chunk_len() && !queue.send(std::mem::take(&mut chunk)) {
            return Ok(false);
        }
    }
    Ok(chunk.is_empty() || queue.send(chunk))
}

/// The reader: the source's items (the shard's), in groups.
fn read<S: Source>(
    source: &S,
    shard: Option<&Shard>,
    ledger: &Ledger,
    groups: Sender<Vec<Found<S::Item>>>,
    cutoff: &Cutoff,
) -> Result<()> {
    let mut group = Vec::with_capacity(GROUP);
    let mut bytes = 0;
    for found in source.items(ledger.resumed_after())? {
        // Before the cutoff: only this shard's items are left unstarted.
        if let (Some(shard), Ok(found)) = (shard, &found) {
            if !shard.keeps::<S>(found) {
                continue;
            }
        }
        if cutoff.passed() {
            cutoff.hold_back();
            return Ok(());
        }
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                // What came before the error is still handed out.
                let _ = groups.send(group);
                return Err(e);
            }
        };
        if let Found::Wait = found {
            // The source is about to wait: what it found goes out now.
            if !group.is_empty() {
                bytes = 0;
                let ready = std::mem::replace(&mut group, Vec::with_capacity(GROUP));
                if groups.send(ready).is_err() {
                    return Ok(());
                }
            }
            continue;
        }
        if let Found::Item(_, item) = &found {
            bytes += S::item_size(item);
        }
        group.push(found);
        if group.len() == GROUP || bytes >= GROUP_BYTES {
            bytes = 0;
            let full = std::mem::replace(&mut group, Vec::with_capacity(GROUP));
            if groups.send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !group.is_empty() {
        let _ = groups.send(group);
    }
    Ok(())
}

/// The dispatcher: numbers items through the ledger and queues them in chunks.
fn dispatch<S: Source>(
    groups: Receiver<Vec<Found<S::Item>>>,
    ledger: &Ledger,
    queue: Queue<S::Item>,
    pace: &Pace,
    cutoff: &Cutoff,
) {
    let mut chunk = VecDeque::new();
    let mut bytes = 0;
    loop {
        let group = match groups.try_recv() {
            Ok(group) => group,
            Err(TryRecvError::Empty) => {
                // The reader has nothing ready: the workers need not wait
                // for the rest of a chunk.
                if !chunk.is_empty() && !queue.send(take(&mut chunk, &mut bytes)) {
                    return;
                }
                match groups.recv() {
                    Ok(group) => group,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        for found in group {
            let (mut key, item) = match found {
                Found::Item(key, item) => (key, Some(item)),
                // Nothing to process: registered, never queued.
                Found::Unchanged(key) => (key, None),
                Found::Wait => continue,
                Found::Skipped(_) => {
                    ledger.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Like a skipped item: no row written, nothing to commit,
                // so nothing for the watermark to wait for.
                Found::Quarantined(q) => {
                    ledger.skipped.fetch_add(1, Ordering::Relaxed);
                    ledger.quarantined.fetch_add(1, Ordering::Relaxed);
                    crate::pipeline::log::item_quarantined(
                        &q.key.to_string(),
                        q.failures,
                        &q.error,
                    );
                    continue;
                }
            };
            // For every item, not every chunk: the reader may have many
            // ready, and none may start after the cutoff. The chunk in
            // hand is dropped unstarted, as the pool drops its queue.
            if cutoff.passed() {
                cutoff.hold_back();
                return;
            }
            let seq = loop {
                let dispatched = match item {
                    Some(_) => ledger.dispatch(key),
                    None => ledger.pass(key),
                };
                match dispatched {
                    Dispatch::Go(seq) => break Some(seq),
                    Dispatch::Done => break None,
                    Dispatch::Full(back) => {
                        // The watermark may be waiting for what is held back.
                        if !chunk.is_empty() && !queue.send(take(&mut chunk, &mut bytes)) {
                            return;
                        }
                        if !ledger.wait_for_room(cutoff.token()) {
                            cutoff.hold_back();
                            return;
                        }
                        key = back;
                    }
                }
            };
            if let (Some(seq), Some(item)) = (seq, item) {
                bytes += S::item_size(&item);
                chunk.push_back((seq, item));
            }
            let full = chunk.len() >= pace.chunk_len() || bytes >= GROUP_BYTES;
            if full && !queue.send(take(&mut chunk, &mut bytes)) {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        queue.send(chunk);
    }
}

/// The chunk gathered so far, to be sent; the count of its bytes restarts.
fn take<T>(chunk: &mut VecDeque<(Seq, T)>, bytes: &mut u64) -> VecDeque<(Seq, T)> {
    *bytes = 0;
    std::mem::take(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    use crate::checkpoint::{Fingerprint, ItemKey, ResumePoint};
    use crate::pool::Cancel;
    use crate::source::shard::of;
    use crate::source::Items;

    /// The numbers `0..n`, keyed by themselves.
    struct Numbers(i64);

    impl Source for Numbers {
        type Item = i64;

        fn items(&self, after: Option<&ItemKey>) -> Result<Items<'_, i64>> {
            let from = match after {
                Some(ItemKey::Int(i)) => i + 1,
                _ => 0,
            };
            Ok(Box::new(
                (from..self.0).map(|i| Ok(Found::Item(ItemKey::Int(i), i))),
            ))
        }

        fn again(
            &self,
            keys: Vec<ItemKey>,
            _after: Option<&ItemKey>,
        ) -> Result<Vec<crate::source::Again<i64>>> {
            Ok(crate::source::Again::each(keys, |key| match key {
                ItemKey::Int(i) => (0..self.0).contains(i).then_some(*i),
                _ => None,
            }))
        }

        fn label(&self, key: &ItemKey) -> String {
            key.to_string()
        }

        fn fingerprint(&self, _: &mut Fingerprint) {}
    }

    /// The chunks queued for one worker, as lists of items.
    fn run(source: Numbers, point: ResumePoint, pace: &Pace) -> Vec<Vec<(Seq, i64)>> {
        let ledger = Ledger::new(point, 100_000);
        let (sender, rx) = bounded(1_000_000);
        let queue = Queue { sender, sharers: 1 };
        drive(
            &source,
            None,
            &ledger,
            queue,
            pace,
            &Cutoff::new(&Cancel::new()),
        )
        .unwrap();
        rx.iter()
            .map(|chunk| std::iter::from_fn(|| chunk.take()).collect())
            .collect()
    }

    #[test]
    fn every_item_is_handed_out_once_in_order_with_its_number() {
        let chunks = run(Numbers(10_000), ResumePoint::default(), &Pace::default());
        let items: Vec<(Seq, i64)> = chunks.into_iter().flatten().collect();
        let expected: Vec<(Seq, i64)> = (0..10_000).map(|i| (i as Seq, i)).collect();
        assert_eq!(items, expected);
    }

    #[test]
    fn a_resume_starts_after_the_watermark_and_skips_checkpointed_items() {
        let point = ResumePoint {
            watermark: Some(ItemKey::Int(4)),
            done: [ItemKey::Int(6)].into(),
            retry: Vec::new(),
        };
        let chunks = run(Numbers(9), point, &Pace::default());
        let items: Vec<i64> = chunks.into_iter().flatten().map(|(_, i)| i).collect();
        assert_eq!(items, [5, 7, 8]);
    }

    #[test]
    fn earlier_failures_are_handed_out_first_and_gone_ones_left_out() {
        let point = ResumePoint {
            watermark: Some(ItemKey::Int(4)),
            done: [ItemKey::Int(6)].into(),
            retry: [1, 6, 42].map(ItemKey::Int).into(),
        };
        let chunks = run(Numbers(9), point, &Pace::default());
        let items: Vec<i64> = chunks.into_iter().flatten().map(|(_, i)| i).collect();
        assert_eq!(items, [1, 6, 5, 7, 8]);
    }

    #[test]
    fn a_shard_is_handed_only_its_own_items_and_retries() {
        let shard = Shard::new(2, 3).unwrap();
        let point = ResumePoint {
            watermark: Some(ItemKey::Int(4)),
            done: HashSet::new(),
            // Earlier failures are this shard's own, whatever the hash says.
            retry: [1, 3].map(ItemKey::Int).into(),
        };
        let ledger = Ledger::new(point, 100_000);
        let (sender, rx) = bounded(100_000);
        let queue = Queue { sender, sharers: 1 };
        let cutoff = Cutoff::new(&Cancel::new());
        let source = Numbers(1000);
        drive(
            &source,
            Some(&shard),
            &ledger,
            queue,
            &Pace::default(),
            &cutoff,
        )
        .unwrap();
        let items: Vec<i64> = rx
            .try_iter()
            .flat_map(|chunk| std::iter::from_fn(move || chunk.take()))
            .map(|(_, i)| i)
            .collect();
        let mut expected = vec![1, 3];
        // The shard by the digest of the decimal text, as written down.
        expected.extend((5..1000).filter(|i| of(i.to_string().as_bytes(), 3) == 2));
        assert_eq!(items, expected);
        assert!(
            expected.len() > 250 && expected.len() < 420,
            "{}",
            expected.len()
        );
    }

    #[test]
    fn cheap_items_travel_in_long_chunks_and_slow_ones_alone() {
        let cheap = Pace::default();
        cheap.record(1000, Duration::from_micros(100));
        assert_eq!(cheap.chunk_len(), MAX_CHUNK);
        let slow = Pace::default();
        slow.record(1, Duration::from_millis(300));
        assert_eq!(slow.chunk_len(), 1);
        assert_eq!(Pace::default().chunk_len(), 1);
        let chunks = run(Numbers(100_000), ResumePoint::default(), &cheap);
        assert!(chunks.iter().all(|c| c.len() <= MAX_CHUNK));
        // The reader outpaces nothing here, so most chunks are full.
        assert!(chunks.len() < 100_000 / 8, "{} chunks", chunks.len());
        let chunks = run(Numbers(1000), ResumePoint::default(), &slow);
        assert_eq!(chunks.len(), 1000);
    }

    /// Items an earlier attempt committed fill the window without reaching
    /// a worker; the driver must send what it holds back before it waits.
    #[test]
    fn a_window_full_of_checkpointed_items_does_not_stall_the_driver() {
        let point = ResumePoint {
            watermark: None,
            done: (1..=20).map(ItemKey::Int).collect(),
            retry: Vec::new(),
        };
        let ledger = Ledger::new(point, 8);
        let pace = Pace::default();
        pace.record(1000, Duration::from_micros(10));
        let (sender, handles) = bounded(1000);
        let queue = Queue { sender, sharers: 1 };
        let (done_tx, done) = bounded(1);
        let cancel = Cancel::new();
        let cutoff = Cutoff::new(&cancel);
        std::thread::scope(|s| {
            let (ledger, cutoff) = (&ledger, &cutoff);
            s.spawn(move || {
                drive(&Numbers(30), None, ledger, queue, &pace, cutoff).unwrap();
                let _ = done_tx.send(());
            });
            // A worker and a batcher in one: every item is committed at once.
            s.spawn(move || {
                for handle in handles {
                    while let Some((seq, _)) = handle.take() {
                        let update = ledger.plan(&[seq]);
                        ledger.apply(&[seq], &update);
                    }
                }
            });
            let finished = done.recv_timeout(Duration::from_secs(20));
            // Stop a stalled driver, so the failure is reported, not a hang.
            cancel.cancel_with(crate::pool::CancelReason::Interrupted);
            assert!(finished.is_ok(), "the driver stalled");
        });
    }

    /// Past the cutoff nothing more is numbered, and the driver says it
    /// held items back, also from a wait for room in the window (which
    /// only finished items could end); a source with nothing left held
    /// nothing back.
    #[test]
    fn a_passed_cutoff_stops_the_driver_and_says_whether_it_held_back() {
        // Drives `n` items past a passed cutoff: how many were queued, and
        // whether the driver says it held any back.
        let past_cutoff = |n| {
            let cutoff = Cutoff::new(&Cancel::new());
            cutoff.arm(Duration::ZERO, &Cancel::new());
            let ledger = Ledger::new(ResumePoint::default(), 100_000);
            let (sender, rx) = bounded(1000);
            let queue = Queue { sender, sharers: 1 };
            drive(&Numbers(n), None, &ledger, queue, &Pace::default(), &cutoff).unwrap();
            (rx.try_iter().count(), cutoff.held_back())
        };
        assert_eq!(past_cutoff(50), (0, true));
        assert_eq!(past_cutoff(0), (0, false), "nothing was left");

        // Nothing commits, so the window of 4 fills and the driver waits.
        let ledger = Ledger::new(ResumePoint::default(), 4);
        let (sender, rx) = bounded(1000);
        let cutoff = Cutoff::new(&Cancel::new());
        std::thread::scope(|s| {
            let (ledger, cutoff) = (&ledger, &cutoff);
            s.spawn(move || {
                let queue = Queue { sender, sharers: 1 };
                drive(&Numbers(30), None, ledger, queue, &Pace::default(), cutoff).unwrap()
            });
            // Every item the window lets through is out before the cutoff.
            for _ in 0..4 {
                rx.recv_timeout(Duration::from_secs(20)).unwrap();
            }
            cutoff.arm(Duration::ZERO, &Cancel::new());
        });
        assert!(cutoff.held_back());
    }

    #[test]
    fn a_chunk_is_shared_by_as_many_workers_as_it_has_items() {
        let (sender, rx) = bounded(16);
        let queue = Queue { sender, sharers: 4 };
        assert!(queue.send((0..3).map(|i| (i, i)).collect()));
        assert!(queue.send((3..13).map(|i| (i, i)).collect()));
        let handles: Vec<Handle<u64>> = rx.try_iter().collect();
        // Three handles on the first chunk, four on the second.
        assert_eq!(handles.len(), 7);
        // One worker stuck on item 3 holds up nothing: another takes 4.
        assert_eq!(handles[3].take(), Some((3, 3)));
        assert_eq!(handles[4].take(), Some((4, 4)));
        let rest: Vec<u64> = std::iter::from_fn(|| handles[6].take())
            .map(|(s, _)| s)
            .collect();
        assert_eq!(rest, (5..13).collect::<Vec<_>>());
        assert_eq!(handles[5].take(), None);
    }
}
