//! The streaming pool: worker threads over one bounded input channel,
//! results out in completion order, sized between a minimum and a maximum by
//! the backlog.
//!
//! The thread that calls [`Pool::run`] supervises: it adds a worker once the
//! input queue has stayed non-empty, with every worker busy, for
//! `grow_after`, and otherwise waits for workers to exit. A worker idle or
//! [`waiting`](super::waiting) is not busy: an idle one is about to take from
//! the backlog, and a waiting one shows that more workers would only wait
//! too. Workers retire themselves after `idle_timeout` without an item while
//! more than the minimum are alive. A fixed pool (`min == max`) has no
//! timers at all, nor does a dynamic one at its maximum.
//!
//! Workers wait on the input and on the run's token at once, so a cancel
//! ends every idle or blocked worker at the moment it happens, and the run
//! returns (dropping the input) without waiting for the producer.

use std::io;
use std::panic;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::gauge::Tally;
use super::panics::Brake;
use super::stream::MAX_WORKERS;
use super::{Cancel, Gauge, PoolStats};
use workers::Shared;

/// Long enough that a producer's momentary lead does not add threads,
/// short enough that a real backlog is met within a few items.
const DEFAULT_GROW_AFTER: Duration = Duration::from_millis(20);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Short enough that a cancelled run ends well within 100 ms when nobody
/// reads its output; long enough for a reader that is only a little behind.
const DEFAULT_GRACE: Duration = Duration::from_millis(20);
/// How long a worker waits on its input or output alone before it waits on
/// the run's token as well; also the longest a cancel can go unnoticed by
/// a waiting worker.
const QUICK_WAIT: Duration = Duration::from_millis(1);
/// Timers shorter than this would make waiting threads spin.
const MIN_TIMER: Duration = Duration::from_millis(1);

/// A pool of worker threads, fixed ([`Pool::new`]) or sized by the backlog
/// ([`Pool::dynamic`]). Threads exist only during [`Pool::run`].
#[derive(Debug)]
pub struct Pool {
    min: usize,
    max: usize,
    grow_after: Duration,
    idle_timeout: Duration,
    grace: Duration,
    gauge: Gauge,
}

impl Pool {
    /// A pool of exactly `workers` threads (at least one): the same as
    /// `Pool::dynamic(workers, workers)`.
    ///
    /// ```
    /// use batchproc::pool::Pool;
    ///
    /// let pool = Pool::new(8);
    /// assert_eq!((pool.min_workers(), pool.workers()), (8, 8));
    /// assert_eq!(Pool::new(0).workers(), 1);
    /// ```
    pub fn new(workers: usize) -> Self {
        Self::dynamic(workers, workers)
    }

    /// A pool that starts `min` workers and grows to at most `max` while a
    /// backlog persists with every worker busy (see [`Pool::grow_after`]),
    /// then shrinks back to `min` as workers find nothing to do (see
    /// [`Pool::idle_timeout`]).
    /// `min` is raised to 1 and `max` to `min` if smaller; neither goes
    /// above 4096.
    ///
    /// ```
    /// use std::time::Duration;
    /// use batchproc::pool::{Cancel, Pool};
    ///
    /// let pool = Pool::dynamic(1, 4)
    ///     .grow_after(Duration::from_millis(5))
    ///     .idle_timeout(Duration::from_millis(100));
    /// let (in_tx, in_rx) = crossbeam_channel::unbounded();
    /// let (out_tx, out_rx) = crossbeam_channel::unbounded();
    /// // 100 items of 5 ms are half a second for one worker: a backlog.
    /// (0..100).for_each(|n| in_tx.send(n).unwrap());
    /// drop(in_tx);
    /// let stats = pool
    ///     .run(in_rx, out_tx, &Cancel::new(), || (), |_, n: u64| {
    ///         std::thread::sleep(Duration::from_millis(5));
    ///         n
    ///     })
    ///     .unwrap();
    /// assert_eq!(out_rx.iter().sum::<u64>(), 4950);
    /// assert!(stats.peak_workers > 1 && stats.peak_workers <= 4);
    /// ```
    pub fn dynamic(min: usize, max: usize) -> Self {
        let min = min.clamp(1, MAX_WORKERS);
        Pool {
            min,
            max: max.clamp(min, MAX_WORKERS),
            grow_after: DEFAULT_GROW_AFTER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            grace: DEFAULT_GRACE,
            gauge: Gauge::default(),
        }
    }

