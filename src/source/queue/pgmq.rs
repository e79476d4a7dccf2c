//! pgmq as a queue: the table `pgmq.q_NAME` in Postgres, read and written
//! with plain SQL (the pgmq extension itself is not needed).

use std::time::Duration;

use anyhow::{bail, Result};

use super::broker::{Backlog, Broker, Message};

/// A pgmq queue.
pub(crate) struct Pgmq {}

impl Pgmq {
    /// Connects to `url` and checks that the queue's table (and with
    /// `archive` its archive table) exists. Every error here is a
    /// configuration error (exit 2).
    pub(crate) fn open(url: &str, queue: &str, lease: Duration, archive: bool) -> Result<Pgmq> {
        let _ = (url, queue, lease, archive);
        bail!("pgmq is not supported yet")
    }
}

impl Broker for Pgmq {
    fn fetch(&self, _max: usize, _wait: Duration) -> Result<Vec<Message>> {
        bail!("not yet")
    }
    fn ack(&self, _ids: &[i64]) -> Result<()> {
        bail!("not yet")
    }
    fn term(&self, _ids: &[i64]) -> Result<()> {
        bail!("not yet")
    }
    fn release(&self, _ids: &[i64]) -> Result<()> {
        bail!("not yet")
    }
    fn extend(&self, _ids: &[i64]) -> Result<()> {
        bail!("not yet")
    }
    fn backlog(&self) -> Result<Backlog> {
        bail!("not yet")
    }
}
