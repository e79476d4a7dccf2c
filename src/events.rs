//! What a run tells whoever watches it, as it happens: notices, warnings
//! and progress. The library only reports; the `batchproc` binary turns
//! these into lines on stderr and a progress bar, and a Rust caller may do
//! anything else with them (or nothing: every method has a no-op default).

use std::sync::Arc;

/// Receives a run's events, from any of its threads.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use batchproc::Events;
///
/// /// Counts finished items, as a progress display would.
/// #[derive(Default)]
/// struct Count(AtomicU64);
///
/// impl Events for Count {
///     fn progress(&self, items: u64) {
///         self.0.fetch_add(items, Ordering::Relaxed);
///     }
/// }
/// ```
pub trait Events: Send + Sync {
    /// A line about the run as a whole (resuming a run, a run that could
    /// be resumed, nothing to resume).
    fn notice(&self, _line: &str) {}

    /// A problem that does not stop the run: a failed item under
    /// `--on-error skip`, a vanished file, a lost database connection.
    /// The line names the item (`d/x.csv: csv: …`).
    fn warning(&self, _line: &str) {}

    /// Whether to count the items ahead of the run, for a total: the
    /// source is then read twice (a second walk, a `count(*)` query).
    fn wants_total(&self) -> bool {
        false
    }

    /// The number of items the run will process, as counted so far.
    fn total(&self, _items: u64) {}

    /// `items` more items are finished (committed or about to be).
    fn progress(&self, _items: u64) {}
}

/// A run's events, shared by its stages.
pub(crate) type Shared = Arc<dyn Events>;

/// Events nobody watches.
pub(crate) struct Silent;

impl Events for Silent {}
