//! `files --incremental`: a re-run passes the files whose rows are current
//! (counted `unchanged`, rows untouched, nothing run on them) and processes
//! the touched, changed and new ones; failed rows and rows lacking a new
//! processor's columns are processed again; `--resume` stays exactly-once.
//! Which files a run processed is told by an `exec:` command that logs each
//! path, and digests are checked against sha256sum.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;
use sqlx::Row;

/// A script that appends its argument to `log.txt` beside it, as the
/// `exec:` processor every run here has: the log names the files processed.
fn logger(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("log.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$1\" >> \"$(dirname \"$0\")/log.txt\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("exec:{} {{}}", script.display())
}

fn processed(dir: &Path) -> Vec<String> {
    logged_paths(dir)
}

/// `files d -p sha256 -p <logger> -o SINK`, run in `dir`.
fn logged(dir: &Path, sink: &str) -> assert_cmd::Command {
    let mut cmd = batchproc(dir);
    cmd.args(["files", "d", "-p", "sha256", "-p", &logger(dir), "-o", sink]);
    cmd
}

/// Runs `cmd` with `--summary-json` and returns the summary, whose exit
/// code must be the process's.
fn summary(dir: &Path, cmd: &mut assert_cmd::Command) -> Value {
    let out = cmd.args(["--summary-json", "s.json"]).output().unwrap();
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

/// Runs the logged sha256 pipeline with ARGS into `out.db`; its summary.
fn run(dir: &Path, args: &[&str]) -> Value {
    summary(
        dir,
        logged(dir, "sqlite:out.db").args(["-w", "2"]).args(args),
    )
}

/// path -> (size, mtime, sha256) of every row of `files` in `out.db`.
fn rows(dir: &Path) -> BTreeMap<String, (i64, String, Option<String>)> {
    query(
        &dir.join("out.db"),
        "SELECT path, size, mtime, sha256 FROM files",
    )
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
    .collect()
}

/// The tree's digests by sha256sum, path as walked -> digest.
fn digests(dir: &Path) -> BTreeMap<String, String> {
    walk_files(&dir.join("d"))
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
            (rel, sha256sum(&p))
        })
        .collect()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() {
            true => files.extend(walk_files(&path)),
            false => files.push(path),
        }
    }
    files
}

fn counts(s: &Value) -> [u64; 4] {
    ["ok", "failed", "unchanged", "removed"].map(|k| s[k].as_u64().unwrap())
}

/// Every change to the table is logged into `changes` by a trigger.
fn watch_changes(db: &Path) {
    execute(
        db,
        "CREATE TABLE changes (what TEXT, path TEXT); \
         CREATE TRIGGER ins AFTER INSERT ON files BEGIN INSERT INTO changes VALUES ('insert', new.path); END; \
         CREATE TRIGGER upd AFTER UPDATE ON files BEGIN INSERT INTO changes VALUES ('update', new.path); END; \
         CREATE TRIGGER del AFTER DELETE ON files BEGIN INSERT INTO changes VALUES ('delete', old.path); END;",
    );
}

fn changes(db: &Path) -> Vec<(String, String)> {
    query(db, "SELECT what, path FROM changes ORDER BY what, path")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn tree(dir: &Path, n: usize) {
    for i in 0..n {
        let sub = dir.join(format!("d/s{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:03}.txt")),
            format!("file {i}\n").repeat(i),
        )
        .unwrap();
    }
}

#[test]
fn an_unchanged_tree_is_passed_whole_and_its_rows_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, 30);
    let first = run(dir, &[]);
    assert_eq!(counts(&first), [30, 0, 0, 0], "{first}");
    assert_eq!(processed(dir).len(), 30);
    let before = rows(dir);
    let db = dir.join("out.db");
    watch_changes(&db);

    let again = run(dir, &["--incremental"]);
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(counts(&again), [0, 0, 30, 0], "{again}");
    assert!(processed(dir).is_empty(), "a file was processed again");
    assert!(changes(&db).is_empty(), "{:?}", changes(&db));
    assert_eq!(rows(dir), before);
    let run_row = &query(
        &db,
        "SELECT ok, unchanged, removed FROM batchproc_runs WHERE id = 2",
    )[0];
    assert_eq!(
        (run_row.get::<i64, _>(0), run_row.get::<i64, _>(1)),
        (0, 30)
    );
    assert_eq!(run_row.get::<i64, _>(2), 0);

    // The summary line says so too; and the environment turns it on.
    let out = logged(dir, "sqlite:out.db")
        .env("BATCHPROC_INCREMENTAL", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("0 ok, 0 failed, 30 unchanged in"),
        "{}",
        stderr_of(&out)
    );
    assert!(processed(dir).is_empty());
}

