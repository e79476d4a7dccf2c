//! NATS JetStream as a queue: a stream read through a durable pull consumer.
//!
//! The async client (async-nats) runs on a small tokio runtime owned here;
//! every [`Broker`] method blocks its caller until its task on that runtime
//! is done, so the reader, sink and lease-keeper threads can call at once.
//!
//! Settling (ack, term, nak, in-progress) waits until the server confirms
//! it applied the acks: the server queues acks and applies them later, so
//! only its reply says that a consumer info taken next counts them. Only
//! the last ack of a settle asks for that reply: the server applies one
//! consumer's acks from one connection in the order they came, so its
//! reply to the last one covers them all. (Confirming each ack doubled the
//! messages the server handled, and its CPU is the drain's CPU too.)

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use async_nats::connection::State;
use async_nats::jetstream::consumer::pull::{Batch, BatchError};
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, FromConsumer, PullConsumer};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, AckKind, ErrorCode};
use async_nats::{Client, Event, StatusCode, Subject};
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use super::broker::{Backlog, Broker, Message};
use crate::redact::redact;

/// How long connecting may take before `open` gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the server may leave a request unanswered, beyond any wait
/// asked of it, before the call fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The expiry of a pull for what is available now. The server answers at
/// once when messages are, so this is sat out only when none can be
/// delivered; without an expiry, nats-server 2.9 leaves such a pull
/// unanswered while the consumer's max_ack_pending is reached.
const QUICK: Duration = Duration::from_millis(50);
/// The most messages one pull request asks for (see `pull`).
const PULL: usize = 256;
/// Acks unconfirmed after this long are sent again (a lost connection may
/// have dropped them); an ack sent twice does no harm.
const RESEND_AFTER: Duration = Duration::from_secs(3);
/// How long the connection may stay lost (async-nats reconnects by itself
/// meanwhile) before `fetch` fails rather than return nothing, and acks
/// fail rather than wait for it.
const DOWN_LIMIT: Duration = Duration::from_secs(30);

/// A stream and its durable pull consumer.
pub(crate) struct Nats {
    /// An Option so that `drop` can shut it down without blocking.
    rt: Option<Runtime>,
    client: Client,
    stream: jetstream::stream::Stream,
    consumer: PullConsumer,
    /// The URL as shown in messages (password hidden).
    shown: String,
    /// The ack subject of each message fetched and not settled yet.
    replies: Mutex<HashMap<i64, Subject>>,
    link: Arc<Link>,
}

/// The connection's ups and downs, as async-nats reports them.
#[derive(Default)]
struct Link {
    down_since: Mutex<Option<Instant>>,
    /// How many times it was lost: a fetch that failed while this changed
    /// failed for that reason.
    losses: AtomicU64,
}

