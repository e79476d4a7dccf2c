//! Every way a run ends, and its counts: the summary line's `ok`, `failed`
//! and `skipped` equal what `batchproc_runs` recorded, and for a run that
//! got through every item they add up to the items the walk found (for one
//! stopped early, once a resume has finished it). No path stops taking items
//! and still reports success.

mod common;

use std::path::Path;

use common::*;
use sqlx::Row;

const FILES: u64 = 20;

/// (ok, failed, skipped) from the summary line on stderr.
fn summary(err: &str) -> (u64, u64, u64) {
    let line = err
        .lines()
        .find(|l| l.contains(" ok, ") && l.contains(" failed"))
        .unwrap_or_else(|| panic!("no summary line: {err}"));
    let number = |word: &str| -> u64 {
        let before = line.split(word).next().unwrap();
        let n = before.rsplit([' ', ',']).find(|w| !w.is_empty()).unwrap();
        n.parse().unwrap_or(0)
    };
    let skipped = if line.contains(" skipped") {
        number(" skipped")
    } else {
        0
    };
    (number(" ok"), number(" failed"), skipped)
}

/// (status, ok, failed, skipped) of the newest run.
fn recorded(db: &Path) -> (String, u64, u64, u64) {
    let r = &query(
        db,
        "SELECT status, ok, failed, skipped FROM batchproc_runs ORDER BY id DESC LIMIT 1",
    )[0];
    let n = |i: usize| r.get::<i64, _>(i) as u64;
    (r.get(0), n(1), n(2), n(3))
}

fn tree(root: &Path) {
    many_csv_files(&root.join("d"), FILES as usize);
}

fn run(root: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = batchproc(root)
        .args(["files", "d", "-p", "csv", "-w", "1"])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code(), stderr_of(&out))
}

#[test]
fn a_clean_run_counts_every_item() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let (code, err) = run(tmp.path(), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(summary(&err), (FILES, 0, 0));
    let db = tmp.path().join("batchproc.db");
    assert_eq!(recorded(&db), ("succeeded".into(), FILES, 0, 0));
}

#[test]
fn failures_and_skips_add_up_to_the_items_found() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let d = tmp.path().join("d");
    std::fs::write(d.join("f00003.csv"), "a,b\n1,2,3\n").unwrap();
    std::fs::write(d.join("f00011.csv"), "a,b\n1\n").unwrap();
    // Met but not processed: a FIFO is never opened.
    let status = std::process::Command::new("mkfifo")
        .arg(d.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, err) = run(tmp.path(), &["--on-error", "skip"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(summary(&err), (FILES - 2, 2, 1));
    let db = tmp.path().join("batchproc.db");
    assert_eq!(recorded(&db), ("failed".into(), FILES - 2, 2, 1));
    assert_eq!(count(&db, "files") as u64, FILES);
}

/// Fail-fast stops early and says so (exit 1, `failed`); what it did is
/// counted, and the resume that finishes it brings the counts to the items.
#[test]
fn a_run_stopped_by_a_failure_is_finished_by_its_resume() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let d = tmp.path().join("d");
    std::fs::write(d.join("f00010.csv"), "a,b\n1,2,3\n").unwrap();
    let (code, err) = run(tmp.path(), &[]);
    assert_eq!(code, Some(1), "{err}");
    let (ok, failed, skipped) = summary(&err);
    assert_eq!((failed, skipped), (1, 0), "{err}");
    assert!(ok < FILES, "{err}");
    let db = tmp.path().join("batchproc.db");
    assert_eq!(recorded(&db), ("failed".into(), ok, 1, 0));
    std::fs::write(d.join("f00010.csv"), "a,b\n1,2\n").unwrap();
    let (code, err) = run(tmp.path(), &["--resume"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(summary(&err).0, FILES - ok, "{err}");
    assert_eq!(recorded(&db), ("succeeded".into(), FILES, 0, 0));
}

/// A source that fails part-way (a key that is not unique) ends the run
/// failed, with its summary: what was committed is counted.
#[test]
fn a_run_stopped_by_its_source_counts_what_it_committed() {
    let tmp = tempfile::tempdir().unwrap();
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE t (k INTEGER, v TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) \
         INSERT INTO t SELECT i, 'v' FROM n; INSERT INTO t VALUES (40, 'again');",
    );
    let out = batchproc(tmp.path())
        .args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT * FROM t",
        ])
        .args(["--key", "k", "--page-size", "7", "-o", "out.db"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not unique"), "{err}");
    let (ok, failed, _) = summary(&err);
    assert!(ok < 51 && failed == 0, "{err}");
    let db = tmp.path().join("out.db");
    let (status, rec_ok, rec_failed, _) = recorded(&db);
    assert_eq!((status.as_str(), rec_ok, rec_failed), ("failed", ok, 0));
    assert_eq!(count(&db, "rows") as u64, ok);
}
