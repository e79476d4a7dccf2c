//! Fail-fast ordered maps over an iterator, the engine of [`super::map`],
//! [`super::try_map`], [`super::pool()`] and [`try_for_each_ordered`].
//!
//! The calling thread coordinates: it takes items from the iterator (which
//! never crosses threads, so it need not be `Send`) in chunks, queues them
//! for the workers, and hands results on in input order from a reorder
//! buffer. Chunks are what make tiny items cheap: a hand-off per item costs
//! a thread wake-up, far more than the item. A chunk's length follows the
//! items' measured cost, aiming at [`CHUNK_TIME`] of work, so items of a
//! millisecond or more go one at a time, as a pool without chunks would
//! hand them out; and a worker whose chunk runs past [`CHUNK_LIMIT`] (the
//! items grew slow) gives the rest back to be shared out again, so that one
//! worker never sits on a long queue of slow items while the others idle.
//!
//! Every promise holds per item, not per chunk: a worker runs one item at a
//! time; it checks the run's token before each item, so after the first
//! error or panic each other worker starts at most one more item; and
//! results reach the caller in input order.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::thread::Builder;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::panics::{Brake, CancelOnUnwind, Watch};
use super::{Cancel, CancelReason};
use coordinator::Coordinator;

/// The work a chunk should hold, by the items' measured cost: long enough
/// that a hand-off (a few microseconds, more on a loaded machine) is a few
/// percent of it, short enough that the run's tail is not one worker's.
const CHUNK_TIME: Duration = Duration::from_micros(200);
/// A worker past this on one chunk gives the rest back.
const CHUNK_LIMIT: Duration = Duration::from_millis(2);
/// Items between two looks at the clock within a chunk.
const CLOCK_EVERY: usize = 256;
/// Most items in a chunk: beyond this, hand-offs cost nothing measurable.
const MAX_CHUNK: usize = 65536;
/// Most worker threads a run starts, whatever it is asked for.
pub(super) const MAX_WORKERS: usize = 4096;

/// Why a run ended early.
pub(super) enum Stop<E> {
    /// The first error, from a job or from the consumer.
    Failed(E),
    /// The caller's token was cancelled and no job failed.
    Cancelled,
}

