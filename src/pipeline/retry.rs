//! `--retries`: an item whose failure may be transient (its [`Outcome`]
//! carries a [`Retry`](crate::processor::Retry)) is run again inside the worker
//! that holds it, after an exponential backoff with jitter (backon), before
//! its outcome is reported. Only the last try's outcome reaches the sink,
//! with the number of tries.
//!
//! Retrying in the worker, rather than re-queueing, keeps the item's place
//! in the checkpoint ledger simple (it is in flight until reported) and the
//! memory bound unchanged; the cost is a worker held during the backoff.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::pool::Cancel;
use crate::processor::Outcome;

/// How many times to re-run a retryable failure, and how long to wait.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    retries: u32,
    backoff: ExponentialBuilder,
}

impl RetryPolicy {
    /// Up to `retries` more tries. The first retry waits 0.5–1 s, each next
    /// one twice as long (jitter adds up to 100 %), at most 30 s + jitter:
    /// long enough for a restarting server, short enough for a batch job.
    pub(crate) fn new(retries: u32) -> Self {
        RetryPolicy {
            retries,
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(30))
                .with_factor(2.0)
                .with_jitter(),
        }
    }

    /// Replaces the backoff (tests use milliseconds).
    #[cfg(test)]
    pub(crate) fn with_backoff(mut self, backoff: ExponentialBuilder) -> Self {
        self.backoff = backoff;
        self
    }

    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }
}

/// The outcome of an item's last try, and how many tries it took.
pub(super) struct Tried {
    pub(super) outcome: Outcome,
    pub(super) attempts: u32,
}

/// Runs `attempt` on `item`, and again on a clone of it while the outcome
/// is a retryable failure and tries remain, pausing between tries for the
/// backoff or the outcome's `Retry::after`, whichever is longer.
///
/// Each retry is logged (`retrying item`) with the item's `label`, made
/// only then.
///
/// `attempt` returns `None` when it could not start the try because the run
/// was cancelled while it waited for its turn (the rate limit). Returns
/// `None` if not even the first try started. A run cancelled during a pause
/// or before a retry started abandons the item ([`Outcome::Abandoned`]: no
/// row; a resume redoes it), as for a read cut short. The item is cloned
/// only for tries that may be followed by another.
pub(super) fn retry_item<T: Clone>(
    item: T,
    policy: &RetryPolicy,
    cancel: &Cancel,
    label: impl Fn() -> String,
    mut attempt: impl FnMut(T) -> Option<Outcome>,
) -> Option<Tried> {
    // Retries are bounded by the policy, not by backon's own count.
    let mut delays = policy.backoff.without_max_times().build();
    let mut item = Some(item);
    let mut attempts = 0;
    let abandoned = |attempts| Tried {
        outcome: Outcome::Abandoned,
        attempts,
    };
    loop {
        let input = if attempts < policy.retries {
            item.clone()
        } else {
            item.take()
        };
        let Some(outcome) = input.and_then(&mut attempt) else {
            return (attempts > 0).then(|| abandoned(attempts));
        };
        attempts += 1;
        let Some(retry) = outcome.retry() else {
            return Some(Tried { outcome, attempts });
        };
        if attempts > policy.retries {
            return Some(Tried { outcome, attempts });
        }
        let backoff = delays.next().unwrap_or_default();
        let delay = backoff.max(retry.after.unwrap_or_default());
        if let Outcome::Failed { error, .. } = &outcome {
            super::log::retrying(&label(), attempts, policy.retries + 1, delay, error);
        }
        if !pause(delay, cancel) {
            return Some(abandoned(attempts));
        }
    }
}

