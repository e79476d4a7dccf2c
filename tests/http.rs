//! The `http:` processor through the real binary, against the small HTTP
//! server of `common::http`. The server records what it received; the
//! expectations are written out by hand.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::http::Server;
use common::*;
use sqlx::Row;

/// A run in `dir` with no proxy from the environment in the way.
fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    batchproc(dir)
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

fn tree(root: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir(root.join("d")).unwrap();
    for (name, content) in files {
        std::fs::write(root.join("d").join(name), content).unwrap();
    }
}

#[test]
fn get_records_status_and_body_with_encoded_placeholders() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("a b&c=d.txt", "1"), ("plain", "22")]);
    let spec = format!("http:GET {}", server.url("/ok/{name}?in={dir}&p={}"));
    let out = run(tmp.path(), &["files", "d", "-q", "-p", &spec]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT * FROM files ORDER BY path",
    );
    let got: Vec<(String, i64, String)> = rows
        .iter()
        .map(|r| (r.get("path"), r.get("status"), r.get("body")))
        .collect();
    assert_eq!(
        got,
        [
            (
                "d/a b&c=d.txt".to_owned(),
                200,
                "hello /ok/a%20b%26c%3Dd.txt?in=d&p=d%2Fa%20b%26c%3Dd.txt\n".to_owned()
            ),
            // The body is kept as sent, trailing newline included.
            (
                "d/plain".to_owned(),
                200,
                "hello /ok/plain?in=d&p=d%2Fplain\n".to_owned()
            ),
        ]
    );
    let mut seen: Vec<String> = server.seen().iter().map(|s| s.method.clone()).collect();
    seen.dedup();
    assert_eq!(seen, ["GET"]);
}

#[test]
fn a_non_2xx_status_fails_the_item_and_keeps_the_response() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET {}", server.url("/missing/{name}"));

    let out = run(tmp.path(), &["files", "d", "-q", "-p", &spec]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("d/x: HTTP 404 Not Found"),
        "{}",
        stderr_of(&out)
    );

    let out = run(
        tmp.path(),
        &["files", "d", "-q", "--on-error", "skip", "-p", &spec],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let row = &query(&tmp.path().join("batchproc.db"), "SELECT * FROM files")[0];
    assert_eq!(row.get::<i64, _>("status"), 404);
    assert_eq!(row.get::<String, _>("body"), "no such thing");
    assert_eq!(row.get::<String, _>("error"), "HTTP 404 Not Found");

    let spec = format!("http:GET {}", server.url("/busy/{name}"));
    let out = run(tmp.path(), &["files", "d", "-q", "-p", &spec]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("d/x: HTTP 503 Service Unavailable"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn post_sends_the_file_as_json() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("one \"quoted\".txt", "12345"), ("two", "")]);
    let spec = format!("http:POST {}", server.url("/ok/post"));
    let out = run(tmp.path(), &["files", "d", "-q", "-p", &spec]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let mut bodies: Vec<serde_json::Value> = server
        .seen()
        .iter()
        .map(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.content_type.as_deref(), Some("application/json"));
            serde_json::from_str(&s.body).unwrap()
        })
        .collect();
    bodies.sort_by_key(|b| b["path"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies,
        [
            serde_json::json!({"path": "d/one \"quoted\".txt", "size": 5}),
            serde_json::json!({"path": "d/two", "size": 0}),
        ]
    );
}

