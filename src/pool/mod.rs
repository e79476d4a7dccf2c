//! Worker pools: bounded, fail-fast, cancellable maps and streams over
//! plain OS threads (and one over futures), and the cancellation token
//! every stage of a batchproc run honours.
//!
//! # Which one to use
//!
//! | You have | Use | You get |
//! |---|---|---|
//! | an iterator, a function that cannot fail | [`map`] | `Vec` of results, input order |
//! | an iterator, a fallible function | [`try_map`] | results in input order, or the first error |
//! | the same, jobs that should stop early when one fails or you cancel | [`pool()`] | as `try_map`; each job gets a [`Cancel`] |
//! | results to handle as they come, in order, in bounded memory | [`try_for_each_ordered`] (and [`try_for_each_ordered_ctx`]) | a callback per result, input order |
//! | a producer and a consumer on other threads, a long-running service | [`Pool::run`] over [`channel`]s | results in completion order |
//! | a backlog that comes and goes | [`Pool::dynamic`] | workers between `min` and `max` |
//! | futures (I/O in a tokio program) | [`try_map_async`] / [`map_async`] | as `try_map`, in the calling task |
//!
//! Every one of them keeps the same promises: at most the given number of
//! jobs at once; bounded memory ([`map`]-style calls keep their results,
//! the others hold a bounded window); the first error (or panic) in time
//! stops the rest — after it each other worker starts at most one more job
//! — and a panic is resumed on the caller with its own payload, as with
//! `std::thread::scope`. Work closures may borrow from the caller (the
//! threads are scoped) and must be `Sync`.
//!
//! # When to use something else
//!
//! - **rayon**, for data parallelism over in-memory data: recursive
//!   splitting, `par_sort`, `join`, and the lowest cost per item (this
//!   crate's maps come within a few times of it on items of a few
//!   nanoseconds, and match it from microseconds up). Reach for this module
//!   when you need what rayon does not promise: a hard limit on jobs in
//!   flight, stopping at the first error or panic, cancellation from
//!   outside, a lazy or endless input, or blocking jobs (I/O, subprocesses)
//!   that must not tie up rayon's global pool.
//! - **tokio** (`JoinSet`, `Semaphore`, `futures::stream::buffer_unordered`),
//!   when the jobs are futures and you want them spread across a
//!   multi-threaded runtime; [`try_map_async`] runs its futures within one
//!   task and is the errgroup-shaped, ordered counterpart.
//! - **a plain loop**, for a few items: a pool pays for its threads.
//!
//! # The four patterns
//!
//! **The classic worker pool**: N workers share one bounded queue; a full
//! queue blocks the producer, so memory stays flat whatever the input.
//!
//! ```
//! use batchproc::pool::{channel, Cancel, Pool};
//!
//! let (jobs, queue) = channel::bounded(4);
//! let (results, done) = channel::bounded(4);
//! std::thread::scope(|s| {
//!     s.spawn(move || (1..=10u64).for_each(|n| jobs.send(n).unwrap()));
//!     s.spawn(move || Pool::new(3).run(queue, results, &Cancel::new(), || (), |_, n| n * n));
//!     let mut squares: Vec<u64> = done.iter().collect();
//!     squares.sort();
//!     assert_eq!(squares, [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]);
//! });
//! ```
//!
//! **errgroup with a limit**: at most N at once, the first error wins and
//! nothing new starts after it.
//!
//! ```
//! use batchproc::pool::try_map;
//!
//! let sizes = try_map(4, ["Cargo.toml", "src/lib.rs", "no/such/file"], std::fs::metadata);
//! assert_eq!(sizes.unwrap_err().kind(), std::io::ErrorKind::NotFound);
//! ```
//!
//! **The generic pool, `Pool(ctx, workers, input, fn(ctx, T) (R, error))`**:
//! each job gets the run's token, cancelled with the caller's and at the
//! first failure, so long jobs stop early.
//!
//! ```
//! use std::time::Duration;
//! use batchproc::pool::{pool, Cancel};
//!
//! let ctx = Cancel::new();
//! let lengths = pool(&ctx, 4, ["a", "bb", "ccc"], |cx, word| {
//!     cx.check()?; // Err(Cancelled) once the run is cancelled
//!     Ok::<_, std::io::Error>(word.len())
//! });
//! assert_eq!(lengths.unwrap(), [1, 2, 3]);
//!
//! // A job that fails ends the others' hour-long waits at once.
//! let slow = pool(&ctx, 2, [1, 2], |cx, n| {
//!     if n == 2 {
//!         return Err(format!("job {n} failed"));
//!     }
//!     cx.wait_timeout(Duration::from_secs(3600));
//!     Ok(n)
//! });
//! assert_eq!(slow, Err("job 2 failed".to_string()));
//! ```
//!
//! **The dynamic pool**: starts `min` workers, adds one while a backlog
//! persists with every worker busy, retires idle ones down to `min`.
//!
//! ```
//! use std::time::Duration;
//! use batchproc::pool::{channel, Cancel, Pool};
//!
//! let pool = Pool::dynamic(1, 4).grow_after(Duration::from_millis(5));
//! let (jobs, queue) = channel::unbounded();
//! let (results, done) = channel::unbounded();
//! (0..100u64).for_each(|n| jobs.send(n).unwrap());
//! drop(jobs);
//! let stats = pool
//!     .run(queue, results, &Cancel::new(), || (), |_, n| {
//!         std::thread::sleep(Duration::from_millis(5));
//!         n
//!     })
//!     .unwrap();
//! assert_eq!(done.iter().sum::<u64>(), 4950);
//! assert!(stats.peak_workers > 1);
//! ```
//!
//! # Cancellation
//!
//! A [`Cancel`] is shared by everything that should stop together: poll it
//! ([`Cancel::is_cancelled`], [`Cancel::check`]), sleep on it
//! ([`Cancel::wait_timeout`]), select on it beside your own channels
//! ([`Cancel::done`]) or await it ([`Cancel::cancelled`]). A pool run stops
//! taking input the moment its token fires, ends its idle and blocked
//! workers at once and drops its input, so a producer's next send fails.
//!
//! # Inside a tokio runtime
//!
//! The threaded calls block the calling thread: call them from
//! `tokio::task::spawn_blocking`, not from async code (on a current-thread
//! runtime that would stall every task). Their workers enter the caller's
//! runtime, so jobs may use `tokio::runtime::Handle::current()` to run a
//! future to completion.

