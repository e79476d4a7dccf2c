//! Async counterparts of [`super::try_map`]: bounded maps whose work is
//! futures (network calls, database queries) rather than blocking calls on
//! threads, with the same contract: results in input order, the first error
//! in time ending the run.
//!
//! The futures are not spawned: one [`FuturesUnordered`] polls them all
//! within the caller's task. So they may borrow from the caller and need not
//! be `Send` or `'static`, and on a current-thread runtime the other tasks
//! keep running whenever all of them wait. It also means cancelling is
//! dropping: when the returned future is dropped (by a timeout, a
//! `select!`, or a first error), every future in flight is dropped with it.

use std::convert::Infallible;
use std::future::Future;

use futures_util::stream::{FuturesUnordered, StreamExt};

/// Runs `f` on every item of `input` with at most `limit` futures in flight
/// at once, results in input order; the first error in time (not in input
/// order) ends the run at once: the other futures in flight are dropped
/// (that is how async work is cancelled), no new one starts, and the error
/// is returned.
///
/// `input` is pulled lazily and `f` called only when a slot is free, so the
/// input may be endless. `limit` 0 is taken as 1. A panic in a future
/// reaches the caller with its own payload, as with
/// [`buffer_unordered`](futures_util::stream::StreamExt::buffer_unordered).
/// A future that never waits does not yield either: the runtime's other
/// tasks run only when every future in flight waits.
///
/// ```
/// use std::time::Duration;
/// use batchproc::pool::try_map_async;
/// use tokio::time::sleep;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// rt.block_on(async {
///     let lengths = try_map_async(2, ["3", "1", "4"], |s| async move {
///         sleep(Duration::from_millis(1)).await;
///         s.parse::<u8>()
///     });
///     assert_eq!(lengths.await, Ok(vec![3, 1, 4]));
///
///     // Item 5 fails while item 4 sleeps on: 4 is dropped and the run ends.
///     let first_bad = try_map_async(3, 0u64.., |i| async move {
///         if i == 4 {
///             sleep(Duration::from_secs(3600)).await;
///         }
///         if i == 5 { Err(i) } else { Ok(i) }
///     });
///     assert_eq!(first_bad.await, Err(5));
///
///     // Cancelling from outside: dropping the future (here `select!` drops the
///     // branch that lost) drops every future in flight, and none starts again.
///     let endless = try_map_async(4, 0u64.., |i| async move {
///         sleep(Duration::from_secs(3600)).await;
///         Ok::<_, String>(i)
///     });
///     tokio::select! {
///         done = endless => panic!("ended on its own: {done:?}"),
///         _ = sleep(Duration::from_millis(20)) => {}
///     }
///     // `tokio::time::timeout(duration, try_map_async(..))` does the same.
/// });
/// ```
pub async fn try_map_async<T, R, E, F, Fut>(
    limit: usize,
    input: impl IntoIterator<Item = T>,
    mut f: F,
) -> Result<Vec<R>, E>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let limit = limit.max(1);
    // Fused: after the input ends, each free slot asks it again, and an
    // iterator need not keep answering `None`.
    let mut input = input.into_iter().fuse();
    let mut in_flight = FuturesUnordered::new();
    // The reorder buffer: slot `i` holds item `i`'s result once it is in.
    let mut results: Vec<Option<R>> = Vec::new();
    loop {
        while in_flight.len() < limit {
            let Some(item) = input.next() else { break };
            let index = results.len();
            results.push(None);
            let future = f(item);
            in_flight.push(async move { (index, future.await) });
        }
        match in_flight.next().await {
            Some((index, Ok(result))) => results[index] = Some(result),
            // Returning drops `in_flight`, and with it the futures still in it.
            Some((_, Err(e))) => return Err(e),
            None => break,
        }
    }
    // Every item started was pushed and ran to `Ok`, or we returned above.
    Ok(results.into_iter().flatten().collect())
}

