//! Draining a queue: messages are fetched a batch at a time (each batch
//! leased to this process) and yielded as items until the queue is drained
//! — a fetch that waited `--idle` came back empty — or `--max-messages`
//! were taken; with `--follow`, until the run is stopped. Messages
//! delivered before are looked up in the sink first: those with a record
//! committed are acked at once and not yielded.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::broker::Message;
use super::QueueSource;
use crate::checkpoint::ItemKey;
use crate::record::Value;
use crate::source::query::RowItem;
use crate::source::Found;

/// How long one fetch may wait under `--follow` (and for an `--idle`
/// longer than this): the reader looks at the run's cutoff between fetches.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// About how much work a consumer keeps fetched ahead of its workers: the
/// messages its workers start in this long. More would sit leased here
/// while another consumer of the queue has nothing to do.
const AHEAD: Duration = Duration::from_secs(1);
/// Messages kept ahead however slow they are (and before a pace is known).
const MIN_AHEAD: u64 = 16;
/// How long the drain waits for the workers to catch up before it looks again.
const CATCH_UP: Duration = Duration::from_millis(5);

pub(super) struct Drain<'s> {
    source: &'s QueueSource,
    ready: VecDeque<Message>,
    /// Messages yielded (for `--max-messages`).
    taken: u64,
    /// Items were yielded since the reader was last told a wait is coming.
    unflushed: bool,
    /// Since when fetches have come back empty.
    idle_since: Option<Instant>,
    done: bool,
    /// Messages to keep fetched ahead of the workers, from their pace.
    ahead: u64,
    /// Where the pace was last measured: when, and the items started by then.
    mark: (Instant, u64),
}

impl<'s> Drain<'s> {
    pub(super) fn new(source: &'s QueueSource) -> Self {
        Drain {
            source,
            ready: VecDeque::new(),
            taken: 0,
            unflushed: false,
            idle_since: None,
            done: false,
            ahead: MIN_AHEAD,
            mark: (Instant::now(), 0),
        }
    }

    /// How many messages to fetch now: enough to keep about [`AHEAD`] of
    /// work un-started, measured from how fast the workers start them; 0
    /// while that much is waiting already.
    fn room(&mut self) -> u64 {
        let started = self.source.started.load(Ordering::Relaxed);
        let (since, at) = self.mark;
        let elapsed = since.elapsed();
        if elapsed >= AHEAD / 4 {
            let rate = started.saturating_sub(at) as f64 / elapsed.as_secs_f64();
            let cap = 2 * self.source.spec.fetch as u64;
            self.ahead = ((rate * AHEAD.as_secs_f64()) as u64).clamp(MIN_AHEAD, cap.max(MIN_AHEAD));
            self.mark = (Instant::now(), started);
        }
        self.ahead
            .saturating_sub(self.taken.saturating_sub(started))
    }

    /// The next batch into `ready`; sets `done` once the queue is drained.
    fn fetch(&mut self) -> Result<()> {
        let room = self.room();
        let spec = &self.source.spec;
        let left = spec.max_messages.map_or(u64::MAX, |max| max - self.taken);
        if left == 0 {
            self.done = true;
            return Ok(());
        }
        if room == 0 {
            std::thread::sleep(CATCH_UP);
            return Ok(());
        }
        let max = room.min(left).min(spec.fetch as u64) as usize;
        let idle_for = self.idle_since.map_or(Duration::ZERO, |t| t.elapsed());
        let wait = match spec.follow {
            true => FOLLOW_WAIT,
            false => spec.idle.saturating_sub(idle_for).min(FOLLOW_WAIT),
        };
        let messages = self.source.broker.fetch(max, wait)?;
        if messages.is_empty() {
            // Away from the server, the queue is not known to be drained:
            // the broker fails the fetch once it stays away too long.
            if !self.source.broker.connected() {
                self.idle_since = None;
                return Ok(());
            }
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            self.done = !spec.follow && since.elapsed() >= spec.idle;
            return Ok(());
        }
        self.idle_since = None;
        self.admit(messages)
    }

    /// Leases the fetched messages, and acks those already done. A message
    /// this run holds already (its lease ran out, or another consumer
    /// released it, while it waited here) is not taken twice: one batch
    /// must not hold its record twice.
    fn admit(&mut self, mut messages: Vec<Message>) -> Result<()> {
        let source = self.source;
        let now = Instant::now();
        let max = source.spec.max_deliveries;
        {
            let mut held = source.held();
            messages.retain(|m| !held.leases.contains_key(&m.id));
            for m in &messages {
                held.leases.insert(m.id, now);
                if m.deliveries > max {
                    held.poison.insert(m.id);
                }
            }
        }
        // Only a message delivered before can have a record already.
        let again: Vec<i64> = messages
            .iter()
            .filter(|m| m.deliveries > 1)
            .map(|m| m.id)
            .collect();
        let done = match again.is_empty() {
            true => Vec::new(),
            false => {
                let mut lookup = source.lookup.lock().unwrap_or_else(|e| e.into_inner());
                match lookup.as_mut() {
                    Some(lookup) => lookup(&again).context("looking up redelivered messages")?,
                    None => Vec::new(),
                }
            }
        };
        if !done.is_empty() {
            let keys: Vec<ItemKey> = done.iter().map(|id| ItemKey::Int(*id)).collect();
            {
                // Done, not poison, whatever its count says.
                let mut held = source.held();
                for id in &done {
                    held.poison.remove(id);
                }
            }
            // Not consumed by any transaction of this run: acked here,
            // even when the sink consumes the messages it commits. A
            // failed ack is no reason to stop: they come back, and are
            // recognised again.
            if let Err(e) = source.settle(&keys, false) {
                crate::pipeline::log::ack_failed(keys.len(), &e);
            }
            source
                .redelivered
                .fetch_add(done.len() as u64, Ordering::Relaxed);
        }
        self.ready
            .extend(messages.into_iter().filter(|m| !done.contains(&m.id)));
        Ok(())
    }

    fn row(&self, m: Message) -> RowItem {
        let mut row = vec![Value::Int(m.id)];
        if self.source.shape.columns.len() == 5 {
            row.push(m.subject.map_or(Value::Null, Value::Text));
        }
        let payload = match String::from_utf8(m.payload) {
            Ok(text) => Value::Text(text),
            Err(e) => Value::Bytes(e.into_bytes()),
        };
        row.extend([
            payload,
            m.published.map_or(Value::Null, Value::Time),
            Value::Int(m.deliveries),
        ]);
        row
    }
}

impl Iterator for Drain<'_> {
    type Item = Result<Found<RowItem>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                self.taken += 1;
                self.unflushed = true;
                return Some(Ok(Found::Item(ItemKey::Int(m.id), self.row(m))));
            }
            if self.done {
                return None;
            }
            // Before a fetch that may wait: what was yielded goes to the
            // workers now, and the reader gets to look at the cutoff.
            if std::mem::take(&mut self.unflushed) {
                return Some(Ok(Found::Wait));
            }
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
            if self.ready.is_empty() && !self.done {
                return Some(Ok(Found::Wait));
            }
        }
    }
}
