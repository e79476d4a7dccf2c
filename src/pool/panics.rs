//! Stops a pool the moment one of its jobs panics, not only once the panic
//! has unwound.
//!
//! A panic runs the panic hook before it unwinds, and the default hook may
//! take a long time (with `RUST_BACKTRACE=1` it resolves a backtrace), so a
//! pool that waited for `catch_unwind` to return would go on starting jobs
//! meanwhile: how many depended on the environment. Instead a pool worker
//! names its run's token in a thread-local while it runs jobs, and a hook
//! installed once, ahead of whatever hook was there, cancels that token
//! first and then hands the panic on to the earlier hook unchanged.
//!
//! A hook set later (`std::panic::set_hook`) replaces this one; pools then
//! stop only once a panic has unwound, which is still correct, just later.

use std::cell::RefCell;
use std::sync::Once;

use super::{Cancel, CancelReason};

thread_local! {
    static RUN: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// While alive, a panic on this thread cancels `run` before anything else
/// happens. Held by a pool worker for as long as it runs jobs.
pub(super) struct Watch {
    earlier: Option<Cancel>,
}

impl Watch {
    pub(super) fn new(run: &Cancel) -> Watch {
        INSTALL.call_once(|| {
            let earlier = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // try_with: a panic while the thread's locals are torn down.
                let _ = RUN.try_with(|run| {
                    if let Ok(run) = run.try_borrow() {
                        if let Some(run) = run.as_ref() {
                            run.cancel_with(CancelReason::Failed);
                        }
                    }
                });
                earlier(info)
            }));
        });
        Watch {
            earlier: RUN.replace(Some(run.clone())),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        RUN.set(self.earlier.take());
    }
}
