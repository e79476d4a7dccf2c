//! Counting for the streaming pool: the live [`Gauge`] other threads read,
//! and the per-run tally behind [`PoolStats`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Live view of a pool's workers, readable from any thread while
/// [`Pool::run`](super::Pool::run) runs. Cloning is cheap (an `Arc`).
///
/// ```
/// use batchproc::pool::{Cancel, Pool};
///
/// let pool = Pool::new(2);
/// let gauge = pool.gauge();
/// let (in_tx, in_rx) = crossbeam_channel::bounded(1);
/// let (out_tx, out_rx) = crossbeam_channel::bounded(1);
/// let (started_tx, started_rx) = crossbeam_channel::bounded(0);
/// let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
/// std::thread::scope(|s| {
///     let cancel = Cancel::new();
///     let pool = &pool;
///     s.spawn(move || {
///         pool.run(in_rx, out_tx, &cancel, || (), |_, n: u32| {
///             started_tx.send(()).unwrap();
///             release_rx.recv().unwrap();
///             n + 1
///         })
///     });
///     in_tx.send(41).unwrap();
///     started_rx.recv().unwrap();
///     // One item is being worked on, by one of the (up to) two workers.
///     assert_eq!(gauge.busy(), 1);
///     assert!((1..=2).contains(&gauge.live()));
///     release_tx.send(()).unwrap();
///     assert_eq!(out_rx.recv().unwrap(), 42);
///     drop(in_tx);
/// });
/// assert_eq!((gauge.live(), gauge.busy()), (0, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    live: AtomicUsize,
    busy: AtomicUsize,
}

impl Gauge {
    /// Worker threads alive now.
    ///
    /// ```
    /// use batchproc::pool::Pool;
    ///
    /// let gauge = Pool::new(4).gauge();
    /// assert_eq!(gauge.live(), 0, "threads exist only during a run");
    /// ```
    pub fn live(&self) -> usize {
        self.0.live.load(SeqCst)
    }

    /// Workers running an item now, less those that say they are
    /// [`waiting`](super::waiting). See the example of [`Gauge`].
    ///
    /// ```
    /// use batchproc::pool::Pool;
    ///
    /// assert_eq!(Pool::new(2).gauge().busy(), 0);
    /// ```
    pub fn busy(&self) -> usize {
        self.0.busy.load(SeqCst)
    }
}

/// What a [`Pool::run`](super::Pool::run) did.
///
/// ```
/// use batchproc::pool::{channel, Cancel, Pool};
///
/// let (tx, rx) = channel::unbounded();
/// (0..10u32).for_each(|n| tx.send(n).unwrap());
/// drop(tx);
/// let (out, _results) = channel::unbounded();
/// let stats = Pool::new(2).run(rx, out, &Cancel::new(), || (), |_, n| n).unwrap();
/// assert_eq!(stats.items, 10);
/// assert!(stats.peak_workers <= 2 && stats.peak_busy <= 2);
/// assert!(stats.average_busy <= 2.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolStats {
    /// Most workers running an item at the same moment, not counting those
    /// [`waiting`](super::waiting).
    pub peak_busy: usize,
    /// Total time all workers spent running items, less the time spent
    /// [`waiting`](super::waiting), divided by the wall time of the run:
    /// 2.0 means two workers busy throughout.
    pub average_busy: f64,
    /// Most worker threads alive at the same moment.
    pub peak_workers: usize,
    /// Items run (items dropped unstarted after a cancellation are not
    /// counted).
    pub items: u64,
}

/// Counters of one run, mirrored into the pool's gauge (which other runs of
/// the same pool may share, so decisions use the run's own counts).
pub(super) struct Tally {
    gauge: Gauge,
    live: AtomicUsize,
    busy: AtomicUsize,
    peak_live: AtomicUsize,
    peak_busy: AtomicUsize,
    busy_nanos: AtomicU64,
    items: AtomicU64,
}

impl Tally {
    pub(super) fn new(gauge: Gauge) -> Self {
        Tally {
            gauge,
            live: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            peak_live: AtomicUsize::new(0),
            peak_busy: AtomicUsize::new(0),
            busy_nanos: AtomicU64::new(0),
            items: AtomicU64::new(0),
        }
    }

    pub(super) fn live(&self) -> usize {
        self.live.load(SeqCst)
    }

    pub(super) fn busy(&self) -> usize {
        self.busy.load(SeqCst)
    }

    pub(super) fn enter(&self) {
        let live = self.live.fetch_add(1, SeqCst) + 1;
        self.gauge.0.live.fetch_add(1, SeqCst);
        self.peak_live.fetch_max(live, SeqCst);
    }

    pub(super) fn leave(&self) {
        self.live.fetch_sub(1, SeqCst);
        self.gauge.0.live.fetch_sub(1, SeqCst);
    }

    /// Leaves the count if more than `min` workers are alive, in one step so
    /// that idle workers timing out together cannot all retire.
    pub(super) fn retire(&self, min: usize) -> bool {
        let left = self
            .live
            .fetch_update(SeqCst, SeqCst, |n| (n > min).then(|| n - 1))
            .is_ok();
        if left {
            self.gauge.0.live.fetch_sub(1, SeqCst);
        }
        left
    }

    /// Counts one more worker busy, from now.
    pub(super) fn start_busy(&self) {
        let busy = self.busy.fetch_add(1, SeqCst) + 1;
        self.gauge.0.busy.fetch_add(1, SeqCst);
        self.peak_busy.fetch_max(busy, SeqCst);
    }

    /// Counts a worker busy since `since` busy no more, and adds the time.
    pub(super) fn stop_busy(&self, since: Instant) {
        let nanos = since.elapsed().as_nanos() as u64;
        self.busy_nanos.fetch_add(nanos, SeqCst);
        self.busy.fetch_sub(1, SeqCst);
        self.gauge.0.busy.fetch_sub(1, SeqCst);
    }

    pub(super) fn item_done(&self) {
        self.items.fetch_add(1, SeqCst);
    }

    pub(super) fn stats(&self, wall: Duration) -> PoolStats {
        let wall = wall.as_nanos() as f64;
        let busy = self.busy_nanos.load(SeqCst) as f64;
        PoolStats {
            peak_busy: self.peak_busy.load(SeqCst),
            average_busy: if wall > 0.0 { busy / wall } else { 0.0 },
            peak_workers: self.peak_live.load(SeqCst),
            items: self.items.load(SeqCst),
        }
    }
}
