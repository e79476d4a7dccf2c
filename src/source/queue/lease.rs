//! The lease keeper: a thread that, while the run lasts, extends the lease
//! of every message held for more than half its lease (fetched and not yet
//! committed: waiting in the queue to the workers, or being worked on), so
//! that a slow item, or a backlog behind one, is never handed to another
//! consumer meanwhile.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::broker::Broker;
use super::Held;
use crate::pool::Cancel;

/// Starts the keeper; it ends when `stop` is cancelled (join it then: an
/// extension still under way could otherwise land after the run released
/// the messages, and hide them from other consumers for a lease).
pub(super) fn keep(
    broker: Arc<dyn Broker>,
    held: Arc<Mutex<Held>>,
    lease: Duration,
    stop: Cancel,
) -> JoinHandle<()> {
    let every = lease / 4;
    std::thread::spawn(move || {
        // wait_timeout: true once stopped.
        while !stop.wait_timeout(every) {
            let now = Instant::now();
            let due: Vec<i64> = {
                let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
                held.leases
                    .iter_mut()
                    .filter(|(_, since)| now.duration_since(**since) >= lease / 2)
                    .map(|(id, since)| {
                        *since = now;
                        *id
                    })
                    .collect()
            };
            if due.is_empty() {
                continue;
            }
            // A failed extension is retried at the next turn; the message
            // may be redelivered meanwhile, which the sink look-up and the
            // upsert on its id keep from giving it a second record.
            if let Err(e) = broker.extend(&due) {
                crate::pipeline::log::lease_not_extended(due.len(), &e);
            }
        }
    })
}