impl Nats {
    /// Connects to `url`, checks that `stream` exists, and binds the durable
    /// pull consumer `consumer` (created when missing) with an ack wait of
    /// `lease`. Every error here is a configuration error (exit 2).
    pub(crate) fn open(url: &str, stream: &str, consumer: &str, lease: Duration) -> Result<Nats> {
        let shown = redact(url);
        // An ack wait of 0 would mean the server's default (30 s).
        ensure!(
            lease >= Duration::from_millis(1),
            "the lease must be at least 1 ms"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("batchproc-nats")
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the NATS client: {e}"))?;
        let link = Arc::new(Link::default());
        let watch = link.clone();
        let options = async_nats::ConnectOptions::new()
            .name("batchproc")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REPLY_TIMEOUT))
            .event_callback(move |event| {
                match event {
                    Event::Disconnected => {
                        lock(&watch.down_since).get_or_insert_with(Instant::now);
                        watch.losses.fetch_add(1, Ordering::SeqCst);
                    }
                    Event::Connected => *lock(&watch.down_since) = None,
                    _ => {}
                }
                async {}
            });
        let (url, stream, consumer) = (url.to_owned(), stream.to_owned(), consumer.to_owned());
        let at = shown.clone();
        let (client, stream, consumer) = run(&rt, async move {
            let client = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(url)).await {
                Ok(connected) => connected.map_err(|e| redact(&e.to_string())),
                Err(_) => Err(format!("no answer in {CONNECT_TIMEOUT:?}")),
            }
            .map_err(|e| anyhow!("cannot connect to NATS at {at}: {e}"))?;
            let (stream, consumer) = bind(&client, &stream, &consumer, lease, &at).await?;
            anyhow::Ok((client, stream, consumer))
        })??;
        Ok(Nats {
            rt: Some(rt),
            client,
            stream,
            consumer,
            shown,
            replies: Mutex::default(),
            link,
        })
    }

    fn run<T: Send + 'static>(&self, task: impl Future<Output = T> + Send + 'static) -> Result<T> {
        run(self.rt.as_ref().ok_or_else(|| anyhow!("closed"))?, task)
    }

    /// Sends `kind` for each of `ids` not settled yet and waits until the
    /// server confirms them all; `done` forgets them then.
    fn settle(&self, kind: AckKind, ids: &[i64], done: bool) -> Result<()> {
        let acks: Vec<(i64, Subject)> = {
            let replies = lock(&self.replies);
            let known = ids
                .iter()
                .filter_map(|id| Some((*id, replies.get(id)?.clone())));
            known.collect()
        };
        if acks.is_empty() {
            return Ok(());
        }
        let acks = Arc::new(acks);
        let task = confirm(self.client.clone(), kind, acks.clone());
        match self.run(async move { tokio::time::timeout(DOWN_LIMIT, task).await })? {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("NATS at {}: {e}", self.shown),
            Err(_) => bail!("NATS at {} confirmed no ack in {DOWN_LIMIT:?}", self.shown),
        }
        if done {
            let mut replies = lock(&self.replies);
            for (id, reply) in acks.iter() {
                // Unless fetched again meanwhile (its lease ran out):
                // that delivery is not the one settled here.
                if replies.get(id) == Some(reply) {
                    replies.remove(id);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Broker for Nats {
    fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>> {
        if let Some(since) = *lock(&self.link.down_since) {
            let down = since.elapsed();
            ensure!(
                down < DOWN_LIMIT,
                "lost the connection to NATS at {} {} s ago",
                self.shown,
                down.as_secs()
            );
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let losses = self.link.losses.load(Ordering::SeqCst);
        let (client, consumer) = (self.client.clone(), self.consumer.clone());
        let pulled = self.run(async move {
            if client.connection_state() == State::Connected {
                return pull(&consumer, max, wait).await;
            }
            // Reconnecting: a pull now would go nowhere.
            let until = Instant::now() + wait;
            while client.connection_state() != State::Connected && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Vec::new())
        })?;
        let pulled = match pulled {
            Ok(pulled) => pulled,
            // The connection was lost meanwhile: nothing now, more later.
            Err(_) if self.link.losses.load(Ordering::SeqCst) != losses => Vec::new(),
            Err(e) => bail!("cannot fetch from NATS at {}: {e}", self.shown),
        };
        let mut replies = lock(&self.replies);
        let mut messages = Vec::with_capacity(pulled.len());
        for m in pulled {
            let info = m
                .info()
                .map_err(|e| anyhow!("a message from NATS without its metadata: {e}"))?;
            let id = i64::try_from(info.stream_sequence)?;
            let published = i64::try_from(info.published.unix_timestamp_nanos()).ok();
            messages.push(Message {
                id,
                subject: Some(m.message.subject.to_string()),
                payload: m.message.payload.to_vec(),
                published: published.map(chrono::DateTime::from_timestamp_nanos),
                deliveries: info.delivered,
            });
            replies.extend(m.message.reply.clone().map(|reply| (id, reply)));
        }
        Ok(messages)
    }

    fn ack(&self, ids: &[i64]) -> Result<()> {
        self.settle(AckKind::Ack, ids, true)
    }

    fn term(&self, ids: &[i64]) -> Result<()> {
        self.settle(AckKind::Term, ids, true)
    }

    fn release(&self, ids: &[i64]) -> Result<()> {
        self.settle(AckKind::Nak(None), ids, true)
    }

    fn extend(&self, ids: &[i64]) -> Result<()> {
        self.settle(AckKind::Progress, ids, false)
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn backlog(&self) -> Result<Backlog> {
        // Rather than sit out a request's timeout.
        if self.client.connection_state() != State::Connected {
            bail!("not connected to NATS at {} (reconnecting)", self.shown);
        }
        let (stream, name) = (
            self.stream.clone(),
            self.consumer.cached_info().name.clone(),
        );
        let info = self
            .run(async move { stream.consumer_info(name).await })?
            .map_err(|e| anyhow!("cannot read the consumer on {}: {e}", self.shown))?;
        Ok(Backlog {
            waiting: info.num_pending,
            held: info.num_ack_pending as u64,
        })
    }
}

/// Runs `task` on `rt` and waits for its output; unlike `block_on`, also
/// from within an async context, and a panic in the task is an error here.
fn run<T: Send + 'static>(
    rt: &Runtime,
    task: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move { tx.send(task.await) });
    rx.recv().map_err(|_| anyhow!("the NATS client failed"))
}

/// The stream, and the consumer created, updated or checked.
async fn bind(
    client: &Client,
    stream: &str,
    name: &str,
    lease: Duration,
    at: &str,
) -> Result<(jetstream::stream::Stream, PullConsumer)> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(stream).await.map_err(|e| match e.kind() {
        GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            anyhow!("no stream {stream:?} on {at}")
        }
        _ => anyhow!("cannot read stream {stream:?} on {at}: {e}"),
    })?;
    let config = match stream.consumer_info(name).await {
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: lease,
            // Unlimited: batchproc sets poison messages aside itself.
            max_deliver: -1,
            // The server's default (1000) would stall a run whose sink
            // commits more at a time; the source bounds what it holds.
            max_ack_pending: -1,
            ..Default::default()
        },
        Err(e) => bail!("cannot read consumer {name:?} on {at}: {e}"),
        Ok(info) => {
            if let Err(problem) = check(&info.config) {
                bail!(
                    "consumer {name:?} of stream {:?} on {at} {problem}: name another with --consumer",
                    info.stream_name
                );
            }
            // The same config again changes nothing; another ack wait
            // updates the consumer (nats-server 2.9 too), whose delivered
            // and acked messages stay as they were.
            let mut config = consumer::pull::Config::try_from_consumer_config(info.config)
                .map_err(|e| anyhow!("consumer {name:?} on {at}: {e}"))?;
            config.ack_wait = lease;
            // A limit of the server's own would drop a message unrecorded
            // once reached (its last delivery killed before the commit):
            // --max-deliveries records it instead.
            config.max_deliver = -1;
            config
        }
    };
    let created = stream.create_consumer(config).await;
    let consumer = created.map_err(|e| anyhow!("cannot bind consumer {name:?} on {at}: {e}"))?;
    Ok((stream, consumer))
}

