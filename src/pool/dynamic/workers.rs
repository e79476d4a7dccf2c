//! The workers of one `Pool::run` and the supervisor that adds them: how
//! a worker waits for its next item, hands its result on, and leaves.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{Builder, Scope};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, SendTimeoutError, Sender};

use super::{Pool, MIN_TIMER, QUICK_WAIT};
use crate::pool::busy::Worker;
use crate::pool::gauge::Tally;
use crate::pool::panics::{Brake, Watch};
use crate::pool::{Cancel, CancelReason};

/// What one run shares with its workers.
pub(super) struct Shared<'a, T, R, I, W> {
    pub(super) pool: &'a Pool,
    pub(super) input: Receiver<T>,
    pub(super) output: Sender<R>,
    /// A child of the caller's token: cancelled with it, and by a panic.
    pub(super) run: Cancel,
    /// Holds new jobs back while one panics (see `panics`).
    pub(super) brake: Arc<Brake>,
    pub(super) init: I,
    pub(super) work: W,
    /// Every exiting worker sends one message, so the supervisor can sleep
    /// until the last one is gone instead of polling.
    pub(super) exits: Sender<()>,
    /// A worker ended other than by retiring (input done, output closed, a
    /// panic): more workers would only take items to no end.
    pub(super) ending: AtomicBool,
    /// The first panic of a job, to resume on the caller.
    pub(super) panicked: Mutex<Option<Box<dyn Any + Send>>>,
    /// Shared with the workers' thread-local state, for `waiting`.
    pub(super) tally: Arc<Tally>,
    /// The caller's tokio runtime, if it has one, for the workers to enter.
    pub(super) runtime: Option<tokio::runtime::Handle>,
}

/// What a worker's wait for its next item ended with.
enum Next<T> {
    Item(T),
    /// Nothing came within the idle timeout.
    Idle,
    /// The input is closed and drained, or the run was cancelled.
    End,
}

impl<T, R, S, I, W> Shared<'_, T, R, I, W>
where
    T: Send,
    R: Send,
    I: Fn() -> S + Sync,
    W: Fn(&mut S, T) -> R + Sync,
{
    pub(super) fn spawn<'scope>(&'scope self, scope: &'scope Scope<'scope, '_>) -> io::Result<()> {
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
        let _entered = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
        let watch = Watch::new(&self.brake);
        let worker = Worker::enter(&self.tally);
        let jobs = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut state = (self.init)();
            loop {
                let item = match self.next() {
                    Next::Item(item) => item,
                    Next::Idle if self.tally.retire(self.pool.min) => {
                        exit.retired = true;
                        return;
                    }
                    Next::Idle => continue,
                    Next::End => return,
                };
                if !watch.may_start() {
                    return;
                }
                let result = worker.run(|| (self.work)(&mut state, item));
                watch.returned();
                if !self.deliver(result) {
                    // Nobody reads: the other workers, idle or not, stop too.
                    self.run.cancel_with(CancelReason::Failed);
                    return;
                }
            }
        }));
        if let Err(payload) = jobs {
            self.run.cancel_with(CancelReason::Failed);
            let mut first = self.panicked.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert(payload);
        }
    }

    /// The next item to work on: whichever comes first of an item, the
    /// cancel, the input's end and (unless the pool is fixed) the idle
    /// timeout. An item that races a cancel is dropped.
    fn next(&self) -> Next<T> {
        // First a short wait on the input alone: a worker slightly ahead of
        // its producer waits like this for every item, and a select (which
        // registers with the token's channel too, shared by every worker)
        // made that several times slower. The token is looked at after it.
        match self.input.recv_timeout(QUICK_WAIT) {
            _ if self.run.is_cancelled() => return Next::End,
            Ok(item) => return Next::Item(item),
            Err(RecvTimeoutError::Disconnected) => return Next::End,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let mut select = Select::new();
        let input = select.recv(&self.input);
        select.recv(self.run.done());
        let op = if self.pool.min == self.pool.max {
            select.select()
        } else {
            match select.select_timeout(self.pool.idle_timeout) {
                Ok(op) => op,
                Err(_) => return Next::Idle,
            }
        };
        if op.index() != input {
            let _ = op.recv(self.run.done());
            return Next::End;
        }
        match op.recv(&self.input) {
            Ok(_) if self.run.is_cancelled() => Next::End,
            Ok(item) => Next::Item(item),
            Err(_) => Next::End,
        }
    }

    /// Sends a finished result on; false once the output is closed, or
    /// there was no room for it within the grace after a cancel.
    fn deliver(&self, result: R) -> bool {
        // As in `next`: a short wait on the output alone first.
        let result = match self.output.send_timeout(result, QUICK_WAIT) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(result)) => result,
        };
        if !self.run.is_cancelled() {
            let mut select = Select::new();
            let send = select.send(&self.output);
            select.recv(self.run.done());
            let op = select.select();
            if op.index() == send {
                return op.send(&self.output, result).is_ok();
            }
            let _ = op.recv(self.run.done());
        }
        self.output.send_timeout(result, self.pool.grace).is_ok()
    }

    /// Adds workers while a backlog persists with every worker busy; returns
    /// once every worker has exited.
    pub(super) fn supervise<'scope>(
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
                && !self.run.is_cancelled();
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