#[test]
fn touched_changed_and_new_files_are_processed_and_gone_ones_pruned_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, 20);
    run(dir, &[]);
    processed(dir);
    let touched = "d/s1/f001.txt";
    let changed = "d/s2/f002.txt";
    let added = "d/s0/new.txt";
    let deleted = "d/s0/f003.txt";
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join(touched))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
    drop(file);
    std::fs::write(dir.join(changed), "longer than it was before\n").unwrap();
    std::fs::write(dir.join(added), "new\n").unwrap();
    std::fs::remove_file(dir.join(deleted)).unwrap();

    let s = run(dir, &["--incremental"]);
    assert_eq!(counts(&s), [3, 0, 17, 0], "{s}");
    assert_eq!(processed(dir), [added, touched, changed]);
    let after = rows(dir);
    for (path, digest) in digests(dir) {
        assert_eq!(after[&path].2.as_deref(), Some(digest.as_str()), "{path}");
    }
    let size = std::fs::metadata(dir.join(changed)).unwrap().len() as i64;
    assert_eq!(after[changed].0, size);
    // Without --prune the row of the deleted file stays.
    assert!(after.contains_key(deleted));

    let db = dir.join("out.db");
    watch_changes(&db);
    let s = run(dir, &["--incremental", "--prune"]);
    assert_eq!(counts(&s), [0, 0, 20, 1], "{s}");
    assert!(processed(dir).is_empty());
    assert_eq!(changes(&db), [("delete".to_string(), deleted.to_string())]);
    let run_row = &query(
        &db,
        "SELECT removed, unchanged FROM batchproc_runs ORDER BY id DESC",
    )[0];
    assert_eq!(
        (run_row.get::<i64, _>(0), run_row.get::<i64, _>(1)),
        (1, 20)
    );
    let keys: Vec<String> = rows(dir).into_keys().collect();
    assert_eq!(keys, digests(dir).into_keys().collect::<Vec<_>>());
}

#[test]
fn a_failed_row_and_a_row_without_a_new_processors_columns_are_processed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("d")).unwrap();
    for i in 0..5 {
        std::fs::write(dir.join(format!("d/{i}.json")), format!("{{\"n\": {i}}}")).unwrap();
    }
    std::fs::write(dir.join("d/bad.json"), "{not json").unwrap();
    let json = |args: &[&str]| {
        let mut cmd = batchproc(dir);
        cmd.args(["files", "d", "-o", "sqlite:out.db", "--on-error", "skip"])
            .args(["-p", &logger(dir)])
            .args(args);
        summary(dir, &mut cmd)
    };
    let s = json(&["-p", "json"]);
    assert_eq!(counts(&s), [5, 1, 0, 0], "{s}");
    processed(dir);
    // The failed row is no current row: its file is processed (and fails,
    // before the logger runs) again, and its row rewritten.
    let db = dir.join("out.db");
    watch_changes(&db);
    let s = json(&["-p", "json", "--incremental"]);
    assert_eq!(counts(&s), [0, 1, 5, 0], "{s}");
    assert!(processed(dir).is_empty());
    assert_eq!(
        changes(&db),
        [("update".to_string(), "d/bad.json".to_string())]
    );
    // A processor the rows have no column of yet: everything again.
    let s = json(&["-p", "json", "-p", "lines", "--incremental"]);
    assert_eq!(counts(&s), [5, 1, 0, 0], "{s}");
    assert_eq!(processed(dir).len(), 5);
    let s = json(&["-p", "json", "-p", "lines", "--incremental"]);
    assert_eq!(counts(&s), [0, 1, 5, 0], "{s}");
    // bad.json failed in 3 consecutive incremental runs: quarantined (the
    // poison ledger, tests/poison.rs), even for other processors.
    let s = json(&["-p", "lines", "--incremental"]);
    assert_eq!(counts(&s), [0, 0, 5, 0], "{s}");
    assert_eq!(
        (s["skipped"].as_u64(), s["quarantined"].as_u64()),
        (Some(1), Some(1))
    );
    // Fewer processors than the rows hold: still current (bad.json, whose
    // row failed, passes with `lines` alone once let through).
    let s = json(&["-p", "lines", "--incremental", "--retry-failed"]);
    assert_eq!(counts(&s), [1, 0, 5, 0], "{s}");
}

