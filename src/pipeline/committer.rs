//! Write-behind for the sink: batches are written on a thread of their own,
//! so the batcher gathers, checks and plans the next batch while the
//! database commits the current one. One batch may wait behind the one in
//! the sink, no more (memory stays bounded). Transactions still commit one
//! at a time and in order; the first failed write ends the thread, so no
//! later batch can commit after it, and its error is the run's failure.

use std::thread::Scope;
use std::time::Instant;

use anyhow::{bail, Result};
use crossbeam_channel::{bounded, Sender};

use super::finish::{Failure, FirstFailure};
use super::log;
use crate::checkpoint::{CheckpointUpdate, ItemKey};
use crate::record::{Record, Value};
use crate::sink::{Sink, Stopped};

/// One transaction's worth: records and the checkpoint that covers them.
pub(super) struct Job {
    pub(super) records: Vec<Record>,
    /// The sink's encoding of `records`, made on the batcher's thread.
    pub(super) encoded: Option<Vec<u8>>,
    /// Keys of rows to delete instead (`--prune`; no records then).
    pub(super) removed: Vec<Value>,
    pub(super) checkpoint: Option<CheckpointUpdate>,
}

/// What a queue run does once a batch committed: settles its messages.
pub(super) type Settle<'a> = dyn Fn(&[ItemKey]) + Sync + 'a;

/// The batcher's end of the sink thread.
pub(super) struct Committer<'a> {
    jobs: Sender<Job>,
    failure: &'a FirstFailure<'a>,
}

impl<'a> Committer<'a> {
    /// Starts the sink thread in `scope`; it ends when the committer is dropped.
    pub(super) fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        sink: &'scope mut dyn Sink,
        settle: Option<&'scope Settle<'scope>>,
        failure: &'a FirstFailure<'a>,
    ) -> Self
    where
        'a: 'scope,
    {
        let (jobs, rx) = bounded::<Job>(1);
        scope.spawn(move || {
            for (n, job) in (1..).zip(rx) {
                let started = Instant::now();
                let written = match job.removed.is_empty() {
                    true => sink.write(
                        &job.records,
                        job.encoded.as_deref(),
                        job.checkpoint.as_ref(),
                    ),
                    false => sink.remove(&job.removed, job.checkpoint.as_ref()),
                };
                if written.is_ok() {
                    let checkpoint = job.checkpoint.as_ref();
                    let took = started.elapsed();
                    log::batch_committed(n, job.records.len(), checkpoint.is_some(), took);
                    // A queue's messages are settled only now that their
                    // records are safe.
                    if let (Some(settle), Some(update)) = (settle, checkpoint) {
                        if !update.acks.is_empty() || !update.poison.is_empty() {
                            let keys: Vec<ItemKey> =
                                update.acks.iter().chain(&update.poison).cloned().collect();
                            settle(&keys);
                        }
                    }
                }
                if let Err(e) = written {
                    // Given up at Ctrl-C while the database kept it waiting:
                    // the run ends interrupted, not failed; a resume redoes
                    // what this batch held.
                    if !e.chain().any(|c| c.is::<Stopped>()) {
                        failure.set(Failure::Sink(e));
                    }
                    return;
                }
            }
        });
        Committer { jobs, failure }
    }

    /// Queues a batch behind the one being written; fails once a write has.
    pub(super) fn send(&self, job: Job) -> Result<()> {
        if self.failure.sink_failed() || self.jobs.send(job).is_err() {
            bail!("the sink failed");
        }
        Ok(())
    }
}
