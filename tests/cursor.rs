//! `query --cursor`: incremental runs. Each run's `exec:` processor appends
//! the key of every row it processes to `keys.log`, so a test sees exactly
//! which rows a run read; the expected keys are written out by hand from
//! the rows the test inserted. SQLite and Postgres sources, integer, text
//! and timestamp cursors, failed runs, resumes and a SIGKILL.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::pg::fresh_db;
use common::*;
use sqlx::Row;

/// Logs each row's key; fails the row whose key is in the file `fail`.
const LOG: &str = "exec:sh -c 'echo \"$1\" >> keys.log; ! grep -qx \"$1\" fail 2>/dev/null' sh {}";

/// `query` over `sql` on `from`, keyed by `id`, with [`LOG`], into
/// `out.db` with two workers unless `extra` says otherwise.
fn run(dir: &Path, from: &str, sql: &str, extra: &[&str]) -> Output {
    let mut cmd = batchproc(dir);
    cmd.args(["query", "--from", from, "--sql", sql, "--key", "id"])
        .args(["-p", LOG])
        .args(extra);
    for (flag, default) in [("-o", "out.db"), ("-w", "2")] {
        if !extra.contains(&flag) {
            cmd.args([flag, default]);
        }
    }
    cmd.output().unwrap()
}

/// The keys logged since the last call, sorted (the log is then emptied).
fn logged(dir: &Path) -> Vec<i64> {
    let path = dir.join("keys.log");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let mut keys: Vec<i64> = text.lines().map(|l| l.parse().unwrap()).collect();
    keys.sort();
    keys
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(out));
}

/// The newest run's status and ok count in `out.db`.
fn last_run(dir: &Path) -> (String, i64) {
    let r = &query(
        &dir.join("out.db"),
        "SELECT status, ok FROM batchproc_runs ORDER BY id DESC LIMIT 1",
    )[0];
    (r.get(0), r.get(1))
}

fn sqlite_src(dir: &Path, sql: &str) {
    execute(&dir.join("src.db"), sql);
}

