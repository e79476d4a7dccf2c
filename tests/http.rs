//! The `http:` processor through the real binary, against a small HTTP
//! server this test runs on 127.0.0.1 (tiny_http). The server records what
//! it received; the expectations are written out by hand.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use sqlx::Row;

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    content_type: Option<String>,
    body: String,
}

/// A server answering by path prefix: `/ok/…` 200 with `hello <url>`,
/// `/big/…` 200 with 80,000 bytes of `é`, `/missing/…` 404, `/busy/…` 503 with `Retry-After: 7`, `/stall/…`
/// only after 20 s. Stops when dropped.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, seen) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let seen = seen.clone();
                    // One thread per request, so a stalled one blocks no other.
                    std::thread::spawn(move || {
                        let mut body = String::new();
                        request.as_reader().read_to_string(&mut body).unwrap();
                        let url = request.url().to_owned();
                        seen.lock().unwrap().push(Seen {
                            method: request.method().to_string(),
                            url: url.clone(),
                            content_type: request
                                .headers()
                                .iter()
                                .find(|h| h.field.equiv("content-type"))
                                .map(|h| h.value.to_string()),
                            body,
                        });
                        let response = if url.starts_with("/ok/") {
                            tiny_http::Response::from_string(format!("hello {url}\n"))
                        } else if url.starts_with("/missing/") {
                            tiny_http::Response::from_string("no such thing").with_status_code(404)
                        } else if url.starts_with("/big/") {
                            tiny_http::Response::from_string("é".repeat(40_000))
                        } else if url.starts_with("/busy/") {
                            tiny_http::Response::from_string("later")
                                .with_status_code(503)
                                .with_header(
                                    tiny_http::Header::from_bytes("Retry-After", "7").unwrap(),
                                )
                        } else {
                            std::thread::sleep(Duration::from_secs(20));
                            tiny_http::Response::from_string("too late")
                        };
                        let _ = request.respond(response);
                    });
                }
            })
        };
        Server {
            port,
            seen,
            server,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

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

/// Through the library: which failures the retry logic may try again.
#[test]
fn failures_say_whether_a_retry_may_help() {
    use batchproc::pool::Cancel;
    use batchproc::processor::{parse_one, Fields, Pass, Subject};
    use batchproc::work::{Cx, Deadline, Retry};

    let server = Server::start();
    let cancel = Cancel::new();
    let subject = Subject::File {
        path: Path::new("d/x"),
        size: Some(1),
    };
    let attempt = |spec: &str, timeout: Option<Duration>| {
        let mut p = parse_one(spec).unwrap();
        p.bind(&Fields::File).unwrap();
        let cx = Cx {
            cancel: &cancel,
            deadline: Deadline::start(timeout),
        };
        let Pass::Item(item) = p.begin() else {
            panic!("{spec} is an item processor")
        };
        item.run(&subject, &cx).map(|_| ())
    };
    let busy = attempt(&format!("http:GET {}", server.url("/busy/{name}")), None).unwrap_err();
    assert_eq!(busy.message, "HTTP 503 Service Unavailable");
    assert_eq!(
        busy.retry,
        Some(Retry {
            after: Some(Duration::from_secs(7))
        })
    );
    let missing =
        attempt(&format!("http:GET {}", server.url("/missing/{name}")), None).unwrap_err();
    assert_eq!(missing.retry, None);
    let stalled = attempt(
        &format!("http:GET {}", server.url("/stall/{name}")),
        Some(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert_eq!(stalled.message, "timed out after 300ms");
    assert_eq!(stalled.retry, Some(Retry { after: None }));
    let slow = attempt("exec:sleep 5", Some(Duration::from_millis(300))).unwrap_err();
    assert_eq!(slow.message, "timed out after 300ms");
    assert!(slow.retry.is_some());
    let failed = attempt("exec:false", None).unwrap_err();
    assert_eq!(failed.message, "exit status 1");
    assert_eq!(failed.retry, None);
    assert!(attempt("exec:true", None).is_ok());
}
