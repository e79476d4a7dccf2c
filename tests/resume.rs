//! Exact resume: SIGKILL at many points, resume until done, and compare the
//! sink with an uninterrupted run and with sha256sum. Each item's record must
//! be committed exactly once: the run's `ok` count (bumped in the same
//! transaction as the rows) must equal the number of files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};

use std::time::{Duration, Instant};

use common::*;
use sqlx::Row;

const FILES: usize = 2000;

fn spawn(root: &Path, sink: &str, resume: bool) -> Child {
    let mut cmd = batchproc_std(root);
    cmd.args([
        "files",
        "d",
        "-p",
        "sha256",
        "-w",
        "2",
        "--batch-size",
        "37",
        "-q",
        "--sink",
        sink,
    ]);
    if resume {
        cmd.arg("--resume");
    }
    // Hold each batch transaction open a little, so kills land inside commits.
    cmd.env("BATCHPROC_TEST_COMMIT_DELAY_MS", "40")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills the run at each delay (the first attempt fresh, the rest resuming),
/// then resumes to the end. Returns how many kills landed mid-run.
fn kill_and_resume(root: &Path, sink: &str, state_db: &Path, delays_ms: &[u64]) -> usize {
    let (kills, finished) = kill_repeatedly(
        |resume| spawn(root, sink, resume),
        delays_ms,
        || {
            if state_db.exists() {
                integrity_ok(state_db, "after a kill");
            }
            last_run_succeeded(state_db)
        },
    );
    if !finished {
        let out = spawn(root, sink, true).wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    }
    integrity_ok(state_db, "at the end");
    let runs = query(
        state_db,
        "SELECT status, ok, failed FROM batchproc_runs ORDER BY id",
    );
    // One run, resumed over and over, committed every file exactly once.
    assert_eq!(runs.len(), 1, "kills at {delays_ms:?} made several runs");
    assert_eq!(runs[0].get::<String, _>("status"), "succeeded");
    assert_eq!(
        runs[0].get::<i64, _>("ok") as usize,
        FILES,
        "items committed more than once"
    );
    assert_eq!(
        query(state_db, "SELECT count(*) FROM batchproc_checkpoints")[0].get::<i64, _>(0),
        0
    );
    kills
}

/// Waits until the SQLite file `db` records a run.
fn wait_for_a_run(db: &Path) {
    let start = Instant::now();
    let recorded = || {
        db.exists()
            && !query(
                db,
                "SELECT 1 FROM sqlite_master WHERE name = 'batchproc_runs'",
            )
            .is_empty()
            && count(db, "batchproc_runs") > 0
    };
    while !recorded() {
        assert!(start.elapsed() < Duration::from_secs(30), "no run started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const DELAYS: [u64; 12] = [0, 3, 10, 25, 40, 60, 80, 100, 120, 150, 180, 220];

#[test]
fn sqlite_sink_survives_sigkill_at_many_points() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), FILES);
    let db = tmp.path().join("out.db");
    // A trigger logs every row written a second time: a record committed
    // twice (not merely re-sent after a rollback) would show up here.
    execute(
        &db,
        "CREATE TABLE files (path TEXT PRIMARY KEY NOT NULL, size INTEGER, mtime TEXT, sha256 TEXT, error TEXT); \
         CREATE TABLE rewritten (path TEXT); \
         CREATE TRIGGER files_rewritten AFTER UPDATE ON files BEGIN INSERT INTO rewritten VALUES (new.path); END;",
    );
    let kills = kill_and_resume(tmp.path(), "sqlite:out.db", &db, &DELAYS);
    assert!(kills >= 10, "only {kills} kills landed mid-run");
    assert_eq!(
        count(&db, "rewritten"),
        0,
        "records committed more than once"
    );
    let rows: BTreeMap<String, String> = query(&db, "SELECT path, sha256 FROM files")
        .into_iter()
        .map(|r| (r.get("path"), r.get("sha256")))
        .collect();
    assert_eq!(rows, oracle);
    // Same rows as an uninterrupted run (mtime and size included).
    let clean = tmp.path().join("clean.db");
    batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "sha256",
            "-q",
            "--sink",
            "sqlite:clean.db",
        ])
        .assert()
        .success();
    let dump = |db: &Path| -> Vec<(String, i64, String, String)> {
        query(
            db,
            "SELECT path, size, mtime, sha256 FROM files ORDER BY path",
        )
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    };
    assert_eq!(dump(&db), dump(&clean));
}