#[test]
fn post_sends_query_rows_as_json() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, score REAL)')\n\
             c.executemany('INSERT INTO t VALUES (?, ?, ?, ?)', [(1, 'a/b c', b'\\x00\\xff', 0.5), (2, None, None, None)])\n\
             c.commit()",
        )
        .arg(tmp.path().join("src.db"))
        .status()
        .unwrap();
    assert!(made.success());
    let spec = format!("http:POST {}", server.url("/ok/{}/{name}"));
    let out = run(
        tmp.path(),
        &[
            "query",
            "--from",
            "sqlite:src.db",
            "--sql",
            "SELECT * FROM t",
            "--key",
            "id",
            "-q",
            "-p",
            &spec,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let mut seen = server.seen();
    seen.sort_by(|a, b| a.url.cmp(&b.url));
    let got: Vec<(String, serde_json::Value)> = seen
        .iter()
        .map(|s| (s.url.clone(), serde_json::from_str(&s.body).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "/ok/1/a%2Fb%20c".to_owned(),
                // base64 of the bytes 00 ff.
                serde_json::json!({"id": 1, "name": "a/b c", "data": "AP8=", "score": 0.5})
            ),
            (
                "/ok/2/".to_owned(),
                serde_json::json!({"id": 2, "name": null, "data": null, "score": null})
            ),
        ]
    );
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT id, status FROM rows ORDER BY id",
    );
    let statuses: Vec<i64> = rows.iter().map(|r| r.get("status")).collect();
    assert_eq!(statuses, [200, 200]);
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET {}", server.url("/stall/{name}"));
    let started = Instant::now();
    let out = run(
        tmp.path(),
        &[
            "files",
            "d",
            "-q",
            "--timeout",
            "1s",
            "--on-error",
            "skip",
            "-p",
            &spec,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let row = &query(&tmp.path().join("batchproc.db"), "SELECT * FROM files")[0];
    assert_eq!(row.get::<Option<i64>, _>("status"), None);
    assert_eq!(row.get::<String, _>("error"), "timed out after 1s");
}

#[test]
fn a_refused_connection_fails_the_item() {
    // Bind a port, then free it: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET http://127.0.0.1:{port}/{{name}}");
    let out = run(tmp.path(), &["files", "d", "-q", "-p", &spec]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("d/x: GET http://127.0.0.1:{port}/x: ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn https_to_a_plain_server_fails_the_item_in_one_line() {
    // Answers whatever comes with plain HTTP, as a server without TLS would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            use std::io::Write;
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET https://127.0.0.1:{port}/ok/{{name}}");
    let out = run(
        tmp.path(),
        &["files", "d", "-q", "--timeout", "20s", "-p", &spec],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.starts_with(&format!(
            "batchproc: error: d/x: GET https://127.0.0.1:{port}/ok/x: "
        )),
        "{err}"
    );
    assert!(!err.contains("timed out"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bad_specs_are_configuration_errors() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    for (spec, says) in [
        ("http:PUT http://127.0.0.1:9/", "PUT"),
        ("http:GET ftp://127.0.0.1/", "http:// or https://"),
        ("http:GET", "METHOD URL"),
        ("http:GET http://127.0.0.1:9/{nope}", "{nope}"),
    ] {
        let out = run(tmp.path(), &["files", "d", "-q", "-p", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(says),
            "{spec}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn a_long_body_is_capped_at_a_character_boundary() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET {}", server.url("/big/{name}"));
    let out = run(tmp.path(), &["files", "d", "-q", "-p", &spec]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let row = &query(&tmp.path().join("batchproc.db"), "SELECT * FROM files")[0];
    let body: String = row.get("body");
    // 64 KiB is 32,768 two-byte characters exactly.
    let (kept, note) = body.split_once('\n').unwrap();
    assert_eq!(kept, "é".repeat(32_768));
    assert_eq!(note, "[batchproc: body truncated to its first 65536 bytes]");
}

/// Which failures a retry may help: with `--retries 1`, a timeout (of a
/// request or a command) is tried twice, a 404 or a failed command once.
#[test]
fn failures_say_whether_a_retry_may_help() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "1")]);
    let attempts = |spec: &str, extra: &[&str]| -> (i64, String) {
        let mut args = vec!["files", "d", "-q", "--retries", "1", "--on-error", "skip"];
        args.extend(["-p", spec, "-o", "out.db"]);
        args.extend(extra);
        let out = run(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{spec}: {}", stderr_of(&out));
        let row = &query(
            &tmp.path().join("out.db"),
            "SELECT attempts, error FROM files",
        )[0];
        std::fs::remove_file(tmp.path().join("out.db")).unwrap();
        (row.get(0), row.get(1))
    };
    let timeout = ["--timeout", "300ms"];
    let stall = format!("http:GET {}", server.url("/stall/{name}"));
    assert_eq!(
        attempts(&stall, &timeout),
        (2, "timed out after 300ms".into())
    );
    let missing = format!("http:GET {}", server.url("/missing/{name}"));
    assert_eq!(attempts(&missing, &[]), (1, "HTTP 404 Not Found".into()));
    assert_eq!(
        attempts("exec:sleep 5", &timeout),
        (2, "timed out after 300ms".into())
    );
    assert_eq!(attempts("exec:false", &[]), (1, "exit status 1".into()));
}

/// The one row of `files` in `dir`'s SQLite sink, by path.
fn row_of(dir: &Path, path: &str) -> sqlx::sqlite::SqliteRow {
    let mut rows = query(
        &dir.join("batchproc.db"),
        &format!("SELECT *, typeof(attempts) AS attempts_type FROM files WHERE path = '{path}'"),
    );
    assert_eq!(rows.len(), 1, "rows for {path}");
    rows.pop().unwrap()
}

/// The column names of `files` in `dir`'s SQLite sink.
fn columns_of(dir: &Path) -> Vec<String> {
    query(
        &dir.join("batchproc.db"),
        "SELECT name FROM pragma_table_info('files')",
    )
    .iter()
    .map(|r| r.get("name"))
    .collect()
}

/// `n` empty files `d/f00000.csv`… under `root`; returns their names.
fn numbered_files(root: &Path, n: usize) -> Vec<String> {
    many_csv_files(&root.join("d"), n)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_503_is_retried_and_the_row_has_the_last_try() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET {}", server.url("/flaky/{name}"));
    let out = run(
        tmp.path(),
        &["files", "d", "-q", "--retries", "2", "-p", &spec],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let row = row_of(tmp.path(), "d/x");
    assert_eq!(row.get::<i64, _>("status"), 200);
    assert_eq!(row.get::<String, _>("body"), "try 2");
    assert_eq!(row.get::<i64, _>("attempts"), 2);
    assert_eq!(row.get::<String, _>("attempts_type"), "integer");
    assert_eq!(row.get::<Option<String>, _>("error"), None);

    assert_eq!(
        server.counts(),
        BTreeMap::from([("/flaky/x".to_owned(), 2)])
    );
    // The first backoff is 0.5-1 s: not retried at once.
    let at = server.arrivals("/flaky/x");
    let gap = at[1] - at[0];
    assert!(gap >= Duration::from_millis(450), "retried after {gap:?}");
}

#[test]
fn retry_after_is_the_least_wait_before_a_retry() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET {}", server.url("/limited/{name}"));
    let out = run(
        tmp.path(),
        &["files", "d", "-q", "--retries", "1", "-p", &spec],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let row = row_of(tmp.path(), "d/x");
    assert_eq!(row.get::<i64, _>("status"), 200);
    assert_eq!(row.get::<i64, _>("attempts"), 2);
    assert_eq!(row.get::<Option<String>, _>("error"), None);

    // The server says `Retry-After: 2`; the backoff alone waits at most 1 s
    // before the first retry, so a client ignoring the header fails here.
    let at = server.arrivals("/limited/x");
    assert_eq!(at.len(), 2);
    let gap = at[1] - at[0];
    assert!(gap >= Duration::from_millis(1950), "retried after {gap:?}");
}

#[test]
fn retries_run_out_with_the_last_failure() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("x", "")]);
    let spec = format!("http:GET {}", server.url("/down/{name}"));
    let out = run(
        tmp.path(),
        &[
            "files",
            "d",
            "-q",
            "--retries",
            "2",
            "--on-error",
            "skip",
            "-p",
            &spec,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));

    let row = row_of(tmp.path(), "d/x");
    assert_eq!(row.get::<i64, _>("status"), 503);
    assert_eq!(row.get::<i64, _>("attempts"), 3);
    let error: String = row.get("error");
    assert!(error.contains("503"), "{error}");

    assert_eq!(server.counts(), BTreeMap::from([("/down/x".to_owned(), 3)]));
    // 0.5-1 s, then 1-2 s: the backoff grows.
    let at = server.arrivals("/down/x");
    let gaps = [at[1] - at[0], at[2] - at[1]];
    assert!(gaps[0] >= Duration::from_millis(450), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(950), "{gaps:?}");
}

#[test]
fn a_404_is_not_retried() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // `{name}/x` sends each file to its own kind of answer: `flaky` shows
    // that retries are on in this very run.
    tree(tmp.path(), &[("missing", ""), ("flaky", "")]);
    let spec = format!("http:GET {}", server.url("/{name}/x"));
    let out = run(
        tmp.path(),
        &[
            "files",
            "d",
            "-q",
            "--retries",
            "3",
            "--on-error",
            "skip",
            "-p",
            &spec,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));

    let missing = row_of(tmp.path(), "d/missing");
    assert_eq!(missing.get::<i64, _>("status"), 404);
    assert_eq!(missing.get::<i64, _>("attempts"), 1);
    assert_eq!(missing.get::<String, _>("error"), "HTTP 404 Not Found");
    let flaky = row_of(tmp.path(), "d/flaky");
    assert_eq!(flaky.get::<i64, _>("status"), 200);
    assert_eq!(flaky.get::<i64, _>("attempts"), 2);

    assert_eq!(
        server.counts(),
        BTreeMap::from([("/flaky/x".to_owned(), 2), ("/missing/x".to_owned(), 1)])
    );
}

#[test]
fn requests_in_flight_never_exceed_the_workers() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let names = numbered_files(tmp.path(), 40);
    let spec = format!("http:GET {}", server.url("/slow/{name}"));
    let out = run(
        tmp.path(),
        &["files", "d", "-q", "--workers", "3", "-p", &spec],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let expected: BTreeMap<String, usize> =
        names.iter().map(|n| (format!("/slow/{n}"), 1)).collect();
    assert_eq!(server.counts(), expected);
    let max = server.max_in_flight();
    // At least 2, or a pool that ran one item at a time would pass.
    assert!((2..=3).contains(&max), "{max} requests at once");

    assert_eq!(count(&tmp.path().join("batchproc.db"), "files"), 40);
    let ok = query(
        &tmp.path().join("batchproc.db"),
        "SELECT count(*) AS n FROM files WHERE status = 200 AND error IS NULL",
    );
    assert_eq!(ok[0].get::<i64, _>("n"), 40);
    // Without --retries there is no attempts column.
    let columns = columns_of(tmp.path());
    assert!(columns.contains(&"status".to_owned()), "{columns:?}");
    assert!(!columns.contains(&"attempts".to_owned()), "{columns:?}");
}

#[test]
fn rate_spaces_the_requests() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let n = 15;
    let names = numbered_files(tmp.path(), n);
    let spec = format!("http:GET {}", server.url("/ok/{name}"));
    let out = run(
        tmp.path(),
        &[
            "files",
            "d",
            "-q",
            "--workers",
            "4",
            "--rate",
            "10/s",
            "-p",
            &spec,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let expected: BTreeMap<String, usize> = names.iter().map(|n| (format!("/ok/{n}"), 1)).collect();
    assert_eq!(server.counts(), expected);
    let mut at: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    at.sort();
    // The first start is free, then one every 100 ms: 14 intervals, less
    // 10 % for the clocks. Four workers unthrottled would take ~0 s.
    let span = at[n - 1] - at[0];
    assert!(
        span >= Duration::from_millis(1260),
        "{n} requests in {span:?}"
    );
    // No burst: any 5 consecutive requests span at least 4 intervals, less
    // a generous 150 ms for a late request.
    for w in at.windows(5) {
        let span = w[4] - w[0];
        assert!(span >= Duration::from_millis(250), "5 requests in {span:?}");
    }
    assert_eq!(count(&tmp.path().join("batchproc.db"), "files"), n as i64);
}

#[test]
fn a_dynamic_pool_stays_within_its_maximum() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let names = numbered_files(tmp.path(), 40);
    let spec = format!("http:GET {}", server.url("/slow/{name}"));
    let out = run(
        tmp.path(),
        &[
            "files",
            "d",
            "-q",
            "--min-workers",
            "1",
            "--max-workers",
            "4",
            "-p",
            &spec,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let expected: BTreeMap<String, usize> =
        names.iter().map(|n| (format!("/slow/{n}"), 1)).collect();
    assert_eq!(server.counts(), expected);
    let max = server.max_in_flight();
    // 40 items of 50 ms keep the queue backed up: the pool grows past one.
    assert!((2..=4).contains(&max), "{max} requests at once");
    assert_eq!(count(&tmp.path().join("batchproc.db"), "files"), 40);
}

/// A failure ends the run at once even while another request hangs
/// (no `--timeout`): the worker stops waiting for it, as at Ctrl-C.
#[test]
fn a_failure_does_not_wait_for_a_request_that_hangs() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // d/after-stall is answered 404 (the run stops) once d/stall's request,
    // answered only after 20 s, is in: whichever worker is slower to start.
    tree(tmp.path(), &[("after-stall", ""), ("stall", "")]);
    let spec = format!("http:GET {}", server.url("/{name}/x"));
    let started = Instant::now();
    let out = batchproc(tmp.path())
        .args(["files", "d", "-w", "2", "-p", &spec])
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    // Far below the 20 s of the hung request, with room for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("batchproc: error: d/after-stall: HTTP 404 Not Found"),
        "{err}"
    );
}

/// One Ctrl-C ends a run whose request hangs (no `--timeout`): the worker
/// stops waiting for it, what finished is committed, exit 130. The hung
/// request would take 20 s.
#[test]
fn one_sigint_ends_a_run_whose_request_hangs() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut files = vec![("0/stall".to_owned(), "")];
    files.extend((1..=20).map(|i| (format!("{i}/ok"), "")));
    for (name, content) in &files {
        let path = tmp.path().join("d").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let spec = format!("http:GET {}", server.url("/{name}/x"));
    let mut child = spawn_two_workers(tmp.path(), &spec);
    let start = Instant::now();
    while server.seen().len() < files.len() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not every request came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let signalled = Instant::now();
    let status = child.wait().unwrap();
    // Far below the 20 s the request would take, with room for a loaded machine.
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT path, status FROM files ORDER BY path",
    );
    let ok: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(String, i64)> = {
        let mut paths: Vec<String> = (1..=20).map(|i| format!("d/{i}/ok")).collect();
        paths.sort();
        paths.into_iter().map(|p| (p, 200)).collect()
    };
    assert_eq!(ok, expected);
}

/// `files d -q -w 2 -p SPEC`, started, stderr dropped.
fn spawn_two_workers(dir: &Path, spec: &str) -> std::process::Child {
    batchproc_std(dir)
        .args(["files", "d", "-q", "-w", "2", "-p", spec])
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
