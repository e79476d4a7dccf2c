//! Write-behind for the sink: batches are written on a thread of their own,
//! so the batcher gathers, checks and plans the next batch while the
//! database commits the current one. One batch may wait behind the one in
//! the sink, no more (memory stays bounded). Transactions still commit one
//! at a time and in order; the first failed write ends the thread, so no
//! later batch can commit after it, and its error is kept for the run.

use std::sync::OnceLock;
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::Result;
use crossbeam_channel::{bounded, Sender};

use crate::checkpoint::CheckpointUpdate;
use crate::pool::{Cancel, CancelReason};
use crate::record::Record;
use crate::sink::Sink;

/// One transaction's worth: records and the checkpoint that covers them.
pub struct Job {
    pub records: Vec<Record>,
    pub checkpoint: Option<CheckpointUpdate>,
}

/// The batcher's end of the sink thread.
pub struct Committer<'a> {
    jobs: Sender<Job>,
    failed: &'a OnceLock<anyhow::Error>,
}

impl<'a> Committer<'a> {
    /// Starts the sink thread in `scope`. A failed write cancels the run
    /// and is kept in `failed`.
    pub fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        sink: &'scope mut dyn Sink,
        failed: &'a OnceLock<anyhow::Error>,
        cancel: &'scope Cancel,
    ) -> (Self, ScopedJoinHandle<'scope, ()>)
    where
        'a: 'scope,
    {
        let (jobs, rx) = bounded::<Job>(1);
        let handle = scope.spawn(move || {
            for job in rx {
                if let Err(e) = sink.write(&job.records, job.checkpoint.as_ref()) {
                    let _ = failed.set(e);
                    cancel.cancel(CancelReason::Failed);
                    return;
                }
            }
        });
        (Committer { jobs, failed }, handle)
    }

    /// Queues a batch behind the one being written; fails once a write has.
    pub fn send(&self, job: Job) -> Result<()> {
        if self.failed.get().is_some() || self.jobs.send(job).is_err() {
            anyhow::bail!("the sink failed");
        }
        Ok(())
    }
}
