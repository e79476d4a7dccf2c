//! What a worker does with one item: run the processors and build the
//! record. One file per kind of item; both produce an [`Outcome`].

pub mod files;
pub mod rows;

use crate::pool::Cancel;
use crate::record::{Record, Schema};

/// Bytes read per `read` call; large enough that syscalls are noise next to hashing.
pub const CHUNK: usize = 256 * 1024;

/// The per-item work of a pipeline.
pub trait Work: Sync {
    /// Cloned for each retry attempt (`--retries`), so it must be cheap
    /// enough to copy once per try.
    type Item: Send + Clone;
    /// The columns of the records `process` builds.
    fn schema(&self) -> &Schema;
    /// Processes one item. Never panics on bad input: a failure ends up in
    /// `Outcome::error`, with the processor columns left NULL.
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
    /// Set by a failure that may go away if the item is tried again (a
    /// timeout, HTTP 503): `--retries` re-runs it. None: not retryable.
    pub retry: Option<Retry>,
}

/// A failed item is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retry {
    /// The server said when (HTTP Retry-After): the next try waits at least
    /// this long. None: the backoff alone decides.
    pub after: Option<std::time::Duration>,
}
