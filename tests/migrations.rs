//! Upgrading a sink written by an older batchproc: its runs, checkpoint and
//! failure rows survive the migrations, and its unfinished runs resume.

mod common;

use std::path::Path;

use common::*;
use sqlx::Row;

/// The exec: processors the fixture's runs 2 and 3 used (see its header):
/// same specs, same fingerprints.
const SLOW: &str = r#"exec:sh -c 'test -z "$SLOW" || test {name} != f03.txt || sleep 30'"#;
const FLAKY: &str = r#"exec:sh -c 'test -n "$FIXED" || test {name} != f05.txt'"#;

/// Everything in the bookkeeping tables, a row a line.
fn bookkeeping(db: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for sql in [
        "SELECT json_array(id, fingerprint, command, sink_table, status, ok, failed, skipped, \
         attempts, watermark_root, hex(watermark_key), csv_length, started_at, finished_at, pid, \
         host, peak_busy, average_busy, retry_pending) FROM batchproc_runs ORDER BY id",
        "SELECT json_array(run_id, root, hex(key)) FROM batchproc_checkpoints ORDER BY 1",
        "SELECT json_array(run_id, root, hex(key)) FROM batchproc_failures ORDER BY 1",
        "SELECT json_array(seq) FROM sqlite_sequence WHERE name = 'batchproc_runs'",
    ] {
        all.extend(query(db, sql).iter().map(|row| row.get::<String, _>(0)));
    }
    all
}

#[test]
fn a_sqlite_sink_from_before_paused_runs_keeps_its_rows_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    for i in 1..=12 {
        std::fs::write(d.join(format!("f{i:02}.txt")), format!("file {i:02}\n")).unwrap();
    }
    let db = tmp.path().join("out.db");
    let dump = std::fs::read_to_string(fixtures().join("migrations/pre-0003.sql")).unwrap();
    execute(&db, &dump);
    let before = bookkeeping(&db);
    assert_eq!(count(&db, "batchproc_checkpoints"), 9, "the fixture");

    // Any use migrates: listing the runs does.
    let listed = batchproc(tmp.path())
        .args(["runs", "-o", "sqlite:out.db"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr_of(&listed));
    assert_eq!(bookkeeping(&db), before, "rows lost or changed");
    let schema: String = query(
        &db,
        "SELECT sql FROM sqlite_master WHERE name = 'batchproc_runs'",
    )[0]
    .get(0);
    assert!(schema.contains("'paused'"), "{schema}");
    assert!(query(&db, "PRAGMA foreign_key_check").is_empty());
    for child in ["batchproc_checkpoints", "batchproc_failures"] {
        let parent: String =
            query(&db, &format!("PRAGMA foreign_key_list({child})"))[0].get("table");
        assert_eq!(parent, "batchproc_runs", "{child}");
    }
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name LIKE '%_new' OR name LIKE '%_kept'"
        )[0]
        .get::<i64, _>(0),
        0
    );

    // Run 2 resumes from its checkpoints: only f03.txt is left to do.
    let sink = ["--sink", "sqlite:out.db", "-w", "2", "--resume"];
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-p", SLOW, "--table", "slow"])
        .args(sink)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("resuming run 2: 11 items already committed"),
        "{err}"
    );
    let digests = query(&db, "SELECT path, sha256 FROM slow ORDER BY path");
    assert_eq!(digests.len(), 12);
    for row in digests {
        let path: String = row.get(0);
        assert_eq!(row.get::<String, _>(1), sha256sum(&tmp.path().join(&path)));
    }
    // Run 3 retries the failure it recorded, which passes now.
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            FLAKY,
            "--table",
            "flaky",
            "--on-error",
            "skip",
        ])
        .args(sink)
        .env("FIXED", "1")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("retrying the 1 that failed"), "{err}");
    let runs = query(
        &db,
        "SELECT id, status, ok, failed FROM batchproc_runs ORDER BY id",
    );
    let runs: Vec<(i64, String, i64, i64)> = runs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let done = |id| (id, "succeeded".to_owned(), 12, 0);
    assert_eq!(runs, [done(1), done(2), done(3)]);

    // A new run takes the next id, and deleting a run still takes its
    // checkpoint rows with it.
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "lines",
            "--table",
            "more",
            "--sink",
            "sqlite:out.db",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        query(&db, "SELECT max(id) FROM batchproc_runs")[0].get::<i64, _>(0),
        4
    );
    execute(
        &db,
        "INSERT INTO batchproc_checkpoints VALUES (4, 0, x'00'); DELETE FROM batchproc_runs WHERE id = 4",
    );
    assert_eq!(count(&db, "batchproc_checkpoints"), 0);
}

/// Postgres: a database whose bookkeeping is as 0001 and 0002 left it
/// (made here by undoing 0003 on a real one) takes 0003, keeps its runs
/// and failures, and then records a paused run.
#[test]
fn a_postgres_sink_from_before_paused_runs_keeps_its_rows() {
    let Some(pg) = common::pg::fresh_db() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 40);
    let flaky = [
        "-p",
        "exec:sh -c 'test {name} != f00005.txt'",
        "--on-error",
        "skip",
    ];
    let out = batchproc(tmp.path())
        .args([
            "files", "d", "-p", "sha256", "-t", "flaky", "--sink", &pg.url,
        ])
        .args(flaky)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    pg.execute(
        "DELETE FROM _sqlx_migrations WHERE version = 3; \
         ALTER TABLE batchproc_runs DROP CONSTRAINT batchproc_runs_status_check; \
         ALTER TABLE batchproc_runs ADD CHECK \
             (status IN ('running', 'succeeded', 'failed', 'interrupted'))",
    );
    let snapshot = || -> Vec<String> {
        pg.query(
            "SELECT r::text FROM batchproc_runs r UNION ALL \
             SELECT f::text FROM batchproc_failures f ORDER BY 1",
        )
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let before = snapshot();
    assert_eq!(before.len(), 2, "one run, one failure: {before:?}");

    let out = batchproc(tmp.path())
        .args(SLOW_FILES)
        .args(["-t", "later", "--max-runtime", "300ms", "--sink", &pg.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    let after = snapshot();
    assert_eq!(after.len(), 3);
    assert!(before.iter().all(|row| after.contains(row)), "{after:?}");
    let status: String =
        pg.query("SELECT status FROM batchproc_runs ORDER BY id DESC LIMIT 1")[0].get(0);
    assert_eq!(status, "paused");
    let rows: i64 = pg.query("SELECT count(*) FROM flaky")[0].get(0);
    assert_eq!(rows as usize, oracle.len());
}
