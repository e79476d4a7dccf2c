//! Errgroup-style bounded maps: run a function over an iterator with a
//! fixed number of threads, collect the results in input order, and stop at
//! the first error. Built on [`super::stream`]'s chunked engine.

use std::convert::Infallible;

use super::stream::{ordered, Stop};
use super::{Cancel, Cancelled};

/// Runs `f` on every item of `input` on `workers` threads (at most 4096)
/// and returns the
/// results in input order: `results[i]` is `f(input[i])`. A panic in `f`
/// stops the run and is resumed on the calling thread.
///
/// Items are handed out in chunks sized by their measured cost, so a
/// million tiny items cost little more than a loop, and items of a
/// millisecond or more go one at a time. For a fallible `f`, see
/// [`try_map`].
///
/// ```
/// use batchproc::pool::map;
///
/// let lengths = map(4, ["a", "bb", "ccc"], str::len);
/// assert_eq!(lengths, [1, 2, 3]);
///
/// let squares = map(2, 0..1_000_000u64, |n| n * n);
/// assert_eq!(squares[999_999], 999_998_000_001);
/// ```
pub fn map<T, R, F>(workers: usize, input: impl IntoIterator<Item = T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    match try_map(workers, input, |t| Ok::<_, Infallible>(f(t))) {
        Ok(results) => results,
        Err(never) => match never {},
    }
}

/// Runs `f` on every item of `input` with at most `workers` calls at once
/// and returns the results in input order: `results[i]` is `f(input[i])`.
///
/// `input` is pulled lazily, a chunk at a time, so it may be long or
/// endless. The first error in time cancels the run: each other worker
/// starts at most one more item, and the error is returned once the calls
/// in flight have finished. A panic in `f` also stops the run, and is
/// resumed on the calling thread with its own payload. Any error type
/// will do.
///
/// `f` runs on scoped threads, so it may borrow from the caller; it must be
/// `Sync`. Results wait in memory until the run ends; to handle them as
/// they come, see [`super::try_for_each_ordered`]; for `f` to see the run's
/// cancellation, see [`pool()`].
///
/// ```
/// use batchproc::pool::try_map;
///
/// let words = ["3", "1", "4", "1", "5"];
/// let lengths = try_map(2, words, |w| w.parse::<u8>());
/// assert_eq!(lengths, Ok(vec![3, 1, 4, 1, 5]));
///
/// // An endless input ends at the first error; a String error is fine.
/// let first_bad = try_map(4, 1u64.., |n| {
///     if n == 1000 { Err(format!("{n} is too many")) } else { Ok(n) }
/// });
/// assert_eq!(first_bad, Err("1000 is too many".to_string()));
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
    collect(None, workers, input, |_, t| f(t)).map_err(Stop::failure)
}

/// The generic pool: `f(ctx, item)` on every item with at most `workers`
/// calls at once, results in input order, the first error cancelling the
/// rest: Go's errgroup with a limit and a context, as one call.
///
/// `f` gets the run's token, a child of `ctx`: it is cancelled when `ctx`
/// is, and at the first error or panic, so a long job (a request, a
/// subprocess, a sleep) can stop early with [`Cancel::check`],
/// [`Cancel::wait_timeout`] or [`Cancel::done`]. Once `ctx` is cancelled no
/// new item starts and, unless a job failed, the result is
/// `Err(Cancelled.into())`; that is why `E` must take a [`Cancelled`]
/// (`std::io::Error`, `String`, `anyhow::Error` and `Box<dyn Error>` do).
///
/// ```
/// use std::time::Duration;
/// use batchproc::pool::{pool, Cancel};
///
/// let ctx = Cancel::new();
/// let started = std::time::Instant::now();
/// let fetched = pool(&ctx, 4, 0..100u32, |cx, n| {
///     if n == 3 {
///         return Err(format!("item {n}: connection refused"));
///     }
///     // A slow request that gives up as soon as another item fails.
///     if cx.wait_timeout(Duration::from_secs(60)) {
///         return Err("cancelled".to_string());
///     }
///     Ok(n)
/// });
/// assert_eq!(fetched, Err("item 3: connection refused".to_string()));
/// assert!(started.elapsed() < Duration::from_secs(60));
/// assert!(!ctx.is_cancelled(), "the caller's token is left alone");
/// ```
pub fn pool<T, R, E, F>(
    ctx: &Cancel,
    workers: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send + From<Cancelled>,
    F: Fn(&Cancel, T) -> Result<R, E> + Sync,
{
    collect(Some(ctx), workers, input, f).map_err(Stop::into_error)
}

fn collect<T, R, E, F>(
    ctx: Option<&Cancel>,
    workers: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
) -> Result<Vec<R>, Stop<E>>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(&Cancel, T) -> Result<R, E> + Sync,
{
    let input = input.into_iter();
    // Only an exact size: an endless iterator's lower bound is usize::MAX.
    let exact = match input.size_hint() {
        (lower, Some(upper)) if lower == upper => lower,
        _ => 0,
    };
    let mut results = Vec::with_capacity(exact);
    // All results are kept anyway, so the window need not bound them.
    ordered(ctx, workers, usize::MAX, input, f, |mut chunk| {
        results.append(&mut chunk);
        Ok(())
    })?;
    Ok(results)
}

#[cfg(test)]
mod tests;
