//! `--dry-run`: the checks of a real run, then the plan on stdout (items,
//! those already done, the changes to the sink), and nothing written: the
//! sink stays byte for byte as it was.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use sqlx::Row;

/// Every file under `dir` with its bytes: what "untouched" is checked against.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn plan(dir: &Path, args: &[&str]) -> String {
    let out = batchproc(dir).args(args).arg("--dry-run").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_first_dry_run_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 7);
    let text = plan(tmp.path(), &["files", "d", "-p", "sha256,lines"]);
    assert_eq!(
        text,
        "would process 7 items\n\
         into sqlite:batchproc.db, table files\n  \
         create the SQLite database batchproc.db\n  \
         CREATE TABLE IF NOT EXISTS \"files\" (\"path\" TEXT PRIMARY KEY NOT NULL, \"size\" INTEGER, \"mtime\" TEXT, \"sha256\" TEXT, \"lines\" INTEGER, \"error\" TEXT)\n  \
         create batchproc's run tables (batchproc_runs, batchproc_checkpoints, batchproc_failures)\n"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["d"], "a dry run wrote a file");
}

#[test]
fn a_dry_run_leaves_an_existing_sink_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 7);
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let db = tmp.path().join("out/x.db");
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-o", "sqlite:out/x.db", "-q"])
        .assert()
        .success();
    let before = snapshot(&tmp.path().join("out"));
    let text = plan(
        tmp.path(),
        &["files", "d", "-p", "sha256,lines", "-o", "sqlite:out/x.db"],
    );
    assert_eq!(
        text,
        "would process 7 items\ninto sqlite:out/x.db, table files\n  ALTER TABLE \"files\" ADD COLUMN \"lines\" INTEGER\n"
    );
    let text = plan(
        tmp.path(),
        &[
            "files",
            "d",
            "-p",
            "sha256",
            "-o",
            "sqlite:out/x.db",
            "--table",
            "other",
        ],
    );
    assert!(
        text.contains("CREATE TABLE IF NOT EXISTS \"other\""),
        "{text}"
    );
    assert!(!text.contains("run tables"), "{text}");
    let text = plan(
        tmp.path(),
        &["files", "d", "-p", "sha256", "-o", "sqlite:out/x.db"],
    );
    assert!(text.ends_with("the sink needs no changes\n"), "{text}");
    assert_eq!(snapshot(&tmp.path().join("out")), before);
    assert_eq!(count(&db, "batchproc_runs"), 1);
}

#[test]
fn a_dry_run_resume_counts_what_the_unfinished_run_did() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 20);
    // A ragged row: the csv processor fails on this file, and fail-fast
    // stops the run with part of the tree committed.
    std::fs::write(tmp.path().join("d/f00012.csv"), "a,b\n1\n").unwrap();
    let args = ["files", "d", "-p", "csv", "--workers", "1"];
    batchproc(tmp.path()).args(args).arg("-q").assert().code(1);
    let db = tmp.path().join("batchproc.db");
    let committed: i64 = query(&db, "SELECT count(*) FROM files WHERE error IS NULL")[0].get(0);
    let before = snapshot(tmp.path());
    let resume: Vec<&str> = args.iter().copied().chain(["--resume"]).collect();
    let text = plan(tmp.path(), &resume);
    assert_eq!(
        text.lines().next().unwrap(),
        format!(
            "would resume run 1: 20 items, {committed} already done, {} to do",
            20 - committed
        )
    );
    // Without --resume the same pipeline would start again from the top.
    assert!(plan(tmp.path(), &args).starts_with("would process 20 items\n"));
    assert_eq!(snapshot(tmp.path()), before);
    // The resume does what the plan said: the rest, the fixed file included.
    std::fs::write(tmp.path().join("d/f00012.csv"), "a,b\n1,2\n").unwrap();
    let out = batchproc(tmp.path())
        .args(&resume)
        .args(["--summary-json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(count(&db, "files"), 20);
}

#[test]
fn a_dry_run_refuses_what_a_run_would() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3);
    let db = tmp.path().join("batchproc.db");
    execute(&db, "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime TEXT, sha256 TEXT, error TEXT, owner TEXT NOT NULL)");
    let before = snapshot(tmp.path());
    for (args, needle) in [
        (
            vec!["files", "d", "-p", "sha256"],
            "column \"owner\" is NOT NULL",
        ),
        (
            vec![
                "files",
                "d",
                "-p",
                "exec:no-such-program-here {}",
                "-t",
                "t2",
            ],
            "no-such-program-here",
        ),
        (vec!["files", "nowhere", "-p", "sha256"], "nowhere"),
    ] {
        let out = batchproc(tmp.path())
            .args(&args)
            .arg("--dry-run")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(needle),
            "{args:?}: {}",
            stderr_of(&out)
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn a_query_dry_run_into_postgres_creates_no_table() {
    let Some(pg) = pg::fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT); \
         INSERT INTO docs VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );
    let text = plan(
        tmp.path(),
        &[
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT id, body FROM docs",
            "--key",
            "id",
            "-p",
            "sha256:body",
            "-o",
            &pg.url,
        ],
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("would process 3 items"));
    assert!(lines.next().unwrap().ends_with(", table rows"), "{text}");
    assert!(
        text.contains("CREATE TABLE IF NOT EXISTS \"rows\""),
        "{text}"
    );
    let tables = pg
        .query("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'");
    assert_eq!(
        tables[0].get::<i64, _>("n"),
        0,
        "the dry run created a table"
    );
    assert_eq!(snapshot(tmp.path()).len(), 1, "only src.db");
}

