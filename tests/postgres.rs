//! The Postgres sink against the real local server: round trips, types,
//! SIGKILL + resume, a lost connection, the advisory lock, redaction.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::pg::{fresh_db, PgDb};
use common::*;
use sqlx::Row;

fn sha_rows(db: &PgDb, table: &str) -> BTreeMap<String, String> {
    db.query(&format!("SELECT path, sha256 FROM {table}"))
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn files_into_postgres_match_the_oracles_with_typed_columns() {
    let Some(db) = fresh_db() else { return };
    let out = batchproc(&fixtures())
        .args([
            "files",
            "sample",
            "-p",
            "sha256,lines",
            "-q",
            "-t",
            "file_hashes",
            "--sink",
        ])
        .arg(&db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let sums = oracle("sample.sha256");
    let lines = oracle("sample.wc");
    let rows = db.query("SELECT path, size, extract(epoch FROM mtime)::float8 AS mtime, sha256, lines, error FROM file_hashes");
    assert_eq!(rows.len(), sums.len());
    for row in rows {
        let path: String = row.get("path");
        let rel = path.strip_prefix("sample/").unwrap();
        assert_eq!(row.get::<String, _>("sha256"), sums[rel], "{path}");
        assert_eq!(row.get::<i64, _>("lines").to_string(), lines[rel], "{path}");
        assert_eq!(row.get::<Option<String>, _>("error"), None);
        let meta = std::fs::metadata(fixtures().join(&path)).unwrap();
        assert_eq!(row.get::<i64, _>("size") as u64, meta.len());
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((row.get::<f64, _>("mtime") - mtime).abs() < 1e-5, "{path}");
    }
    let types: Vec<(String, String)> = db
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = 'file_hashes' ORDER BY ordinal_position",
        )
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("path", "text"),
        ("size", "bigint"),
        ("mtime", "timestamp with time zone"),
        ("sha256", "text"),
        ("lines", "bigint"),
        ("error", "text"),
    ];
    assert_eq!(types, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    // A rerun with only `lines` clears sha256 just where a file changed.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 2);
    let run = |p: &str| {
        batchproc(tmp.path())
            .args(["files", "d", "-p", p, "-q", "-t", "two", "--sink", &db.url])
            .assert()
            .success();
    };
    run("sha256");
    std::fs::write(
        d.join("f00001.csv"),
        "changed
",
    )
    .unwrap();
    run("lines");
    let stale: Vec<(String, Option<String>)> = db
        .query("SELECT path, sha256 FROM two ORDER BY path")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stale[0],
        (
            "d/f00000.csv".into(),
            Some(sha256sum(&d.join("f00000.csv")))
        )
    );
    assert_eq!(stale[1], ("d/f00001.csv".into(), None));
    // A rerun upserts: still one row per file.
    batchproc(&fixtures())
        .args([
            "files",
            "sample",
            "-p",
            "sha256,lines",
            "-q",
            "-t",
            "file_hashes",
            "--sink",
        ])
        .arg(&db.url)
        .assert()
        .success();
    assert_eq!(sha_rows(&db, "file_hashes").len(), sums.len());
}