#[test]
fn csv_sink_survives_sigkill_at_many_points() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), FILES);
    let state = tmp.path().join("out.csv.state.db");
    let kills = kill_and_resume(tmp.path(), "csv:out.csv", &state, &DELAYS);
    assert!(kills >= 10, "only {kills} kills landed mid-run");
    let bytes = std::fs::read(tmp.path().join("out.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["path", "size", "mtime", "sha256", "error"]
    );
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let record = record.expect("every CSV row is whole");
        let previous = rows.insert(record[0].to_owned(), record[3].to_owned());
        assert!(previous.is_none(), "{} written twice", &record[0]);
    }
    assert_eq!(rows, oracle);
}

#[test]
fn kill_right_at_start_then_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), FILES);
    let db = tmp.path().join("out.db");
    for _ in 0..3 {
        let child = spawn(tmp.path(), "sqlite:out.db", true);
        sigkill_after(child, Duration::ZERO);
    }
    kill_and_resume(tmp.path(), "sqlite:out.db", &db, &[1, 2]);
    assert_eq!(count(&db, "files") as usize, oracle.len());
}

/// The run succeeded, and did so by resuming run 1.
fn assert_resumed_run_1(out: &std::process::Output) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("resuming run 1"), "{err}");
}

/// `files d -p csv` on the default sink, two workers, batches of `batch`.
fn csv_run(root: &Path, batch: &str, resume: bool) -> std::process::Output {
    let mut cmd = batchproc(root);
    cmd.args(["files", "d", "-p", "csv", "-w", "2", "--batch-size", batch]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.output().unwrap()
}

#[test]
fn fail_fast_then_fix_and_resume_retries_the_failed_item() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 500);
    std::fs::write(d.join("f00200.csv"), "a,b\n1,2,3\n").unwrap();
    let run = |resume: bool| csv_run(tmp.path(), "20", resume);
    let out = run(false);
    assert_eq!(out.status.code(), Some(1));
    let db = tmp.path().join("batchproc.db");
    let first = query(&db, "SELECT status, ok FROM batchproc_runs")[0].get::<String, _>(0);
    assert_eq!(first, "failed");
    let ok_before: i64 = query(&db, "SELECT ok FROM batchproc_runs")[0].get(0);
    assert!(ok_before < 500);
    // `runs` counts the item that stopped the run, as the summary did.
    let failed = |db: &Path| query(db, "SELECT failed FROM batchproc_runs")[0].get::<i64, _>(0);
    assert!(
        stderr_of(&out).contains(" ok, 1 failed"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(failed(&db), 1);
    // Without fixing, the resume fails on the same item again, and does no other work twice.
    let out = run(true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("d/f00200.csv"),
        "{}",
        stderr_of(&out)
    );
    std::fs::write(d.join("f00200.csv"), "a,b\n1,2\n").unwrap();
    let out = run(true);
    assert_resumed_run_1(&out);
    let runs = query(&db, "SELECT status, ok, attempts FROM batchproc_runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get::<String, _>(0), "succeeded");
    assert_eq!(runs[0].get::<i64, _>(1), 500);
    assert_eq!(runs[0].get::<i64, _>(2), 3);
    // Retried and passed: no longer counted as failed.
    assert_eq!(failed(&db), 0);
    assert_eq!(count(&db, "files"), 500);
}

#[test]
fn resume_with_other_processors_starts_a_new_run_and_never_mixes() {
    let tmp = tempfile::tempdir().unwrap();
    hashed_tree(tmp.path(), FILES);
    let child = spawn(tmp.path(), "sqlite:out.db", false);
    // Killed once its run is recorded, long before its 54 slow commits end.
    wait_for_a_run(&tmp.path().join("out.db"));
    assert!(
        !sigkill_after(child, Duration::ZERO),
        "finished before the kill"
    );
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "sha256,lines",
            "--sink",
            "sqlite:out.db",
            "--resume",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("nothing to resume for this pipeline; starting run 2"),
        "{}",
        stderr_of(&out)
    );
    let db = tmp.path().join("out.db");
    // Every row was written by run 2: all have a line count.
    assert_eq!(
        query(&db, "SELECT count(*) FROM files WHERE lines IS NULL")[0].get::<i64, _>(0),
        0
    );
    assert_eq!(count(&db, "files") as usize, FILES);
    // A plain rerun of the first pipeline is told its run 1 could be resumed.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "--sink", "sqlite:out.db"])
        .output()
        .unwrap();
    assert!(
        stderr_of(&out)
            .contains("run 1 of this pipeline did not finish; --resume would continue it"),
        "{}",
        stderr_of(&out)
    );
}

/// One item that takes many seconds must not hold back the others' commits,
/// and a resume must skip everything committed beyond it.
#[test]
fn slow_item_does_not_block_commits_and_resume_skips_past_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 3000);
    let big = d.join("a-big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let db = tmp.path().join("batchproc.db");
    let child = batchproc_std(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "sha256",
            "-w",
            "2",
            "--batch-size",
            "100",
            "-q",
        ])
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let n = if db.exists() {
            std::panic::catch_unwind(|| count(&db, "files")).unwrap_or(0)
        } else {
            0
        };
        if n == 3000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {n} rows committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !sigkill_after(child, Duration::ZERO),
        "the big file finished hashing already"
    );
    // The watermark is stuck before the big file; the 3,000 others are checkpoint rows.
    assert_eq!(
        query(&db, "SELECT count(*) FROM batchproc_checkpoints")[0].get::<i64, _>(0),
        3000
    );
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("1 ok, 0 failed"),
        "{}",
        stderr_of(&out)
    );
    let row = &query(&db, "SELECT sha256 FROM files WHERE path = 'd/a-big.bin'")[0];
    assert_eq!(row.get::<String, _>(0), sha256sum(&big));
    assert_eq!(
        query(&db, "SELECT ok FROM batchproc_runs")[0].get::<i64, _>(0),
        3001
    );
}

