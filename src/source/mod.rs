//! Sources: where a run's items come from, in a deterministic order.
//!
//! A source implements [`Source`]: it yields `(key, item)` pairs from a
//! resume point on, names an item in messages, may count what it will
//! yield (for a progress bar), and contributes its part of the pipeline's
//! fingerprint. Everything sources share is the [`driver`]'s: sequence
//! numbers and the checkpoint ledger (with its look-ahead window), reading
//! ahead of the workers, handing items to the pool in chunks sized by what
//! an item costs, counting ahead, cancellation, and the [`cutoff`] after
//! which no item starts (`--max-runtime`).
//!
//! Each source is one folder (`files/`, `query/`) holding only what is
//! particular to it, including its [`Work`](crate::processor::Work): how
//! one of its items becomes a record. A new source is one folder and one
//! variant of [`Spec`], the registry of sources.

pub(crate) mod cutoff;
pub(crate) mod driver;
pub(crate) mod files;
pub(crate) mod query;
pub(crate) mod queue;
pub(crate) mod shard;

use std::path::PathBuf;

use anyhow::Result;

pub(crate) use driver::Pace;

use crate::checkpoint::{Fingerprint, ItemKey};
use crate::pool::Cancel;
use crate::record::Value;

/// A producer of items in a deterministic order.
pub(crate) trait Source: Sync {
    /// Clone: a retry runs the same item again.
    type Item: Send + Clone;

    /// The items after `after` (a key an earlier attempt committed
    /// everything up to, in this same order), or all of them. Every key is
    /// yielded at most once, in the same order on every call. An `Err`
    /// ends the run (the database went away, a key turned out not unique);
    /// a problem with one item is that item's failure, not an `Err`.
    fn items(&self, after: Option<&ItemKey>) -> Result<Items<'_, Self::Item>>;

    /// Counts what `items(after)` will yield, calling `report` with the
    /// count so far now and then and at the end; gives up once `stop`
    /// fires. By default it reads the items a second time.
    fn count(&self, after: Option<&ItemKey>, stop: &Cancel, report: &dyn Fn(u64)) -> Result<()> {
        count_found(self.items(after)?, stop, report, |_| true)
    }

    /// Whether [`count`](Self::count) reads the items (the default), so
    /// that a shard's count can leave out other shards' items by reading
    /// them the same way. A source that counts otherwise (a query's
    /// `count(*)`) cannot, and a shard's progress total stays unknown. False
    /// by default: a source whose items are costly to read twice says so
    /// only if that is what it wants.
    fn counts_by_reading(&self) -> bool {
        false
    }

    /// Whether `item` stands for items of every shard (`--shard`): a
    /// directory the walk could not read holds files of any shard.
    fn every_shard(_item: &Self::Item) -> bool {
        false
    }

    /// The items of earlier failures again, for a resume to retry: for each
    /// key its item, or None when the source no longer has it. A key may
    /// stand for several items (a directory the walk could not read): the
    /// items under it follow it, marked `false` (not an earlier failure),
    /// except those `items(after)` will yield anyway.
    fn again(&self, keys: Vec<ItemKey>, after: Option<&ItemKey>) -> Result<Vec<Again<Self::Item>>>;

    /// Bytes of data an item holds in memory (a row's values), so that the
    /// driver's read-ahead and chunks are bounded in bytes as well as in
    /// items; 0 for items that only name their data (a file).
    fn item_size(_item: &Self::Item) -> u64 {
        0
    }

    /// An item as messages name it (`d/x.csv`, `id=42`).
    fn label(&self, key: &ItemKey) -> String;

    /// Adds what gives the source's items their meaning to the run's
    /// fingerprint (the first parts, after the command).
    fn fingerprint(&self, fp: &mut Fingerprint);

    /// Files the source must never yield (the sink's own, when it lies
    /// inside a tree the run walks). Called once the sink has created them.
    fn leave_out(&mut self, _files: &[PathBuf]) {}

    /// `--incremental`: the rows an earlier run left in the sink, so that
    /// items whose row is current are yielded as [`Found::Unchanged`].
    /// Only files have a size and an mtime to compare.
    fn remember(&mut self, _previous: files::Previous) {}

