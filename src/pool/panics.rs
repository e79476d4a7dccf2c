//! Stops a pool the moment one of its jobs panics, not only once the panic
//! has unwound.
//!
//! A panic runs the panic hook before it unwinds, and the default hook may
//! take a long time (with `RUST_BACKTRACE=1` it resolves a backtrace), so a
//! pool that waited for `catch_unwind` to return would go on starting jobs
//! meanwhile: how many depended on the environment. Instead a pool worker
//! names its run's [`Brake`] in a thread-local while it runs jobs, and a
//! hook installed once, ahead of whatever hook was there, applies it first
//! and then hands the panic on to the earlier hook unchanged.
//!
//! The brake holds new jobs back rather than cancelling the run: a job may
//! catch its own panic (a library that turns panics into errors), and then
//! the run goes on once the job returns. Only a panic that reaches the
//! worker cancels the run.
//!
//! A hook set later (`std::panic::set_hook`) replaces this one; pools then
//! stop only once a panic has unwound, which is still correct, just later.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::time::Duration;

use super::Cancel;

thread_local! {
    static RUN: RefCell<Option<Arc<Brake>>> = const { RefCell::new(None) };
    /// A panic began in the job running on this thread.
    static PANICKED: Cell<bool> = const { Cell::new(false) };
}

static INSTALL: Once = Once::new();

/// What the panic hook and the workers of one run share.
pub(super) struct Brake {
    run: Cancel,
    /// Jobs of the run in which a panic began and that have not returned.
    panicking: AtomicUsize,
}

impl Brake {
    pub(super) fn new(run: &Cancel) -> Arc<Brake> {
        Arc::new(Brake {
            run: run.clone(),
            panicking: AtomicUsize::new(0),
        })
    }
}

/// While alive, a panic on this thread holds back the other jobs of its
/// run before anything else happens. Held by a pool worker while it works.
pub(super) struct Watch {
    brake: Arc<Brake>,
    earlier: Option<Arc<Brake>>,
}

/// How often a worker held back by a panic elsewhere looks again.
const HELD_BACK: Duration = Duration::from_millis(1);

impl Watch {
    pub(super) fn new(brake: &Arc<Brake>) -> Watch {
        INSTALL.call_once(|| {
            let earlier = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                brake_this_thread();
                earlier(info)
            }));
        });
        Watch {
            brake: brake.clone(),
            earlier: RUN.replace(Some(brake.clone())),
        }
    }

    /// Whether the next job may start: false once the run is cancelled;
    /// while a job of the run is panicking, waits to see whether the job
    /// catches its panic (then true) or the run ends.
    #[inline]
    pub(super) fn may_start(&self) -> bool {
        // The common case first, in as few loads as may be: it runs before
        // every item.
        if self.brake.panicking.load(SeqCst) == 0 && !self.brake.run.is_cancelled() {
            return true;
        }
        loop {
            if self.brake.run.is_cancelled() {
                return false;
            }
            if self.brake.panicking.load(SeqCst) == 0 {
                return true;
            }
            self.brake.run.wait_timeout(HELD_BACK);
        }
    }

    /// After a job returned: a panic it caught holds the others back no more.
    #[inline]
    pub(super) fn returned(&self) {
        if self.brake.panicking.load(SeqCst) > 0 && PANICKED.take() {
            self.brake.panicking.fetch_sub(1, SeqCst);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        PANICKED.set(false);
        RUN.set(self.earlier.take());
    }
}

/// The hook's part: counts the job on this thread as panicking, once.
fn brake_this_thread() {
    // try_with: a panic while the thread's locals are torn down.
    let _ = RUN.try_with(|run| {
        if let Ok(run) = run.try_borrow() {
            if let Some(brake) = run.as_ref() {
                if !PANICKED.replace(true) {
                    brake.panicking.fetch_add(1, SeqCst);
                }
            }
        }
    });
}

/// Cancels a run when the thread that coordinates it unwinds (a panic in
/// the caller's own code: the input, or a callback), so that the workers
/// it is about to wait for stop at once.
pub(super) struct CancelOnUnwind<'a>(pub(super) &'a Cancel);

impl Drop for CancelOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.cancel_with(super::CancelReason::Failed);
        }
    }
}