mod busy;
mod cancel;
mod dynamic;
mod future;
mod gauge;
mod map;
mod panics;
mod stream;

/// The channels [`Pool::run`] takes and [`Cancel::done`] gives: the
/// `crossbeam-channel` crate, re-exported so that no other dependency is
/// needed to use them.
///
/// ```
/// use batchproc::pool::channel;
///
/// let (tx, rx) = channel::bounded(1);
/// tx.send("item").unwrap();
/// assert_eq!(rx.recv(), Ok("item"));
/// ```
pub use crossbeam_channel as channel;

pub use busy::waiting;
pub use cancel::{Cancel, CancelReason, Cancelled};
pub use dynamic::Pool;
pub use future::{map_async, try_map_async};
pub use gauge::{Gauge, PoolStats};
pub use map::{map, pool, try_map};
pub use stream::{try_for_each_ordered, try_for_each_ordered_ctx};

#[cfg(test)]
mod testing {
    use std::time::{Duration, Instant};

    /// Polls `cond` until it holds, for up to 10 s: test machines are noisy,
    /// so timing is only ever checked with a generous deadline.
    pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cond()
    }

    /// A repeatable pseudo-random delay below `max_ms` for item `i`, so that
    /// items finish out of order.
    pub fn jitter(i: u64, max_ms: u64) -> Duration {
        let mut x = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        Duration::from_micros(x % (max_ms * 1000))
    }
}