/// Sleeps for `duration` unless the run is cancelled first (a Ctrl-C or a
/// fail-fast abort must not wait out a long backoff); true when the whole
/// duration passed.
pub(super) fn pause(duration: Duration, cancel: &Cancel) -> bool {
    !cancel.wait_timeout(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::CancelReason;
    use crate::processor::Retry;
    use crate::record::Record;
    use std::cell::Cell;
    use std::time::Instant;

    fn outcome(error: Option<&str>, retry: Option<Retry>) -> Outcome {
        let record = Record { values: Vec::new() };
        match error {
            Some(error) => Outcome::Failed {
                record,
                error: error.to_owned(),
                retry,
                bytes: 0,
            },
            None => Outcome::Done { record, bytes: 0 },
        }
    }

    fn error_of(outcome: &Outcome) -> Option<String> {
        match outcome {
            Outcome::Failed { error, .. } => Some(error.clone()),
            _ => None,
        }
    }

    fn abandoned(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Abandoned)
    }

    fn transient(n: u32) -> Outcome {
        outcome(Some(&format!("try {n} failed")), Some(Retry::default()))
    }

    /// Millisecond delays: the loop's logic, not the default timing.
    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy::new(retries).with_backoff(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(1))
                .with_max_delay(Duration::from_millis(4)),
        )
    }

    /// Runs `retry_item` with an attempt that fails transiently `failures`
    /// times, then succeeds; returns (attempts, calls, last error).
    fn fail_then_succeed(failures: u32, retries: u32) -> (u32, u32, Option<String>) {
        let calls = Cell::new(0);
        let tried = retry_item(
            "item",
            &quick(retries),
            &Cancel::new(),
            String::new,
            |item| {
                assert_eq!(item, "item");
                calls.set(calls.get() + 1);
                Some(match calls.get() <= failures {
                    true => transient(calls.get()),
                    false => outcome(None, None),
                })
            },
        )
        .unwrap();
        (tried.attempts, calls.get(), error_of(&tried.outcome))
    }

    #[test]
    fn a_transient_failure_is_retried_until_it_succeeds() {
        assert_eq!(fail_then_succeed(0, 3), (1, 1, None));
        assert_eq!(fail_then_succeed(2, 3), (3, 3, None));
        assert_eq!(fail_then_succeed(3, 3), (4, 4, None));
    }

    #[test]
    fn retries_run_out_with_the_last_error() {
        let (attempts, calls, error) = fail_then_succeed(u32::MAX, 2);
        assert_eq!((attempts, calls), (3, 3));
        assert_eq!(error.as_deref(), Some("try 3 failed"));
        // More retries than backon's own default of three delays.
        assert_eq!(fail_then_succeed(u32::MAX, 5).0, 6);
    }

    #[test]
    fn without_retries_nothing_is_retried() {
        let (attempts, calls, error) = fail_then_succeed(u32::MAX, 0);
        assert_eq!((attempts, calls), (1, 1));
        assert_eq!(error.as_deref(), Some("try 1 failed"));
    }

    #[test]
    fn a_failure_that_is_not_retryable_is_tried_once() {
        let calls = Cell::new(0);
        let tried = retry_item((), &quick(5), &Cancel::new(), String::new, |()| {
            calls.set(calls.get() + 1);
            Some(outcome(Some("csv: record 3 has 2 fields"), None))
        })
        .unwrap();
        assert_eq!((tried.attempts, calls.get()), (1, 1));
        assert!(!abandoned(&tried.outcome));
    }

    #[test]
    fn retry_after_is_honoured_as_the_least_delay() {
        let after = Duration::from_millis(300);
        let calls = Cell::new(0);
        let started = Instant::now();
        let mut gaps = Vec::new();
        let mut last_call = started;
        let tried = retry_item((), &quick(2), &Cancel::new(), String::new, |()| {
            gaps.push(last_call.elapsed());
            last_call = Instant::now();
            calls.set(calls.get() + 1);
            Some(match calls.get() {
                1 => outcome(Some("429"), Some(Retry { after: Some(after) })),
                _ => outcome(None, None),
            })
        })
        .unwrap();
        assert_eq!(tried.attempts, 2);
        // The backoff alone would have waited at most 2 ms.
        assert!(gaps[1] >= after, "retried after {:?}", gaps[1]);
    }

    #[test]
    fn a_cancel_during_the_pause_abandons_the_item_promptly() {
        let cancel = Cancel::new();
        let policy = RetryPolicy::new(3);
        let calls = Cell::new(0);
        let started = Instant::now();
        let tried = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                cancel.cancel_with(CancelReason::Interrupted);
            });
            retry_item((), &policy, &cancel, String::new, |()| {
                calls.set(calls.get() + 1);
                let after = Some(Duration::from_secs(60));
                Some(outcome(Some("503"), Some(Retry { after })))
            })
        })
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!((tried.attempts, calls.get()), (1, 1));
        assert!(abandoned(&tried.outcome), "an abandoned item gets no row");
    }

    #[test]
    fn a_retry_that_cannot_start_abandons_the_item() {
        let calls = Cell::new(0);
        let tried = retry_item((), &quick(3), &Cancel::new(), String::new, |()| {
            calls.set(calls.get() + 1);
            // The second try is refused, as by a cancelled rate-limit wait.
            (calls.get() == 1).then(|| transient(1))
        })
        .unwrap();
        assert_eq!((tried.attempts, calls.get()), (1, 2));
        assert!(abandoned(&tried.outcome));
        assert!(retry_item((), &quick(3), &Cancel::new(), String::new, |()| None).is_none());
    }
}
