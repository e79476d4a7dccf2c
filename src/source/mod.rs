//! Sources: where a run's items come from, in a deterministic order, pushed
//! into the bounded queue that feeds the worker pool.

pub mod files;
pub mod query;

use crossbeam_channel::Sender;

use crate::checkpoint::{Ledger, Seq};
use crate::pool::Cancel;

/// A producer of items in a deterministic order, sent in chunks: one file
/// at a time (files can be slow, and workers should share them out), many
/// small rows at once (so threads are not woken for every row). `run` skips what the
/// ledger says an earlier attempt committed, registers every item it queues
/// with the ledger (and sends it with the sequence number the ledger gave it), blocks on the full queue (that is what keeps memory
/// bounded) and returns early once `cancel` fires. An error (the database
/// went away, a key turned out not unique) fails the run.
pub trait Source: Send {
    type Item: Send;
    fn run(
        self,
        queue: Sender<Vec<(Seq, Self::Item)>>,
        ledger: &Ledger,
        cancel: &Cancel,
    ) -> anyhow::Result<()>;
}
