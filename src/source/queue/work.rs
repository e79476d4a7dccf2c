//! What a worker does with one message: the query source's row work on the
//! message's columns — unless the message was delivered more than
//! `--max-deliveries` times, which makes it poison: recorded with an error
//! and terminated, never tried again (it may be what crashed the earlier
//! attempts).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::pool::Cancel;
use crate::processor::registry::{self, Target};
use crate::processor::{Buffer, Outcome, Work};
use crate::record::{Record, Schema, Value};
use crate::source::query::{RowItem, RowWork, Shape};

pub(crate) struct QueueWork {
    rows: RowWork,
    max_deliveries: i64,
    /// Where `deliveries` is among a message's columns.
    deliveries: usize,
    /// A message's own columns.
    width: usize,
    /// Messages started, for the drain's pace (retries count again).
    started: Arc<AtomicU64>,
}

impl QueueWork {
    pub(super) fn new(
        shape: &Shape,
        processors: &[String],
        timeout: Option<Duration>,
        max_deliveries: i64,
        started: Arc<AtomicU64>,
    ) -> Result<Self> {
        let specs = registry::parse(processors, Target::Rows)?;
        Ok(QueueWork {
            rows: RowWork::new(shape, specs, timeout)?,
            max_deliveries,
            deliveries: shape.columns.len() - 1,
            width: shape.columns.len(),
            started,
        })
    }
}

impl Work for QueueWork {
    type Item = RowItem;

    fn schema(&self) -> &Schema {
        self.rows.schema()
    }

    fn specs(&self) -> Vec<String> {
        self.rows.specs()
    }

    fn process(&self, buf: &mut Buffer, values: RowItem, cancel: &Cancel) -> Outcome {
        self.started.fetch_add(1, Ordering::Relaxed);
        let deliveries = match values.get(self.deliveries) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        };
        if deliveries <= self.max_deliveries {
            return self.rows.process(buf, values, cancel);
        }
        let error = format!(
            "poison: delivered {deliveries} times, more than --max-deliveries {}; not tried again",
            self.max_deliveries
        );
        let mut values = values;
        let columns = self.schema().columns.len();
        values.resize(columns - 1, Value::Null);
        values.push(Value::Text(error.clone()));
        let bytes = values[..self.width].iter().map(Value::size).sum();
        Outcome::Poison {
            record: Record { values },
            error,
            bytes,
        }
    }
}
