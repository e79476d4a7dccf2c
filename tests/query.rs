//! The `query` source: round trips between SQLite, Postgres and CSV with
//! value-for-value equality, paging, resume after SIGKILL, and bad input.
//! Expected digests come from Python's hashlib, not from batchproc.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use common::pg::fresh_db;
use common::*;
use sqlx::Row;

/// A SQLite source of `n` docs with NULLs, unicode, bytes and one large
/// text, made (and hashed) by Python.
fn source_db(dir: &Path, n: usize) -> BTreeMap<i64, Option<String>> {
    let script = r#"
import sqlite3, sys, hashlib
n = int(sys.argv[2])
c = sqlite3.connect(sys.argv[1])
c.execute('CREATE TABLE docs (id INTEGER PRIMARY KEY, name TEXT, body TEXT, data BLOB, score REAL)')
def body(i):
    if i % 10 == 0: return None
    if i == 7: return 'x' * 3_000_000
    return f'body {i} ünïcödé ✓\nline "two", with comma'
rows = [(i, None if i % 13 == 0 else f'name-{i}', body(i), bytes([i % 256, 0, 255]), i / 7) for i in range(1, n + 1)]
c.executemany('INSERT INTO docs VALUES (?, ?, ?, ?, ?)', rows)
c.commit()
for i, _, b, _, _ in rows:
    print(i, hashlib.sha256(b.encode()).hexdigest() if b is not None else '-')
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("src.db"))
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, sum) = l.split_once(' ').unwrap();
            (id.parse().unwrap(), (sum != "-").then(|| sum.to_owned()))
        })
        .collect()
}

type Doc = (
    i64,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<f64>,
    Option<String>,
);

fn docs_from_sqlite(db: &Path, sql: &str) -> Vec<Doc> {
    query(db, sql)
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

const SQL: &str = "SELECT id, name, body, data, score FROM docs";

#[test]
fn sqlite_to_postgres_to_sqlite_keeps_every_value() {
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sums = source_db(tmp.path(), 1000);
    batchproc(tmp.path())
        .args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            SQL,
            "--key",
            "id",
            "-p",
            "sha256:body",
        ])
        .args([
            "--page-size",
            "64",
            "-q",
            "-t",
            "docs_hashed",
            "--sink",
            &pg.url,
        ])
        .assert()
        .success();
    let src = docs_from_sqlite(
        &tmp.path().join("src.db"),
        "SELECT id, name, body, data, score, NULL FROM docs ORDER BY id",
    );
    let pg_rows: Vec<Doc> = pg
        .query("SELECT id, name, body, data, score, body_sha256 FROM docs_hashed ORDER BY id")
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(pg_rows.len(), 1000);
    for (s, p) in src.iter().zip(&pg_rows) {
        assert_eq!(
            (&s.0, &s.1, &s.2, &s.3, &s.4),
            (&p.0, &p.1, &p.2, &p.3, &p.4)
        );
        assert_eq!(p.5, sums[&p.0], "id {}", p.0);
    }
    // And back: Postgres -> SQLite, every value equal again.
    batchproc(tmp.path())
        .args([
            "query",
            "--from",
            &pg.url,
            "--sql",
            "SELECT id, name, body, data, score, body_sha256 FROM docs_hashed",
        ])
        .args(["--key", "id", "-q", "-o", "back.db", "-t", "docs"])
        .assert()
        .success();
    let back = docs_from_sqlite(
        &tmp.path().join("back.db"),
        "SELECT id, name, body, data, score, body_sha256 FROM docs ORDER BY id",
    );
    assert_eq!(back, pg_rows);
}

#[test]
fn postgres_to_csv_with_types_nulls_and_unicode() {
    let Some(pg) = fresh_db() else { return };
    pg.execute(
        "CREATE TABLE events (id BIGINT PRIMARY KEY, kind TEXT, at TIMESTAMPTZ, ok BOOLEAN, payload JSONB, n INT4); \
         INSERT INTO events VALUES (1, 'créé ✓', '2026-01-02 03:04:05.123456+00', true, '{\"a\": [1, 2]}', 7), \
                                   (2, NULL, NULL, NULL, NULL, NULL), (3, '', '1999-12-31 23:59:59+00', false, '\"s\"', -1);",
    );
    let tmp = tempfile::tempdir().unwrap();
    batchproc(tmp.path())
        .args([
            "query",
            "--from",
            &pg.url,
            "--sql",
            "SELECT * FROM events",
            "--key",
            "id",
            "-q",
            "-o",
            "events.csv",
        ])
        .assert()
        .success();
    // A mistake in the user's query is reported where the user made it.
    assert_fails(
        tmp.path(),
        &[
            "query",
            "--from",
            &pg.url,
            "--sql",
            "SELEKT id FROM events",
            "--key",
            "id",
        ],
        2,
        "--sql: syntax error at or near \"SELEKT\" (at character 1)",
    );
    let mut reader = csv::Reader::from_path(tmp.path().join("events.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id", "kind", "at", "ok", "payload", "n", "error"]
    );
    let mut rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    // Records are written in completion order, which two workers may swap.
    rows.sort_by_key(|row| row[0].parse::<i64>().unwrap());
    assert_eq!(
        rows[0],
        [
            "1",
            "créé ✓",
            "2026-01-02T03:04:05.123456000Z",
            "true",
            "{\"a\":[1,2]}",
            "7",
            ""
        ]
    );
    assert_eq!(rows[1], ["2", "", "", "", "", "", ""]);
    assert_eq!(
        rows[2],
        [
            "3",
            "",
            "1999-12-31T23:59:59.000000000Z",
            "false",
            "\"s\"",
            "-1",
            ""
        ]
    );
}

