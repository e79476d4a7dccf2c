//! The poison ledger (`--incremental` with `--on-error skip`): a file that
//! failed in `--max-failures` consecutive runs is passed, quarantined,
//! until it changes or `--retry-failed`; `batchproc failures` lists it; a
//! resume of a run that counted a failure does not count it again; a dry
//! run's numbers are the next run's. Which files a run opened is told by
//! an `exec:` script that logs each path (and fails on content "bad").

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use sqlx::Row;

/// `exec:` of a script that logs its argument to `log.txt` and fails
/// (with `poisoned` on stderr) when the file holds `bad`.
fn judge(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("judge.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$1\" >> \"$(dirname \"$0\")/log.txt\"\n\
         if grep -q bad \"$1\"; then echo poisoned >&2; exit 1; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("exec:{} {{}}", script.display())
}

fn opened(dir: &Path) -> Vec<String> {
    logged_paths(dir)
}

fn setup() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/good.txt"), "good\n").unwrap();
    std::fs::write(tmp.path().join("d/bad.txt"), "bad\n").unwrap();
    tmp
}

/// `files d -p <judge> --incremental --on-error skip -o SINK ARGS`, its
/// `--summary-json` (whose exit code must be the process's).
fn run(dir: &Path, sink: &str, args: &[&str]) -> Value {
    let out = batchproc(dir)
        .args(["files", "d", "-p", &judge(dir), "-o", sink, "-t", "poison"])
        .args(["--incremental", "--on-error", "skip", "-w", "1"])
        .args(args)
        .args(["--summary-json", "s.json"])
        .output()
        .unwrap();
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("s.json")).unwrap()).unwrap();
    assert_eq!(
        s["exit_code"],
        out.status.code().unwrap(),
        "{}",
        stderr_of(&out)
    );
    s
}

/// ok, failed, skipped, quarantined, unchanged.
fn counts(s: &Value) -> [u64; 5] {
    ["ok", "failed", "skipped", "quarantined", "unchanged"].map(|k| s[k].as_u64().unwrap())
}

