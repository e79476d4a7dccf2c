//! The point after which no new item starts (`--max-runtime`), and whether
//! it held anything back.
//!
//! A cutoff is not a cancel: the run's own token kills `exec:` commands and
//! abandons reads, while an item already started at the cutoff must finish
//! and be committed. So the cutoff has a token of its own, a child of the
//! run's, which only those who *start* items look at: the source reader,
//! the dispatcher, the wait for the window and the worker before it takes
//! an item (and before the rate lets a first try begin). Being a child, it
//! is cancelled with the run too, so these places need look at it alone.
//!
//! Items held back stay dispatched-but-unfinished in the ledger, exactly as
//! items abandoned at a cancel: the watermark stops before the first of
//! them and a resume does them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::pool::Cancel;

/// When a run stops starting items.
#[derive(Debug)]
pub(crate) struct Cutoff {
    /// Cancelled at the cutoff, or with the run.
    token: Cancel,
    /// Something was left unstarted because of it.
    held_back: AtomicBool,
}

impl Cutoff {
    /// A cutoff that comes only with `run`'s cancel, until [`Cutoff::arm`]ed.
    pub(crate) fn new(run: &Cancel) -> Self {
        Cutoff {
            token: run.child(),
            held_back: AtomicBool::new(false),
        }
    }

    /// The token to wait on where items are started.
    pub(crate) fn token(&self) -> &Cancel {
        &self.token
    }

    /// Whether no new item may start.
    pub(crate) fn passed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Notes that an item (or the rest of the source) was not started.
    pub(crate) fn hold_back(&self) {
        self.held_back.store(true, Ordering::Relaxed);
    }

    /// Whether anything was left unstarted: a run that stopped at its
    /// cutoff with nothing left is simply finished.
    pub(crate) fn held_back(&self) -> bool {
        self.held_back.load(Ordering::Relaxed)
    }

    /// Passes the cutoff `after` from now, unless `ended` comes first (the
    /// run is over and the timer must not keep it waiting).
    pub(crate) fn arm(&self, after: Duration, ended: &Cancel) {
        if !ended.wait_timeout(after) {
            self.token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_with_the_run_or_at_its_time_but_never_cancels_the_run() {
        let run = Cancel::new();
        let cutoff = Cutoff::new(&run);
        cutoff.arm(Duration::ZERO, &Cancel::new());
        assert!(cutoff.passed() && !run.is_cancelled());

        let cutoff = Cutoff::new(&run);
        let ended = Cancel::new();
        ended.cancel();
        cutoff.arm(Duration::from_secs(3600), &ended);
        assert!(!cutoff.passed(), "the run ended first");
        run.cancel();
        assert!(cutoff.passed());
        assert!(!cutoff.held_back());
    }
}