#[test]
fn a_cursor_dry_run_counts_only_the_rows_beyond_the_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    execute(
        &src,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER, body TEXT); \
         INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c');",
    );
    let args = [
        "query",
        "--from",
        "sqlite:src.db",
        "--sql",
        "SELECT id, seq, body FROM t",
        "--key",
        "id",
        "--cursor",
        "seq",
        "-p",
        "sha256:body",
        "-q",
    ];
    batchproc(tmp.path()).args(args).assert().success();
    execute(&src, "INSERT INTO t VALUES (4, 40, 'd'), (5, 50, 'e');");
    let before = snapshot(tmp.path());
    let text = plan(tmp.path(), &args);
    assert_eq!(
        text,
        "would process 2 items\ninto sqlite:batchproc.db, table rows\n\
         --cursor \"seq\": reading rows after 30 up to 50\nthe sink needs no changes\n"
    );
    assert_eq!(snapshot(tmp.path()), before, "the dry run stored a bound");
    // The run then reads what the plan said.
    let out = batchproc(tmp.path())
        .args(args)
        .args(["--summary-json", "-"])
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["ok"], 2, "{summary}");
}

#[test]
fn a_dry_run_after_a_csv_run_leaves_the_file_and_its_state_alone() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 4);
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let args = ["files", "d", "-p", "sha256", "-o", "csv:out/x.csv"];
    batchproc(tmp.path())
        .args(args)
        .arg("-q")
        .assert()
        .success();
    let before = snapshot(&tmp.path().join("out"));
    assert_eq!(
        before.len(),
        2,
        "the CSV and its closed state file: {:?}",
        before.keys()
    );
    assert_eq!(
        plan(tmp.path(), &args),
        "would process 4 items\ninto csv:out/x.csv\n  replace out/x.csv\n"
    );
    let resume: Vec<&str> = args.iter().copied().chain(["--resume"]).collect();
    assert!(plan(tmp.path(), &resume)
        .starts_with("nothing to resume: would process 4 items in a new run\n"));
    assert_eq!(snapshot(&tmp.path().join("out")), before);
}