#[test]
fn a_hundred_thousand_rows_in_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)'); \
             c.executemany('INSERT INTO t VALUES (?, ?)', ((f'key-{i:06d}', i) for i in range(100000))); c.commit()",
        )
        .arg(tmp.path().join("big.db"))
        .status()
        .unwrap();
    assert!(status.success());
    batchproc(tmp.path())
        .args([
            "query",
            "--from",
            "sqlite:big.db",
            "--sql",
            "SELECT k, v FROM t",
            "--key",
            "k",
        ])
        .args(["--page-size", "1000", "-q", "-o", "out.db"])
        .assert()
        .success();
    let db = tmp.path().join("out.db");
    assert_eq!(count(&db, "rows"), 100_000);
    let sum: i64 = query(&db, "SELECT sum(v) FROM rows")[0].get(0);
    assert_eq!(sum, (0..100_000i64).sum::<i64>());
    let run = &query(&db, "SELECT ok, status FROM batchproc_runs")[0];
    assert_eq!(
        (run.get::<i64, _>(0), run.get::<String, _>(1)),
        (100_000, "succeeded".into())
    );
}

#[test]
fn query_source_survives_sigkill_and_resumes_after_the_checkpointed_key() {
    let tmp = tempfile::tempdir().unwrap();
    let sums = source_db(tmp.path(), 3000);
    let db = tmp.path().join("out.db");
    execute(
        &db,
        "CREATE TABLE rows (id INTEGER PRIMARY KEY NOT NULL, name TEXT, body TEXT, data BLOB, score REAL, body_sha256 TEXT, error TEXT); \
         CREATE TABLE rewritten (id INTEGER); \
         CREATE TRIGGER rows_rewritten AFTER UPDATE ON rows BEGIN INSERT INTO rewritten VALUES (new.id); END;",
    );
    let spawn = |resume: bool| {
        let mut cmd = batchproc_std(tmp.path());
        cmd.args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            SQL,
            "--key",
            "id",
            "-p",
            "sha256:body",
        ])
        .args([
            "--page-size",
            "50",
            "--batch-size",
            "23",
            "-w",
            "2",
            "-q",
            "-o",
            "out.db",
        ]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.env("BATCHPROC_TEST_COMMIT_DELAY_MS", "30")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (kills, finished) =
        kill_repeatedly(spawn, &[0u64, 40, 80, 120, 160, 200, 260, 320], || {
            last_run_succeeded(&db)
        });
    if !finished {
        assert!(spawn(true).wait().unwrap().success());
    }
    assert!(kills >= 6, "only {kills} kills landed mid-run");
    let rows: BTreeMap<i64, Option<String>> = query(&db, "SELECT id, body_sha256 FROM rows")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, sums);
    assert_eq!(count(&db, "rewritten"), 0, "a record was committed twice");
    let run = &query(&db, "SELECT ok, status FROM batchproc_runs")[0];
    assert_eq!(
        (run.get::<i64, _>(0), run.get::<String, _>(1)),
        (3000, "succeeded".into())
    );
}

/// `n` rows `(id)` with ids 1..=n in `dir/src.db`, made by Python.
fn numbers_db(dir: &Path, n: usize) {
    let script = "import sqlite3, sys\n\
        c = sqlite3.connect(sys.argv[1])\n\
        c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY)')\n\
        c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(1, int(sys.argv[2]) + 1)])\n\
        c.commit()\n";
    let made = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("src.db"))
        .arg(n.to_string())
        .status()
        .unwrap();
    assert!(made.success());
}