#[test]
fn postgres_sink_survives_sigkill_at_many_points() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let files = 1500;
    let oracle = hashed_tree(tmp.path(), files);
    // Logs any row written a second time (see tests/resume.rs).
    db.execute(
        "CREATE TABLE files (path TEXT PRIMARY KEY, size BIGINT, mtime TIMESTAMPTZ, sha256 TEXT, error TEXT); \
         CREATE TABLE rewritten (path TEXT); \
         CREATE FUNCTION log_rewrite() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN INSERT INTO rewritten VALUES (NEW.path); RETURN NEW; END $$; \
         CREATE TRIGGER files_rewritten AFTER UPDATE ON files FOR EACH ROW EXECUTE FUNCTION log_rewrite();",
    );
    let spawn = |resume: bool| {
        let mut cmd = batchproc_std(tmp.path());
        cmd.args([
            "files",
            "d",
            "-p",
            "sha256",
            "-w",
            "2",
            "--batch-size",
            "29",
            "-q",
            "--sink",
            &db.url,
        ]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.env("BATCHPROC_TEST_COMMIT_DELAY_MS", "40")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (kills, finished) = kill_repeatedly(
        spawn,
        &[0u64, 30, 60, 90, 120, 150, 200, 250, 300, 350],
        || db.last_run_succeeded(),
    );
    if !finished {
        assert!(spawn(true).wait().unwrap().success());
    }
    assert!(kills >= 8, "only {kills} kills landed mid-run");
    assert_eq!(sha_rows(&db, "files"), oracle);
    let runs = db.query("SELECT status, ok FROM batchproc_runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get::<String, _>(0), "succeeded");
    assert_eq!(runs[0].get::<i64, _>(1) as usize, files);
    assert_eq!(
        db.query("SELECT count(*) FROM rewritten")[0].get::<i64, _>(0),
        0,
        "a record was committed twice"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM batchproc_checkpoints")[0].get::<i64, _>(0),
        0
    );
}

#[test]
fn a_lost_connection_is_retried_and_the_run_completes() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let oracle = hashed_tree(tmp.path(), 400);
    let child = batchproc_std(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "sha256",
            "-w",
            "2",
            "--batch-size",
            "20",
            "--sink",
            &db.url,
        ])
        .env("BATCHPROC_TEST_COMMIT_DELAY_MS", "100")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let committed = || {
        let exists: bool = db.query("SELECT to_regclass('batchproc_runs') IS NOT NULL")[0].get(0);
        exists
            && db.query("SELECT coalesce(max(ok), 0)::int8 FROM batchproc_runs")[0].get::<i64, _>(0)
                >= 40
    };
    while !committed() {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(db.terminate_sessions() >= 1);
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Postgres connection lost"), "{err}");
    assert_eq!(sha_rows(&db, "files"), oracle);
    assert_eq!(
        db.query("SELECT ok FROM batchproc_runs")[0].get::<i64, _>(0),
        400
    );
}

#[test]
fn a_second_run_of_the_same_pipeline_is_refused_while_the_first_works() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 10);
    std::fs::File::create(d.join("big.bin"))
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let mut first = batchproc_std(tmp.path())
        .args(["files", "d", "-p", "sha256", "--sink", &db.url])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let started = || {
        let exists: bool = db.query("SELECT to_regclass('batchproc_runs') IS NOT NULL")[0].get(0);
        exists && db.query("SELECT count(*) FROM batchproc_runs")[0].get::<i64, _>(0) > 0
    };
    while !started() {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "--sink", &db.url])
        .output()
        .unwrap();
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("of this pipeline is working on this database"),
        "{}",
        stderr_of(&out)
    );
    // Another pipeline (other processors) into the same database is fine.
    std::fs::remove_file(d.join("big.bin")).unwrap();
    batchproc(tmp.path())
        .args([
            "files", "d", "-p", "lines", "-t", "other", "-q", "--sink", &db.url,
        ])
        .assert()
        .success();
}

#[test]
fn passwords_never_appear_and_a_refused_connection_is_exit_2() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3);
    let secret = "s3cr3t-Pa55";
    let url = db.url_with_password(secret);
    let out = batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "--sink", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        !err.contains(secret) && err.contains("postgres:***@"),
        "{err}"
    );
    let command: String = db.query("SELECT command FROM batchproc_runs")[0].get(0);
    assert!(
        !command.contains(secret) && command.contains("postgres:***@"),
        "{command}"
    );
    let runs = batchproc(tmp.path())
        .args(["runs", "--sink", &url])
        .output()
        .unwrap();
    assert!(runs.status.success());
    assert!(!String::from_utf8_lossy(&runs.stdout).contains(secret));
    // Nothing listens on port 1.
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "--sink",
            &format!("postgres://bob:{secret}@127.0.0.1:1/x"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot connect to postgres://bob:***@127.0.0.1:1/x"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
}

