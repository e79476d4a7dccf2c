//! The map functions' cost per item against rayon's, as `make bench` runs
//! it: a million tiny items through `batchproc::pool::map` and through
//! `par_iter().map().collect()` on a rayon pool of the same size, then
//! slow items (1 ms sleeps) through both, against the ideal time: one
//! thread's share of the sleeps, slept back to back.
//!
//!     cargo run --release --example pool_vs_rayon -- [threads] [runs]
//!
//! Prints one JSON object per row; `ratio` is ours / rayon's time (lower
//! is better; the target for tiny items is 5 or less).

use std::time::{Duration, Instant};

use batchproc::pool;
use rayon::prelude::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(31);
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool");

    let items: Vec<u64> = (0..1_000_000).collect();
    let tiny = |x: &u64| x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let expected: Vec<u64> = items.iter().map(tiny).collect();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let got = pool::map(threads, &items, tiny);
        ours.push(started.elapsed());
        check(&got, &expected);
        let started = Instant::now();
        let got: Vec<u64> = rayon.install(|| items.par_iter().map(tiny).collect());
        theirs.push(started.elapsed());
        check(&got, &expected);
    }
    row(
        "1,000,000 tiny items",
        threads,
        &mut ours,
        &mut theirs,
        None,
    );
    // For scale: the same on one thread, with no pool at all.
    let mut plain: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let got: Vec<u64> = items.iter().map(tiny).collect();
            let took = started.elapsed();
            check(&got, &expected);
            took
        })
        .collect();
    println!(
        "{{\"row\": \"1,000,000 tiny items, a plain loop on one thread\", \"ms\": {:.3}}}",
        median(&mut plain)
    );

    let slow_items = 100 * threads as u64;
    let slow = |x: &u64| {
        std::thread::sleep(Duration::from_millis(1));
        *x
    };
    let slow_input: Vec<u64> = (0..slow_items).collect();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(5) {
        let started = Instant::now();
        let got = pool::map(threads, &slow_input, slow);
        ours.push(started.elapsed());
        check(&got, &slow_input);
        let started = Instant::now();
        let got: Vec<u64> = rayon.install(|| slow_input.par_iter().map(slow).collect());
        theirs.push(started.elapsed());
        check(&got, &slow_input);
    }
    // The ideal is each thread's share (100 items) slept back to back on
    // one thread: a 1 ms sleep takes a little longer than 1 ms.
    let mut shares: Vec<Duration> = (0..runs.min(5))
        .map(|_| {
            let started = Instant::now();
            slow_input[..100].iter().for_each(|x| {
                slow(x);
            });
            started.elapsed()
        })
        .collect();
    let ideal = Duration::from_secs_f64(median(&mut shares) / 1000.0);
    let label = format!("{slow_items} items of 1 ms");
    row(&label, threads, &mut ours, &mut theirs, Some(ideal));
}

fn check(got: &[u64], expected: &[u64]) {
    if got != expected {
        eprintln!("pool_vs_rayon: wrong results");
        std::process::exit(1);
    }
}

fn median(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

fn row(
    label: &str,
    threads: usize,
    ours: &mut [Duration],
    theirs: &mut [Duration],
    ideal: Option<Duration>,
) {
    let (ours, theirs) = (median(ours), median(theirs));
    let ideal = ideal.map_or(String::new(), |d| {
        format!(", \"ideal_ms\": {:.3}", d.as_secs_f64() * 1000.0)
    });
    println!(
        "{{\"row\": \"{label}\", \"threads\": {threads}, \"ours_ms\": {ours:.3}, \"peer\": \"rayon\", \"peer_ms\": {theirs:.3}, \"ratio\": {:.2}{ideal}}}",
        ours / theirs
    );
}
