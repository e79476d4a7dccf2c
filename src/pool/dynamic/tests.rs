//! The dynamic pool's tests: growth, retirement, cancellation, stats.

use super::*;
use crate::pool::testing::eventually;
use crate::pool::CancelReason;
use crossbeam_channel::{bounded, unbounded};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn fixed_pool_runs_every_item_once() {
    let (in_tx, in_rx) = bounded(4);
    let (out_tx, out_rx) = unbounded();
    let pool = Pool::new(3);
    let gauge = pool.gauge();
    let stats = std::thread::scope(|s| {
        s.spawn(move || {
            // All three are up before the first item: a loaded machine may
            // start the last thread only after the others did all 500.
            assert!(eventually(|| gauge.live() == 3));
            (0..500u32).for_each(|n| in_tx.send(n).unwrap())
        });
        let work = |seen: &mut u32, n| {
            *seen += 1;
            n
        };
        pool.run(in_rx, out_tx, &Cancel::new(), || 0, work)
    })
    .unwrap();
    let mut got: Vec<u32> = out_rx.iter().collect();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    assert_eq!(stats.items, 500);
    assert_eq!(stats.peak_workers, 3);
    assert!((1..=3).contains(&stats.peak_busy), "{stats:?}");
}

#[test]
fn average_busy_of_two_busy_workers_is_about_two() {
    let (in_tx, in_rx) = unbounded();
    (0..20u32).for_each(|n| in_tx.send(n).unwrap());
    drop(in_tx);
    let (out_tx, _out_rx) = unbounded();
    let stats = Pool::new(2)
        .run(in_rx, out_tx, &Cancel::new(), || (), |_, _| sleep_ms(20))
        .unwrap();
    assert_eq!(stats.items, 20);
    assert_eq!(stats.peak_busy, 2);
    // Busy time lies within the run, so 2.0 is a hard ceiling.
    assert!(
        stats.average_busy > 1.0 && stats.average_busy <= 2.0 + 1e-9,
        "{stats:?}"
    );
}

#[test]
fn grows_under_backlog_shrinks_when_idle_and_ends_with_the_input() {
    let pool = Pool::dynamic(1, 4)
        .grow_after(Duration::from_millis(10))
        .idle_timeout(Duration::from_millis(200));
    let gauge = pool.gauge();
    let (in_tx, in_rx) = unbounded();
    let (out_tx, out_rx) = unbounded();
    std::thread::scope(|s| {
        let pool = &pool;
        let run = s.spawn(move || {
            let work = |_: &mut (), n: u32| {
                sleep_ms(3);
                n
            };
            pool.run(in_rx, out_tx, &Cancel::new(), || (), work)
        });
        // About a second of work for one worker.
        (0..300).for_each(|n| in_tx.send(n).unwrap());
        let (mut most_live, mut most_busy) = (0, 0);
        let grew = eventually(|| {
            most_live = most_live.max(gauge.live());
            most_busy = most_busy.max(gauge.busy());
            most_live == 4
        });
        assert!(grew, "reached only {most_live} workers");
        assert!(most_busy >= 1);
        assert_eq!(out_rx.iter().take(300).count(), 300);

        // The input stays open: idleness alone retires the extra workers.
        assert!(eventually(|| gauge.live() == 1), "{} live", gauge.live());
        sleep_ms(400);
        assert_eq!(gauge.live(), 1, "went below min");

        let closed = Instant::now();
        drop(in_tx);
        let stats = run.join().unwrap().unwrap();
        assert!(closed.elapsed() < Duration::from_secs(5));
        assert_eq!(stats.peak_workers, 4);
        assert_eq!(stats.items, 300);
    });
    assert_eq!((gauge.live(), gauge.busy()), (0, 0));
}

/// A dynamic pool (1 to 4 workers) over a backlog of 100 jobs of 2 ms,
/// each spent `waiting` or not.
fn backlog_of_sleeps(waits: bool) -> PoolStats {
    let pool = Pool::dynamic(1, 4).grow_after(Duration::from_millis(4));
    let (in_tx, in_rx) = unbounded();
    (0..100u32).for_each(|n| in_tx.send(n).unwrap());
    drop(in_tx);
    let (out_tx, out_rx) = unbounded();
    let job = |_: &mut (), n: u32| {
        match waits {
            true => crate::pool::waiting(|| sleep_ms(2)),
            false => sleep_ms(2),
        }
        n
    };
    let stats = pool.run(in_rx, out_tx, &Cancel::new(), || (), job).unwrap();
    assert_eq!(out_rx.iter().sum::<u32>(), 4950);
    assert_eq!(stats.items, 100);
    stats
}

#[test]
fn a_backlog_of_waiting_jobs_does_not_grow_the_pool_but_one_of_work_does() {
    let waiting = backlog_of_sleeps(true);
    assert_eq!(waiting.peak_workers, 1, "{waiting:?}");
    // Busy only between the waits: a small fraction of the run.
    assert!(waiting.average_busy < 0.5, "{waiting:?}");
    let working = backlog_of_sleeps(false);
    assert!(working.peak_workers > 1, "{working:?}");
}

#[test]
fn cancel_stops_new_work_and_ends_the_producer() {
    let workers = 2;
    let cancel = Cancel::new();
    let started = AtomicUsize::new(0);
    let (in_tx, in_rx) = bounded(1);
    let (out_tx, out_rx) = unbounded();
    let sent = std::thread::scope(|s| {
        // Endless: it stops only when the pool drops the input.
        let producer = s.spawn(move || (0u32..).take_while(|&n| in_tx.send(n).is_ok()).count());
        let work = |_: &mut (), _: u32| {
            if started.fetch_add(1, SeqCst) + 1 == 10 {
                cancel.cancel_with(CancelReason::Interrupted);
            }
            sleep_ms(1);
        };
        let stats = Pool::new(workers)
            .run(in_rx, out_tx, &cancel, || (), work)
            .unwrap();
        assert_eq!(stats.items as usize, started.load(SeqCst));
        producer.join().unwrap()
    });
    let started = started.load(SeqCst);
    assert!((10..=10 + workers).contains(&started), "{started} started");
    // What the workers took, and at most one more in the queue.
    assert!(sent <= started + workers + 2, "{sent} sent");
    assert_eq!(out_rx.iter().count(), started);
}