/// Every row is an item for the pool: slow rows run on every worker at once.
#[test]
fn rows_are_shared_out_among_the_workers() {
    let tmp = tempfile::tempdir().unwrap();
    numbers_db(tmp.path(), 8);
    let out = batchproc(tmp.path())
        .args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT id FROM t",
        ])
        .args([
            "--key",
            "id",
            "-p",
            "exec:sleep 0.4",
            "-w",
            "4",
            "-o",
            "out.db",
        ])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("8 ok, 0 failed"), "{err}");
    assert!(err.contains("workers busy: peak 4,"), "{err}");
}

/// A query's records are committed `--batch-size` at a time, as any source's.
#[test]
fn query_rows_are_committed_in_batches_of_the_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    numbers_db(tmp.path(), 100);
    let query = |sql: &str| {
        batchproc(tmp.path())
            .args([
                "query",
                "--from",
                "sqlite:src.db",
                "--sql",
                sql,
                "--key",
                "id",
            ])
            .args(["-w", "1", "--batch-size", "10", "-q", "-o", "out.db"])
            .assert()
            .success();
    };
    // A first run of no rows makes the bookkeeping tables; a trigger then
    // logs the committed count at every checkpoint.
    query("SELECT id FROM t WHERE id < 0");
    let db = tmp.path().join("out.db");
    execute(
        &db,
        "CREATE TABLE commits (ok INTEGER); \
         CREATE TRIGGER log_commit AFTER UPDATE OF ok ON batchproc_runs \
         BEGIN INSERT INTO commits VALUES (new.ok); END;",
    );
    query("SELECT id FROM t");
    let oks: Vec<i64> = query_rows(&db, "SELECT ok FROM commits WHERE ok > 0 ORDER BY rowid");
    assert_eq!(oks.last(), Some(&100), "{oks:?}");
    let mut last = 0;
    for ok in &oks {
        assert!(*ok - last <= 10, "a batch of {} rows: {oks:?}", ok - last);
        last = *ok;
    }
    assert!(oks.len() >= 10, "{oks:?}");
    assert_eq!(count(&db, "rows"), 100);
}

fn query_rows(db: &Path, sql: &str) -> Vec<i64> {
    query(db, sql).iter().map(|r| r.get(0)).collect()
}