#[test]
fn prune_and_incremental_need_what_they_compare_with() {
    assert_usage_error(&["files", "d", "--prune"], "--prune needs --incremental");
    assert_usage_error(
        &["files", "d", "--incremental", "-o", "csv:out.csv"],
        "--incremental needs a database sink",
    );
    assert_usage_error(&["files", "d", "--incremental", "-o", "-"], "database sink");
}

/// A run killed while it commits, then resumed with `--incremental`: each
/// file is counted once, as processed or as unchanged, and every row holds
/// its file's digest.
#[test]
fn a_resumed_incremental_run_counts_every_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, 300);
    run(dir, &[]);
    for i in (0..300).step_by(3) {
        let path = dir.join(format!("d/s{}/f{i:03}.txt", i % 3));
        std::fs::write(&path, format!("changed {i}\n")).unwrap();
    }
    let args = [
        "files",
        "d",
        "-p",
        "sha256",
        "-o",
        "sqlite:out.db",
        "-w",
        "1",
    ];
    let spawn = |resume: bool| {
        let mut cmd = batchproc_std(dir);
        cmd.args(args)
            .args(["--incremental", "--batch-size", "10", "-q"]);
        cmd.env("BATCHPROC_TEST_COMMIT_DELAY_MS", "40");
        if resume {
            cmd.arg("--resume");
        }
        cmd.spawn().unwrap()
    };
    let db = dir.join("out.db");
    sigkill_after(spawn(false), Duration::from_millis(400));
    // Killed before it recorded its run, or before it ended, or not at all.
    let status = query(&db, "SELECT status FROM batchproc_runs WHERE id = 2");
    let recorded = !status.is_empty();
    let resumed = status
        .first()
        .is_none_or(|r| r.get::<String, _>(0) != "succeeded");
    if resumed {
        let status = spawn(true).wait().unwrap();
        assert!(status.success());
    }
    let run_row = &query(
        &db,
        "SELECT ok, unchanged, failed, attempts FROM batchproc_runs WHERE id = 2",
    )[0];
    let counted: [i64; 4] = [0, 1, 2, 3].map(|i| run_row.get(i));
    assert_eq!(counted[..3], [100, 200, 0], "resumed: {resumed}");
    assert_eq!(counted[3], 1 + (resumed && recorded) as i64);
    let after = rows(dir);
    for (path, digest) in digests(dir) {
        assert_eq!(after[&path].2.as_deref(), Some(digest.as_str()), "{path}");
    }
}

#[test]
fn postgres_passes_unchanged_files_and_prunes_gone_ones() {
    let Some(pg) = common::pg::fresh_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tree(dir, 20);
    let pg_run = |args: &[&str]| {
        let s = summary(
            dir,
            logged(dir, &pg.url)
                .args(["-t", "incremental_pg"])
                .args(args),
        );
        assert_eq!(s["status"], "succeeded", "{s}");
        s
    };
    assert_eq!(counts(&pg_run(&[])), [20, 0, 0, 0]);
    processed(dir);
    // Postgres keeps microseconds; the files' mtimes have nanoseconds.
    let s = pg_run(&["--incremental"]);
    assert_eq!(counts(&s), [0, 0, 20, 0], "{s}");
    assert!(processed(dir).is_empty());
    std::fs::write(dir.join("d/s2/f002.txt"), "changed\n").unwrap();
    std::fs::write(dir.join("d/s0/new.txt"), "new\n").unwrap();
    std::fs::remove_file(dir.join("d/s0/f003.txt")).unwrap();
    let s = pg_run(&["--incremental", "--prune"]);
    assert_eq!(counts(&s), [2, 0, 18, 1], "{s}");
    assert_eq!(processed(dir), ["d/s0/new.txt", "d/s2/f002.txt"]);
    let stored: BTreeMap<String, String> = pg
        .query("SELECT path, sha256 FROM incremental_pg")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored, digests(dir));
    let run_row = &pg.query("SELECT unchanged, removed FROM batchproc_runs ORDER BY id DESC")[0];
    assert_eq!(
        (run_row.get::<i64, _>(0), run_row.get::<i64, _>(1)),
        (18, 1)
    );
}
