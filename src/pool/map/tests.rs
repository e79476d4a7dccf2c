use super::*;
use crate::pool::testing::jitter;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
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
    for (workers, sleep_ms) in [(3, 2), (2, 0)] {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        try_map(workers, 0..20_000u64, |i| {
            most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
            if sleep_ms > 0 && i < 100 {
                std::thread::sleep(jitter(i, sleep_ms));
            }
            running.fetch_sub(1, SeqCst);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!((1..=workers).contains(&most.load(SeqCst)));
    }
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
    // The other items take 1 ms, more than a chunk's aim, so every chunk
    // holds one item: items sharing a chunk run one after another, and a
    // chunk holding both 1 and 6 would make item 1's error the first.
    let got = try_map(4, 0..10u64, |i| match i {
        1 => {
            std::thread::sleep(Duration::from_millis(500));
            Err(i)
        }
        6 => Err(i),
        _ => {
            std::thread::sleep(Duration::from_millis(1));
            Ok(i)
        }
    });
    assert_eq!(got, Err(6));
}

#[test]
fn an_endless_input_ends_at_the_first_error() {
    let got = try_map(
        4,
        0u64..,
        |i| {
            if i == 100_000 {
                Err("boom")
            } else {
                Ok(i)
            }
        },
    );
    assert_eq!(got, Err("boom"));
}

#[test]
fn empty_input_and_zero_workers() {
    assert_eq!(try_map(0, Vec::<u8>::new(), Ok::<u8, ()>), Ok(vec![]));
    assert_eq!(try_map(0, [1, 2], Ok::<u8, ()>), Ok(vec![1, 2]));
    assert_eq!(map(0, [1, 2], |n: u8| n + 1), [2, 3]);
}

#[test]
fn map_matches_a_sequential_map() {
    let words: Vec<String> = (0..50_000).map(|i| format!("w{i}")).collect();
    let expected: Vec<usize> = words.iter().map(|w| w.len()).collect();
    assert_eq!(map(3, &words, |w| w.len()), expected);
}

#[test]
fn pool_takes_any_error_that_takes_a_cancel() {
    let ctx = Cancel::new();
    let io = pool(&ctx, 2, [1, 2, 3], |_, i| {
        if i == 2 {
            Err(std::io::Error::other("disk on fire"))
        } else {
            Ok(i)
        }
    });
    assert_eq!(io.unwrap_err().to_string(), "disk on fire");
    let text = pool(&ctx, 2, ["a", "bb"], |_, s| Ok::<_, String>(s.len()));
    assert_eq!(text.unwrap(), [1, 2]);
    let any = pool(&ctx, 2, ["1", "x"], |_, s| {
        Ok::<_, anyhow::Error>(s.parse::<u8>()?)
    });
    assert!(any.is_err());
}

#[test]
fn pool_on_a_cancelled_ctx_says_cancelled() {
    let ctx = Cancel::new();
    ctx.cancel();
    let ran = AtomicUsize::new(0);
    let got = pool(&ctx, 4, 0..100u32, |_, i| {
        ran.fetch_add(1, SeqCst);
        Ok::<_, std::io::Error>(i)
    });
    assert_eq!(got.unwrap_err().kind(), std::io::ErrorKind::Interrupted);
    assert_eq!(ran.load(SeqCst), 0);
}

#[test]
fn a_panic_in_f_ends_an_endless_run_and_is_resumed_with_its_payload() {
    let run = std::panic::catch_unwind(|| {
        try_map(2, 0u32.., |i| {
            std::thread::sleep(Duration::from_millis(1));
            assert_ne!(i, 3, "item three");
            Ok::<_, ()>(i)
        })
    });
    let payload = run.unwrap_err();
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(message.contains("item three"), "{message}");
}

/// The bound on jobs started after a panic, whatever the panic hook does:
/// run with the environment the caller gives (see the next test).
fn starts_after_a_panic(workers: usize) -> usize {
    let panicking = AtomicBool::new(false);
    let late = AtomicUsize::new(0);
    let run = std::panic::catch_unwind(|| {
        try_map(workers, 0u32..10_000, |i| {
            if panicking.load(SeqCst) {
                late.fetch_add(1, SeqCst);
            }
            std::thread::sleep(Duration::from_micros(200));
            if i == 20 {
                panicking.store(true, SeqCst);
                panic!("item twenty");
            }
            Ok::<_, ()>(i)
        })
    });
    let payload = run.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"item twenty"));
    late.load(SeqCst)
}

/// Not run by itself: the next test runs it in a child process with
/// `RUST_BACKTRACE=1`, where the default hook resolves a backtrace (slow)
/// before the panic unwinds.
#[test]
#[ignore = "run by extra_starts_after_a_panic_are_bounded_with_backtraces"]
fn panic_bound_in_this_environment() {
    let workers = 4;
    let late = starts_after_a_panic(workers);
    println!("late starts: {late}");
    assert!(late < workers, "{late} jobs started after the panic");
}

#[test]
fn extra_starts_after_a_panic_are_bounded_with_backtraces() {
    let late = starts_after_a_panic(4);
    assert!(late < 4, "{late} jobs started after the panic");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pool::map::tests::panic_bound_in_this_environment",
        ])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    // The backtrace was printed: the child really had the slow hook.
    assert!(stderr.contains("stack backtrace"), "{stderr}");
}

/// A job may catch a panic of its own (a library that turns panics into
/// errors): the run goes on, and every result is there.
#[test]
fn a_panic_caught_inside_f_does_not_stop_the_run() {
    let out = map(2, 0..100_000u64, |i| {
        if i % 10_000 == 1000 {
            let caught = std::panic::catch_unwind(|| panic!("handled inside f"));
            assert!(caught.is_err());
        }
        i
    });
    assert_eq!(out, (0..100_000).collect::<Vec<_>>());
}

#[test]
fn a_huge_worker_count_is_capped_not_fatal() {
    assert_eq!(
        try_map(usize::MAX, 0..10u32, Ok::<_, ()>),
        Ok((0..10).collect())
    );
}
