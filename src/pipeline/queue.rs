//! A pipeline over a queue: [`Pipeline::queue_of`] and the settings only a
//! queue source takes, and what a queue run needs of the rest of the run.

use std::time::Duration;

use super::config::RunConfig;
use super::Pipeline;
use crate::source::{queue, Spec};

impl Pipeline {
    /// The messages waiting in a queue: `from` is a NATS server
    /// (`nats://…`, with `queue` a JetStream stream) or a Postgres database
    /// (`postgres://…`, with `queue` a pgmq queue). Each message's record
    /// commits exactly once; the message is acknowledged after that. The
    /// run ends when the queue is drained (see [`idle`](Self::idle)).
    pub fn queue_of(from: impl Into<String>, queue: impl Into<String>) -> Self {
        Self::new(Spec::Queue(queue::Spec {
            from: from.into(),
            queue: queue.into(),
            ..queue::Spec::default()
        }))
    }

    fn queue_only(mut self, setting: &'static str, f: impl FnOnce(&mut queue::Spec)) -> Self {
        match &mut self.source {
            Spec::Queue(spec) => f(spec),
            _ => self.misuse = Some(setting),
        }
        self
    }

    /// The durable consumer a JetStream stream is read through (queue
    /// source; default `batchproc`).
    pub fn consumer(self, name: impl Into<String>) -> Self {
        self.queue_only("consumer", |s| s.consumer = name.into())
    }

    /// The run ends once no message came for this long (queue source;
    /// default 1 s).
    pub fn idle(self, idle: Duration) -> Self {
        self.queue_only("idle", |s| s.idle = idle)
    }

    /// The run ends after this many messages (queue source).
    pub fn max_messages(self, n: u64) -> Self {
        self.queue_only("max_messages", |s| s.max_messages = Some(n))
    }

    /// Keep consuming when the queue is drained, until cancelled (queue source).
    pub fn follow_queue(self, follow: bool) -> Self {
        self.queue_only("follow", |s| s.follow = follow)
    }

    /// How long a fetched message stays leased to this run, extended while
    /// it is being worked on (queue source; default 30 s).
    pub fn lease(self, lease: Duration) -> Self {
        self.queue_only("lease", |s| s.lease = lease)
    }

    /// A message delivered more than `n` times is recorded with an error and
    /// never tried again (queue source; default 5).
    pub fn max_deliveries(self, n: u32) -> Self {
        self.queue_only("max_deliveries", |s| s.max_deliveries = n.into())
    }

    /// Archive done messages instead of deleting them (pgmq queues).
    pub fn archive(self, archive: bool) -> Self {
        self.queue_only("archive", |s| s.archive = archive)
    }
}

/// The most messages fetched at once.
pub(super) const MAX_FETCH: usize = 5000;

/// What a queue run needs of the rest: a database sink, whose table tells
/// a redelivered message's record apart (a CSV file cannot be looked up),
/// and run records, in whose transactions messages are settled.
pub(super) fn fits(cfg: &RunConfig) -> anyhow::Result<()> {
    if !matches!(cfg.sink, crate::sink::SinkSpec::Database(_)) {
        anyhow::bail!(
            "a queue run needs a database sink (SQLite or Postgres): messages delivered again are \
             recognised by their record in its table"
        );
    }
    if !cfg.checkpoint {
        anyhow::bail!("a queue run keeps run records: drop --no-checkpoint");
    }
    if cfg.shard.is_some() {
        anyhow::bail!(
            "a queue is already shared by its consumers: run several of them, without a shard"
        );
    }
    if cfg.resume || cfg.incremental {
        anyhow::bail!(
            "a queue run starts where the queue is: --resume and --incremental do not apply"
        );
    }
    Ok(())
}
