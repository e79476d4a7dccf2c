//! `--max-runtime`: a run stops starting items at its limit, commits what
//! started, ends `paused` with exit 3, and `--resume` continues it to
//! exactly-once results. Nothing here asserts how far an attempt got: the
//! machine may be slow enough that an attempt starts nothing at all. Every
//! command makes the least time the whole run can take (a sleep per item)
//! longer than the first limit, so the first attempt always pauses; each
//! resume gets a longer limit, so the attempts always end.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::pg::fresh_db;
use common::*;
use serde_json::Value;
use sqlx::Row;

/// The first attempt's limit; attempt k gets k times this.
const STEP_MS: u64 = 300;

/// `batchproc ARGS --max-runtime LIMIT` in `dir` (with `--resume` after the
/// first attempt), its output and the runs it reports.
fn attempt(dir: &Path, args: &[&str], sink: &str, k: u64) -> (Output, Vec<Value>) {
    let mut cmd = batchproc(dir);
    cmd.args(args)
        .args(["--sink", sink])
        .args(["--max-runtime", &format!("{}ms", STEP_MS * k)]);
    if k > 1 {
        cmd.arg("--resume");
    }
    let out = cmd.output().unwrap();
    (out, runs_json(dir, sink))
}

/// Attempts until one exits 0; `rows` reads the sink's key -> digest.
/// Every attempt continues the one run: paused while items are left,
/// fewer rows than items; at the end one row per item, each committed once
/// (the run's `ok`, counted in the rows' transactions, equals the items).
fn pause_and_resume(
    dir: &Path,
    args: &[&str],
    sink: &str,
    items: usize,
    rows: impl Fn() -> BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for k in 1..=60 {
        let (out, runs) = attempt(dir, args, sink, k);
        let err = stderr_of(&out);
        assert_eq!(runs.len(), 1, "attempt {k} made another run: {runs:?}");
        let run = &runs[0];
        match out.status.code() {
            Some(0) => {
                assert!(k > 1, "the first attempt cannot have finished: {err}");
                assert_eq!(run["status"], "succeeded", "{run}");
                assert_eq!(run["ok"], items as u64, "{run}");
                return rows();
            }
            Some(3) => {
                assert_eq!(run["status"], "paused", "{run}");
                assert!(rows().len() < items, "attempt {k} paused with every row");
            }
            code => panic!("attempt {k} exited {code:?}: {err}"),
        }
    }
    panic!("60 attempts did not finish the run");
}

fn sqlite_rows(db: &Path, table: &str, key: &str, digest: &str) -> BTreeMap<String, String> {
    query(db, &format!("SELECT {key}, {digest} FROM {table}"))
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}

#[test]
fn files_pause_and_resume_to_exactly_once_in_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let (oracle, args) = (hashed_tree(tmp.path(), 40), SLOW_FILES);
    let db = tmp.path().join("out.db");
    let rows = || sqlite_rows(&db, "runtime_sqlite", "path", "sha256");
    let args = [&args[..], &["-t", "runtime_sqlite"]].concat();
    let got = pause_and_resume(tmp.path(), &args, "sqlite:out.db", oracle.len(), rows);
    assert_eq!(got, oracle);
    assert_eq!(count(&db, "batchproc_checkpoints"), 0);
}

#[test]
fn files_pause_and_resume_to_exactly_once_in_postgres() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (oracle, args) = (hashed_tree(tmp.path(), 40), SLOW_FILES);
    let rows = || {
        pg.query("SELECT path, sha256 FROM runtime_pg")
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    };
    let args = [&args[..], &["-t", "runtime_pg"]].concat();
    let got = pause_and_resume(tmp.path(), &args, &pg.url, oracle.len(), rows);
    assert_eq!(got, oracle);
    let left: i64 = pg.query("SELECT count(*) FROM batchproc_checkpoints")[0].get(0);
    assert_eq!(left, 0);
}

