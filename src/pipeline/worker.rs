//! The worker step: what a pool worker does with a handle on a chunk of
//! items: it takes items from the chunk one at a time (other workers may be
//! taking from it too) until none is left. Each item waits for the rate
//! limit (the worker [`waiting`], not busy), is tried (and retried while its
//! failure may pass), gets its `attempts` column, and under fail-fast its
//! failure cancels the run. The time the items took tells the source driver
//! how long chunks should be. Past the run's [`Cutoff`] a worker starts no
//! item; one it has started runs to its end under the run's own token.

use std::time::Instant;

use crossbeam_channel::Sender;

use super::finish::{Failure, FirstFailure};
use super::rate::RateLimit;
use super::retry::{retry_item, RetryPolicy, Tried};
use crate::checkpoint::{Ledger, Seq};
use crate::pool::{waiting, Cancel};
use crate::processor::{Buffer, Outcome, Work};
use crate::record::Value;
use crate::source::cutoff::Cutoff;
use crate::source::driver::Handle;
use crate::source::{Pace, Source};

/// What every worker of a run shares.
pub(super) struct Step<'a, S, W> {
    pub(super) source: &'a S,
    pub(super) work: &'a W,
    pub(super) retry: &'a RetryPolicy,
    pub(super) rate: Option<&'a RateLimit>,
    pub(super) attempts_column: bool,
    pub(super) abort: bool,
    pub(super) ledger: &'a Ledger,
    pub(super) pace: &'a Pace,
    pub(super) failure: &'a FirstFailure<'a>,
    pub(super) cancel: &'a Cancel,
    /// Passed with `cancel` too: looked at before an item starts.
    pub(super) cutoff: &'a Cutoff,
    /// To the batcher. Each outcome goes as soon as it is known: held back
    /// for the worker's next item, it could wait behind a slow one.
    pub(super) outcomes: Sender<Vec<(Seq, Outcome)>>,
}

impl<S: Source, W: Work<Item = S::Item>> Step<'_, S, W> {
    /// Processes items of a chunk while there are any; once the run is
    /// cancelled or its cutoff passed, no more are started (they stay
    /// uncommitted: a resume does them). Returns nothing for the pool to
    /// pass on: each outcome was sent on its own.
    pub(super) fn run(&self, buf: &mut Buffer, chunk: Handle<S::Item>) -> Vec<(Seq, Outcome)> {
        let started = Instant::now();
        let mut done = 0;
        loop {
            if self.cutoff.passed() {
                if chunk.take().is_some() {
                    self.cutoff.hold_back();
                }
                break;
            }
            let Some((seq, item)) = chunk.take() else {
                break;
            };
            let mut first = true;
            let label = || self.label(seq);
            let tried = retry_item(item, self.retry, self.cancel, label, |item| {
                // A first try has not started until the rate lets it, so
                // the cutoff ends its wait; a retry belongs to an item in
                // flight, which only the run's cancel stops.
                let stop = match std::mem::take(&mut first) {
                    true => self.cutoff.token(),
                    false => self.cancel,
                };
                // Not work: counted busy, it would grow a dynamic pool
                // whose new workers could only wait for the rate too.
                let ready = self.rate.is_none_or(|r| waiting(|| r.until_ready(stop)));
                ready.then(|| self.work.process(buf, item, self.cancel))
            });
            // Stopped while waiting for the rate limit: not started.
            let Some(Tried {
                mut outcome,
                attempts,
            }) = tried
            else {
                self.cutoff.hold_back();
                break;
            };
            if self.attempts_column {
                if let Some(record) = outcome.record_mut() {
                    // Before `error`, which stays the last column.
                    let at = record.values.len() - 1;
                    record.values.insert(at, Value::Int(attempts.into()));
                }
            }
            if let (true, Outcome::Failed { error, .. }) = (self.abort, &outcome) {
                let label = self.label(seq);
                self.failure.set(Failure::Item(format!("{label}: {error}")));
            }
            done += 1;
            if self.outcomes.send(vec![(seq, outcome)]).is_err() {
                break;
            }
        }
        self.pace.record(done, started.elapsed());
        Vec::new()
    }

    fn label(&self, seq: Seq) -> String {
        match self.ledger.key(seq) {
            Some(key) => self.source.label(&key),
            None => format!("item {seq}"),
        }
    }
}
