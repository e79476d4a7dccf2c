//! What a worker does with one item: run the run's processors on it and
//! build its record. Each source has its own [`Work`] (a file is read once
//! for all content processors; a row's columns are processed in memory);
//! every kind of item ends in one [`Outcome`].

use crate::pool::Cancel;
use crate::processor::Retry;
use crate::record::{Record, Schema};

/// Bytes read per `read` call; large enough that syscalls are noise next to hashing.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The per-item work of a run.
pub(crate) trait Work: Sync {
    /// Clone: a retry runs the same item again.
    type Item: Send + Clone;
    /// The columns of the records `process` builds.
    fn schema(&self) -> &Schema;
    /// The processors as given (`sha256`, `sha256:body`, `exec:…`), for
    /// the run's fingerprint.
    fn specs(&self) -> Vec<String>;
    /// One attempt at an item, with its own `--timeout` deadline counted
    /// from its start. Never panics on bad input: a failure is an
    /// [`Outcome::Failed`] with the processor columns left NULL (or holding
    /// what a failing item processor reported).
    fn process(&self, buf: &mut Buffer, item: Self::Item, cancel: &Cancel) -> Outcome;
}

/// A worker's state: read buffers (one chunk, and two large blocks for
/// large files, allocated the first time the worker meets one), and a way
/// to ask whether some CPU has no busy worker on it.
pub(crate) struct Buffer {
    pub(crate) chunk: Vec<u8>,
    pub(crate) blocks: Option<Box<[Vec<u8>; 2]>>,
    pub(crate) spare_cores: Option<SpareCores>,
}

/// Whether some CPU has no busy worker on it now.
pub(crate) type SpareCores = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

impl Buffer {
    pub(crate) fn new(spare_cores: Option<SpareCores>) -> Self {
        Buffer {
            chunk: vec![0; CHUNK],
            blocks: None,
            spare_cores,
        }
    }

    /// Whether an item may use more than this worker's thread now.
    pub(crate) fn spare_cores(&self) -> bool {
        self.spare_cores.as_ref().is_some_and(|spare| spare())
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::new(None)
    }
}

/// How one item ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Processed: its record goes to the sink.
    Done { record: Record, bytes: u64 },
    /// Failed: its record says why (`error`), and the failure may pass on a
    /// retry when `retry` is set (a timeout, HTTP 429 or 5xx).
    Failed {
        record: Record,
        error: String,
        retry: Option<Retry>,
        bytes: u64,
    },
    /// A queue message delivered more than `--max-deliveries` times: not
    /// tried, its record holds why. Counted failed, yet committed (and the
    /// message settled) under fail-fast too, and it never cancels the run:
    /// otherwise it would come back forever.
    Poison {
        record: Record,
        error: String,
        bytes: u64,
    },
    /// Met but not processed, for the reason given in a warning (a file
    /// deleted after the walk, a symlink loop): no row; counted as skipped.
    Skipped(String),
    /// Cut short because the run was cancelled while it was in flight: no
    /// row, counted neither way; a resume redoes it.
    Abandoned,
}

impl Outcome {
    /// The failure's retry advice, for a failure that may pass.
    pub(crate) fn retry(&self) -> Option<Retry> {
        match self {
            Outcome::Failed { retry, .. } => *retry,
            _ => None,
        }
    }

    /// The record and bytes read, for the outcomes that have a row.
    pub(crate) fn record_mut(&mut self) -> Option<&mut Record> {
        match self {
            Outcome::Done { record, .. }
            | Outcome::Failed { record, .. }
            | Outcome::Poison { record, .. } => Some(record),
            Outcome::Skipped(_) | Outcome::Abandoned => None,
        }
    }
}