#[test]
fn runs_lists_newest_first_as_table_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 5);
    std::fs::write(tmp.path().join("d/bad.csv"), "a\n1,2\n").unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q"])
        .assert()
        .success();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "csv", "-q", "--on-error", "skip"])
        .assert()
        .code(1);
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-o", "x.csv"])
        .assert()
        .success();
    let out = batchproc(tmp.path()).args(["runs"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ID  STATUS"), "{text}");
    let cols = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    // ID STATUS OK FAILED SKIPPED UNCHANGED REMOVED ATTEMPTS
    assert_eq!(
        cols(lines[1])[..8],
        ["2", "failed", "5", "1", "0", "0", "0", "1"],
        "{text}"
    );
    assert_eq!(
        cols(lines[2])[..8],
        ["1", "succeeded", "6", "0", "0", "0", "0", "1"],
        "{text}"
    );
    assert!(
        lines[1].ends_with("batchproc files d -p csv -q --on-error skip"),
        "{text}"
    );
    let out = batchproc(tmp.path())
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["id"], 2);
    assert_eq!(runs[1]["ok"], 6);
    assert_eq!(runs[1]["table"], "files");
    // The CSV sink's runs live in its state file.
    let out = batchproc(tmp.path())
        .args(["runs", "-o", "x.csv", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    // No database yet: a clear error, exit 2.
    let out = batchproc(tmp.path())
        .args(["runs", "-o", "none.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("none.db: no such database"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn resume_is_refused_where_no_checkpoint_can_be_kept() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 2);
    let out = batchproc(tmp.path())
        .args(["files", "d", "-o", "-", "--resume"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--resume needs a sink that keeps checkpoints"));
}

/// A run recorded before the fingerprint's version 2 (whose digest was made
/// from `Debug` text) is still the same pipeline: `--resume` continues it.
#[test]
fn a_run_recorded_by_the_previous_fingerprint_encoding_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 5);
    let run = |resume: bool| {
        let mut cmd = batchproc(tmp.path());
        cmd.args(["files", "d", "-p", "sha256,lines", "-o", "out.db"]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.output().unwrap()
    };
    assert!(run(false).status.success());
    // What batchproc 0.1.0 stored for exactly this command line (read back
    // from a run of that binary), on a run it left unfinished.
    let db = tmp.path().join("out.db");
    execute(
        &db,
        "UPDATE batchproc_runs SET fingerprint = '31fba6a53dd039afb9643abf02fc1d5c', \
         status = 'interrupted'",
    );
    let out = run(true);
    assert_resumed_run_1(&out);
    let runs = query(
        &db,
        "SELECT fingerprint, status, attempts FROM batchproc_runs",
    );
    assert_eq!(runs.len(), 1);
    assert!(runs[0].get::<String, _>(0).starts_with("v2:"));
    assert_eq!(runs[0].get::<String, _>(1), "succeeded");
    assert_eq!(runs[0].get::<i64, _>(2), 2);
}

/// A database whose bookkeeping the previous release's migrations made
/// (0001 only), holding a run that release left failed, is upgraded and
/// the run resumed: every item once, the counts right.
#[test]
fn a_database_made_by_the_previous_release_is_upgraded_and_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 200);
    std::fs::write(d.join("f00100.csv"), "a,b\n1,2,3\n").unwrap();
    let run = |resume: bool| csv_run(tmp.path(), "10", resume);
    assert_eq!(run(false).status.code(), Some(1));
    // Back to what 0.1 had: no 0002 columns, no record of 0002, and the
    // failed count that release kept (without the pending failure).
    let db = tmp.path().join("batchproc.db");
    execute(
        &db,
        "UPDATE batchproc_runs SET failed = failed - retry_pending; \
         ALTER TABLE batchproc_runs DROP COLUMN pid; \
         ALTER TABLE batchproc_runs DROP COLUMN host; \
         ALTER TABLE batchproc_runs DROP COLUMN peak_busy; \
         ALTER TABLE batchproc_runs DROP COLUMN average_busy; \
         ALTER TABLE batchproc_runs DROP COLUMN retry_pending; \
         DROP TABLE batchproc_failures; \
         DELETE FROM _sqlx_migrations WHERE version = 2;",
    );
    let ok_before: i64 = query(&db, "SELECT ok FROM batchproc_runs")[0].get(0);
    assert!(ok_before < 200);
    std::fs::write(d.join("f00100.csv"), "a,b\n1,2\n").unwrap();
    let out = run(true);
    assert_resumed_run_1(&out);
    let runs = query(
        &db,
        "SELECT status, ok, failed, attempts, pid FROM batchproc_runs",
    );
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get::<String, _>(0), "succeeded");
    assert_eq!(runs[0].get::<i64, _>(1), 200, "committed twice or lost");
    assert_eq!(runs[0].get::<i64, _>(2), 0);
    assert_eq!(runs[0].get::<i64, _>(3), 2);
    assert!(runs[0].get::<Option<i64>, _>(4).is_some());
    assert_eq!(count(&db, "files"), 200);
    let bad: i64 = query(&db, "SELECT count(*) FROM files WHERE error IS NOT NULL")[0].get(0);
    assert_eq!(bad, 0);
}

/// A resume does not even open the directories wholly before its
/// watermark (watched with inotify), only those on the way to it.
#[test]
fn a_resume_does_not_read_the_finished_directories() {
    use rustix::fs::inotify;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    for sub in ["a", "b", "c"] {
        many_csv_files(&d.join(sub), 5);
    }
    std::fs::write(d.join("c/f00003.csv"), "a,b\n1,2,3\n").unwrap();
    let run = |resume: bool| {
        let mut cmd = batchproc(tmp.path());
        cmd.args(["files", "d", "-p", "csv", "-w", "1"]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.output().unwrap()
    };
    assert_eq!(run(false).status.code(), Some(1));
    std::fs::write(d.join("c/f00003.csv"), "a,b\n1,2\n").unwrap();
    let opened = |dir: &str| {
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK).unwrap();
        inotify::add_watch(&fd, d.join(dir), inotify::WatchFlags::OPEN).unwrap();
        fd
    };
    let watches = ["a", "b", "c"].map(opened);
    let out = run(true);
    assert_resumed_run_1(&out);
    let events = |fd: &rustix::fd::OwnedFd| {
        let mut buf = [0u8; 4096];
        rustix::io::read(fd, &mut buf).unwrap_or(0)
    };
    assert_eq!(events(&watches[0]), 0, "d/a was opened");
    assert_eq!(events(&watches[1]), 0, "d/b was opened");
    assert!(
        events(&watches[2]) > 0,
        "d/c, where the watermark is, was not"
    );
    let db = tmp.path().join("batchproc.db");
    assert_eq!(count(&db, "files"), 15);
    let runs = query(&db, "SELECT ok, failed FROM batchproc_runs");
    assert_eq!(
        (runs[0].get::<i64, _>(0), runs[0].get::<i64, _>(1)),
        (15, 0)
    );
}