/// `batchproc failures --json` on the sink.
fn failures(dir: &Path, sink: &str) -> Vec<(String, Option<i64>, String)> {
    let out = batchproc(dir)
        .args(["failures", "-o", sink, "--table", "poison", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_owned(),
                r["failures"].as_i64(),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn bad_count(dir: &Path, sink: &str) -> Option<i64> {
    failures(dir, sink)
        .into_iter()
        .find(|r| r.0 == "d/bad.txt")
        .and_then(|r| r.1)
}

/// Sets the file's mtime to `secs` after the epoch (a touch, content kept).
fn touch(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap();
}

/// The whole life of a poison file, on `sink`.
fn poison_over_several_runs(dir: &Path, sink: &str) {
    // Runs 1..3: opened and failed each time, counted 1, 2, 3.
    assert_eq!(counts(&run(dir, sink, &[])), [1, 1, 0, 0, 0]);
    assert_eq!(opened(dir), ["d/bad.txt", "d/good.txt"]);
    assert_eq!(bad_count(dir, sink), Some(1));
    for n in 2..=3 {
        assert_eq!(counts(&run(dir, sink, &[])), [0, 1, 0, 0, 1]);
        assert_eq!(opened(dir), ["d/bad.txt"]);
        assert_eq!(bad_count(dir, sink), Some(n));
    }
    // Run 4: quarantined, not opened. The dry run before it says so.
    let plan = batchproc(dir)
        .args(["files", "d", "-p", &judge(dir), "-o", sink, "-t", "poison"])
        .args(["--incremental", "--on-error", "skip", "--dry-run"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr_of(&plan));
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert!(
        plan.starts_with("would process 0 items (1 unchanged, 1 quarantined)\n"),
        "{plan}"
    );
    let s = run(dir, sink, &[]);
    assert_eq!(counts(&s), [0, 0, 1, 1, 1]);
    assert_eq!(s["status"], "succeeded");
    assert!(opened(dir).is_empty());
    let listed = failures(dir, sink);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].0.as_str(), listed[0].1), ("d/bad.txt", Some(3)));
    assert!(listed[0].2.contains("poisoned"), "{listed:?}");
    // A higher threshold lets it through again.
    assert_eq!(
        counts(&run(dir, sink, &["--max-failures", "5"])),
        [0, 1, 0, 0, 1]
    );
    assert_eq!(opened(dir), ["d/bad.txt"]);
    assert_eq!(bad_count(dir, sink), Some(4));
    // --retry-failed: opened again, and still counted.
    assert_eq!(
        counts(&run(dir, sink, &["--retry-failed"])),
        [0, 1, 0, 0, 1]
    );
    assert_eq!(opened(dir), ["d/bad.txt"]);
    assert_eq!(bad_count(dir, sink), Some(5));
    // Touched: a new mtime releases it, and its count starts over.
    touch(&dir.join("d/bad.txt"), 1_000_000);
    assert_eq!(counts(&run(dir, sink, &[])), [0, 1, 0, 0, 1]);
    assert_eq!(opened(dir), ["d/bad.txt"]);
    assert_eq!(bad_count(dir, sink), Some(1));
    // Fixed: the row's error and count are cleared.
    std::fs::write(dir.join("d/bad.txt"), "fine\n").unwrap();
    assert_eq!(counts(&run(dir, sink, &[])), [1, 0, 0, 0, 1]);
    assert_eq!(opened(dir), ["d/bad.txt"]);
    assert!(failures(dir, sink).is_empty());
}

#[test]
fn a_file_failing_in_three_runs_is_quarantined_until_touched_retried_or_fixed() {
    let tmp = setup();
    let dir = tmp.path();
    poison_over_several_runs(dir, "sqlite:out.db");
    let row = &query(
        &dir.join("out.db"),
        "SELECT failures, failed_run, error FROM poison WHERE path = 'd/bad.txt'",
    )[0];
    assert_eq!(row.get::<Option<i64>, _>(0), None);
    assert_eq!(row.get::<Option<i64>, _>(1), None);
    assert_eq!(row.get::<Option<String>, _>(2), None);
}

#[test]
fn postgres_keeps_the_same_ledger() {
    let Some(pg) = common::pg::fresh_db() else {
        return;
    };
    let tmp = setup();
    poison_over_several_runs(tmp.path(), &pg.url);
}

/// A resume of a run that committed a failure meets that failure again
/// (under skip it is retried, under fail-fast redone): the run counted it
/// once already, so the count stays; the next run adds one.
#[test]
fn a_resumed_run_does_not_count_its_failure_twice() {
    let tmp = setup();
    let dir = tmp.path();
    let sink = "sqlite:out.db";
    assert_eq!(counts(&run(dir, sink, &[])), [1, 1, 0, 0, 0]);
    assert_eq!(bad_count(dir, sink), Some(1));
    // The run ended failed: --resume continues it and retries the failure.
    let s = run(dir, sink, &["--resume"]);
    assert_eq!(s["run_id"], 1, "{s}");
    // Run 1 opened both; the resume only the failure it retried.
    assert_eq!(opened(dir), ["d/bad.txt", "d/bad.txt", "d/good.txt"]);
    assert_eq!(bad_count(dir, sink), Some(1));
    assert_eq!(counts(&run(dir, sink, &[])), [0, 1, 0, 0, 1]);
    assert_eq!(bad_count(dir, sink), Some(2));
    // Fail-fast: the failed item is redone by the resume, still once.
    let fail_fast = |resume: bool| {
        let mut cmd = batchproc(dir);
        cmd.args(["files", "d", "-p", &judge(dir), "-o", sink, "-t", "poison"])
            .args(["--incremental", "-w", "1"]);
        if resume {
            cmd.arg("--resume");
        }
        assert_eq!(cmd.output().unwrap().status.code(), Some(1));
    };
    fail_fast(false);
    assert_eq!(bad_count(dir, sink), Some(3));
    fail_fast(true);
    assert_eq!(bad_count(dir, sink), Some(3));
}

#[test]
fn the_ledger_flags_need_incremental_and_skip_and_failures_needs_a_table() {
    let tmp = setup();
    let dir = tmp.path();
    for (args, needle) in [
        (&["--max-failures", "2"][..], "need --incremental"),
        (
            &["--retry-failed", "--incremental"][..],
            "need --on-error skip",
        ),
        (&["--incremental", "--max-failures", "0"][..], "0"),
    ] {
        let out = batchproc(dir)
            .args(["files", "d", "-o", "sqlite:out.db"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr_of(&out).contains(needle), "{}", stderr_of(&out));
    }
    run(dir, "sqlite:out.db", &[]);
    let out = batchproc(dir)
        .args(["failures", "-o", "sqlite:out.db", "--table", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("no table nope"),
        "{}",
        stderr_of(&out)
    );
}
