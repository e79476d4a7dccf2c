//! What a worker does with one item: run the processors and build the
//! record. One file per kind of item; both produce an [`Outcome`].

pub mod files;
pub mod rows;

use std::time::{Duration, Instant};

use crate::pool::Cancel;
use crate::record::{Record, Schema};

/// Bytes read per `read` call; large enough that syscalls are noise next to hashing.
pub const CHUNK: usize = 256 * 1024;

/// The per-item work of a pipeline.
pub trait Work: Sync {
    /// Clone: a retry runs the same item again.
    type Item: Send + Clone;
    /// The columns of the records `process` builds.
    fn schema(&self) -> &Schema;
    /// Processes one item. Never panics on bad input: a failure ends up in
    /// `Outcome::error`, with the processor columns left NULL. Each call is
    /// one attempt with its own `--timeout` deadline, counted from its start.
    fn process(&self, buf: &mut Buffer, item: Self::Item, cancel: &Cancel) -> Outcome;
    /// The item as named in messages (a path, or `key=value`), from its
    /// record: built only when a message needs it, not for every item.
    fn label(&self, record: &Record) -> String;
}

/// A worker's reusable state.
pub struct Buffer(pub Vec<u8>);

impl Default for Buffer {
    fn default() -> Self {
        Buffer(vec![0; CHUNK])
    }
}

/// The result of one item: its record and the error message if it failed.
/// An item abandoned because the run was cancelled while it was in flight
/// has `cancelled` set: it gets no row and counts neither way.
pub struct Outcome {
    pub cancelled: bool,
    /// The file was gone when its turn came: no row, not a failure.
    pub vanished: bool,
    pub record: Record,
    pub error: Option<String>,
    pub bytes: u64,
    /// Set when the failure may pass if the item is tried again (a timeout,
    /// a lost connection, HTTP 429 or 5xx); None when it is not worth it.
    pub retry: Option<Retry>,
}

/// A failure worth retrying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retry {
    /// How long the other side asked us to wait (HTTP `Retry-After`).
    pub after: Option<Duration>,
}

/// The end of one attempt at an item: `--timeout` after it started.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub timeout: Duration,
}

impl Deadline {
    /// The deadline of an attempt starting now, if there is a timeout.
    pub fn start(timeout: Option<Duration>) -> Option<Deadline> {
        timeout.map(|timeout| Deadline {
            at: Instant::now() + timeout,
            timeout,
        })
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The item's error message: `timed out after 30s`.
    pub fn message(&self) -> String {
        format!(
            "timed out after {}",
            humantime::format_duration(self.timeout)
        )
    }
}

/// What a processor working on a whole item (exec, http) gets besides the
/// item: the run's cancellation and this attempt's deadline.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    pub cancel: &'a Cancel,
    pub deadline: Option<Deadline>,
}
