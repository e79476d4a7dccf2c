//! `--summary-json`: one JSON object for every way a run ends, whose counts
//! and run id are those `batchproc_runs` recorded, whose exit code is the
//! process's, and which never shows a password.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use sqlx::Row;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_run_summary_matches_the_run_row_and_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 12);
    std::fs::write(tmp.path().join("d/bad.csv"), "a,b\n1\n").unwrap();
    for (on_error, code) in [("skip", 1), ("abort", 1)] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-p", "csv", "-w", "1", "--on-error", on_error])
            .args(["--summary-json", "s.json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", stderr_of(&out));
        let s = read_json(&tmp.path().join("s.json"));
        let run = &query(
            &tmp.path().join("batchproc.db"),
            "SELECT id, status, ok, failed, skipped FROM batchproc_runs ORDER BY id DESC LIMIT 1",
        )[0];
        assert_eq!(s["run_id"], run.get::<i64, _>(0), "{s}");
        assert_eq!(s["status"], run.get::<String, _>(1), "{s}");
        assert_eq!(s["ok"], run.get::<i64, _>(2), "{s}");
        assert_eq!(s["failed"], run.get::<i64, _>(3), "{s}");
        assert_eq!(s["skipped"], run.get::<i64, _>(4), "{s}");
        assert_eq!(s["exit_code"], code, "{s}");
        assert_eq!(s["sink"], "sqlite:batchproc.db");
        // Under skip the failure is on its row; under abort it ended the run.
        match on_error {
            "skip" => assert!(s["error"].is_null(), "{s}"),
            _ => assert!(s["error"].as_str().unwrap().contains("bad.csv"), "{s}"),
        }
        assert!(s["elapsed_seconds"].as_f64().unwrap() > 0.0, "{s}");
    }
    std::fs::remove_file(tmp.path().join("d/bad.csv")).unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "csv", "-q", "--summary-json", "-"])
        .assert()
        .success()
        .stdout(predicates::function::function(|out: &str| {
            let s: Value = serde_json::from_str(out).unwrap();
            s["status"] == "succeeded"
                && s["ok"] == 12
                && s["exit_code"] == 0
                && s["error"].is_null()
        }));
}

#[test]
fn a_refused_run_gets_a_summary_too_without_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a.txt"), "x").unwrap();
    // Port 1: nothing listens, so the sink is refused before any work.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-o", "postgres://me:s3cr3t-pw@127.0.0.1:1/db"])
        .args(["--summary-json", "s.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let text = std::fs::read_to_string(tmp.path().join("s.json")).unwrap();
    assert!(!text.contains("s3cr3t-pw"), "{text}");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("error"), Some(2))
    );
    assert!(s["run_id"].is_null() && s["ok"] == 0, "{s}");
    assert!(s["sink"].as_str().unwrap().contains("me:***@"), "{s}");
}

#[test]
fn a_sink_held_by_another_program_is_busy_75() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a.txt"), "x").unwrap();
    let holder = hold_sqlite_exclusively(&tmp.path().join("held.db"));
    let out = batchproc(tmp.path())
        .args(["files", "d", "-o", "held.db", "--summary-json", "s.json"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    release(holder);
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    let s = read_json(&tmp.path().join("s.json"));
    assert_eq!(
        (s["status"].as_str(), s["exit_code"].as_i64()),
        (Some("busy"), Some(75))
    );
}

#[test]
fn the_summary_cannot_share_stdout_with_csv_records() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a.txt"), "x").unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-o", "-", "--summary-json", "-"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicates::str::contains(
            "--summary-json -: stdout carries the CSV records",
        ));
    // A file for the summary is fine beside CSV on stdout.
    batchproc(tmp.path())
        .args(["files", "d", "-o", "-", "--summary-json", "s.json"])
        .assert()
        .success();
    assert_eq!(read_json(&tmp.path().join("s.json"))["ok"], 1);
}

#[test]
fn an_unwritable_summary_path_fails_a_successful_run() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/a.txt"), "x").unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-q", "--summary-json", "no/such/dir/s.json"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "--summary-json no/such/dir/s.json",
        ));
}