    /// How long the input queue must stay non-empty, with every worker busy
    /// (none idle, none [`waiting`](super::waiting)), before one more worker
    /// is added (default 20 ms). The queue is sampled every half of this, so
    /// growth is one worker per `grow_after` of backlog at most.
    ///
    /// ```
    /// use std::time::Duration;
    /// use batchproc::pool::Pool;
    ///
    /// // Quick to add workers, slow to let them go.
    /// let pool = Pool::dynamic(2, 16)
    ///     .grow_after(Duration::from_millis(5))
    ///     .idle_timeout(Duration::from_secs(30));
    /// assert_eq!(pool.workers(), 16);
    /// ```
    pub fn grow_after(mut self, after: Duration) -> Self {
        self.grow_after = after.max(MIN_TIMER);
        self
    }

    /// How long a worker waits for an item before retiring, when more than
    /// `min` workers are alive (default 1 s). See [`Pool::grow_after`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use batchproc::pool::Pool;
    ///
    /// let pool = Pool::dynamic(1, 4).idle_timeout(Duration::from_millis(200));
    /// assert_eq!(pool.min_workers(), 1);
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(MIN_TIMER);
        self
    }

    /// After a cancel, how long a worker holding a finished result waits for
    /// room in the output before it drops the result and ends (default
    /// 20 ms). A consumer that reads to the end, as the command-line tool's
    /// sink does, can make it `Duration::MAX` so that nothing finished is
    /// lost; the default lets a run end at once when nobody reads.
    ///
    /// ```
    /// use std::time::Duration;
    /// use batchproc::pool::Pool;
    ///
    /// let pool = Pool::new(4).grace(Duration::MAX);
    /// assert_eq!(pool.workers(), 4);
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The maximum number of workers (the number, for [`Pool::new`]).
    ///
    /// ```
    /// assert_eq!(batchproc::pool::Pool::dynamic(2, 6).workers(), 6);
    /// ```
    pub fn workers(&self) -> usize {
        self.max
    }

    /// The number of workers a run starts with and never goes below.
    ///
    /// ```
    /// assert_eq!(batchproc::pool::Pool::dynamic(2, 6).min_workers(), 2);
    /// ```
    pub fn min_workers(&self) -> usize {
        self.min
    }

    /// A live view of this pool's workers (see [`Gauge`]). Runs of the same
    /// pool on several threads at once add up in it.
    ///
    /// ```
    /// use batchproc::pool::Pool;
    ///
    /// let pool = Pool::new(3);
    /// let gauge = pool.gauge();
    /// // Read from another thread while `pool.run` works: see `Gauge`.
    /// assert_eq!((gauge.live(), gauge.busy()), (0, 0));
    /// ```
    pub fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }

    /// Runs `work` on every item of `input` and sends each result to
    /// `output`, in completion order. Each worker builds its own state with
    /// `init` (a read buffer, say). Returns when `input` is closed and
    /// drained, or `output` is closed; `input` and `output` are dropped on
    /// return. For results in input order, feed the items to
    /// [`try_for_each_ordered`](super::try_for_each_ordered) instead (a
    /// `Receiver` is an iterator: `input.into_iter()`), as the last example
    /// shows.
    ///
    /// Once `cancel` fires, no new item starts and the run returns as soon
    /// as the items in flight finish, dropping `input`: a producer's next
    /// send fails, and one blocked on a full queue wakes up, so an endless
    /// producer ends too. A job that takes long can watch the same token
    /// (capture it) to stop early. A result finished after the cancel waits
    /// for room in `output` for at most [`Pool::grace`].
    ///
    /// A panic in `init` or `work` stops the run the same way: no new item
    /// starts, and the panic is resumed on the calling thread with its own
    /// payload once the other workers have ended.
    ///
    /// Inside a tokio runtime, the workers enter it, so jobs may use
    /// `tokio::runtime::Handle::current()`.
    ///
    /// Fails only if not even the first worker thread can be spawned (then
    /// `input` is dropped unread); failing to spawn more just stops growth.
    ///
    /// ```
    /// use batchproc::pool::{Cancel, Pool};
    ///
    /// let (in_tx, in_rx) = crossbeam_channel::bounded(8);
    /// let (out_tx, out_rx) = crossbeam_channel::unbounded();
    /// let stats = std::thread::scope(|s| {
    ///     s.spawn(move || (0..1000u32).for_each(|n| in_tx.send(n).unwrap()));
    ///     let init = String::new;
    ///     let work = |buf: &mut String, n: u32| {
    ///         buf.clear();
    ///         buf.push_str(&n.to_string());
    ///         buf.len()
    ///     };
    ///     Pool::new(4).run(in_rx, out_tx, &Cancel::new(), init, work)
    /// })
    /// .unwrap();
    /// assert_eq!(out_rx.iter().sum::<usize>(), 10 + 90 * 2 + 900 * 3);
    /// assert_eq!(stats.items, 1000);
    /// assert!(stats.peak_busy <= 4 && stats.peak_workers == 4);
    /// ```
    ///
    /// Cancelling stops an endless producer: its next send fails.
    ///
    /// ```
    /// use batchproc::pool::{channel, Cancel, Pool};
    ///
    /// let (in_tx, in_rx) = channel::bounded(16);
    /// let (out_tx, out_rx) = channel::bounded(16);
    /// let cancel = Cancel::new();
    /// std::thread::scope(|s| {
    ///     let producer = s.spawn(move || (0u64..).take_while(|&n| in_tx.send(n).is_ok()).count());
    ///     let c = cancel.clone();
    ///     s.spawn(move || Pool::new(2).run(in_rx, out_tx, &c, || (), |_, n| n));
    ///     let first: Vec<u64> = out_rx.iter().take(100).collect();
    ///     assert_eq!(first.len(), 100);
    ///     // Stop reading, cancel: the pool and the producer both end.
    ///     cancel.cancel();
    ///     assert!(producer.join().unwrap() >= 100);
    /// });
    /// ```
    ///
    /// The same work with results in input order:
    ///
    /// ```
    /// use batchproc::pool::{channel, try_for_each_ordered};
    /// use std::convert::Infallible;
    ///
    /// let (in_tx, in_rx) = channel::bounded(8);
    /// let mut squares = Vec::new();
    /// std::thread::scope(|s| {
    ///     s.spawn(move || (1..=5u64).for_each(|n| in_tx.send(n).unwrap()));
    ///     try_for_each_ordered(3, 64, in_rx, |n| Ok::<_, Infallible>(n * n), |sq| {
    ///         squares.push(sq);
    ///         Ok(())
    ///     })
    /// })
    /// .unwrap();
    /// assert_eq!(squares, [1, 4, 9, 16, 25]);
    /// ```
    pub fn run<T, R, S>(
        &self,
        input: Receiver<T>,
        output: Sender<R>,
        cancel: &Cancel,
        init: impl Fn() -> S + Sync,
        work: impl Fn(&mut S, T) -> R + Sync,
    ) -> io::Result<PoolStats>
    where
        T: Send,
        R: Send,
    {
        let started = Instant::now();
        let (exits, exited) = crossbeam_channel::unbounded();
        let run = cancel.child();
        let shared = Shared {
            pool: self,
            input,
            output,
            brake: Brake::new(&run),
            run,
            init,
            work,
            exits,
            ending: AtomicBool::new(false),
            panicked: Mutex::new(None),
            tally: Arc::new(Tally::new(self.gauge.clone())),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        std::thread::scope(|scope| {
            shared.spawn(scope)?;
            let all_started = (1..self.min).all(|_| shared.spawn(scope).is_ok());
            shared.supervise(scope, &exited, all_started);
            Ok::<_, io::Error>(())
        })?;
        let panicked = shared.panicked.into_inner();
        if let Some(payload) = panicked.unwrap_or_else(PoisonError::into_inner) {
            panic::resume_unwind(payload);
        }
        Ok(shared.tally.stats(started.elapsed()))
    }
}

mod workers;

#[cfg(test)]
mod tests;