#[test]
fn closed_output_ends_the_run_and_drops_the_input() {
    let (in_tx, in_rx) = bounded(1);
    let (out_tx, out_rx) = bounded(1);
    drop(out_rx);
    let stats = std::thread::scope(|s| {
        // Ends only once the pool has dropped the input.
        s.spawn(move || while in_tx.send(0u8).is_ok() {});
        Pool::dynamic(1, 3).run(in_rx, out_tx, &Cancel::new(), || (), |_, n| n)
    })
    .unwrap();
    assert!(stats.items >= 1, "{stats:?}");
}

#[test]
fn builder_clamps_sizes() {
    let pool = Pool::dynamic(0, 0);
    assert_eq!((pool.min_workers(), pool.workers()), (1, 1));
    let pool = Pool::dynamic(3, 2);
    assert_eq!((pool.min_workers(), pool.workers()), (3, 3));
    assert_eq!(Pool::new(5).min_workers(), 5);
    assert_eq!(Pool::new(usize::MAX).workers(), 4096);
}

/// After a cancel, `run` returns promptly even though the producer never
/// stops by itself and the caller stopped reading a full output channel.
#[test]
fn a_cancel_ends_the_run_with_an_endless_producer_and_nobody_reading() {
    let cancel = Cancel::new();
    let (in_tx, in_rx) = bounded(8);
    let (out_tx, out_rx) = bounded(4);
    std::thread::scope(|s| {
        let producer = s.spawn(move || (0u64..).take_while(|&n| in_tx.send(n).is_ok()).count());
        let c = cancel.clone();
        let run = s.spawn(move || Pool::new(3).run(in_rx, out_tx, &c, || (), |_, n| n));
        // Read a few, then stop reading: the output fills, workers block.
        assert_eq!(out_rx.iter().take(10).count(), 10);
        assert!(eventually(|| out_rx.is_full()));
        let cancelled = Instant::now();
        cancel.cancel();
        let stats = run.join().unwrap().unwrap();
        let took = cancelled.elapsed();
        assert!(stats.items >= 10, "{stats:?}");
        producer.join().unwrap();
        // The promise is 100 ms; a loaded test machine gets ten times that.
        assert!(took < Duration::from_secs(1), "run took {took:?} to end");
    });
    drop(out_rx);
}

#[test]
fn a_panic_stops_the_pool_and_is_resumed_with_its_payload() {
    let started = AtomicUsize::new(0);
    let (in_tx, in_rx) = unbounded();
    (0..100u32).for_each(|n| in_tx.send(n).unwrap());
    drop(in_tx);
    let (out_tx, _out_rx) = unbounded();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Pool::new(4).run(
            in_rx,
            out_tx,
            &Cancel::new(),
            || (),
            |_, n| {
                started.fetch_add(1, SeqCst);
                sleep_ms(2);
                assert_ne!(n, 5, "job five failed");
            },
        )
    }));
    let payload = run.unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .expect("the job's own payload");
    assert!(message.contains("job five failed"), "{message}");
    // Item 5, what the four workers had started, and one more each.
    let started = started.load(SeqCst);
    assert!(started <= 6 + 4 + 4, "{started} jobs started");
}

#[test]
fn a_panic_in_init_is_resumed_too() {
    let (in_tx, in_rx) = unbounded::<u32>();
    drop(in_tx);
    let (out_tx, _out_rx) = unbounded();
    let run = std::panic::catch_unwind(|| {
        Pool::new(2).run(
            in_rx,
            out_tx,
            &Cancel::new(),
            || panic!("no buffer"),
            |_: &mut (), n| n,
        )
    });
    assert_eq!(run.unwrap_err().downcast_ref::<&str>(), Some(&"no buffer"));
}

#[test]
fn a_panic_caught_inside_work_does_not_end_the_run() {
    let (in_tx, in_rx) = unbounded();
    (0..1000u32).for_each(|n| in_tx.send(n).unwrap());
    drop(in_tx);
    let (out_tx, out_rx) = unbounded();
    let stats = Pool::new(2)
        .run(
            in_rx,
            out_tx,
            &Cancel::new(),
            || (),
            |_, n| {
                if n % 100 == 10 {
                    let caught = std::panic::catch_unwind(|| panic!("handled inside work"));
                    assert!(caught.is_err());
                }
                n
            },
        )
        .unwrap();
    assert_eq!((out_rx.iter().count(), stats.items), (1000, 1000));
}

/// Closing the output ends the run even while the input is quiet: every
/// idle worker learns of it, not only the one whose send failed.
#[test]
fn a_closed_output_ends_the_run_while_the_input_is_quiet() {
    let (in_tx, in_rx) = unbounded::<u32>();
    let (out_tx, out_rx) = unbounded::<u32>();
    drop(out_rx);
    let (ended_tx, ended_rx) = bounded(1);
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = Pool::new(3).run(in_rx, out_tx, &Cancel::new(), || (), |_, n| n);
            ended_tx.send(()).unwrap();
        });
        in_tx.send(1).unwrap();
        let ended = ended_rx.recv_timeout(Duration::from_secs(30));
        drop(in_tx);
        assert!(ended.is_ok(), "still running with its output closed");
    });
}