#[test]
fn rows_postgres_cannot_hold_fail_their_item_only() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 5);
    std::fs::write(d.join(OsStr::from_bytes(b"bad\xffname")), "x").unwrap();
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "sha256",
            "--on-error",
            "skip",
            "--sink",
            &db.url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("path is not valid UTF-8"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(sha_rows(&db, "files").len(), 5);
    // An incompatible existing table is refused before any work.
    db.execute("CREATE TABLE wrong (path TEXT PRIMARY KEY, size TEXT)");
    let out = batchproc(tmp.path())
        .args(["files", "d", "-t", "wrong", "--sink", &db.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("column \"size\" has type \"text\""),
        "{}",
        stderr_of(&out)
    );
}

/// A value Postgres cannot hold (a NUL in text) fails its item as any
/// failure does: under skip the row is written with the error and NULL in
/// that column, as SQLite writes a failed row; SQLite itself holds the value.
/// Under fail-fast the run stops naming the item.
#[test]
fn a_value_postgres_cannot_hold_gets_a_row_with_its_error() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    execute(&src, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    execute(
        &src,
        "INSERT INTO t VALUES (1, 'one'), (2, 'a' || char(0) || 'b'), (3, 'three')",
    );
    let run = |sink: &str, on_error: &str| {
        batchproc(tmp.path())
            .args(QUERY_T)
            .args(["-t", "t", "--on-error", on_error, "--sink", sink])
            .output()
            .unwrap()
    };
    let out = run(&db.url, "skip");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let warning = "batchproc: warning: id=2: v contains a NUL character";
    assert!(stderr_of(&out).contains(warning), "{}", stderr_of(&out));
    let rows: Vec<(i64, Option<String>, Option<String>)> = db
        .query("SELECT id, v, error FROM t ORDER BY id")
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let nul = "v contains a NUL character, which Postgres text cannot hold";
    assert_eq!(
        rows,
        [
            (1, Some("one".into()), None),
            (2, None, Some(nul.into())),
            (3, Some("three".into()), None),
        ]
    );
    // SQLite holds the value.
    let out = run("sqlite:out.db", "skip");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let v: Vec<u8> = query(
        &tmp.path().join("out.db"),
        "SELECT CAST(v AS BLOB) FROM t WHERE id = 2",
    )[0]
    .get(0);
    assert_eq!(v, b"a\0b");
    // Fail-fast names the item and its cause.
    db.execute("DROP TABLE t");
    let out = run(&db.url, "abort");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains(&format!("batchproc: error: id=2: {nul}")),
        "{}",
        stderr_of(&out)
    );
}

/// Into an empty table batches go straight in with COPY; when a key turns
/// up there meanwhile (another writer: here a trigger adds row 6 as row 3
/// arrives), the batch that meets it switches to staging + upsert, and the
/// source's values win. A re-run into a table with rows takes the upsert
/// path from the start: no COPY into the table is ever tried, so no unique
/// violation (an ERROR in the server's log) on a routine re-run. A
/// statement trigger counts COPYs into the table on a sequence, which a
/// rollback does not undo.
#[test]
fn direct_copy_only_into_an_empty_table_and_a_met_key_switches_to_upsert() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    execute(&src, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    for i in 1..=12 {
        execute(&src, &format!("INSERT INTO t VALUES ({i}, 'old {i}')"));
    }
    db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT, error TEXT)");
    db.execute("CREATE SEQUENCE copies");
    db.execute(
        "CREATE FUNCTION count_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF current_query() ILIKE 'COPY%' THEN PERFORM nextval('copies'); END IF; \
         RETURN NULL; END $$",
    );
    db.execute(
        "CREATE TRIGGER c BEFORE INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION count_copy()",
    );
    db.execute(
        "CREATE FUNCTION add_six() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO t VALUES (6, 'by another writer', NULL) ON CONFLICT DO NOTHING; \
         RETURN NULL; END $$",
    );
    db.execute("CREATE TRIGGER six AFTER INSERT ON t FOR EACH ROW WHEN (NEW.id = 3) EXECUTE FUNCTION add_six()");
    let copies = || db.query("SELECT last_value, is_called FROM copies")[0].get::<i64, _>(0);
    let run = || {
        batchproc(tmp.path())
            .args(QUERY_T)
            .args(["-q", "--batch-size", "2", "-t", "t", "--sink", &db.url])
            .assert()
            .success();
    };
    let rows = || -> Vec<(i64, String)> {
        db.query("SELECT id, v FROM t ORDER BY id")
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    run();
    let expected = |word: &str| -> Vec<(i64, String)> {
        (1..=12).map(|i| (i, format!("{word} {i}"))).collect()
    };
    assert_eq!(rows(), expected("old"));
    let direct = copies();
    assert!(
        direct >= 3,
        "batches 1-2, 3-4 and the one meeting 6: {direct}"
    );
    db.execute("DROP TRIGGER six ON t");
    execute(&src, "UPDATE t SET v = 'new ' || id");
    run();
    assert_eq!(rows(), expected("new"));
    assert_eq!(copies(), direct, "a COPY into a table with rows was tried");
}

