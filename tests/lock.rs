//! Two runs that meet on one sink: the second is refused at once with exit
//! 75 (EX_TEMPFAIL) and a message naming the live run, whether or not it
//! asks to `--resume`; a run killed while it holds the sink does not keep
//! it. Real concurrent processes; the live run is held at a known point by
//! its first item's command, which waits for a file the test creates.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::pg::fresh_db;
use common::*;
use sqlx::Row;

const FILES: usize = 30;

/// A tree of FILES files; the first one's command says it started and
/// waits until the test says `release`.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("d")).unwrap();
    for i in 0..FILES {
        std::fs::write(root.join(format!("d/f{i:03}")), format!("{i}\n")).unwrap();
    }
}

const HOLD: &str = "exec:sh -c 'if [ {} = d/f000 ]; then touch started; \
                    while [ ! -e release ]; do sleep 0.02; done; fi'";

fn args(sink: &str, resume: bool) -> Vec<&str> {
    let mut args = vec![
        "files", "d", "-w", "2", "-p", "sha256", "-p", HOLD, "--sink", sink,
    ];
    if resume {
        args.push("--resume");
    }
    args
}

/// Starts the live run and waits until its first item is in flight.
fn start_live(root: &Path, sink: &str) -> Child {
    let child = batchproc_std(root)
        .args(args(sink, false))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !root.join("started").exists() {
        assert!(Instant::now() < deadline, "the live run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A second run, with and without --resume: refused at once, exit 75, the
/// live run named by its pid.
fn assert_refused(root: &Path, sink: &str, live: &Child) {
    for resume in [false, true] {
        let out = batchproc(root)
            .args(args(sink, resume))
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(75), "resume={resume}: {err}");
        let pid = format!("(pid {} on ", live.id());
        assert!(
            err.contains(&pid) && err.contains("try again when it ends"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

fn release_and_finish(root: &Path, live: Child) {
    std::fs::write(root.join("release"), "").unwrap();
    let out = live.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

/// Starts a live run on `out.db`, SIGKILLs it while it holds the sink, then
/// runs again (with or without `--resume`), which must succeed; its stderr.
fn kill_live_then_run(root: &Path, resume: bool) -> String {
    let mut live = start_live(root, "sqlite:out.db");
    live.kill().unwrap();
    live.wait().unwrap();
    std::fs::write(root.join("release"), "").unwrap();
    let out = batchproc(root)
        .args(args("sqlite:out.db", resume))
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    err
}

#[test]
fn a_second_run_on_a_live_sqlite_sink_is_refused_with_exit_75() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let live = start_live(tmp.path(), "sqlite:out.db");
    assert_refused(tmp.path(), "sqlite:out.db", &live);
    release_and_finish(tmp.path(), live);
    // Exactly once: the refused runs did nothing.
    let db = tmp.path().join("out.db");
    assert_eq!(count(&db, "files"), FILES as i64);
    let runs = query(&db, "SELECT status, ok, attempts FROM batchproc_runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get::<String, _>(0), "succeeded");
    assert_eq!(runs[0].get::<i64, _>(1), FILES as i64);
    assert_eq!(runs[0].get::<i64, _>(2), 1);
}

#[test]
fn a_second_run_on_a_live_csv_sink_is_refused_with_exit_75() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let live = start_live(tmp.path(), "csv:out.csv");
    assert_refused(tmp.path(), "csv:out.csv", &live);
    release_and_finish(tmp.path(), live);
    let csv = std::fs::read_to_string(tmp.path().join("out.csv")).unwrap();
    assert_eq!(csv.lines().count(), FILES + 1, "{csv}");
}

#[test]
fn a_run_killed_while_it_holds_the_sink_does_not_keep_it() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    // The killed run is not live: the hint says it can be resumed, and a
    // resume gets the sink and finishes it, every file exactly once.
    let err = kill_live_then_run(tmp.path(), false);
    assert!(err.contains("--resume would continue it"), "{err}");
    let db = tmp.path().join("out.db");
    assert_eq!(count(&db, "files"), FILES as i64);
}

#[test]
fn a_resume_after_a_kill_gets_the_sink_and_finishes_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let err = kill_live_then_run(tmp.path(), true);
    assert!(err.contains("resuming run 1"), "{err}");
    let db = tmp.path().join("out.db");
    assert_eq!(count(&db, "files"), FILES as i64);
    let runs = query(&db, "SELECT status, ok, attempts, pid FROM batchproc_runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get::<String, _>(0), "succeeded");
    assert_eq!(
        runs[0].get::<i64, _>(1),
        FILES as i64,
        "committed twice or lost"
    );
    assert_eq!(runs[0].get::<i64, _>(2), 2);
}

#[test]
fn a_second_run_on_a_live_postgres_sink_is_refused_with_exit_75() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let live = start_live(tmp.path(), &pg.url);
    assert_refused(tmp.path(), &pg.url, &live);
    release_and_finish(tmp.path(), live);
    let n: i64 = pg.query("SELECT count(*) FROM files")[0].get(0);
    assert_eq!(n, FILES as i64);
    let ok: i64 = pg.query("SELECT sum(ok)::int8 FROM batchproc_runs")[0].get(0);
    assert_eq!(ok, FILES as i64);
}