#[test]
fn a_query_pauses_quietly_and_resumes_to_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bodies: Vec<String> = (0..40).map(|i| format!("row {i}\n").repeat(i)).collect();
    let mut sql = String::from("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);");
    let mut oracle = BTreeMap::new();
    for (i, body) in bodies.iter().enumerate() {
        sql.push_str(&format!("INSERT INTO t VALUES ({i}, '{body}');"));
        let file = tmp.path().join(format!("body{i}"));
        std::fs::write(&file, body).unwrap();
        oracle.insert(i.to_string(), sha256sum(&file));
    }
    execute(&tmp.path().join("src.db"), &sql);
    let db = tmp.path().join("out.db");
    let args = [
        &QUERY_T[..],
        &[
            "-p",
            "sha256:body",
            "-p",
            "exec:sleep 0.05",
            "-w",
            "2",
            "-q",
        ],
    ]
    .concat();
    // Quiet: a pause says nothing (the exit code and the runs table tell).
    let (out, _) = attempt(tmp.path(), &args, "sqlite:out.db", 1);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "");
    let rows = || {
        query(&db, "SELECT CAST(id AS TEXT), body_sha256 FROM rows")
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    };
    // Goes on from the paused attempt above (its second attempt resumes).
    let mut got = BTreeMap::new();
    for k in 2..=60 {
        let (out, runs) = attempt(tmp.path(), &args, "sqlite:out.db", k);
        assert_eq!(runs.len(), 1, "{runs:?}");
        match out.status.code() {
            Some(3) => assert_eq!(runs[0]["status"], "paused"),
            Some(0) => {
                assert_eq!(runs[0]["ok"], 40, "{:?}", runs[0]);
                got = rows();
                break;
            }
            code => panic!("exited {code:?}: {}", stderr_of(&out)),
        }
    }
    assert_eq!(got, oracle);
}

/// An item started before the limit runs to its end, unkilled, and its row
/// is committed. Each item notes that it started, then outlasts any limit
/// tried here: whatever started was in flight at the limit. However slow
/// the machine, the items that started are exactly those with rows.
#[test]
fn an_item_in_flight_at_the_limit_finishes_and_is_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    for i in 0..6 {
        std::fs::write(d.join(format!("f{i}")), "x").unwrap();
    }
    let marks = tmp.path().join("started");
    std::fs::create_dir(&marks).unwrap();
    let spec = format!("exec:sh -c 'touch {}/{{name}}; sleep 3'", marks.display());
    let db = tmp.path().join("out.db");
    for k in 1..=5u64 {
        let out = batchproc(tmp.path())
            .args([
                "files",
                "d",
                "-p",
                &spec,
                "-w",
                "2",
                "--sink",
                "sqlite:out.db",
            ])
            .args(["--max-runtime", &format!("{}ms", 500 * k), "--resume"])
            .output()
            .unwrap();
        // Six 3 s items on two workers: no limit tried here lets all finish.
        assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
        let started: Vec<String> = std::fs::read_dir(&marks)
            .unwrap()
            .map(|e| format!("d/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        let committed = query(&db, "SELECT path, exit_code, error FROM files");
        let mut paths: Vec<String> = committed.iter().map(|r| r.get(0)).collect();
        let mut started = started;
        paths.sort();
        started.sort();
        assert_eq!(paths, started, "every item that started, and only those");
        for row in &committed {
            assert_eq!(row.get::<Option<i64>, _>(1), Some(0), "not killed");
            assert_eq!(row.get::<Option<String>, _>(2), None);
        }
        if !started.is_empty() {
            return;
        }
    }
    panic!("no item started in five attempts");
}

#[test]
fn a_pause_is_reported_and_blocks_no_new_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (oracle, args) = (hashed_tree(tmp.path(), 40), SLOW_FILES);
    // From the environment, as every long flag.
    let out = batchproc(tmp.path())
        .args(args)
        .args(["--summary-json", "s.json"])
        .env("BATCHPROC_MAX_RUNTIME", "300ms")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let line = err.lines().last().unwrap();
    assert!(
        line.starts_with("batchproc: paused: max runtime 300ms reached after ")
            && line.ends_with(" items; run again with --resume to continue"),
        "{err}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("s.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "paused", "{summary}");
    assert_eq!(summary["exit_code"], 3, "{summary}");
    // A new run of the same pipeline is not refused (no exit 75): the paused
    // one holds nothing. It starts afresh and is told it could resume.
    let out = batchproc(tmp.path()).args(args).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("--resume would continue it"), "{err}");
    let listed = batchproc(tmp.path()).arg("runs").output().unwrap();
    let table = String::from_utf8(listed.stdout).unwrap();
    assert!(
        table.lines().any(|l| l.starts_with("1   paused")),
        "{table}"
    );
    let db = tmp.path().join("batchproc.db");
    assert_eq!(sqlite_rows(&db, "files", "path", "sha256"), oracle);
}

#[test]
fn max_runtime_usage_errors() {
    let files = ["files", "d", "-p", "sha256"];
    for (extra, needle) in [
        (&["--max-runtime", "0s"][..], "must be more than 0"),
        (&["--max-runtime", "soon"][..], "--max-runtime"),
        (
            &["--max-runtime", "5s", "--no-checkpoint"][..],
            "needs checkpoints",
        ),
        (&["--max-runtime", "5s", "-o", "-"][..], "needs checkpoints"),
    ] {
        assert_usage_error(&[&files[..], extra].concat(), needle);
    }
}
