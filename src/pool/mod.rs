//! Worker pools on plain OS threads, and the cancellation token every stage
//! of a run honours.
//!
//! - [`Pool`]: the streaming pool the pipeline runs on. Workers take items
//!   from a bounded channel and send results on in completion order; the
//!   number of workers is fixed ([`Pool::new`]) or grows and shrinks with
//!   the backlog ([`Pool::dynamic`]), and a [`Gauge`] shows it live. A job
//!   says what part of it is [`waiting`] for a turn rather than work, so
//!   that the pool does not grow for it.
//! - [`try_map`] and [`pool()`]: errgroup-style bounded maps over an
//!   iterator, results in input order, the first error cancelling the rest.
//! - [`try_for_each_ordered`]: the same, streaming each result in input order
//!   to a callback through a bounded reorder window.
//!
//! Everything here uses scoped threads, so work closures may borrow from the
//! caller; they must be `Sync` (shared by all workers). There is no async
//! variant: the pool exists so that file I/O and hashing never run on an
//! async runtime's threads.
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

mod busy;
mod dynamic;
mod future;
mod gauge;
mod map;
mod stream;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

pub use busy::waiting;
pub use dynamic::Pool;
pub use future::{map_async, try_map_async};
pub use gauge::{Gauge, PoolStats};
pub use map::{pool, try_map};
pub use stream::try_for_each_ordered;

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
///
/// A [`child`](Cancel::child) token is cancelled when its parent is, but
/// cancelling the child leaves the parent alone: a run takes a child of the
/// caller's token, so its own failures stop only itself.
///
/// ```
/// use batchproc::pool::{Cancel, CancelReason};
///
/// let signals = Cancel::new();
/// let run = signals.child();
/// run.cancel(CancelReason::Failed);
/// assert!(run.is_cancelled() && !signals.is_cancelled());
///
/// let next = signals.child();
/// signals.cancel(CancelReason::Interrupted);
/// assert_eq!(next.reason(), Some(CancelReason::Interrupted));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Token>);

#[derive(Debug, Default)]
struct Token {
    reason: AtomicU8,
    parent: Option<Cancel>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled with this one, whose own cancellation does not
    /// reach this one. Its own reason, if it has one, is its reason.
    pub fn child(&self) -> Cancel {
        Cancel(Arc::new(Token {
            reason: AtomicU8::new(0),
            parent: Some(self.clone()),
        }))
    }

    pub fn cancel(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::Failed => 1,
            CancelReason::Interrupted => 2,
        };
        let _ = self
            .0
            .reason
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    /// Whether this token or one it descends from was cancelled with
    /// [`CancelReason::Interrupted`], even after an earlier failure: the
    /// person asked for the run to end, so nothing should wait any longer.
    pub fn is_interrupted(&self) -> bool {
        self.0.reason.load(Ordering::SeqCst) == 2
            || self.0.parent.as_ref().is_some_and(Cancel::is_interrupted)
    }

    pub fn reason(&self) -> Option<CancelReason> {
        match self.0.reason.load(Ordering::SeqCst) {
            1 => Some(CancelReason::Failed),
            2 => Some(CancelReason::Interrupted),
            _ => self.0.parent.as_ref().and_then(Cancel::reason),
        }
    }
}

#[cfg(test)]
mod testing {
    use std::time::{Duration, Instant};

    /// Polls `cond` until it holds, for up to 10 s: test machines are noisy,
    /// so timing is only ever checked with a generous deadline.
    pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cond()
    }

    /// A repeatable pseudo-random delay below `max_ms` for item `i`, so that
    /// items finish out of order.
    pub fn jitter(i: u64, max_ms: u64) -> Duration {
        let mut x = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        Duration::from_micros(x % (max_ms * 1000))
    }
}
