//! Every wait ends at Ctrl-C: one SIGINT ends the run within moments, with
//! what was committed kept and exit 130, wherever the run is waiting — for
//! a SQLite database another program holds, for a Postgres server that
//! refuses connections, for `--rate`, for a retry's backoff (and, in
//! tests/http.rs, for a request that hangs). Each wait would otherwise last
//! 30 s or more; the bound checked is far below that, with room for a
//! loaded machine. A resume then finishes the run, every item once.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::http::Server;
use common::pg::fresh_db;
use common::*;
use sqlx::Row;

const FILES: usize = 30;

fn tree(root: &Path) {
    many_csv_files(&root.join("d"), FILES);
}

/// Waits until `ready` holds (the run is in its wait), then sends one
/// SIGINT; the run must end with 130 well before the wait would have.
fn interrupt_when(mut child: Child, mut ready: impl FnMut() -> bool) -> String {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(60), "never got there");
        assert!(child.try_wait().unwrap().is_none(), "ended too soon");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(signalled.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(out.status.code(), Some(130), "{err}");
    err
}

/// Rows committed to a SQLite file, read while a run may hold it.
fn rows(db: &Path) -> i64 {
    std::panic::catch_unwind(|| count(db, "files")).unwrap_or(0)
}

/// A SQLite session in another process that takes the write lock as soon
/// as it can and holds it until released.
fn hold_write_lock(db: &Path) -> Child {
    hold_sqlite(db, &["BEGIN IMMEDIATE"])
}

/// `files d -p sha256` at 20 items a second into `sink`.
fn slow_run(root: &Path, sink: &str, resume: bool) -> Child {
    let mut cmd = batchproc_std(root);
    cmd.args([
        "files",
        "d",
        "-p",
        "sha256",
        "--rate",
        "20/s",
        "--batch-size",
        "2",
    ])
    .args(["--sink", sink]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(root: &Path, sink: &str) {
    let out = slow_run(root, sink, true).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

#[test]
fn ctrl_c_ends_a_wait_for_a_sqlite_database_another_program_holds() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let db = tmp.path().join("out.db");
    let child = slow_run(tmp.path(), "sqlite:out.db", false);
    let mut holder = None;
    let err = interrupt_when(child, || {
        if rows(&db) > 0 && holder.is_none() {
            holder = Some(hold_write_lock(&db));
            // Long enough for the run's next commit to be waiting.
            std::thread::sleep(Duration::from_millis(500));
        }
        holder.is_some()
    });
    assert!(err.contains("interrupted"), "{err}");
    release(holder.unwrap());
    let kept = rows(&db);
    assert!(kept > 0 && kept < FILES as i64, "{kept}");
    finish(tmp.path(), "sqlite:out.db");
    assert_eq!(count(&db, "files"), FILES as i64);
    let ok: i64 = query(&db, "SELECT ok FROM batchproc_runs")[0].get(0);
    assert_eq!(ok, FILES as i64, "committed twice or lost");
}

/// Without Ctrl-C, a lock held for a moment is waited out.
#[test]
fn a_sqlite_database_held_for_a_moment_is_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let db = tmp.path().join("out.db");
    let mut child = slow_run(tmp.path(), "sqlite:out.db", false);
    let start = Instant::now();
    while rows(&db) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no rows");
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = hold_write_lock(&db);
    std::thread::sleep(Duration::from_secs(1));
    release(holder);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(count(&db, "files"), FILES as i64);
}

#[test]
fn ctrl_c_ends_the_reconnect_loop_of_a_postgres_sink() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let child = slow_run(tmp.path(), &pg.url, false);
    let mut down = false;
    let committed = || {
        let exists: bool = pg.query("SELECT to_regclass('files') IS NOT NULL")[0].get(0);
        exists && pg.query("SELECT count(*) FROM files")[0].get::<i64, _>(0) > 0
    };
    let err = interrupt_when(child, || {
        if !down && committed() {
            // The server goes away: the session ends, new ones are refused.
            pg.allow_connections(false);
            pg.terminate_sessions();
            down = true;
            std::thread::sleep(Duration::from_millis(500));
        }
        down
    });
    pg.allow_connections(true);
    assert!(err.contains("reconnecting"), "{err}");
    finish(tmp.path(), &pg.url);
    let n: i64 = pg.query("SELECT count(*) FROM files")[0].get(0);
    assert_eq!(n, FILES as i64);
    let ok: i64 = pg.query("SELECT sum(ok)::int8 FROM batchproc_runs")[0].get(0);
    assert_eq!(ok, FILES as i64, "committed twice or lost");
}

#[test]
fn ctrl_c_ends_a_wait_for_the_rate() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let db = tmp.path().join("batchproc.db");
    // One item a minute: the first starts at once, the second waits.
    let child = batchproc_std(tmp.path())
        .args(["files", "d", "-p", "sha256", "--rate", "1/m"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    interrupt_when(child, || rows(&db) == 1);
    assert_eq!(count(&db, "files"), 1);
}

#[test]
fn ctrl_c_ends_a_retry_backoff() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a"), "").unwrap();
    // Always 503: after the first try the item waits 0.5 s, then 1 s, then 2 s…
    let spec = format!("http:GET {}", server.url("/down/{name}"));
    let child = batchproc_std(tmp.path())
        .args(["files", "d", "-p", &spec, "--retries", "10"])
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The third try is in: the item now waits about 2 s (more with jitter)
    // before the next, and later waits grow to 30 s.
    interrupt_when(child, || server.seen().len() >= 4);
}
