//! The worker pool: a fixed number of threads taking items from one shared
//! bounded queue, and the cancellation token every stage of a run honours.
//!
//! ```
//! use batchproc::pool::{Cancel, Pool};
//!
//! let (in_tx, in_rx) = crossbeam_channel::bounded(4);
//! let (out_tx, out_rx) = crossbeam_channel::bounded(4);
//! let cancel = Cancel::new();
//! std::thread::scope(|s| {
//!     s.spawn(move || (1..=10u64).for_each(|n| in_tx.send(n).unwrap()));
//!     let c = cancel.clone();
//!     s.spawn(move || Pool::new(3).run(in_rx, out_tx, &c, || (), |_, n| n * n).unwrap());
//!     let mut squares: Vec<u64> = out_rx.iter().collect();
//!     squares.sort();
//!     assert_eq!(squares, [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]);
//! });
//! ```

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

/// Why a run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// An item failed under fail-fast, or the sink failed.
    Failed,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// A cancellation token shared by every stage: once cancelled, no stage
/// starts new work. The first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicU8>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::Failed => 1,
            CancelReason::Interrupted => 2,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }

    pub fn reason(&self) -> Option<CancelReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(CancelReason::Failed),
            2 => Some(CancelReason::Interrupted),
            _ => None,
        }
    }
}

/// A fixed-size pool of worker threads.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    workers: usize,
}

impl Pool {
    pub fn new(workers: usize) -> Self {
        Pool {
            workers: workers.max(1),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `work` on every item of `input` with `workers` threads and sends
    /// each result to `output`, in completion order. Each worker builds its
    /// own state with `init` (a read buffer, say). Returns when `input` is
    /// closed and drained, or `output` is closed.
    ///
    /// After `cancel` fires, workers start no new item: what is still queued
    /// is drained and dropped, so a producer blocked on the full queue wakes
    /// up and sees the cancellation instead of deadlocking.
    pub fn run<T, R, S>(
        &self,
        input: Receiver<T>,
        output: Sender<R>,
        cancel: &Cancel,
        init: impl Fn() -> S + Sync,
        work: impl Fn(&mut S, T) -> R + Sync,
    ) -> std::io::Result<()>
    where
        T: Send,
        R: Send,
    {
        std::thread::scope(|scope| {
            let mut started = 0;
            for _ in 0..self.workers {
                let (input, output) = (input.clone(), output.clone());
                let (init, work) = (&init, &work);
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                    let mut state = init();
                    for item in input.iter() {
                        if cancel.is_cancelled() {
                            continue;
                        }
                        if output.send(work(&mut state, item)).is_err() {
                            break;
                        }
                    }
                });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) if started == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            drop(output);
            Ok(())
        })
    }
}