/// Why an existing consumer cannot be batchproc's, if it cannot.
fn check(config: &consumer::Config) -> Result<(), String> {
    let mut filters = config.filter_subjects.clone();
    filters.extend(Some(config.filter_subject.clone()).filter(|f| !f.is_empty()));
    if config.deliver_subject.is_some() {
        Err("is a push consumer (batchproc needs a pull consumer)".into())
    } else if config.ack_policy != AckPolicy::Explicit {
        Err(format!(
            "acknowledges with policy {:?}, not explicitly",
            config.ack_policy
        ))
    } else if !filters.is_empty() {
        Err(format!(
            "filters the stream on {} (batchproc reads it all)",
            filters.join(", ")
        ))
    } else {
        Ok(())
    }
}

/// Up to `max` messages: those available now, else the first to come
/// within `wait` and any more available then. So a partial batch returns
/// at once, where a single pull for `max` would wait for `max` to come.
async fn pull(
    consumer: &PullConsumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>> {
    let start = Instant::now();
    // In pulls of at most PULL: a pull whose messages take longer than
    // QUICK to deliver expires mid-way, and nats-server 2.9 then sends no
    // end to it, so async-nats waits out its own 5 s fallback (measured:
    // pulls of 5,000 × 1 KiB stalled that way, pulls of ~400 never did).
    let now = |n: usize| async move {
        let mut got: Vec<jetstream::Message> = Vec::new();
        while got.len() < n {
            let ask = (n - got.len()).min(PULL);
            let batch = consumer.fetch().max_messages(ask).expires(QUICK).messages();
            let more = take(batch, QUICK).await?;
            let short = more.len() < ask;
            got.extend(more);
            if short {
                break;
            }
        }
        anyhow::Ok(got)
    };
    let mut got = now(max).await?;
    let left = wait.saturating_sub(start.elapsed());
    if got.is_empty() && left >= QUICK {
        got = take(
            consumer.batch().max_messages(1).expires(left).messages(),
            left,
        )
        .await?;
        if !got.is_empty() && max > 1 {
            got.extend(now(max - 1).await?);
        }
    }
    Ok(got)
}

/// Every message a pull request that expires after `expires` brings.
async fn take(
    batch: impl Future<Output = Result<Batch, BatchError>>,
    expires: Duration,
) -> Result<Vec<jetstream::Message>> {
    let limit = expires + REPLY_TIMEOUT;
    let all = async {
        let mut batch = batch.await?;
        let mut got = Vec::new();
        while let Some(message) = batch.next().await {
            got.push(message.map_err(|e| anyhow!("{e}"))?);
        }
        Ok(got)
    };
    let late = |_| anyhow!("no answer to a pull request in {limit:?}");
    tokio::time::timeout(limit, all).await.map_err(late)?
}

/// Sends `kind` to each ack subject, the last asking for a reply, and
/// waits for that reply (which covers them all, see the module's doc);
/// sends them all again if it does not come.
async fn confirm(client: Client, kind: AckKind, acks: Arc<Vec<(i64, Subject)>>) -> Result<()> {
    let Some(((_, last), rest)) = acks.split_last() else {
        return Ok(());
    };
    let inbox = client.new_inbox();
    let mut confirmation = client.subscribe(inbox.clone()).await?;
    loop {
        for (_, reply) in rest {
            client.publish(reply.clone(), kind.into()).await?;
        }
        client
            .publish_with_reply(last.clone(), inbox.clone(), kind.into())
            .await?;
        client.flush().await?;
        if let Ok(confirmed) = tokio::time::timeout(RESEND_AFTER, confirmation.next()).await {
            let confirmed = confirmed.ok_or_else(|| anyhow!("ack confirmations ended"))?;
            // 503: nobody listens on the ack subject any more.
            if let Some(status) = confirmed.status.filter(|s| *s != StatusCode::OK) {
                bail!("an ack was refused ({status}): consumer deleted?");
            }
            return Ok(());
        }
    }
}

/// The mutex's value, even if a thread panicked holding it: what it holds
/// stays consistent whatever happens.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
