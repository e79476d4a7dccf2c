//! SIGTERM/SIGINT mid-run: stop taking items, commit what finished, exit 130.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sqlx::Row;

/// A tree where most files are small and one sparse file takes many
/// seconds to hash, so the run is certainly in flight when signalled.
fn slow_tree(root: &std::path::Path) {
    let d = root.join("d");
    many_csv_files(&d, 500);
    let big = std::fs::File::create(d.join("f00250-big.bin")).unwrap();
    big.set_len(64 << 30).unwrap();
}

fn signal_mid_run(signal: i32) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    slow_tree(tmp.path());
    let db = tmp.path().join("batchproc.db");
    let mut child = batchproc_std(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "sha256",
            "-w",
            "2",
            "--batch-size",
            "10000",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the one-second flush has committed the small files.
    let start = Instant::now();
    while !(db.exists() && std::panic::catch_unwind(|| count(&db, "files")).unwrap_or(0) >= 499) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no rows committed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, signal) };
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    // The big file in flight is abandoned, not waited for.
    assert!(signalled.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("interrupted: 500 ok, 0 failed"), "{err}");
    let rows = query(&db, "SELECT path, sha256 FROM files");
    assert_eq!(rows.len(), 500);
    for row in rows {
        let path: String = row.get("path");
        assert!(!path.contains("big"));
        assert_eq!(
            row.get::<String, _>("sha256"),
            sha256sum(&tmp.path().join(&path))
        );
    }
    let integrity: String = query(&db, "PRAGMA integrity_check")[0].get(0);
    assert_eq!(integrity, "ok");
    let status: String = query(&db, "SELECT status FROM batchproc_runs")[0].get(0);
    assert_eq!(status, "interrupted");
    tmp
}

#[test]
fn sigterm_commits_finished_rows_and_exits_130_then_resumes() {
    let tmp = signal_mid_run(libc::SIGTERM);
    // Shrink the slow file so the resume is quick; it is the only item left.
    let big = tmp.path().join("d/f00250-big.bin");
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("resuming run 1: 500 items already committed"),
        "{err}"
    );
    assert!(err.contains("1 ok, 0 failed"), "{err}");
    let db = tmp.path().join("batchproc.db");
    let run = &query(&db, "SELECT status, ok, attempts FROM batchproc_runs")[0];
    assert_eq!(run.get::<String, _>(0), "succeeded");
    assert_eq!((run.get::<i64, _>(1), run.get::<i64, _>(2)), (501, 2));
    let sha: String = query(
        &db,
        "SELECT sha256 FROM files WHERE path = 'd/f00250-big.bin'",
    )[0]
    .get(0);
    assert_eq!(sha, sha256sum(&big));
}

#[test]
fn sigint_commits_finished_rows_and_exits_130() {
    signal_mid_run(libc::SIGINT);
}
