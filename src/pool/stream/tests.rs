use super::*;
use crate::pool::testing::jitter;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

#[test]
fn delivers_in_input_order_within_the_window() {
    let window = 6;
    let pulled = Cell::new(0usize);
    let mut delivered = Vec::new();
    let input = (0..400u64).inspect(|_| pulled.set(pulled.get() + 1));
    let ran = try_for_each_ordered(
        4,
        window,
        input,
        |i| {
            std::thread::sleep(jitter(i, 3));
            Ok::<_, ()>(i)
        },
        |i| {
            // The one being delivered is still counted as pulled.
            assert!(pulled.get() - delivered.len() <= window);
            delivered.push(i);
            Ok(())
        },
    );
    assert_eq!(ran, Ok(()));
    assert_eq!(delivered, (0..400).collect::<Vec<_>>());
}

#[test]
fn an_error_from_each_stops_the_run() {
    let calls = AtomicUsize::new(0);
    let mut seen = Vec::new();
    let ran = try_for_each_ordered(
        2,
        4,
        0u32..,
        |i| {
            calls.fetch_add(1, SeqCst);
            Ok(i)
        },
        |i| {
            seen.push(i);
            if i == 10 {
                Err("full")
            } else {
                Ok(())
            }
        },
    );
    assert_eq!(ran, Err("full"));
    assert_eq!(seen, (0..=10).collect::<Vec<_>>());
    // Nothing is pulled beyond the window.
    assert!(calls.load(SeqCst) <= 11 + 4);
}

#[test]
fn a_window_of_one_runs_one_at_a_time() {
    let ran = try_for_each_ordered(8, 1, 0..50u64, Ok::<_, ()>, |_| Ok(()));
    assert_eq!(ran, Ok(()));
}

#[test]
fn a_million_tiny_items_arrive_complete_and_in_order() {
    let mut next = 0u64;
    let ran = try_for_each_ordered(
        3,
        usize::MAX,
        0..1_000_000u64,
        |i| Ok::<_, ()>(i.wrapping_mul(3)),
        |r| {
            assert_eq!(r, next.wrapping_mul(3));
            next += 1;
            Ok(())
        },
    );
    assert_eq!((ran, next), (Ok(()), 1_000_000));
}

/// Items that turn slow after a long run of quick ones: the long chunks the
/// quick ones earned are given back and shared, so every worker gets slow
/// items, instead of one worker holding thousands of them.
#[test]
fn items_that_turn_slow_are_shared_out_again() {
    let workers = 4;
    let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let ran = try_for_each_ordered(
        workers,
        usize::MAX,
        0..200_000u64,
        |i| {
            if (100_000..100_400).contains(&i) {
                most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                std::thread::sleep(Duration::from_micros(500));
                running.fetch_sub(1, SeqCst);
            }
            Ok::<_, ()>(i)
        },
        |_| Ok(()),
    );
    assert_eq!(ran, Ok(()));
    assert!(most.load(SeqCst) >= 2, "the slow items ran one at a time");
}

/// "After the error" is from the moment the run's token is cancelled (the
/// failing job has returned): a job that finds the token cancelled as it
/// starts began after that, and each worker can start at most one such.
#[test]
fn after_an_error_each_other_worker_starts_at_most_one_item() {
    let workers = 4;
    let late = AtomicUsize::new(0);
    let ran = try_for_each_ordered_ctx(
        &Cancel::new(),
        workers,
        usize::MAX,
        0..2_000_000u64,
        |cx, i| {
            if cx.is_cancelled() {
                late.fetch_add(1, SeqCst);
            }
            if i == 700_000 {
                return Err(crate::pool::Cancelled);
            }
            Ok(i)
        },
        |_| Ok(()),
    );
    assert_eq!(ran, Err(crate::pool::Cancelled));
    let late = late.load(SeqCst);
    assert!(late < workers, "{late} items started after the error");
}