    /// `--prune`, once every item is done: the keys, as the sink stores
    /// them, of the remembered rows whose items are gone, or why that
    /// cannot be told.
    fn gone(&self, _resumed_after: Option<&ItemKey>) -> Result<Vec<Value>, String> {
        Err("this source cannot tell which items are gone".into())
    }

    /// A queue (`batchproc queue`), whose messages are settled with the
    /// queue server once their records committed; None for other sources.
    fn queue(&self) -> Option<&queue::QueueSource> {
        None
    }

    /// The same, to set up before the run.
    fn queue_mut(&mut self) -> Option<&mut queue::QueueSource> {
        None
    }

    /// A source read from a cursor on (`query --cursor`), or None.
    fn cursored(&mut self) -> Option<&mut dyn Cursored> {
        None
    }
}

/// A source whose runs each read only what lies beyond the pipeline's
/// cursor, up to a bound read when the run starts. Bounds are handed
/// around in their stored form (text), which only the source reads.
pub(crate) trait Cursored {
    /// The upper bound of a new run's range, read now: the largest value
    /// beyond `after` (the end of the last succeeded run's range; None:
    /// there is none).
    fn bound(&self, after: Option<&str>) -> Result<String>;

    /// Reads only the range `(after, upto]` from now on (before `items`);
    /// a line saying what that range is.
    fn restrict(&mut self, after: Option<&str>, upto: &str) -> Result<String>;
}

/// What a source yields.
pub(crate) type Items<'a, T> = Box<dyn Iterator<Item = Result<Found<T>>> + 'a>;

/// Counts the items among `items` that `keep` keeps, calling `report`
/// with the count so far now and then and at the end; gives up once
/// `stop` fires.
pub(crate) fn count_found<T>(
    items: Items<'_, T>,
    stop: &Cancel,
    report: &dyn Fn(u64),
    keep: impl Fn(&Found<T>) -> bool,
) -> Result<()> {
    let mut n = 0;
    for found in items {
        if stop.is_cancelled() {
            return Ok(());
        }
        let found = found?;
        if matches!(found, Found::Item(..)) && keep(&found) {
            n += 1;
            if n % 1024 == 0 {
                report(n);
            }
        }
    }
    report(n);
    Ok(())
}

/// One item a resume tries again (see [`Source::again`]).
pub(crate) struct Again<T> {
    pub(crate) key: ItemKey,
    /// None: gone from the source.
    pub(crate) item: Option<T>,
    /// An earlier failure (true), or an item found under one.
    pub(crate) known: bool,
}

impl<T> Again<T> {
    /// Each key as an earlier failure, with what `item` finds for it (tests'
    /// sources of numbers).
    #[cfg(test)]
    pub(crate) fn each(keys: Vec<ItemKey>, item: impl Fn(&ItemKey) -> Option<T>) -> Vec<Self> {
        keys.into_iter()
            .map(|key| Again {
                item: item(&key),
                key,
                known: true,
            })
            .collect()
    }
}

/// One thing a source met.
pub(crate) enum Found<T> {
    /// An item, with its key.
    Item(ItemKey, T),
    /// Something met but not processed (a FIFO, a symlink not followed):
    /// counted as skipped (by its own shard, hence the key).
    Skipped(ItemKey),
    /// An item whose row from an earlier run is still current
    /// (`--incremental`): not processed, not written, counted as unchanged.
    Unchanged(ItemKey),
    /// An item that failed in `--max-failures` consecutive runs and has not
    /// changed since (`--incremental`): not processed, not written, counted
    /// as skipped and as quarantined.
    Quarantined(Quarantine),
    /// Nothing: the source is about to wait for more (a queue), so the
    /// items before this go to the workers now.
    Wait,
}

/// A quarantined item: its key, its consecutive failed runs, its last error.
pub(crate) struct Quarantine {
    pub(crate) key: ItemKey,
    pub(crate) failures: i64,
    pub(crate) error: String,
}

/// The sources there are, as configured: the registry of sources.
pub(crate) enum Spec {
    Files(files::Spec),
    Query(query::Spec),
    Queue(queue::Spec),
}