#[test]
fn text_keys_in_postgres_order_resume_correctly() {
    let Some(pg) = fresh_db() else { return };
    // Mixed case and accents in an ICU collation, which orders them unlike
    // bytes (a, B, c, e, É, Z): the ledger must follow the database's order.
    pg.execute(
        "CREATE TABLE words (w TEXT COLLATE \"und-x-icu\" PRIMARY KEY, n INT8); \
         INSERT INTO words SELECT (ARRAY['a','B','c','É','e','Z'])[1 + g % 6] || g, g FROM generate_series(1, 2000) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let spawn = |resume: bool| {
        let mut cmd = batchproc_std(tmp.path());
        cmd.args([
            "query",
            "--from",
            &pg.url,
            "--sql",
            "SELECT w, n FROM words",
            "--key",
            "w",
            "-p",
            "sha256:w",
        ])
        .args([
            "--page-size",
            "70",
            "--batch-size",
            "31",
            "-q",
            "-o",
            "out.db",
        ]);
        if resume {
            cmd.arg("--resume");
        }
        // Every attempt's stderr, for the messages below.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(tmp.path().join("attempts.log"))
            .unwrap();
        cmd.env("BATCHPROC_TEST_COMMIT_DELAY_MS", "30")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let log = || std::fs::read_to_string(tmp.path().join("attempts.log")).unwrap_or_default();
    let db = tmp.path().join("out.db");
    let (_, finished) = kill_repeatedly(spawn, &[50u64, 150, 250], || last_run_succeeded(&db));
    if !finished {
        assert!(spawn(true).wait().unwrap().success(), "{}", log());
    }
    assert!(last_run_succeeded(&db), "{}", log());
    assert_eq!(count(&db, "rows"), 2000, "{}", log());
    let sum: i64 = query(&db, "SELECT sum(n) FROM rows")[0].get(0);
    assert_eq!(sum, (1..=2000i64).sum::<i64>());
    let ok: i64 = query(&db, "SELECT sum(ok) FROM batchproc_runs")[0].get(0);
    assert_eq!(ok, 2000, "rows committed twice or lost: {}", log());
}

fn assert_fails(tmp: &Path, args: &[&str], code: i32, needle: &str) {
    let out = batchproc(tmp).args(args).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_queries_get_a_clear_answer() {
    let tmp = tempfile::tempdir().unwrap();
    source_db(tmp.path(), 20);
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE dup (k INTEGER, v TEXT); INSERT INTO dup VALUES (1,'a'),(2,'b'),(2,'c'),(3,'d'); \
         CREATE TABLE nulls (k TEXT, v TEXT); INSERT INTO nulls VALUES ('a','x'),(NULL,'y');",
    );
    let q = |sql: &'static str, key: &'static str| {
        vec![
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            sql,
            "--key",
            key,
            "-o",
            "out.db",
        ]
    };
    assert_fails(
        tmp.path(),
        &q("SELEC id FROM docs", "id"),
        2,
        // Where the user's own query is wrong, not batchproc's wrapper.
        "--sql: near \"SELEC\": syntax error",
    );
    assert_fails(
        tmp.path(),
        &q("SELECT id, name FROM docs", "nope"),
        2,
        "--key \"nope\" is not a column of the query",
    );
    assert_fails(
        tmp.path(),
        &q("SELECT k, v FROM nulls", "k"),
        2,
        "has NULL values",
    );
    assert_fails(
        tmp.path(),
        &q("SELECT data, id FROM docs", "data"),
        2,
        "must be an integer or text column",
    );
    assert_fails(
        tmp.path(),
        &q("SELECT k, v FROM dup", "k"),
        1,
        "--key \"k\" is not unique: 2 appears more than once",
    );
    // A trailing `;` (as typed for sqlite3) and a trailing comment are fine.
    let mut args = q("SELECT id, name FROM docs;  ", "id");
    *args.last_mut().unwrap() = "ok.db";
    batchproc(tmp.path()).args(&args).assert().success();
    let mut args = q("SELECT id, name FROM docs -- every doc", "id");
    *args.last_mut().unwrap() = "ok.db";
    batchproc(tmp.path()).args(&args).assert().success();
    // A run stopped by its source still ends with its summary line.
    assert_fails(
        tmp.path(),
        &q("SELECT k, v FROM dup", "k"),
        1,
        " failed in ",
    );
    let mut args = q("SELECT id, name FROM docs", "id");
    args.extend(["-p", "sha256:body"]);
    assert_fails(tmp.path(), &args, 2, "there is no column \"body\"");
    let mut args = q("SELECT id, name FROM docs", "id");
    args.extend(["-p", "sha256"]);
    assert_fails(tmp.path(), &args, 2, "query processors take a column");
    assert_fails(
        tmp.path(),
        &[
            "query",
            "--from",
            "sqlite:missing.db",
            "--sql",
            "SELECT 1 AS k",
            "--key",
            "k",
        ],
        2,
        "missing.db: no such database",
    );
    assert_fails(
        tmp.path(),
        &[
            "query",
            "--from",
            "postgres://u:hunter2@127.0.0.1:1/x",
            "--sql",
            "SELECT 1 AS k",
            "--key",
            "k",
        ],
        2,
        "cannot connect to postgres://u:***@127.0.0.1:1/x",
    );
    if let Some(pg) = fresh_db() {
        pg.execute(
            "CREATE TABLE m (k INT8 PRIMARY KEY, amount NUMERIC); INSERT INTO m VALUES (1, 2.5);",
        );
        assert_fails(
            tmp.path(),
            &[
                "query",
                "--from",
                &pg.url,
                "--sql",
                "SELECT * FROM m",
                "--key",
                "k",
            ],
            2,
            "column \"amount\" has type NUMERIC",
        );
        batchproc(tmp.path())
            .args([
                "query",
                "--from",
                &pg.url,
                "--sql",
                "SELECT k, amount::text AS amount FROM m",
                "--key",
                "k",
                "-q",
                "-o",
                "-",
            ])
            .assert()
            .success()
            .stdout("k,amount,error\n1,2.5,\n");
    }
}

/// What a run holds of rows is bounded in bytes, not only in rows: 500
/// rows of 1 MiB go through in well under 500 MiB (peak RSS from wait4;
/// about 230 MiB: three batches of 32 MiB, the sink's copy of one, a page),
/// though the read-ahead alone could hold 1,024 rows and a batch 100,000.
/// The queues between the stages, bounded in chunks, are kept short.
#[test]
fn big_rows_go_through_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    execute(
        &tmp.path().join("src.db"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) \
         INSERT INTO t SELECT i, hex(zeroblob(524288)) FROM n;",
    );
    let peak = peak_rss(
        batchproc_std(tmp.path())
            .args(QUERY_T)
            .args(["-q", "--page-size", "10", "--batch-size", "100000"])
            .args(["-w", "1", "--queue", "1", "-o", "out.db"]),
    );
    assert!(peak < 350 << 20, "peak RSS {} MiB", peak >> 20);
    let rows = query(
        &tmp.path().join("out.db"),
        "SELECT count(*), sum(length(v)) FROM rows",
    );
    assert_eq!(rows[0].get::<i64, _>(0), 500);
    assert_eq!(rows[0].get::<i64, _>(1), 500 << 20);
}
