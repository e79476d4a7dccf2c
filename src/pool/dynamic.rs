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

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{Builder, Scope};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::busy::Worker;
use super::gauge::Tally;
use super::{Cancel, Gauge, PoolStats};

/// Long enough that a producer's momentary lead does not add threads,
/// short enough that a real backlog is met within a few items.
const DEFAULT_GROW_AFTER: Duration = Duration::from_millis(20);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
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
    gauge: Gauge,
}

impl Pool {
    /// A pool of exactly `workers` threads (at least one): the same as
    /// `Pool::dynamic(workers, workers)`.
    pub fn new(workers: usize) -> Self {
        Self::dynamic(workers, workers)
    }

    /// A pool that starts `min` workers and grows to at most `max` while a
    /// backlog persists with every worker busy (see [`Pool::grow_after`]),
    /// then shrinks back to `min` as workers find nothing to do (see
    /// [`Pool::idle_timeout`]).
    /// `min` is raised to 1 and `max` to `min` if smaller.
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
        let min = min.max(1);
        Pool {
            min,
            max: max.max(min),
            grow_after: DEFAULT_GROW_AFTER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            gauge: Gauge::default(),
        }
    }

    /// How long the input queue must stay non-empty, with every worker busy
    /// (none idle, none [`waiting`](super::waiting)), before one more worker
    /// is added (default 20 ms). The queue is sampled every half of this, so
    /// growth is one worker per `grow_after` of backlog at most.
    pub fn grow_after(mut self, after: Duration) -> Self {
        self.grow_after = after.max(MIN_TIMER);
        self
    }

    /// How long a worker waits for an item before retiring, when more than
    /// `min` workers are alive (default 1 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(MIN_TIMER);
        self
    }

    /// The maximum number of workers (the number, for [`Pool::new`]).
    pub fn workers(&self) -> usize {
        self.max
    }

    /// The number of workers a run starts with and never goes below.
    pub fn min_workers(&self) -> usize {
        self.min
    }

    /// A live view of this pool's workers (see [`Gauge`]). Runs of the same
    /// pool on several threads at once add up in it.
    pub fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }

    /// Runs `work` on every item of `input` and sends each result to
    /// `output`, in completion order. Each worker builds its own state with
    /// `init` (a read buffer, say). Returns when `input` is closed and
    /// drained, or `output` is closed; `output` is dropped on return.
    ///
    /// After `cancel` fires, workers start no new item: what is still queued
    /// is drained and dropped, so a producer blocked on the full queue wakes
    /// up and sees the cancellation instead of deadlocking. A cancelled pool
    /// stops growing.
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
        let shared = Shared {
            pool: self,
            input,
            output,
            cancel,
            init,
            work,
            exits,
            ending: AtomicBool::new(false),
            tally: Arc::new(Tally::new(self.gauge.clone())),
        };
        std::thread::scope(|scope| {
            shared.spawn(scope)?;
            let all_started = (1..self.min).all(|_| shared.spawn(scope).is_ok());
            shared.supervise(scope, &exited, all_started);
            Ok::<_, io::Error>(())
        })?;
        Ok(shared.tally.stats(started.elapsed()))
    }
}

/// What one run shares with its workers.
struct Shared<'a, T, R, I, W> {
    pool: &'a Pool,
    input: Receiver<T>,
    output: Sender<R>,
    cancel: &'a Cancel,
    init: I,
    work: W,
    /// Every exiting worker sends one message, so the supervisor can sleep
    /// until the last one is gone instead of polling.
    exits: Sender<()>,
    /// A worker ended other than by retiring (input done, output closed, a
    /// panic): more workers would only take items to no end.
    ending: AtomicBool,
    /// Shared with the workers' thread-local state, for `waiting`.
    tally: Arc<Tally>,
}

impl<T, R, S, I, W> Shared<'_, T, R, I, W>
where
    T: Send,
    R: Send,
    I: Fn() -> S + Sync,
    W: Fn(&mut S, T) -> R + Sync,
{
    fn spawn<'scope>(&'scope self, scope: &'scope Scope<'scope, '_>) -> io::Result<()> {
        // Counted before it runs, so that a retiring worker never sees fewer
        // live workers than there are.
        self.tally.enter();
        match Builder::new().spawn_scoped(scope, move || self.work_loop()) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.tally.leave();
                Err(e)
            }
        }
    }

    fn work_loop(&self) {
        let mut exit = Exit {
            shared: self,
            retired: false,
        };
        let worker = Worker::enter(&self.tally);
        let mut state = (self.init)();
        let fixed = self.pool.min == self.pool.max;
        loop {
            let next = if fixed {
                self.input
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                self.input.recv_timeout(self.pool.idle_timeout)
            };
            let item = match next {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) if self.tally.retire(self.pool.min) => {
                    exit.retired = true;
                    return;
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.cancel.is_cancelled() {
                continue;
            }
            let result = worker.run(|| (self.work)(&mut state, item));
            if self.output.send(result).is_err() {
                return;
            }
        }
    }

    /// Adds workers while a backlog persists with every worker busy; returns
    /// once every worker has exited.
    fn supervise<'scope>(
        &'scope self,
        scope: &'scope Scope<'scope, '_>,
        exited: &Receiver<()>,
        mut can_grow: bool,
    ) {
        let tick = (self.pool.grow_after / 2).max(MIN_TIMER);
        let mut backlog_since = None;
        loop {
            let growing = can_grow
                && self.tally.live() < self.pool.max
                && !self.ending.load(SeqCst)
                && !self.cancel.is_cancelled();
            let woke = if growing {
                exited.recv_timeout(tick)
            } else {
                backlog_since = None;
                exited.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match woke {
                // Only this thread adds workers, so none left means done.
                Ok(()) if self.tally.live() == 0 => return,
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) if !self.short_of_workers() => backlog_since = None,
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    let since = *backlog_since.get_or_insert(now);
                    if now - since >= self.pool.grow_after {
                        can_grow = self.spawn(scope).is_ok();
                        // The next worker must be earned by a backlog of its own.
                        backlog_since = Some(now);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Items wait in the queue, and no worker is idle or waiting.
    fn short_of_workers(&self) -> bool {
        !self.input.is_empty() && self.tally.busy() >= self.tally.live()
    }
}

/// Leaves the worker count and wakes the supervisor when a worker ends,
/// even by a panic in `init` or `work`.
struct Exit<'a, 'b, T, R, I, W> {
    shared: &'a Shared<'b, T, R, I, W>,
    /// `Tally::retire` already left the count.
    retired: bool,
}

impl<T, R, I, W> Drop for Exit<'_, '_, T, R, I, W> {
    fn drop(&mut self) {
        if !self.retired {
            self.shared.ending.store(true, SeqCst);
            self.shared.tally.leave();
        }
        let _ = self.shared.exits.send(());
    }
}

#[cfg(test)]
mod tests;
