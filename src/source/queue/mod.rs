//! The `queue` source: the messages waiting in a queue — a NATS JetStream
//! stream ([`nats`]) or a pgmq queue in Postgres ([`pgmq`]) — each an item
//! keyed by its message id, with the columns `id`, `subject` (NATS),
//! `payload`, `published` and `deliveries`.
//!
//! Queues deliver at least once; batchproc makes the *results* exactly
//! once (the idempotent-consumer pattern):
//! - a message is settled with the server (acked, deleted, archived) only
//!   after the sink transaction holding its record committed
//!   ([`QueueSource::committed`], called by the sink's thread); a pgmq queue
//!   in the sink's own database is consumed inside that transaction;
//! - a message delivered again (its ack lost in a crash, its lease expired)
//!   whose record is committed already is recognised by a look-up in the
//!   sink ([`Lookup`]) and acked without a second record;
//! - every fetched message is leased; the [`lease`] keeper extends the
//!   lease of those still held, so a slow item is not handed to another
//!   consumer; whatever the run does not finish is released at its end.
//!
//! The source reads until the queue is drained ([`drain`]); the message's
//! processing is [`work`]'s, which records a message delivered more than
//! `--max-deliveries` times as poison instead of trying it again.

pub(crate) mod broker;
mod drain;
mod lease;
mod nats;
mod pgmq;
mod work;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Result};

pub(crate) use work::QueueWork;

use super::query::Shape;
use super::{Again, Items, Source};
use crate::checkpoint::{Fingerprint, ItemKey, Part};
use crate::pool::Cancel;
use crate::record::{Column, ColumnType};
use broker::{Broker, InTransaction};

/// Which of some message ids already have a committed record without an
/// error in the sink: a redelivered message among them is done. Given by
/// the sink (see [`crate::sink::Sink::lookup`]).
pub(crate) type Lookup = Box<dyn FnMut(&[i64]) -> Result<Vec<i64>> + Send>;

/// The `queue` source as configured.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// `nats://…` or `postgres://…` (pgmq).
    pub(crate) from: String,
    /// The JetStream stream, or the pgmq queue.
    pub(crate) queue: String,
    /// The durable consumer (NATS).
    pub(crate) consumer: String,
    /// The run ends once no message came for this long.
    pub(crate) idle: Duration,
    /// The run ends after this many messages.
    pub(crate) max_messages: Option<u64>,
    /// Never end for want of messages: only a signal (or `--max-runtime`) ends the run.
    pub(crate) follow: bool,
    /// How long a fetched message stays leased to this process.
    pub(crate) lease: Duration,
    /// A message delivered more often is recorded as poison, not tried.
    pub(crate) max_deliveries: i64,
    /// pgmq: archive acked messages instead of deleting them.
    pub(crate) archive: bool,
    /// Messages per fetch (the sink's batch size).
    pub(crate) fetch: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            from: String::new(),
            queue: String::new(),
            consumer: "batchproc".into(),
            idle: Duration::from_secs(1),
            max_messages: None,
            follow: false,
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            archive: false,
            fetch: 1000,
        }
    }
}

impl Spec {
    /// Connects to the queue server and checks the queue and the processors
    /// (all configuration errors, before any work).
    pub(crate) fn open(
        self,
        processors: &[String],
        timeout: Option<Duration>,
    ) -> Result<(QueueSource, QueueWork)> {
        if self.lease < Duration::from_secs(1) {
            bail!("--lease must be at least 1s");
        }
        if self.max_deliveries < 1 {
            bail!("--max-deliveries must be at least 1");
        }
        let nats = self.from.starts_with("nats://") || self.from.starts_with("tls://");
        let broker: Arc<dyn Broker> = if nats {
            if self.archive {
                bail!("--archive is for pgmq queues; a JetStream stream keeps what its retention policy says");
            }
            Arc::new(nats::Nats::open(
                &self.from,
                &self.queue,
                &self.consumer,
                self.lease,
            )?)
        } else if self.from.starts_with("postgres://") || self.from.starts_with("postgresql://") {
            Arc::new(pgmq::Pgmq::open(
                &self.from,
                &self.queue,
                self.lease,
                self.archive,
            )?)
        } else {
            bail!(
                "--from {}: give a nats:// URL (JetStream) or a postgres:// URL (pgmq)",
                crate::record::Quoted(&crate::redact::redact(&self.from))
            );
        };
        let shape = shape(nats);
        let started = Arc::new(AtomicU64::new(0));
        let work = QueueWork::new(
            &shape,
            processors,
            timeout,
            self.max_deliveries,
            started.clone(),
        )?;
        Ok((QueueSource::new(self, broker, shape, started), work))
    }
}