/// A write the database refuses mid-run (here a trigger raising on one key)
/// fails the run with the database's message; no batch commits after it,
/// and a resume once the cause is gone completes every row exactly once.
#[test]
fn a_refused_write_fails_the_run_and_a_resume_completes_it() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.db");
    execute(&src, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    execute(
        &src,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO t SELECT i, 'v' || i FROM n",
    );
    let run = |sql: &str, resume: bool| {
        let mut cmd = batchproc(tmp.path());
        cmd.args([
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            sql,
            "--key",
            "id",
        ])
        .args(["-q", "--batch-size", "100", "-t", "t", "--sink", &db.url]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.output().unwrap()
    };
    // Creates the table, empty, so the trigger can go on it first.
    let out = run("SELECT * FROM t WHERE id < 0", false);
    assert!(out.status.success(), "{}", stderr_of(&out));
    db.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.id = 1500 THEN RAISE EXCEPTION 'row 1500 refused'; END IF; RETURN NEW; END $$",
    );
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION refuse()");
    let out = run("SELECT * FROM t", false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("row 1500 refused"),
        "{}",
        stderr_of(&out)
    );
    let committed: i64 = db.query("SELECT count(*) FROM t")[0].get(0);
    assert!(committed < 1500, "{committed} rows committed");
    assert!(db.query("SELECT 1 FROM t WHERE id >= 1600").is_empty());

    db.execute("DROP TRIGGER refuse ON t");
    let out = run("SELECT * FROM t", true);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows: Vec<(i64, String)> = db
        .query("SELECT id, v FROM t ORDER BY id")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(i64, String)> = (1..=3000).map(|i| (i, format!("v{i}"))).collect();
    assert_eq!(rows, expected);
}

/// Batches go with COPY's binary format where the columns have the types
/// batchproc creates, and as CSV where one has another binary form
/// (`numeric`): either way every value arrives exactly, edge cases
/// included (compared by Postgres itself, row for row).
#[test]
fn every_value_arrives_exactly_in_binary_and_in_csv() {
    let Some(db) = fresh_db() else { return };
    db.execute(
        "CREATE TABLE src (id BIGINT PRIMARY KEY, f DOUBLE PRECISION, t TEXT, b BYTEA, \
         at TIMESTAMPTZ, ok BOOLEAN); \
         INSERT INTO src VALUES \
         (1, 0.1, 'plain', '\\x00ff', '2026-12-03 07:00:00.123456+00', true), \
         (2, 'NaN', 'quote \" comma , newline \n tab \t é 漢', '', '1901-01-01 00:00:00+00', false), \
         (3, '-Infinity', '', '\\x5c', '2999-12-31 23:59:59.999999+00', NULL), \
         (4, -0.0, NULL, NULL, NULL, NULL), \
         (5, 1e-300, '\\N', '\\x0a0d', '1999-12-31 23:59:59.5+00', true), \
         (-9223372036854775808, 1.7976931348623157e308, 'min', '\\x', 'epoch', false); \
         CREATE TABLE dst (id BIGINT PRIMARY KEY, f DOUBLE PRECISION, t TEXT, b BYTEA, \
         at TIMESTAMPTZ, ok BOOLEAN, error TEXT); \
         CREATE TABLE dst_numeric (id NUMERIC PRIMARY KEY, f DOUBLE PRECISION, t VARCHAR, \
         b BYTEA, at TIMESTAMPTZ, ok BOOLEAN, error TEXT); \
         CREATE TABLE copies (tbl TEXT, query TEXT); \
         CREATE FUNCTION log_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO copies VALUES (TG_TABLE_NAME, current_query()); RETURN NULL; END $$; \
         CREATE TRIGGER c BEFORE INSERT ON dst FOR EACH STATEMENT EXECUTE FUNCTION log_copy(); \
         CREATE TRIGGER c BEFORE INSERT ON dst_numeric FOR EACH STATEMENT EXECUTE FUNCTION log_copy();",
    );
    for table in ["dst", "dst_numeric"] {
        batchproc(&fixtures())
            .args(["query", "--from", &db.url, "--sql", "SELECT * FROM src"])
            .args(["--key", "id", "-q", "-t", table, "--sink", &db.url])
            .assert()
            .success();
        let differ: i64 = db.query(&format!(
            "SELECT count(*) FROM (\
             (SELECT id::numeric, f, t::text, b, at, ok FROM src \
              EXCEPT SELECT id::numeric, f, t::text, b, at, ok FROM {table}) UNION ALL \
             (SELECT id::numeric, f, t::text, b, at, ok FROM {table} \
              EXCEPT SELECT id::numeric, f, t::text, b, at, ok FROM src)) AS d"
        ))[0]
            .get(0);
        assert_eq!(differ, 0, "{table}");
        let n: i64 = db.query(&format!("SELECT count(*) FROM {table}"))[0].get(0);
        assert_eq!(n, 6, "{table}");
    }
    let formats: Vec<(String, String)> = db
        .query("SELECT tbl, query FROM copies ORDER BY tbl")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(formats.len(), 2, "{formats:?}");
    assert!(formats[0].1.ends_with("(FORMAT binary)"), "{formats:?}");
    assert!(formats[1].1.ends_with("(FORMAT csv)"), "{formats:?}");
}
