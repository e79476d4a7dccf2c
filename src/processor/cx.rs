//! What a processor gets besides the item: the run's cancellation and the
//! attempt's deadline (`--timeout`), and how it says a failure may pass.

use std::time::{Duration, Instant};

use crate::pool::Cancel;

/// The context of one attempt at an item.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub(crate) cancel: &'a Cancel,
    pub(crate) deadline: Option<Deadline>,
}

impl Cx<'_> {
    /// Runs `work` on a thread of its own and waits for it only while the
    /// run goes on: None once the run is cancelled. For a blocking call that
    /// cannot be interrupted (an HTTP request without `--timeout` to a server
    /// that never answers), so that Ctrl-C still ends the run at once; the
    /// thread is left to end with the call, or with the process. An error
    /// when no thread could be started.
    pub(crate) fn unless_cancelled<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Option<T>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("batchproc-call".into())
            .spawn(move || {
                let _ = tx.send(work());
            })?;
        // The token's channel closes at the cancel, so this wakes at once.
        crossbeam_channel::select! {
            recv(rx) -> done => Ok(done.ok()),
            recv(self.cancel.done()) -> _ => Ok(None),
        }
    }
}

/// A failure worth retrying (`--retries`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Retry {
    /// How long the other side asked us to wait (HTTP `Retry-After`).
    pub(crate) after: Option<Duration>,
}

/// The end of one attempt at an item: `--timeout` after it started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) timeout: Duration,
}

impl Deadline {
    /// The deadline of an attempt starting now, if there is a timeout.
    pub(crate) fn start(timeout: Option<Duration>) -> Option<Deadline> {
        timeout.map(|timeout| Deadline {
            at: Instant::now() + timeout,
            timeout,
        })
    }

    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The item's error message: `timed out after 30s`.
    pub(crate) fn message(&self) -> String {
        format!(
            "timed out after {}",
            humantime::format_duration(self.timeout)
        )
    }
}
