//! Errgroup-style bounded maps: run a fallible function over an iterator
//! with a fixed number of threads, collect the results in input order, and
//! stop at the first error.

use super::try_for_each_ordered;

/// Runs `f` on every item of `input` with at most `workers` calls at once
/// and returns the results in input order: `results[i]` is `f(input[i])`.
///
/// `input` is pulled lazily, one item per free worker, so it may be long or
/// endless. The first error in time cancels the run: items not yet started
/// are never started, and the error is returned once the calls in flight
/// have finished. A panic in `f` also stops the run, and is resumed on the
/// calling thread.
///
/// `f` runs on scoped threads, so it may borrow from the caller; it must be
/// `Sync`, there is no async variant. Results wait in memory until the run
/// ends; to handle them as they come, see [`super::try_for_each_ordered`].
///
/// ```
/// use batchproc::pool::try_map;
///
/// let words = ["3", "1", "4", "1", "5"];
/// let lengths = try_map(2, words, |w| w.parse::<u8>());
/// assert_eq!(lengths, Ok(vec![3, 1, 4, 1, 5]));
///
/// // An endless input ends at the first error.
/// let first_bad = try_map(4, 1u64.., |n| if n % 100 == 0 { Err(n) } else { Ok(n) });
/// assert_eq!(first_bad, Err(100));
/// ```
pub fn try_map<T, R, E, F>(
    workers: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<R, E> + Sync,
{
    let mut results = Vec::new();
    // All results are kept anyway, so the reorder window need not bound them.
    try_for_each_ordered(workers, usize::MAX, input, f, |r| {
        results.push(r);
        Ok(())
    })?;
    Ok(results)
}

/// [`try_map`] for any error type that converts into [`anyhow::Error`]
/// (`std::io::Error`, `anyhow::Error` itself, …): the one-call pool.
///
/// `f` must be `Sync`: it runs on plain threads, not on an async runtime.
///
/// ```
/// use batchproc::pool::pool;
///
/// let sizes = pool(4, ["Cargo.toml", "src/lib.rs"], |path| {
///     std::fs::metadata(path).map(|m| m.len())
/// })
/// .unwrap();
/// assert!(sizes.iter().all(|&len| len > 0));
///
/// let err = pool(2, ["1", "two"], |s| s.parse::<u32>()).unwrap_err();
/// assert_eq!(err.to_string(), "invalid digit found in string");
/// ```
pub fn pool<T, R, E, F>(
    workers: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
) -> anyhow::Result<Vec<R>>
where
    T: Send,
    R: Send,
    E: Into<anyhow::Error> + Send,
    F: Fn(T) -> Result<R, E> + Sync,
{
    try_map(workers, input, f).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::testing::jitter;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    #[test]
    fn results_keep_input_order_under_random_delays() {
        let got = try_map(8, 0..300u64, |i| {
            std::thread::sleep(jitter(i, 5));
            Ok::<_, ()>(i * 2)
        });
        assert_eq!(got, Ok((0..300).map(|i| i * 2).collect()));
    }

    #[test]
    fn at_most_workers_calls_run_at_once() {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        try_map(3, 0..100u64, |i| {
            most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
            std::thread::sleep(jitter(i, 2));
            running.fetch_sub(1, SeqCst);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!((1..=3).contains(&most.load(SeqCst)));
    }

    #[test]
    fn items_after_an_error_are_never_started() {
        let workers = 2;
        let started = AtomicUsize::new(0);
        let got = try_map(workers, 0..1000usize, |i| {
            started.fetch_add(1, SeqCst);
            // Item 5 fails quickly, so that the other worker cannot get
            // through two more items first unless the machine stalls ~10 ms.
            if i == 5 {
                std::thread::sleep(Duration::from_millis(1));
                return Err(i);
            }
            std::thread::sleep(Duration::from_millis(5));
            Ok(i)
        });
        assert_eq!(got, Err(5));
        // Items 0..=5, and whatever the other worker had already started.
        let started = started.load(SeqCst);
        assert!(started <= 5 + workers, "{started} started");
    }

    #[test]
    fn the_first_error_in_time_is_returned() {
        // Item 1 fails late, item 6 fails at once (long before item 1 does).
        let got = try_map(4, 0..10u64, |i| match i {
            1 => {
                std::thread::sleep(Duration::from_millis(500));
                Err(i)
            }
            6 => Err(i),
            _ => Ok(i),
        });
        assert_eq!(got, Err(6));
    }

    #[test]
    fn an_endless_input_ends_at_the_first_error() {
        let got = try_map(4, 0u64.., |i| if i == 1000 { Err("boom") } else { Ok(i) });
        assert_eq!(got, Err("boom"));
    }

    #[test]
    fn empty_input_and_zero_workers() {
        assert_eq!(try_map(0, Vec::<u8>::new(), Ok::<u8, ()>), Ok(vec![]));
        assert_eq!(try_map(0, [1, 2], Ok::<u8, ()>), Ok(vec![1, 2]));
    }

    #[test]
    fn pool_converts_errors_into_anyhow() {
        let io = pool(2, [1, 2, 3], |i| {
            if i == 2 {
                Err(std::io::Error::other("disk on fire"))
            } else {
                Ok(i)
            }
        });
        assert_eq!(io.unwrap_err().to_string(), "disk on fire");
        let ok = pool(2, ["a", "bb"], |s| Ok::<_, anyhow::Error>(s.len()));
        assert_eq!(ok.unwrap(), [1, 2]);
    }

    #[test]
    fn a_panic_in_f_ends_an_endless_run_and_is_resumed() {
        let run = std::panic::catch_unwind(|| {
            try_map(2, 0u32.., |i| {
                std::thread::sleep(Duration::from_millis(1));
                assert_ne!(i, 3, "item three");
                Ok::<_, ()>(i)
            })
        });
        // The run stops only once the panic hook has run (printing a
        // backtrace can take a while), so no bound on what else started.
        let payload = run.unwrap_err();
        let message = payload.downcast_ref::<String>().unwrap();
        assert!(message.contains("item three"), "{message}");
    }
}