/// [`try_map_async`] for futures that cannot fail: runs `f` on every item of
/// `input` with at most `limit` futures in flight at once and returns the
/// results in input order.
///
/// ```
/// use std::time::Duration;
/// use batchproc::pool::map_async;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// let doubled = rt.block_on(map_async(8, 0..20u64, |i| async move {
///     // Later items finish first; the results stay in input order.
///     tokio::time::sleep(Duration::from_millis(20 - i)).await;
///     i * 2
/// }));
/// assert_eq!(doubled, (0..20).map(|i| i * 2).collect::<Vec<_>>());
/// ```
pub async fn map_async<T, R, F, Fut>(
    limit: usize,
    input: impl IntoIterator<Item = T>,
    mut f: F,
) -> Vec<R>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R>,
{
    let never_fails = try_map_async(limit, input, |item| {
        let future = f(item);
        async move { Ok::<_, Infallible>(future.await) }
    });
    match never_fails.await {
        Ok(results) => results,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::testing::jitter;
    use std::cell::{Cell, RefCell};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::sleep;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn results_keep_input_order_under_random_delays() {
        let got = runtime().block_on(try_map_async(8, 0..300u64, |i| async move {
            sleep(jitter(i, 5)).await;
            Ok::<_, ()>(i * 2)
        }));
        assert_eq!(got, Ok((0..300).map(|i| i * 2).collect()));

        let got = runtime().block_on(map_async(8, 0..300u64, |i| async move {
            sleep(jitter(i, 5)).await;
            i * 3
        }));
        assert_eq!(got, (0..300).map(|i| i * 3).collect::<Vec<_>>());
    }

    #[test]
    fn at_most_limit_futures_exist_at_once_and_the_limit_is_reached() {
        for (limit, expected) in [(3, 3), (1, 1), (0, 1)] {
            // Plain cells, borrowed: the futures need not be Send or 'static.
            let (existing, most) = (Cell::new(0), Cell::new(0));
            let (existing, most) = (&existing, &most);
            runtime().block_on(map_async(limit, 0..60u64, |i| {
                // Counted from creation, not from the first poll.
                existing.set(existing.get() + 1);
                most.set(most.get().max(existing.get()));
                async move {
                    sleep(jitter(i, 3)).await;
                    existing.set(existing.get() - 1);
                }
            }));
            assert_eq!(most.get(), expected, "limit {limit}");
        }
    }

    /// Records whether the future holding it was dropped before it finished.
    struct DropGuard<'a> {
        item: u64,
        finished: bool,
        cancelled: &'a RefCell<Vec<u64>>,
    }

    impl Drop for DropGuard<'_> {
        fn drop(&mut self) {
            if !self.finished {
                self.cancelled.borrow_mut().push(self.item);
            }
        }
    }

    #[test]
    fn the_first_error_in_time_is_returned_and_the_rest_dropped() {
        let cancelled = RefCell::new(Vec::new());
        let cancelled = &cancelled;
        // Limit 4: items 0..=3 start; 0 and 3 finish at once, so 4 and 5
        // start and finish, and 6 fails at once, while 1 waits 200 ms to fail
        // and 2 would take an hour.
        let got = runtime().block_on(try_map_async(4, 0..10u64, |i| async move {
            let mut guard = DropGuard {
                item: i,
                finished: false,
                cancelled,
            };
            let result = match i {
                1 => {
                    sleep(Duration::from_millis(200)).await;
                    Err(i)
                }
                2 => {
                    sleep(Duration::from_secs(3600)).await;
                    Ok(i)
                }
                6 => Err(i),
                _ => Ok(i),
            };
            guard.finished = true;
            result
        }));
        assert_eq!(got, Err(6));
        let mut cancelled = cancelled.borrow().clone();
        cancelled.sort();
        assert_eq!(cancelled, [1, 2]);
    }

    #[test]
    fn an_endless_input_ends_at_the_first_error() {
        let got = runtime().block_on(try_map_async(4, 0u64.., |i| async move {
            tokio::task::yield_now().await;
            if i == 1000 {
                Err("boom")
            } else {
                Ok(i)
            }
        }));
        assert_eq!(got, Err("boom"));
    }

    #[test]
    fn items_after_an_error_are_never_started() {
        let limit = 2;
        let calls = Cell::new(0);
        let got = runtime().block_on(try_map_async(limit, 0..1000usize, |i| {
            calls.set(calls.get() + 1);
            async move {
                if i == 5 {
                    return Err(i);
                }
                sleep(Duration::from_millis(1)).await;
                Ok(i)
            }
        }));
        assert_eq!(got, Err(5));
        // Items 0..=5, and one more if the other slot freed up before item 5
        // was first polled.
        assert!(calls.get() <= 5 + limit, "{} calls", calls.get());
    }

    #[test]
    fn a_panic_reaches_the_caller_with_its_own_payload() {
        #[derive(Debug, PartialEq)]
        struct ItemPanicked(u32);

        let rt = runtime();
        let run = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(map_async(2, 0u32.., |i| async move {
                sleep(Duration::from_millis(1)).await;
                if i == 3 {
                    std::panic::panic_any(ItemPanicked(i));
                }
                i
            }))
        }));
        let payload = run.unwrap_err();
        assert_eq!(payload.downcast_ref(), Some(&ItemPanicked(3)));
    }

    #[test]
    fn other_tasks_on_a_current_thread_runtime_keep_running() {
        runtime().block_on(async {
            let ticks = Arc::new(AtomicUsize::new(0));
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        sleep(Duration::from_millis(1)).await;
                        ticks.fetch_add(1, SeqCst);
                    }
                }
            });
            // Nothing between here and the map awaits, so any tick counted
            // after `before` ran while the map was waiting.
            let before = ticks.load(SeqCst);
            map_async(4, 0..20, |_| sleep(Duration::from_millis(20))).await;
            assert!(ticks.load(SeqCst) > before);
            ticker.abort();
        });
    }

    #[test]
    fn empty_input() {
        let got = runtime().block_on(try_map_async(0, Vec::<u8>::new(), |b| async move {
            Ok::<_, ()>(b)
        }));
        assert_eq!(got, Ok(vec![]));
    }
}
