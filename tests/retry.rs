//! `--resume` after a run that finished with failed items (under
//! `--on-error skip`) retries those items, and only those, before it goes
//! on; the exit code says whether failures remain (GNU parallel's
//! `--resume-failed`). Each failure is counted once in `batchproc runs`,
//! however often it is retried.

mod common;

use std::path::Path;

use common::pg::fresh_db;
use common::*;
use sqlx::Row;

const FILES: usize = 50;

fn bad(d: &Path, name: &str) {
    std::fs::write(d.join(name), "a,b\n1,2,3\n").unwrap();
}

fn good(d: &Path, name: &str) {
    std::fs::write(d.join(name), "a,b\n1,2\n").unwrap();
}

fn run(root: &Path, resume: bool) -> (Option<i32>, String) {
    let mut cmd = batchproc(root);
    cmd.args(["files", "d", "-p", "csv", "--on-error", "skip"]);
    if resume {
        cmd.arg("--resume");
    }
    let out = cmd.output().unwrap();
    (out.status.code(), stderr_of(&out))
}

/// (status, ok, failed, attempts) of the one run.
fn the_run(db: &Path) -> (String, i64, i64, i64) {
    let rows = query(
        db,
        "SELECT status, ok, failed, attempts FROM batchproc_runs",
    );
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

fn errors(db: &Path) -> Vec<String> {
    query(
        db,
        "SELECT path FROM files WHERE error IS NOT NULL ORDER BY path",
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn a_resume_retries_the_failed_items_until_none_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, FILES);
    bad(&d, "f00010.csv");
    bad(&d, "f00040.csv");
    let db = tmp.path().join("batchproc.db");
    let (code, err) = run(tmp.path(), false);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(the_run(&db), ("failed".into(), 48, 2, 1));
    // Unfixed: both are tried again (and nothing else), both fail again.
    let (code, err) = run(tmp.path(), true);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("retrying the 2 that failed") && err.contains(" 0 ok, 2 failed in "),
        "{err}"
    );
    assert_eq!(the_run(&db), ("failed".into(), 48, 2, 2));
    // One fixed: it passes, the other still fails.
    good(&d, "f00010.csv");
    let (code, err) = run(tmp.path(), true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(" 1 ok, 1 failed in "), "{err}");
    assert_eq!(the_run(&db), ("failed".into(), 49, 1, 3));
    assert_eq!(errors(&db), ["d/f00040.csv"]);
    // Both fixed: the run succeeds, every row is clean, nothing is left.
    good(&d, "f00040.csv");
    let (code, err) = run(tmp.path(), true);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(the_run(&db), ("succeeded".into(), FILES as i64, 0, 4));
    assert!(errors(&db).is_empty());
    assert_eq!(count(&db, "files"), FILES as i64);
    assert_eq!(count(&db, "batchproc_failures"), 0);
    let (code, err) = run(tmp.path(), true);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("nothing to resume"), "{err}");
}

/// A failed file deleted since is no longer a failure: the resume clears
/// it and succeeds.
#[test]
fn a_failed_item_that_is_gone_is_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 5);
    bad(&d, "f00002.csv");
    let db = tmp.path().join("batchproc.db");
    assert_eq!(run(tmp.path(), false).0, Some(1));
    std::fs::remove_file(d.join("f00002.csv")).unwrap();
    let (code, err) = run(tmp.path(), true);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(the_run(&db), ("succeeded".into(), 4, 0, 2));
}

/// A directory the walk could not read is one failed item; once readable,
/// a resume walks it and processes its files, each once: whether the first
/// run's watermark passed the directory (a file sorts after it) or stopped
/// on it (the walk after the watermark meets its files anyway).
#[test]
fn an_unreadable_directory_is_walked_by_the_resume_once_readable() {
    for file_after in [true, false] {
        unreadable_directory(file_after);
    }
}

fn unreadable_directory(file_after: bool) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 4);
    many_csv_files(&d.join("sub"), 3);
    if file_after {
        good(&d, "zzz.csv");
    }
    let before = 4 + file_after as i64;
    let mode = |m| std::fs::set_permissions(d.join("sub"), std::fs::Permissions::from_mode(m));
    mode(0o000).unwrap();
    let out = batchproc_unprivileged(tmp.path())
        .args(["files", "d", "-p", "csv", "--on-error", "skip"])
        .output()
        .unwrap();
    mode(0o755).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let db = tmp.path().join("batchproc.db");
    assert_eq!(the_run(&db), ("failed".into(), before, 1, 1));
    let (code, err) = run(tmp.path(), true);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        the_run(&db),
        ("succeeded".into(), before + 3, 0, 2),
        "{file_after}"
    );
    let under: i64 = query(
        &db,
        "SELECT count(*) FROM files WHERE path LIKE 'd/sub/%' AND error IS NULL",
    )[0]
    .get(0);
    assert_eq!(under, 3);
}

/// Query rows into Postgres: a row that failed is read again by its key.
#[test]
fn a_failed_row_is_read_again_and_retried_into_postgres() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    execute(&src, "CREATE TABLE t (id INTEGER PRIMARY KEY, doc TEXT)");
    execute(
        &src,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30) \
         INSERT INTO t SELECT i, '[' || i || ']' FROM n",
    );
    execute(&src, "UPDATE t SET doc = '[7' WHERE id = 7");
    let run = |resume: bool| {
        let mut cmd = batchproc(tmp.path());
        cmd.args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT * FROM t",
        ])
        .args(["--key", "id", "-p", "json:doc", "--on-error", "skip"])
        .args(["--sink", &pg.url]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.output().unwrap()
    };
    assert_eq!(run(false).status.code(), Some(1));
    execute(&src, "UPDATE t SET doc = '[7]' WHERE id = 7");
    let out = run(true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(" 1 ok, 0 failed in "));
    let row = &pg.query("SELECT count(*), count(error) FROM rows")[0];
    assert_eq!((row.get::<i64, _>(0), row.get::<i64, _>(1)), (30, 0));
    let run_row = &pg.query("SELECT status, ok, failed FROM batchproc_runs")[0];
    assert_eq!(run_row.get::<String, _>(0), "succeeded");
    assert_eq!(
        (run_row.get::<i64, _>(1), run_row.get::<i64, _>(2)),
        (30, 0)
    );
}

/// A CSV is only appended to: its failed rows are not retried, and the
/// notice says so.
#[test]
fn a_csv_sink_says_its_failures_are_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 3);
    bad(&d, "f00001.csv");
    let run = |resume: bool| {
        let mut cmd = batchproc(tmp.path());
        cmd.args([
            "files",
            "d",
            "-p",
            "csv",
            "--on-error",
            "skip",
            "-o",
            "out.csv",
        ]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.output().unwrap()
    };
    assert_eq!(run(false).status.code(), Some(1));
    good(&d, "f00001.csv");
    let out = run(true);
    assert!(
        stderr_of(&out).contains("the 1 that failed are not retried into a CSV"),
        "{}",
        stderr_of(&out)
    );
    let csv = std::fs::read_to_string(tmp.path().join("out.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
}
