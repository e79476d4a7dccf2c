//! Run controls through the binary: the dynamic pool (`--min-workers`,
//! `--max-workers`), `--rate`, and the `attempts` column of `--retries`.
//! Retries with real transient failures are in tests/http.rs; the retry
//! loop is unit-tested in src/pipeline/retry.rs, and the pipeline with a
//! flaky test processor into SQLite in src/pipeline/tests.rs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::pg::fresh_db;
use common::*;
use sqlx::Row;

/// path -> sha256 of the `files` table of `db` (every row without error).
fn digests(db: &Path) -> BTreeMap<String, String> {
    query(db, "SELECT path, sha256, error FROM files")
        .into_iter()
        .map(|r| {
            assert_eq!(r.get::<Option<String>, _>("error"), None);
            (r.get("path"), r.get("sha256"))
        })
        .collect()
}

/// The `ok` count of the only run in `db`: an item done twice counts twice.
fn run_ok(db: &Path) -> i64 {
    let runs = query(db, "SELECT ok, status FROM batchproc_runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get::<String, _>("status"), "succeeded");
    runs[0].get("ok")
}

/// (peak, average) from the summary line's `workers busy: peak P, avg A`.
fn busy(stderr: &str) -> (usize, f64) {
    let rest = stderr
        .split_once("workers busy: peak ")
        .unwrap_or_else(|| panic!("no busy workers in: {stderr}"))
        .1;
    let (peak, rest) = rest.split_once(", avg ").unwrap();
    let avg = rest.split(')').next().unwrap();
    (peak.parse().unwrap(), avg.parse().unwrap())
}

#[test]
fn rate_spaces_item_starts_and_every_row_is_right() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 30);
    let started = Instant::now();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q", "--workers", "4"])
        .args(["--rate", "20/s", "-o", "out.db"])
        .assert()
        .success();
    let elapsed = started.elapsed();
    // 20/s evenly spaced: 30 starts span at least 29 intervals of 50 ms
    // (the hashing itself takes a few milliseconds).
    assert!(elapsed >= Duration::from_millis(1400), "took {elapsed:?}");
    let db = tmp.path().join("out.db");
    assert_eq!(digests(&db), oracle);
    assert_eq!(run_ok(&db), 30);
}

#[test]
fn rate_per_minute_is_a_sixtieth_of_per_second() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 7);
    let started = Instant::now();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q", "--rate", "600/min"])
        .args(["-o", "out.db"])
        .assert()
        .success();
    // 600/min = one start every 100 ms: 6 intervals after the first start.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(580), "took {elapsed:?}");
    assert_eq!(digests(&tmp.path().join("out.db")), oracle);
}

#[test]
fn dynamic_pool_processes_every_item_once_and_reports_busy_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 400);
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-o", "out.db"])
        .args([
            "--min-workers",
            "1",
            "--max-workers",
            "4",
            "--batch-size",
            "7",
        ])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let db = tmp.path().join("out.db");
    assert_eq!(digests(&db), oracle);
    assert_eq!(run_ok(&db), 400);
    let (peak, avg) = busy(&stderr);
    assert!((1..=4).contains(&peak), "{stderr}");
    // Tiny files: the average may round to 0.0 on a busy machine, but it
    // can never exceed the peak (+ rounding).
    assert!(avg <= peak as f64 + 0.05, "{stderr}");
}

/// Under a binding rate the one starting worker waits on the limiter while
/// items queue up behind it. Waiting is not working, so the pool does not
/// grow for that backlog (more workers would only wait too), and the worker
/// is busy only while hashing, a small part of each 50 ms between starts.
#[test]
fn a_binding_rate_does_not_grow_a_dynamic_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 30);
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-o", "out.db"])
        .args(["--rate", "20/s", "--min-workers", "1", "--max-workers", "4"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let (peak, avg) = busy(&stderr);
    assert_eq!(peak, 1, "{stderr}");
    assert!(avg < 0.5, "{stderr}");
    let db = tmp.path().join("out.db");
    assert_eq!(digests(&db), oracle);
    assert_eq!(run_ok(&db), 30);

    // The same figures are kept with the run.
    let out = batchproc(tmp.path())
        .args(["runs", "--json", "-o", "out.db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["peak_busy"], 1, "{runs}");
    let average = runs[0]["average_busy"].as_f64().unwrap();
    assert!(average < 0.5, "{runs}");
}

#[test]
fn a_single_fixed_worker_is_busy_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 50);
    for flags in [&["--workers", "1"][..], &["--max-workers", "1"][..]] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-p", "sha256", "-o", "out.db"])
            .args(flags)
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert!(out.status.success(), "{stderr}");
        let (peak, avg) = busy(&stderr);
        assert_eq!(peak, 1, "{flags:?}: {stderr}");
        assert!(avg <= 1.05, "{flags:?}: {stderr}");
    }
    assert_eq!(digests(&tmp.path().join("out.db")), oracle);
}

