//! What the `queue` source needs of a queue server, whatever it is: fetch
//! messages under a lease, settle them (ack, term, release), extend a
//! lease, and say what is left. One file per server (`nats.rs`,
//! `pgmq.rs`) implements [`Broker`]; the source (`mod.rs`) does the rest.

use std::time::Duration;

use anyhow::Result;

/// One message as fetched.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The stream sequence (NATS) or `msg_id` (pgmq): the item's key.
    pub(crate) id: i64,
    /// The subject it was published on (NATS); None for pgmq.
    pub(crate) subject: Option<String>,
    /// The body as sent (pgmq: the `message` column as JSON text).
    pub(crate) payload: Vec<u8>,
    /// When it was published (enqueued).
    pub(crate) published: Option<chrono::DateTime<chrono::Utc>>,
    /// How many times it has been delivered, this delivery included (1 the
    /// first time).
    pub(crate) deliveries: i64,
}

/// What a queue holds besides what this process has fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backlog {
    /// Messages delivered to no consumer yet (or whose lease expired).
    pub(crate) waiting: u64,
    /// Messages delivered and not acknowledged: held under a lease, by this
    /// process or by another (perhaps one that died: they come back when
    /// the lease expires).
    pub(crate) held: u64,
}

/// SQL that consumes a batch's messages inside the sink's own transaction
/// (pgmq, when the sink is the queue's database): `$1` is a `bigint[]` of
/// message ids.
#[derive(Debug, Clone)]
pub(crate) struct InTransaction {
    /// The queue's database (a `postgres://` URL, password and all).
    pub(crate) url: String,
    pub(crate) sql: String,
}

/// A queue server. Every method blocks (a broker drives its async client on
/// a runtime of its own) and may be called from several threads at once:
/// `fetch` from the source's reader, `ack`/`term` from the sink's thread
/// after each commit, `extend` from the lease keeper, `release` and
/// `backlog` at the end.
pub(crate) trait Broker: Send + Sync {
    /// Up to `max` messages, waiting at most `wait` for them; fewer (or
    /// none) when the wait ends first. Each is leased to this process.
    fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>>;
    /// Done with: their records are committed (NATS ack; pgmq delete, or
    /// archive with `--archive`).
    fn ack(&self, ids: &[i64]) -> Result<()>;
    /// Poison, recorded: never to be delivered again (NATS term; pgmq
    /// archive, or delete when there is no archive table).
    fn term(&self, ids: &[i64]) -> Result<()>;
    /// Not to be finished by this process (the run stopped): to be
    /// delivered again at once (NATS nak; pgmq `vt = now()`).
    fn release(&self, ids: &[i64]) -> Result<()>;
    /// Still being worked on: the lease starts again from now (NATS
    /// in-progress; pgmq `vt = now() + lease`).
    fn extend(&self, ids: &[i64]) -> Result<()>;
    /// What is left in the queue.
    fn backlog(&self) -> Result<Backlog>;
    /// Whether the server can be reached now: an empty fetch while it
    /// cannot says nothing about the queue being drained.
    fn connected(&self) -> bool {
        true
    }
    /// How a sink in the queue's own database can consume messages in its
    /// transaction; None when acks must follow the commit.
    fn in_transaction(&self) -> Option<InTransaction> {
        None
    }
    /// Consumed by the sink's transaction (see `in_transaction`): nothing
    /// to send, only to forget.
    fn consumed(&self, _ids: &[i64]) {}
}