#[test]
fn a_cancelled_ctx_stops_the_run_and_its_jobs_see_it() {
    let ctx = Cancel::new();
    let saw_cancel = AtomicUsize::new(0);
    let ran = try_for_each_ordered_ctx(
        &ctx,
        3,
        64,
        0u64..,
        |cx, i| {
            if i == 50 {
                ctx.cancel();
            }
            // A job that would take an hour, but for the cancel.
            if i >= 50 && cx.wait_timeout(Duration::from_secs(3600)) {
                saw_cancel.fetch_add(1, SeqCst);
                return Err(crate::pool::Cancelled);
            }
            Ok(i)
        },
        |_| Ok(()),
    );
    assert_eq!(ran, Err(crate::pool::Cancelled));
    assert!((1..=3).contains(&saw_cancel.load(SeqCst)));
}

#[test]
fn a_failure_cancels_the_token_long_jobs_wait_on() {
    let started = std::time::Instant::now();
    let ran = try_for_each_ordered_ctx(
        &Cancel::new(),
        2,
        8,
        0..2u32,
        |cx, i| {
            if i == 1 {
                std::thread::sleep(Duration::from_millis(10));
                return Err(std::io::Error::other("item one"));
            }
            cx.wait_timeout(Duration::from_secs(3600));
            Ok(i)
        },
        |_| Ok(()),
    );
    assert_eq!(ran.unwrap_err().to_string(), "item one");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn workers_inside_a_tokio_runtime_can_use_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ran = rt.block_on(async {
        try_for_each_ordered(
            2,
            4,
            0..4u32,
            |i| {
                tokio::runtime::Handle::try_current()
                    .map(|_| i)
                    .map_err(|e| e.to_string())
            },
            |_| Ok(()),
        )
    });
    assert_eq!(ran, Ok(()));
}

/// A panic on the calling thread (in `each`, or in the input) cancels the
/// run, so jobs waiting on its token end at once and the panic surfaces.
#[test]
fn a_panic_in_each_or_in_the_input_wakes_jobs_waiting_on_the_token() {
    for panic_in_input in [false, true] {
        let started = std::time::Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let input = (0..10u32).inspect(|&i| assert!(!(panic_in_input && i == 3), "input"));
            try_for_each_ordered_ctx(
                &Cancel::new(),
                2,
                8,
                input,
                |cx, i| {
                    if i > 0 {
                        cx.wait_timeout(Duration::from_secs(120));
                    }
                    Ok::<_, crate::pool::Cancelled>(i)
                },
                |_| {
                    assert!(panic_in_input, "each");
                    Ok(())
                },
            )
        }));
        let payload = run.unwrap_err();
        let expected = if panic_in_input { "input" } else { "each" };
        assert_eq!(payload.downcast_ref::<&str>(), Some(&expected));
        // Not woken, the jobs would wait out their two minutes.
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

/// Items from a slow channel: each result goes on about when the next item
/// comes in, not once a whole chunk (or the window) has filled.
#[test]
fn results_of_a_slow_input_are_not_held_back() {
    let (tx, rx) = crossbeam_channel::bounded::<std::time::Instant>(1);
    let mut worst = Duration::ZERO;
    std::thread::scope(|s| {
        s.spawn(move || {
            for _ in 0..200 {
                tx.send(std::time::Instant::now()).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let ran = try_for_each_ordered(2, 1000, rx, Ok::<_, ()>, |sent| {
            worst = worst.max(sent.elapsed());
            Ok(())
        });
        assert_eq!(ran, Ok(()));
    });
    // Held back, the first results would wait the whole second of the run.
    assert!(
        worst < Duration::from_millis(500),
        "a result waited {worst:?}"
    );
}

#[test]
fn a_cancel_after_the_last_result_takes_nothing_away() {
    let ctx = Cancel::new();
    let mut seen = 0;
    let ran = try_for_each_ordered_ctx(
        &ctx,
        2,
        8,
        0..10u32,
        |_, i| Ok::<_, crate::pool::Cancelled>(i),
        |i| {
            seen += 1;
            if i == 9 {
                ctx.cancel();
            }
            Ok(())
        },
    );
    assert_eq!((ran, seen), (Ok(()), 10));
}
