//! The pool's own overhead: N synthetic items through `batchproc::pool::Pool`
//! with a no-op worker, as `make bench` runs it (items/s, and peak memory
//! that must not grow with N: the channels are bounded).
//!
//!     cargo run --release --example pool_noop -- 1000000 [workers]

use std::time::Instant;

use batchproc::pool::{Cancel, Pool};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let workers = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (in_tx, in_rx) = crossbeam_channel::bounded(64 * workers);
    let (out_tx, out_rx) = crossbeam_channel::bounded(64 * workers);
    let started = Instant::now();
    let (sum, stats) = std::thread::scope(|s| {
        s.spawn(move || (0..n).for_each(|i| in_tx.send(i).unwrap()));
        let pool =
            s.spawn(move || Pool::new(workers).run(in_rx, out_tx, &Cancel::new(), || (), |_, i| i));
        let sum: u64 = out_rx.iter().sum();
        (sum, pool.join().unwrap().expect("worker threads"))
    });
    let secs = started.elapsed().as_secs_f64();
    // Every item came back exactly once, or the numbers below mean nothing.
    assert_eq!(sum, n * n.saturating_sub(1) / 2);
    assert_eq!(stats.items, n);
    println!(
        "{n} items, {workers} workers: {secs:.3} s, {:.0} items/s",
        n as f64 / secs
    );
}
