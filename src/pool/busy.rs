//! When a pool worker counts as busy: while it runs a job, except while the
//! job says through [`waiting`] that it waits for its turn (a rate limit, a
//! slot at a service) rather than works. The supervisor adds a worker only
//! while every worker is busy, so a pool limited by something outside it
//! does not grow: another worker would only wait too.
//!
//! The state is thread-local, set by the worker loop, so that a job can say
//! so from deep inside without a handle passed down to it, and a job that
//! never says so pays nothing for it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use super::gauge::Tally;

thread_local! {
    /// The tally of the run this thread is a worker of.
    static TALLY: RefCell<Option<Arc<Tally>>> = const { RefCell::new(None) };
    /// When the job on this thread started or last resumed working: None
    /// between jobs, while it waits, and on threads that are no workers.
    static SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with the calling pool worker counted as waiting, not working:
/// for the part of a job spent waiting for its turn (a rate limit, a slot
/// at a service), which more workers would not speed up. While `f` runs,
/// the worker is not in [`Gauge::busy`](super::Gauge::busy), its time is not
/// busy time in [`PoolStats`](super::PoolStats), and a dynamic
/// [`Pool`](super::Pool) does not grow for it; it is busy again once `f`
/// returns (or panics). The job still counts in `PoolStats::items`.
///
/// Outside a job of a `Pool` worker, or within `waiting` already, it just
/// runs `f`.
///
/// ```
/// use batchproc::pool::{waiting, Cancel, Pool};
///
/// let pool = Pool::new(1);
/// let gauge = pool.gauge();
/// let (in_tx, in_rx) = crossbeam_channel::unbounded();
/// let (out_tx, out_rx) = crossbeam_channel::unbounded();
/// (1..=3u32).for_each(|n| in_tx.send(n).unwrap());
/// drop(in_tx);
/// let job = |_: &mut (), n: u32| {
///     assert_eq!(gauge.busy(), 1);
///     // Deep inside the job, a rate limiter, say, waits for a turn.
///     let busy_while_waiting = waiting(|| gauge.busy());
///     assert_eq!(gauge.busy(), 1);
///     (n, busy_while_waiting)
/// };
/// let stats = pool.run(in_rx, out_tx, &Cancel::new(), || (), job).unwrap();
/// assert!(out_rx.iter().all(|(_, busy)| busy == 0));
/// assert_eq!((stats.items, stats.peak_busy), (3, 1));
///
/// // Not on a pool worker: it just runs the closure.
/// assert_eq!(waiting(|| 6 * 7), 42);
/// ```
pub fn waiting<R>(f: impl FnOnce() -> R) -> R {
    // None: no job on this thread, or one waiting already.
    let Some(since) = SINCE.take() else {
        return f();
    };
    with_tally(|t| t.stop_busy(since));
    let _resume = Resume;
    f()
}

/// Runs `f` on the tally of the run this thread is a worker of.
fn with_tally(f: impl FnOnce(&Tally)) {
    TALLY.with_borrow(|tally| {
        if let Some(tally) = tally {
            f(tally)
        }
    });
}

/// Counts the worker busy again when `waiting` ends, even by a panic, so
/// that the job's end finds it busy as it left it.
struct Resume;

impl Drop for Resume {
    fn drop(&mut self) {
        with_tally(Tally::start_busy);
        SINCE.set(Some(Instant::now()));
    }
}

/// The worker-thread side of a run's tally, for as long as it is held.
pub(super) struct Worker(Arc<Tally>);

impl Worker {
    pub(super) fn enter(tally: &Arc<Tally>) -> Self {
        TALLY.set(Some(tally.clone()));
        Worker(tally.clone())
    }

    /// Runs one job, the worker busy throughout but while it is `waiting`.
    pub(super) fn run<R>(&self, job: impl FnOnce() -> R) -> R {
        self.0.start_busy();
        SINCE.set(Some(Instant::now()));
        let _done = JobDone(&self.0);
        job()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        TALLY.set(None);
    }
}

/// Counts a job done, even when it panics.
struct JobDone<'a>(&'a Tally);

impl Drop for JobDone<'_> {
    fn drop(&mut self) {
        if let Some(since) = SINCE.take() {
            self.0.stop_busy(since);
        }
        self.0.item_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Cancel, Pool};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[test]
    fn nested_waiting_and_a_panic_while_waiting_leave_the_counts_straight() {
        let pool = Pool::new(1);
        let gauge = pool.gauge();
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        in_tx.send(false).unwrap();
        in_tx.send(true).unwrap();
        drop(in_tx);
        let job = |_: &mut (), panics: bool| {
            let inner = waiting(|| waiting(|| gauge.busy()));
            let after = gauge.busy();
            waiting(|| assert!(!panics, "panic while waiting"));
            (inner, after)
        };
        let run = catch_unwind(AssertUnwindSafe(|| {
            pool.run(in_rx, out_tx, &Cancel::new(), || (), job)
        }));
        assert!(run.is_err(), "the panic was lost");
        assert_eq!(out_rx.iter().collect::<Vec<_>>(), [(0, 1)]);
        assert_eq!((gauge.live(), gauge.busy()), (0, 0));
    }
}
