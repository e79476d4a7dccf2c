//! How long the pool takes to end after a cancel, as `make bench` runs it:
//! `Pool::run` with an endless producer and a caller that has stopped
//! reading its full output channel, and `pool::pool` whose jobs wait on
//! the token. The time from `cancel()` until the call returns, over many
//! tries: median and worst. The promise is 100 ms.
//!
//!     cargo run --release --example pool_cancel -- [tries]

use std::time::{Duration, Instant};

use batchproc::pool::{self, channel, Cancel, Cancelled, Pool};

fn main() {
    let tries: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let mut run = Vec::new();
    let mut map = Vec::new();
    for _ in 0..tries {
        run.push(stream_run());
        map.push(jobs_waiting());
    }
    row("Pool::run, endless producer, nobody reading", &mut run);
    row("pool(), jobs waiting on the token", &mut map);
}

fn stream_run() -> Duration {
    let cancel = Cancel::new();
    let (in_tx, in_rx) = channel::bounded(64);
    let (out_tx, out_rx) = channel::bounded(64);
    std::thread::scope(|s| {
        s.spawn(move || (0u64..).take_while(|&n| in_tx.send(n).is_ok()).count());
        let c = cancel.clone();
        let run = s.spawn(move || Pool::new(4).run(in_rx, out_tx, &c, || (), |_, n| n));
        out_rx.iter().take(1000).for_each(drop);
        while !out_rx.is_full() {
            std::thread::yield_now();
        }
        let cancelled = Instant::now();
        cancel.cancel();
        run.join().expect("no panic").expect("threads");
        let took = cancelled.elapsed();
        drop(out_rx);
        took
    })
}

fn jobs_waiting() -> Duration {
    let ctx = Cancel::new();
    std::thread::scope(|s| {
        let ctx = &ctx;
        let (started_tx, started_rx) = channel::bounded(4);
        let map = s.spawn(move || {
            let got = pool::pool(ctx, 4, 0..1000u32, |cx, n| {
                let _ = started_tx.try_send(());
                // An hour-long job, unless cancelled.
                if cx.wait_timeout(Duration::from_secs(3600)) {
                    return Err(Cancelled);
                }
                Ok(n)
            });
            (got, Instant::now())
        });
        for _ in 0..4 {
            started_rx.recv().expect("four jobs start");
        }
        let cancelled = Instant::now();
        ctx.cancel();
        let (got, ended) = map.join().expect("no panic");
        assert_eq!(got, Err(Cancelled));
        ended - cancelled
    })
}

fn row(label: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{{\"row\": \"cancel latency: {label}\", \"tries\": {}, \"median_ms\": {:.3}, \"max_ms\": {:.3}, \"target_ms\": 100}}",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
    );
}
