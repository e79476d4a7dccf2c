//! `batchproc::pool::try_map_async` against the stream adapters it stands in
//! for, on a sleep-bound job: what the ordering and fail-fast bookkeeping cost
//! when the work itself is only waiting. One JSON line per peer on stdout;
//! ratio = peer_ms / ours_ms, so above 1 means ours is faster.
//!
//!     cargo run --release --example pool_async

use std::time::{Duration, Instant};

use batchproc::pool::try_map_async;
use futures_util::stream::{self, StreamExt};
use tokio::time::sleep;

const N: u64 = 2_000;
const LIMIT: usize = 64;
const WORK: Duration = Duration::from_millis(5);
const RUNS: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Ours,
    BufferUnordered,
    Buffered,
}

async fn run(variant: Variant) -> Vec<u64> {
    match variant {
        Variant::Ours => try_map_async(LIMIT, 0..N, |i| async move {
            sleep(WORK).await;
            Ok::<_, ()>(i)
        })
        .await
        .expect("no item fails"),
        Variant::BufferUnordered => {
            stream::iter(0..N)
                .map(|i| async move {
                    sleep(WORK).await;
                    i
                })
                .buffer_unordered(LIMIT)
                .collect()
                .await
        }
        Variant::Buffered => {
            stream::iter(0..N)
                .map(|i| async move {
                    sleep(WORK).await;
                    i
                })
                .buffered(LIMIT)
                .collect()
                .await
        }
    }
}

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let variants = [Variant::Ours, Variant::BufferUnordered, Variant::Buffered];
    let mut times = vec![Vec::new(); variants.len()];
    // Alternating, so that a noisy stretch of the machine hits every variant.
    for _ in 0..RUNS {
        for (v, &variant) in variants.iter().enumerate() {
            let started = Instant::now();
            let results = rt.block_on(run(variant));
            times[v].push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(results.len() as u64, N);
            if variant == Variant::Ours && !results.iter().copied().eq(0..N) {
                eprintln!("try_map_async returned its results out of input order");
                std::process::exit(1);
            }
        }
    }
    let mut medians = times.into_iter().map(median_ms);
    let ours_ms = medians.next().expect("ours ran");
    let ideal_ms = N as f64 / LIMIT as f64 * WORK.as_secs_f64() * 1000.0;
    for (peer, peer_ms) in ["buffer_unordered", "buffered"].into_iter().zip(medians) {
        // By hand: serde_json's compact output has no spaces after `:` and `,`.
        println!(
            r#"{{"row": "async sleep-bound", "ours_ms": {ours_ms:.1}, "peer": "{peer}", "peer_ms": {peer_ms:.1}, "ratio": {:.2}, "ideal_ms": {ideal_ms:.1}}}"#,
            peer_ms / ours_ms,
        );
    }
}