#[test]
fn a_dry_run_refuses_the_combinations_a_run_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER);",
    );
    let query = [
        "query",
        "--from",
        "sqlite:src.db",
        "--sql",
        "SELECT id, seq FROM t",
        "--key",
        "id",
    ];
    for extra in [
        &["--cursor", "seq", "--no-checkpoint"][..],
        &["--cursor", "seq", "-o", "-"],
        &["-o", "-", "--summary-json", "-"],
    ] {
        let args: Vec<&str> = query.iter().chain(extra).copied().collect();
        let real = batchproc(tmp.path()).args(&args).output().unwrap();
        let dry = batchproc(tmp.path())
            .args(&args)
            .arg("--dry-run")
            .output()
            .unwrap();
        assert_eq!(
            real.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&real)
        );
        assert_eq!(
            dry.status.code(),
            Some(2),
            "{args:?} --dry-run: {}",
            stderr_of(&dry)
        );
        assert_eq!(stderr_of(&dry), stderr_of(&real), "{args:?}");
    }
}

/// A scratch dir with `d/` (3 files) after one run over it into
/// `batchproc.db`, and that run's arguments.
fn after_one_run() -> (tempfile::TempDir, [&'static str; 4]) {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3);
    let args = ["files", "d", "-p", "sha256"];
    batchproc(tmp.path())
        .args(args)
        .arg("-q")
        .assert()
        .success();
    (tmp, args)
}

#[test]
fn a_dry_run_on_run_tables_of_an_older_batchproc_plans_their_upgrade() {
    let (tmp, args) = after_one_run();
    // As a batchproc before migration 0005 left them.
    execute(
        &tmp.path().join("batchproc.db"),
        "ALTER TABLE batchproc_runs DROP COLUMN cursor_after; \
         ALTER TABLE batchproc_runs DROP COLUMN cursor_upto; \
         DELETE FROM _sqlx_migrations WHERE version = 5;",
    );
    let before = snapshot(tmp.path());
    let resume: Vec<&str> = args.iter().copied().chain(["--resume"]).collect();
    let text = plan(tmp.path(), &resume);
    assert!(
        text.contains("  upgrade batchproc's run tables (migrations 0005)\n"),
        "{text}"
    );
    assert!(text.contains("from an older batchproc"), "{text}");
    assert_eq!(snapshot(tmp.path()), before);
    // The run itself upgrades them and goes on.
    batchproc(tmp.path())
        .args(&resume)
        .arg("-q")
        .assert()
        .success();
    assert!(plan(tmp.path(), &args).ends_with("the sink needs no changes\n"));
}

#[test]
fn a_dry_run_names_a_run_still_marked_running() {
    let (tmp, args) = after_one_run();
    // As a run killed with SIGKILL leaves its row (or a live one has it).
    execute(
        &tmp.path().join("batchproc.db"),
        "UPDATE batchproc_runs SET status = 'running'",
    );
    let text = plan(tmp.path(), &args);
    assert!(text.contains("run 1 ("), "{text}");
    assert!(
        text.contains(
            "is marked running: if it is still working, a run now would be refused (exit 75)"
        ),
        "{text}"
    );
}

/// With `--incremental` the plan walks as the run would: the files it
/// would process and those it would pass (unchanged), read from the rows
/// without touching the sink; the next run's counts are the plan's.
#[test]
fn an_incremental_dry_run_counts_what_the_next_run_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("d")).unwrap();
    for i in 0..10 {
        std::fs::write(dir.join(format!("d/f{i}.txt")), format!("{i}\n")).unwrap();
    }
    let args = [
        "files",
        "d",
        "-p",
        "sha256",
        "-o",
        "sqlite:out.db",
        "--incremental",
    ];
    // Written without --incremental: the table lacks the ledger's columns,
    // which the dry run reads as NULL (and only plans to add).
    batchproc(dir).args(&args[..6]).assert().success();
    std::fs::write(dir.join("d/f3.txt"), "changed\n").unwrap();
    std::fs::write(dir.join("d/new.txt"), "new\n").unwrap();
    let before = snapshot(dir);
    let text = plan(dir, &args);
    assert_eq!(snapshot(dir), before, "the dry run changed the sink");
    assert!(
        text.starts_with("would process 2 items (9 unchanged)\n"),
        "{text}"
    );
    assert!(text.contains("ADD COLUMN \"failures\""), "{text}");
    let out = batchproc(dir)
        .args(args)
        .args(["--summary-json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (s["ok"].as_u64(), s["unchanged"].as_u64()),
        (Some(2), Some(9))
    );
}