#[test]
fn conflicting_or_bad_controls_are_usage_errors() {
    let files = |rest: &[&'static str]| [&["files", "d", "-p", "sha256"][..], rest].concat();
    assert_usage_error(
        &files(&["--workers", "2", "--min-workers", "1"]),
        "cannot be used with",
    );
    assert_usage_error(
        &files(&["--workers", "2", "--max-workers", "3"]),
        "cannot be used with",
    );
    assert_usage_error(
        &files(&["--min-workers", "5", "--max-workers", "2"]),
        "batchproc: error: --min-workers 5 is more than --max-workers 2",
    );
    assert_usage_error(&files(&["--min-workers", "0"]), "--min-workers");
    assert_usage_error(&files(&["--rate", "abc"]), "expected N/s, N/m or N/h");
    assert_usage_error(
        &files(&["--rate", "0/s"]),
        "a rate of 0 would start nothing",
    );
    assert_usage_error(&files(&["--rate", "5/fortnight"]), "expected N/s");
    assert_usage_error(&files(&["--retries", "101"]), "--retries");
}

#[test]
fn retries_add_an_attempts_column_to_an_existing_sqlite_table() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 20);
    std::fs::write(tmp.path().join("d/bad.csv"), "a,b\n1\n").unwrap();
    let db = tmp.path().join("out.db");
    let run = |extra: &[&str]| {
        batchproc(tmp.path())
            .args(["files", "d", "-p", "sha256,csv", "-q", "-o", "out.db"])
            .args(["--on-error", "skip"])
            .args(extra)
            .assert()
            .code(1)
    };
    run(&[]);
    let names = |db: &Path| -> Vec<String> {
        query(
            db,
            "SELECT name FROM pragma_table_info('files') ORDER BY cid",
        )
        .iter()
        .map(|r| r.get("name"))
        .collect()
    };
    assert!(!names(&db).contains(&"attempts".to_owned()));
    run(&["--retries", "2"]);
    assert!(names(&db).contains(&"attempts".to_owned()));
    let rows = query(&db, "SELECT path, sha256, attempts, error FROM files");
    assert_eq!(rows.len(), 21);
    for row in rows {
        let path: String = row.get("path");
        // A malformed CSV is not a transient failure: one try only.
        assert_eq!(row.get::<i64, _>("attempts"), 1, "{path}");
        if path == "d/bad.csv" {
            assert!(row.get::<Option<String>, _>("error").is_some());
        } else {
            assert_eq!(row.get::<String, _>("sha256"), oracle[&path], "{path}");
        }
    }

    // A fresh table gets `attempts` just before `error`.
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q", "-o", "fresh.db"])
        .args(["--retries", "1", "--exclude", "*.csv"])
        .assert()
        .success();
    let fresh = names(&tmp.path().join("fresh.db"));
    assert_eq!(
        fresh,
        ["path", "size", "mtime", "sha256", "attempts", "error"]
    );
}

#[test]
fn retries_write_attempts_to_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 12);
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q", "-o", "csv:out.csv"])
        .args(["--retries", "3"])
        .assert()
        .success();
    let mut reader = csv::Reader::from_path(tmp.path().join("out.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        ["path", "size", "mtime", "sha256", "attempts", "error"]
    );
    let mut got = BTreeMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        assert_eq!(&record[4], "1");
        got.insert(record[0].to_owned(), record[3].to_owned());
    }
    assert_eq!(got, oracle);
}

#[test]
fn retries_add_an_attempts_column_to_an_existing_postgres_table() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 15);
    for extra in [&[][..], &["--retries", "2"][..]] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-p", "sha256", "-q", "--sink", &pg.url])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let rows = pg.query("SELECT path, sha256, attempts FROM files");
    let mut got = BTreeMap::new();
    for row in rows {
        assert_eq!(row.get::<i64, _>("attempts"), 1);
        got.insert(row.get::<String, _>("path"), row.get::<String, _>("sha256"));
    }
    assert_eq!(got, oracle);
}

#[test]
fn query_rows_get_attempts_unless_the_query_has_such_a_column() {
    let tmp = tempfile::tempdir().unwrap();
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT); \
         INSERT INTO t VALUES (1, 'abc'), (2, ''), (3, NULL);",
    );
    batchproc(tmp.path())
        .args(["query", "--from", "sqlite:src.db", "--key", "id", "-q"])
        .args(["--sql", "SELECT id, body FROM t", "-p", "sha256:body"])
        .args(["--retries", "1", "--min-workers", "2", "-o", "out.db"])
        .assert()
        .success();
    let rows = query(
        &tmp.path().join("out.db"),
        "SELECT id, body_sha256, attempts FROM rows ORDER BY id",
    );
    let got: Vec<(i64, Option<String>, i64)> = rows
        .iter()
        .map(|r| (r.get("id"), r.get("body_sha256"), r.get("attempts")))
        .collect();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(
        got,
        [
            (1, Some(abc.to_owned()), 1),
            (2, Some(empty.to_owned()), 1),
            (3, None, 1)
        ]
    );

    let out = batchproc(tmp.path())
        .args(["query", "--from", "sqlite:src.db", "--key", "id"])
        .args(["--sql", "SELECT id, 2 AS attempts FROM t", "--retries", "1"])
        .args(["-o", "other.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("already has one; rename it in --sql"));
}