#[test]
fn an_integer_cursor_reads_only_the_rows_beyond_the_last_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite_src(
        dir,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER, v TEXT); \
         INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'b'), (3, NULL, 'c'), (4, 40, 'd'), (5, 50, 'e');",
    );
    let q = |extra: &[&str]| run(dir, "sqlite:src.db", "SELECT * FROM t", extra);
    // The first run reads every row, the one without a cursor value too.
    let out = q(&["--cursor", "seq"]);
    ok(&out);
    assert!(
        stderr_of(&out).contains("first run, reading every row up to 50"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(logged(dir), [1, 2, 3, 4, 5]);

    sqlite_src(
        dir,
        "INSERT INTO t VALUES (6, 60, 'f'), (7, 70, 'g'), (8, 55, 'h'), (9, NULL, 'i'); \
         UPDATE t SET v = 'changed' WHERE id = 2;",
    );
    let out = q(&["--cursor", "seq"]);
    ok(&out);
    // Only the rows beyond 50; a NULL is beyond no cursor, and the row
    // changed without a new cursor value is not read again.
    assert_eq!(logged(dir), [6, 7, 8]);
    assert_eq!(last_run(dir), ("succeeded".into(), 3));
    let rows: Vec<(i64, Option<i64>, String)> = query(
        &dir.join("out.db"),
        "SELECT id, seq, v FROM rows ORDER BY id",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let expected: Vec<(i64, Option<i64>, String)> = [
        (1, Some(10), "a"),
        (2, Some(20), "b"),
        (3, None, "c"),
        (4, Some(40), "d"),
        (5, Some(50), "e"),
        (6, Some(60), "f"),
        (7, Some(70), "g"),
        (8, Some(55), "h"),
    ]
    .into_iter()
    .map(|(i, s, v)| (i, s, v.to_owned()))
    .collect();
    assert_eq!(rows, expected);

    // Nothing new: nothing read, and the cursor stays (from the environment this time).
    let out = batchproc(dir)
        .args(QUERY_T)
        .args(["-p", LOG, "-o", "out.db"])
        .env("BATCHPROC_CURSOR", "seq")
        .output()
        .unwrap();
    ok(&out);
    assert!(
        stderr_of(&out).contains("no row beyond 70"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(logged(dir), Vec::<i64>::new());
    sqlite_src(dir, "INSERT INTO t VALUES (10, 71, 'j');");
    ok(&q(&["--cursor", "seq"]));
    assert_eq!(logged(dir), [10]);

    // Another cursor column is another pipeline: its first run reads every row.
    ok(&q(&["--cursor", "id"]));
    assert_eq!(logged(dir), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

#[test]
fn a_failed_run_leaves_the_cursor_where_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Timestamps as SQLite keeps them: ISO 8601 text.
    sqlite_src(
        dir,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, at TIMESTAMP, v TEXT); \
         INSERT INTO t VALUES (1, '2024-05-01 10:00:00', 'a'), (2, '2024-05-01 11:00:00', 'b');",
    );
    let q = || run(dir, "sqlite:src.db", "SELECT * FROM t", &["--cursor", "at"]);
    ok(&q());
    assert_eq!(logged(dir), [1, 2]);
    sqlite_src(
        dir,
        "INSERT INTO t VALUES (3, '2024-05-01 11:00:01', 'c'), (4, '2024-05-02 09:00:00', 'd'), \
         (5, '2024-05-03 00:00:00', 'e');",
    );
    std::fs::write(dir.join("fail"), "4\n").unwrap();
    let out = q();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(last_run(dir).0, "failed");
    assert!(logged(dir).contains(&4));
    // A new run (no --resume) starts again from the last succeeded run's
    // cursor: every row after it, whatever the failed run got through.
    std::fs::remove_file(dir.join("fail")).unwrap();
    ok(&q());
    assert_eq!(logged(dir), [3, 4, 5]);
    assert_eq!(last_run(dir), ("succeeded".into(), 3));
    ok(&q());
    assert_eq!(logged(dir), Vec::<i64>::new());
}

#[test]
fn a_resumed_run_reads_the_range_it_started_with() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite_src(
        dir,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER); \
         INSERT INTO t VALUES (1, 1), (2, 2), (3, 3);",
    );
    let q = |extra: &[&str]| {
        let mut args = vec!["--cursor", "seq", "-w", "1"];
        args.extend(extra);
        run(dir, "sqlite:src.db", "SELECT * FROM t", &args)
    };
    ok(&q(&[]));
    assert_eq!(logged(dir), [1, 2, 3]);
    sqlite_src(dir, "INSERT INTO t VALUES (4, 4), (5, 5), (6, 6), (7, 7);");
    std::fs::write(dir.join("fail"), "5\n").unwrap();
    let out = q(&["--batch-size", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let first = logged(dir);
    assert!(first.contains(&5), "{first:?}");
    let done: Vec<i64> = query(
        &dir.join("out.db"),
        "SELECT id FROM rows WHERE id > 3 AND error IS NULL ORDER BY id",
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    // Rows arriving after the run started, beyond its bound, and a row
    // moved beyond it are not its own, not even when it is resumed.
    sqlite_src(
        dir,
        "INSERT INTO t VALUES (8, 8), (9, 9); UPDATE t SET seq = 10 WHERE id = 7;",
    );
    std::fs::remove_file(dir.join("fail")).unwrap();
    let out = q(&["--resume"]);
    ok(&out);
    let resumed = logged(dir);
    let expected: Vec<i64> = [4, 5, 6]
        .into_iter()
        .filter(|k| !done.contains(k))
        .collect();
    assert_eq!(resumed, expected, "committed before: {done:?}");
    let runs =
        query(&dir.join("out.db"), "SELECT count(*) FROM batchproc_runs")[0].get::<i64, _>(0);
    assert_eq!(runs, 2, "the resume continued run 2");
    assert_eq!(last_run(dir), ("succeeded".into(), 3));
    // The next run takes what came after the resumed run's bound (6).
    ok(&q(&[]));
    assert_eq!(logged(dir), [7, 8, 9]);
}

/// Waits until `done` says so (at most two minutes: a hung run, not a slow one).
fn wait_until(done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(120), "waited in vain");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `keys.log` in `dir` holds the line `key`.
fn wait_for_key(dir: &Path, key: &str) {
    wait_until(|| {
        let text = std::fs::read_to_string(dir.join("keys.log")).unwrap_or_default();
        text.lines().any(|l| l == key)
    });
}

#[test]
fn a_killed_cursor_run_resumes_to_each_row_committed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let values: Vec<String> = (1..=60).map(|i| format!("({i}, {})", 100 + i)).collect();
    sqlite_src(
        dir,
        &format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER); INSERT INTO t VALUES {};",
            values.join(", ")
        ),
    );
    let out_db = dir.join("out.db");
    execute(
        &out_db,
        "CREATE TABLE rows (id INTEGER PRIMARY KEY NOT NULL, seq INTEGER, exit_code INTEGER, \
         output TEXT, error TEXT); \
         CREATE TABLE rewritten (id INTEGER); \
         CREATE TRIGGER rows_rewritten AFTER UPDATE ON rows BEGIN INSERT INTO rewritten VALUES (new.id); END;",
    );
    // Row 30 waits for the file `gate`: the run is killed while it waits,
    // with rows before and after it committed or not, whatever the machine's pace.
    let gated = "exec:sh -c 'echo \"$1\" >> keys.log; \
                 if [ \"$1\" = 30 ]; then while [ ! -e gate ]; do sleep 0.05; done; fi' sh {}";
    let spawn = |resume: bool| {
        let mut cmd = batchproc_std(dir);
        cmd.args(QUERY_T)
            .args(["--cursor", "seq", "-p", gated, "-w", "2"])
            .args(["--batch-size", "3", "-q", "-o", "out.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if resume {
            cmd.arg("--resume");
        }
        cmd.spawn().unwrap()
    };
    let child = spawn(false);
    wait_for_key(dir, "30");
    // Rows after 30 commit beyond the watermark (with checkpoint rows)
    // once the batcher stops holding them back for the gap to close.
    wait_until(|| {
        query(&out_db, "SELECT count(*) FROM rows WHERE id > 30")[0].get::<i64, _>(0) > 0
    });
    assert!(
        !sigkill_after(child, Duration::ZERO),
        "the run ended while row 30 waited"
    );
    integrity_ok(&out_db, "after the kill");
    let committed: Vec<i64> = query(&out_db, "SELECT id FROM rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Rows beyond the killed run's bound (160), which its resume must leave.
    sqlite_src(dir, "INSERT INTO t VALUES (61, 161), (62, 162);");
    std::fs::write(dir.join("gate"), "").unwrap();
    let _ = logged(dir);
    let resumed = spawn(true).wait_with_output().unwrap();
    assert!(resumed.status.success());
    let again = logged(dir);
    assert!(again.contains(&30) && !again.contains(&61), "{again:?}");
    let redone: Vec<&i64> = again.iter().filter(|k| committed.contains(k)).collect();
    assert!(
        redone.is_empty(),
        "committed before the kill, redone: {redone:?}"
    );
    assert_eq!(count(&out_db, "rewritten"), 0, "a row was committed twice");
    assert_eq!(count(&out_db, "rows"), 60);
    let run = &query(&out_db, "SELECT status, ok, attempts FROM batchproc_runs")[0];
    assert_eq!(
        (
            run.get::<String, _>(0),
            run.get::<i64, _>(1),
            run.get::<i64, _>(2)
        ),
        ("succeeded".into(), 60, 2)
    );
    assert!(spawn(false).wait().unwrap().success());
    assert_eq!(logged(dir), [61, 62]);
}

#[test]
fn postgres_timestamptz_cursor_keeps_every_microsecond() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pg.execute(
        "CREATE TABLE events (id BIGINT PRIMARY KEY, updated_at TIMESTAMPTZ, v TEXT); \
         INSERT INTO events VALUES (1, '2024-05-01 10:00:00.000001+00', 'a'), \
         (2, '2024-05-01 12:00:00.123456+02', 'b'), (3, NULL, 'c');",
    );
    let sql = "SELECT id, updated_at, v FROM events";
    let q = || run(dir, &pg.url, sql, &["--cursor", "updated_at"]);
    let out = q();
    ok(&out);
    assert!(
        stderr_of(&out).contains("up to 2024-05-01T10:00:00.123456Z"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(logged(dir), [1, 2, 3]);
    // One microsecond past the cursor is new; a row arriving late with the
    // cursor's own value or an older one is missed (README: late arrivals);
    // an update that leaves the cursor alone is not seen.
    pg.execute(
        "INSERT INTO events VALUES (4, '2024-05-01 10:00:00.123457+00', 'd'), \
         (5, '2024-05-01 10:00:00.123456+00', 'e'), (6, '2024-04-30 00:00:00+00', 'late'), \
         (7, '2025-01-01 00:00:00+00', 'g'); \
         UPDATE events SET v = 'changed' WHERE id = 1;",
    );
    ok(&q());
    assert_eq!(logged(dir), [4, 7]);
    let v: String = query(&dir.join("out.db"), "SELECT v FROM rows WHERE id = 1")[0].get(0);
    assert_eq!(v, "a");
    ok(&q());
    assert_eq!(logged(dir), Vec::<i64>::new());
}

#[test]
fn postgres_integer_cursor_into_postgres_resumes_its_own_range() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pg.execute(
        "CREATE TABLE src (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, day DATE); \
         INSERT INTO src SELECT i, i, DATE '2024-01-01' + i FROM generate_series(1, 20) AS i;",
    );
    let q = |cursor: &str, extra: &[&str]| {
        let mut args = vec!["--cursor", cursor, "-o", &pg.url, "-t", "out"];
        args.extend(extra);
        run(dir, &pg.url, "SELECT * FROM src", &args)
    };
    ok(&q("version", &[]));
    assert_eq!(logged(dir), (1..=20).collect::<Vec<_>>());
    pg.execute(
        "INSERT INTO src SELECT i, i, DATE '2024-01-01' + i FROM generate_series(21, 30) AS i;",
    );
    std::fs::write(dir.join("fail"), "25\n").unwrap();
    let out = q("version", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let _ = logged(dir);
    let done: Vec<i64> = pg
        .query("SELECT id::bigint FROM out WHERE id > 20 AND error IS NULL ORDER BY id")
        .iter()
        .map(|r| r.get(0))
        .collect();
    pg.execute("INSERT INTO src VALUES (31, 31, NULL), (32, 32, NULL);");
    std::fs::remove_file(dir.join("fail")).unwrap();
    ok(&q("version", &["--resume"]));
    let expected: Vec<i64> = (21..=30).filter(|k| !done.contains(k)).collect();
    assert_eq!(logged(dir), expected);
    ok(&q("version", &[]));
    assert_eq!(logged(dir), [31, 32]);
    let runs = pg.query("SELECT status, ok FROM batchproc_runs ORDER BY id");
    let runs: Vec<(String, i64)> = runs.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Run 2 committed rows 21..=30 once each, over its two attempts.
    assert_eq!(
        runs,
        [
            ("succeeded".into(), 20),
            ("succeeded".into(), 10),
            ("succeeded".into(), 2)
        ]
    );
    // A date cursor: its own pipeline (rows with a NULL day only in its first run).
    ok(&q("day", &[]));
    assert_eq!(logged(dir), (1..=32).collect::<Vec<_>>());
    pg.execute("INSERT INTO src VALUES (33, 33, DATE '2024-12-31');");
    ok(&q("day", &[]));
    assert_eq!(logged(dir), [33]);
}

#[test]
fn a_cursor_the_run_cannot_use_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sqlite_src(
        dir,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER, data BLOB, score REAL); \
         INSERT INTO t VALUES (1, 1, x'00', 0.5);",
    );
    let refused = |extra: &[&str], needle: &str| {
        let out = batchproc(dir)
            .args(QUERY_T)
            .args(["-o", "refused.db"])
            .args(extra)
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(!dir.join("refused.db").exists(), "{extra:?} wrote its sink");
    };
    refused(
        &["--cursor", "nope"],
        "--cursor \"nope\" is not a column of the query",
    );
    refused(
        &["--cursor", "data"],
        "--cursor \"data\" has type bytes; a cursor must be an integer, text, timestamp or date column",
    );
    refused(&["--cursor", "score"], "has type real");
    refused(
        &["--cursor", "seq", "--no-checkpoint"],
        "--cursor needs run records",
    );
    let out = batchproc(dir)
        .args(QUERY_T)
        .args(["--cursor", "seq", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());

    let Some(pg) = fresh_db() else { return };
    pg.execute("CREATE TABLE p (id BIGINT PRIMARY KEY, flag BOOLEAN, n NUMERIC)");
    let out = batchproc(dir)
        .args([
            "query",
            "--from",
            &pg.url,
            "--sql",
            "SELECT id, flag FROM p",
        ])
        .args(["--key", "id", "--cursor", "flag", "-o", "refused.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("\"flag\" has type BOOL"),
        "{}",
        stderr_of(&out)
    );
}