/// Runs `f` on every item of `input` with at most `workers` calls at once,
/// and passes each result to `each`, on the calling thread, in input order.
///
/// At most `window` items are taken from `input` ahead of the oldest result
/// not yet passed on, which bounds the reorder buffer; a window smaller than
/// `workers` leaves workers idle, one slow item stalls the rest once the
/// window fills behind it, and a small window (under a few hundred items
/// per worker) keeps chunks short, so tiny items cost more each.
///
/// The first error, from `f` or `each`, in time, cancels the run: `each`
/// is not called again, each other worker starts at most one more item,
/// and the error is returned once the calls in flight have finished. A
/// panic in `f` stops the run the same way and is then resumed on the
/// calling thread with its own payload.
///
/// The input is read on the calling thread, which also calls `each`, and a
/// result goes on once the next read returns: an input that waits for a
/// result before it yields the next item (a feedback loop) would wait
/// forever; run such a loop through [`Pool::run`](super::Pool::run) and
/// channels. A cancel cannot cut a read short either.
///
/// `f` runs on scoped threads, so it may borrow; it must be `Sync`. Inside
/// a tokio runtime, the workers enter it, so `f` may use
/// `tokio::runtime::Handle::current()`; the calling thread blocks, so call
/// this from `spawn_blocking`, or see [`try_map_async`](super::try_map_async).
/// If no thread can be spawned at all, everything runs on the calling
/// thread. [`try_for_each_ordered_ctx`] gives `f` the run's token.
///
/// ```
/// use batchproc::pool::try_for_each_ordered;
///
/// let mut lines = Vec::new();
/// let squares = try_for_each_ordered(
///     4,
///     16,
///     1..=5u64,
///     |n| Ok::<_, String>(n * n),
///     |sq| {
///         lines.push(sq.to_string());
///         Ok(())
///     },
/// );
/// assert_eq!(squares, Ok(()));
/// assert_eq!(lines, ["1", "4", "9", "16", "25"]);
///
/// let failed = try_for_each_ordered(2, 4, 0.., |n: u64| {
///     if n == 7 { Err(format!("item {n}")) } else { Ok(n) }
/// }, |_| Ok(()));
/// assert_eq!(failed, Err("item 7".to_string()));
/// ```
pub fn try_for_each_ordered<T, R, E, F, C>(
    workers: usize,
    window: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
    each: C,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<R, E> + Sync,
    C: FnMut(R) -> Result<(), E>,
{
    ordered(None, workers, window, input, |_, t| f(t), by_item(each)).map_err(Stop::failure)
}

/// [`try_for_each_ordered`] whose `f` also gets the run's token: a child of
/// `ctx`, cancelled with it, at the first error or panic, and when `each`
/// fails, so that a long job can stop early (see [`Cancel`]).
///
/// When `ctx` is cancelled, no new item starts and, if no job failed, the
/// result is `Err(Cancelled.into())`.
///
/// ```
/// use std::time::Duration;
/// use batchproc::pool::{try_for_each_ordered_ctx, Cancel, Cancelled};
///
/// let ctx = Cancel::new();
/// let mut seen = Vec::new();
/// let ran = try_for_each_ordered_ctx(&ctx, 2, 8, 0u32.., |cx, n| {
///     // A long job that sleeps on the token instead of a plain sleep.
///     if cx.wait_timeout(Duration::from_millis(1)) {
///         return Err(Cancelled);
///     }
///     Ok(n)
/// }, |n| {
///     seen.push(n);
///     if n == 20 {
///         ctx.cancel();
///     }
///     Ok(())
/// });
/// assert_eq!(ran, Err(Cancelled));
/// assert_eq!(seen, (0..=20).collect::<Vec<_>>());
/// ```
pub fn try_for_each_ordered_ctx<T, R, E, F, C>(
    ctx: &Cancel,
    workers: usize,
    window: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
    each: C,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    E: Send + From<super::Cancelled>,
    F: Fn(&Cancel, T) -> Result<R, E> + Sync,
    C: FnMut(R) -> Result<(), E>,
{
    ordered(Some(ctx), workers, window, input, f, by_item(each)).map_err(Stop::into_error)
}

impl<E> Stop<E> {
    /// The error of a run without a caller's token, which nothing else can
    /// cancel.
    pub(super) fn failure(self) -> E {
        match self {
            Stop::Failed(e) => e,
            Stop::Cancelled => unreachable!("a run without a caller's token is never cancelled"),
        }
    }
}

impl<E: From<super::Cancelled>> Stop<E> {
    pub(super) fn into_error(self) -> E {
        match self {
            Stop::Failed(e) => e,
            Stop::Cancelled => super::Cancelled.into(),
        }
    }
}

/// Adapts a per-result callback to the per-chunk one `ordered` calls.
fn by_item<R, E>(mut each: impl FnMut(R) -> Result<(), E>) -> impl FnMut(Vec<R>) -> Result<(), E> {
    move |chunk| chunk.into_iter().try_for_each(&mut each)
}

/// What became of one chunk handed to a worker.
struct Done<T, R, E> {
    base: usize,
    /// Results of the chunk's first items, in order.
    results: Vec<R>,
    /// Items not started because the chunk ran past `CHUNK_LIMIT`.
    rest: Vec<T>,
    end: End<E>,
    /// Time spent on the items in `results`.
    took: Duration,
}

enum End<E> {
    /// Every item ran, or the rest was given back.
    Ran,
    /// The first failure of the run.
    Failed(E),
    /// Stopped: the run was cancelled, or failed after another failure.
    Dropped,
    Panicked(Box<dyn Any + Send>),
}

/// The engine: `each` gets the results chunk by chunk, in input order.
pub(super) fn ordered<T, R, E, F, C>(
    ctx: Option<&Cancel>,
    workers: usize,
    window: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
    each: C,
) -> Result<(), Stop<E>>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(&Cancel, T) -> Result<R, E> + Sync,
    C: FnMut(Vec<R>) -> Result<(), E>,
{
    let run = ctx.map_or_else(Cancel::new, Cancel::child);
    let brake = Brake::new(&run);
    let runtime = tokio::runtime::Handle::try_current().ok();
    let workers = workers.clamp(1, MAX_WORKERS);
    let (error, panicked, complete) = std::thread::scope(|scope| {
        // Created in the scope so that they are dropped before it joins:
        // closing `chunk_tx` is what tells idle workers to exit.
        let (chunk_tx, chunk_rx) = crossbeam_channel::bounded::<(usize, Vec<T>)>(workers);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut spawned = 0;
        for _ in 0..workers {
            let (chunk_rx, done_tx, f, run) = (chunk_rx.clone(), done_tx.clone(), &f, &run);
            let (runtime, brake) = (runtime.clone(), &brake);
            let worker = move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                let watch = Watch::new(brake);
                work(&chunk_rx, &done_tx, f, run, &watch)
            };
            if Builder::new().spawn_scoped(scope, worker).is_err() {
                break;
            }
            spawned += 1;
        }
        if spawned == 0 {
            let error = inline(&run, input, &f, each);
            return (error, None, !run.is_cancelled());
        }
        // Workers alone hold these now: if they all die, the channels say so.
        drop((chunk_rx, done_tx));
        // A panic in the input or in `each` unwinds this thread: the workers
        // must stop before the scope waits for them.
        let _unwinding = CancelOnUnwind(&run);
        let mut order = Coordinator::new(&run, window, workers, each);
        order.run(input.into_iter(), &chunk_tx, &done_rx);
        order.outcome()
    });
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
    match error {
        Some(e) => Err(Stop::Failed(e)),
        // A cancel that came after the last result takes nothing away.
        None if complete => Ok(()),
        None => Err(Stop::Cancelled),
    }
}

/// Everything on the calling thread, when no worker could be started.
fn inline<T, R, E>(
    run: &Cancel,
    input: impl IntoIterator<Item = T>,
    f: impl Fn(&Cancel, T) -> Result<R, E>,
    mut each: impl FnMut(Vec<R>) -> Result<(), E>,
) -> Option<E> {
    for item in input {
        if run.is_cancelled() {
            return None;
        }
        if let Err(e) = f(run, item).and_then(|r| each(vec![r])) {
            return Some(e);
        }
    }
    None
}

fn work<T, R, E>(
    chunks: &Receiver<(usize, Vec<T>)>,
    done: &Sender<Done<T, R, E>>,
    f: impl Fn(&Cancel, T) -> Result<R, E>,
    run: &Cancel,
    watch: &Watch,
) {
    for (base, chunk) in chunks {
        let started = Instant::now();
        let mut results = Vec::with_capacity(chunk.len());
        let mut items = chunk.into_iter();
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            for (i, item) in items.by_ref().enumerate() {
                // Checked before each item: another worker may have failed.
                if !watch.may_start() {
                    return End::Dropped;
                }
                let result = f(run, item);
                watch.returned();
                match result {
                    Ok(r) => results.push(r),
                    // Whoever cancels the run first owns the error.
                    Err(e) if run.cancel_with(CancelReason::Failed) => return End::Failed(e),
                    Err(_) => return End::Dropped,
                }
                if (i + 1) % CLOCK_EVERY == 0 && started.elapsed() > CHUNK_LIMIT {
                    break;
                }
            }
            End::Ran
        }));
        let end = ran.unwrap_or_else(|payload| {
            run.cancel_with(CancelReason::Failed);
            End::Panicked(payload)
        });
        let rest = match end {
            End::Ran => items.collect(),
            _ => Vec::new(),
        };
        let took = started.elapsed();
        let done_chunk = Done {
            base,
            results,
            rest,
            end,
            took,
        };
        if done.send(done_chunk).is_err() {
            return;
        }
    }
}

mod coordinator;
#[cfg(test)]
mod tests;