/// The columns of a message: `subject` only for NATS.
fn shape(nats: bool) -> Shape {
    let mut columns = vec![Column::new("id", ColumnType::Int)];
    if nats {
        columns.push(Column::new("subject", ColumnType::Text));
    }
    columns.extend([
        Column::new("payload", ColumnType::Text),
        Column::new("published", ColumnType::Time),
        Column::new("deliveries", ColumnType::Int),
    ]);
    Shape { columns, key: 0 }
}

/// What the end of a queue run reports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QueueEnd {
    /// Messages delivered again whose record was committed already: acked
    /// without a second record.
    pub(crate) redelivered: u64,
    /// Messages left held under another consumer's lease (one that may
    /// have died): the next run picks them up once the lease expires.
    pub(crate) held: Option<u64>,
}

/// Fetched messages not yet settled, by id: what the lease keeper extends
/// and the end of the run releases.
#[derive(Default)]
struct Held {
    /// Each with when its lease was last started.
    leases: HashMap<i64, std::time::Instant>,
    /// Of them, those recorded as poison: terminated, not acked.
    poison: HashSet<i64>,
}

pub(crate) struct QueueSource {
    spec: Spec,
    broker: Arc<dyn Broker>,
    shape: Shape,
    held: Arc<Mutex<Held>>,
    lookup: Mutex<Option<Lookup>>,
    /// The sink consumes messages in its own transaction (pgmq in the
    /// sink's database): committed ones need no ack.
    in_sink: bool,
    redelivered: AtomicU64,
    /// Messages the workers started (shared with the work): how far the
    /// drain may fetch ahead.
    started: Arc<AtomicU64>,
    /// Ends the lease keeper.
    stop: Cancel,
    keeper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl QueueSource {
    fn new(spec: Spec, broker: Arc<dyn Broker>, shape: Shape, started: Arc<AtomicU64>) -> Self {
        QueueSource {
            started,
            spec,
            broker,
            shape,
            held: Arc::default(),
            lookup: Mutex::new(None),
            in_sink: false,
            redelivered: AtomicU64::new(0),
            stop: Cancel::new(),
            keeper: Mutex::new(None),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sink's look-up of committed records (before the run starts).
    pub(crate) fn recognise(&mut self, lookup: Lookup) {
        *self.lookup.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(lookup);
    }

    /// How a sink in the queue's database can consume messages in its
    /// transaction, if the queue can be consumed so.
    pub(crate) fn in_transaction(&self) -> Option<InTransaction> {
        self.broker.in_transaction()
    }

    /// The sink took that offer: it consumes messages as it commits them.
    pub(crate) fn consumed_by_sink(&mut self) {
        self.in_sink = true;
    }

    /// Called on the sink's thread once a transaction committed: its
    /// messages are done. A failure to ack is only a warning's worth: the
    /// record is safe, and the message, delivered again, is recognised.
    pub(crate) fn committed(&self, keys: &[ItemKey]) -> Result<()> {
        ack_delay();
        // The sink's transaction consumed them already.
        self.settle(keys, self.in_sink)
    }

    /// Settles messages done with: poison is terminated, the rest acked
    /// unless `acked` (by the sink's transaction). A term that fails does
    /// not keep the acks from going out.
    fn settle(&self, keys: &[ItemKey], acked: bool) -> Result<()> {
        let (mut acks, mut poison) = (Vec::with_capacity(keys.len()), Vec::new());
        {
            let mut held = self.held();
            for key in keys {
                let ItemKey::Int(id) = key else { continue };
                held.leases.remove(id);
                match held.poison.remove(id) {
                    true => poison.push(*id),
                    false => acks.push(*id),
                }
            }
        }
        let termed = match poison.is_empty() {
            true => Ok(()),
            false => self.broker.term(&poison),
        };
        if acked {
            self.broker.consumed(&acks);
        } else if !acks.is_empty() {
            self.broker.ack(&acks)?;
        }
        termed
    }

    /// The end of the run: stops the lease keeper, releases the messages
    /// fetched but not committed (an abort, a cutoff, a failed item under
    /// fail-fast) for redelivery, and says what the queue still holds.
    pub(crate) fn end(&self) -> (QueueEnd, Option<anyhow::Error>) {
        self.stop.cancel();
        let keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take();
        // A keeper that panicked extended nothing more: nothing to report.
        let _ = keeper.map(std::thread::JoinHandle::join);
        let left: Vec<i64> = {
            let mut held = self.held();
            held.poison.clear();
            held.leases.drain().map(|(id, _)| id).collect()
        };
        let mut error = None;
        if !left.is_empty() {
            error = self.broker.release(&left).err();
        }
        let held = match self.broker.backlog() {
            Ok(backlog) => Some(backlog.held),
            Err(e) => {
                error = error.or(Some(e));
                None
            }
        };
        let end = QueueEnd {
            redelivered: self.redelivered.load(Ordering::Relaxed),
            held,
        };
        (end, error)
    }
}

impl Source for QueueSource {
    type Item = super::query::RowItem;

    fn items(&self, _after: Option<&ItemKey>) -> Result<Items<'_, Self::Item>> {
        let keeper = lease::keep(
            self.broker.clone(),
            self.held.clone(),
            self.spec.lease,
            self.stop.clone(),
        );
        *self.keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(keeper);
        Ok(Box::new(drain::Drain::new(self)))
    }

    /// A queue is never resumed: nothing to try again.
    fn again(
        &self,
        keys: Vec<ItemKey>,
        _after: Option<&ItemKey>,
    ) -> Result<Vec<Again<Self::Item>>> {
        Ok(keys
            .into_iter()
            .map(|key| Again {
                key,
                item: None,
                known: true,
            })
            .collect())
    }

    /// The messages waiting: a count taken once (reading the items a
    /// second time would consume them).
    fn count(&self, _after: Option<&ItemKey>, _stop: &Cancel, report: &dyn Fn(u64)) -> Result<()> {
        let waiting = self.broker.backlog()?.waiting;
        let n = match self.spec.max_messages {
            Some(max) => waiting.min(max),
            None => waiting,
        };
        report(n);
        Ok(())
    }

    fn item_size(row: &Self::Item) -> u64 {
        row.iter().map(crate::record::Value::size).sum()
    }

    fn label(&self, key: &ItemKey) -> String {
        format!("{} message {key}", self.spec.queue)
    }

    fn fingerprint(&self, fp: &mut Fingerprint) {
        fp.add("from", Part::Text(crate::redact::redact(&self.spec.from)))
            .add("queue", Part::Text(self.spec.queue.clone()));
        if self.shape.columns.iter().any(|c| c.name == "subject") {
            fp.add("consumer", Part::Text(self.spec.consumer.clone()));
        }
    }

    fn queue(&self) -> Option<&QueueSource> {
        Some(self)
    }

    fn queue_mut(&mut self) -> Option<&mut QueueSource> {
        Some(self)
    }
}

/// Test hook: `BATCHPROC_TEST_ACK_DELAY_MS` waits that long between a
/// commit and the acks that follow it, so the crash tests can land a
/// SIGKILL there. Unset in normal use.
fn ack_delay() {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("BATCHPROC_TEST_ACK_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}
