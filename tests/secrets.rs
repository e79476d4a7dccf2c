//! A password never shows, in any form a URL carries one: user-info (plain,
//! percent-encoded, with an unencoded `@` or space), `password=` and the
//! other secret-bearing query parameters, an HTTP processor's `token=`.
//! Checked where a person or a script could see it: stderr (also on a
//! terminal, progress bar and all), stdout, `batchproc runs` (table and
//! JSON), `batchproc_runs.command` and a failed item's `error` column.
//!
//! Every secret here contains `s3cr3t`, in each of its parts (a password
//! `s3cr3t1@s3cr3t2` has one on each side of the `@`), so that no part of
//! one may show: the checks look for `s3cr3t` alone.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::thread::JoinHandle;
use std::time::Duration;

use common::pg::fresh_db;
use common::*;
use sqlx::Row;

const MARK: &str = "s3cr3t";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails unless `text` is free of every secret.
fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(MARK), "{what} shows a secret:\n{text}");
}

/// Also fails unless something was hidden (`***`): a URL was printed,
/// redacted.
fn assert_redacted(what: &str, text: &str) {
    assert_hidden(what, text);
    assert!(
        text.contains("***"),
        "{what} shows no redacted URL:\n{text}"
    );
}

/// Both streams of a finished batchproc, free of secrets.
fn assert_output_hidden(what: &str, out: &Output) {
    assert_hidden(&format!("{what} (stdout)"), &text(&out.stdout));
    assert_hidden(&format!("{what} (stderr)"), &text(&out.stderr));
}

/// `batchproc runs` on `sink`, as a table and as JSON: both succeed and
/// neither shows a secret.
fn assert_runs_hidden(dir: &Path, sink: &str) {
    for json in [false, true] {
        let mut cmd = batchproc(dir);
        cmd.args(["runs", "--sink", sink]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "runs: {}", stderr_of(&out));
        assert_redacted(&format!("runs (json: {json})"), &text(&out.stdout));
        assert_hidden("runs (stderr)", &text(&out.stderr));
    }
}

#[test]
fn postgres_passwords_never_show_in_any_form() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3);
    // The test server trusts every connection, so each is accepted.
    let forms = [
        ("user-info", db.url_with_password("s3cr3t-a")),
        (
            "percent-encoded user-info (s3cr3t1@s3cr3t2 s3cr3t3/s3cr3t4)",
            db.url_with_password("s3cr3t1%40s3cr3t2%20s3cr3t3%2Fs3cr3t4"),
        ),
        (
            "an unencoded @ in user-info",
            db.url_with_password("s3cr3t1@s3cr3t2"),
        ),
        (
            "an unencoded space in user-info",
            db.url_with_password("s3cr3t1 s3cr3t2"),
        ),
        (
            "?password=",
            format!("{}?sslmode=disable&password=s3cr3t-b", db.url),
        ),
        (
            "?p%61ssword= (sqlx decodes the name)",
            format!("{}?p%61ssword=s3cr3t-c%40s3cr3t", db.url),
        ),
        // sqlx ignores these (names are case-sensitive; no sslpassword),
        // but they are secrets all the same.
        ("?PASSWORD=", format!("{}?PASSWORD=s3cr3t-d", db.url)),
        ("?sslpassword=", format!("{}?sslpassword=s3cr3t-e", db.url)),
    ];
    for (form, url) in &forms {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-p", "sha256", "--sink", url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{form}: {}", stderr_of(&out));
        assert_output_hidden(form, &out);
        // The summary line names the sink, redacted.
        assert_redacted(form, &stderr_of(&out));
        for row in db.query("SELECT command FROM batchproc_runs") {
            assert_redacted(
                &format!("{form}: batchproc_runs.command"),
                &row.get::<String, _>(0),
            );
        }
        assert_runs_hidden(tmp.path(), url);
    }
    assert_eq!(
        db.query("SELECT count(*) FROM batchproc_runs")[0].get::<i64, _>(0),
        forms.len() as i64
    );

    // The same URLs as a query's source.
    db.execute("CREATE TABLE src (id int PRIMARY KEY, body text); INSERT INTO src VALUES (1, 'x')");
    for (form, url) in &forms {
        let out = batchproc(tmp.path())
            .args(["query", "--from", url, "--sql", "SELECT id, body FROM src"])
            .args(["--key", "id", "-p", "sha256:body", "--sink", "sqlite:q.db"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{form}: {}", stderr_of(&out));
        assert_output_hidden(form, &out);
    }
    for row in query(
        &tmp.path().join("q.db"),
        "SELECT command FROM batchproc_runs",
    ) {
        assert_redacted("query: batchproc_runs.command", &row.get::<String, _>(0));
    }
    assert_runs_hidden(tmp.path(), "sqlite:q.db");
}

#[test]
fn a_refused_or_invalid_postgres_url_shows_no_password() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 1);
    // Nothing listens on port 1.
    for url in [
        "postgres://bob:s3cr3t-a@127.0.0.1:1/x",
        "postgres://bob:s3cr3t1%40s3cr3t2@127.0.0.1:1/x",
        "postgres://bob:s3cr3t1@s3cr3t2@127.0.0.1:1/x",
        "postgres://bob:s3cr3t1 s3cr3t2@127.0.0.1:1/x",
        "postgres://bob@127.0.0.1:1/x?password=s3cr3t-b",
        "postgres://bob@127.0.0.1:1/x?p%61ssword=s3cr3t-c",
        // Invalid URLs: a `/` or `#` in the password cuts the authority short.
        "postgres://bob:s3cr3t1/s3cr3t2@127.0.0.1:1/x",
        "postgres://bob:s3cr3t1#s3cr3t2@127.0.0.1:1/x",
    ] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "--sink", url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr_of(&out));
        assert_output_hidden(url, &out);
        assert_redacted(url, &stderr_of(&out));
        let out = batchproc(tmp.path())
            .args(["runs", "--sink", url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr_of(&out));
        assert_output_hidden(url, &out);
    }
    // A usage error quotes the argument clap did not expect.
    let out = batchproc(tmp.path())
        .args(["runs", "postgres://bob:s3cr3t-a@127.0.0.1:1/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("unexpected argument"),
        "{}",
        stderr_of(&out)
    );
    assert_output_hidden("a usage error", &out);
}

/// A Postgres server for one connection that asks for the password in
/// clear text, and refuses it as a real server does (SQLSTATE 28P01, the
/// local server trusts every connection so it cannot). Its thread returns
/// the password it received.
fn refusing_server() -> (u16, JoinHandle<Vec<u8>>) {
    fn message(s: &mut TcpStream) -> Vec<u8> {
        let mut len = [0; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut body).unwrap();
        body
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // SSLRequest (code 80877103): no TLS; then the startup message.
        if message(&mut s) == 80877103u32.to_be_bytes() {
            s.write_all(b"N").unwrap();
            message(&mut s);
        }
        // AuthenticationCleartextPassword.
        s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap();
        let mut tag = [0];
        s.read_exact(&mut tag).unwrap();
        assert_eq!(tag[0], b'p');
        let mut password = message(&mut s);
        password.pop(); // its NUL
        let mut fields = Vec::new();
        for (code, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "28P01"),
            (b'M', "password authentication failed for user \"bob\""),
        ] {
            fields.push(code);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut error = vec![b'E'];
        error.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        error.extend_from_slice(&fields);
        s.write_all(&error).unwrap();
        password
    });
    (port, thread)
}

#[test]
fn a_refused_password_shows_in_no_driver_error() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 1);
    for (url, sent) in [
        (
            "postgres://bob:s3cr3t1%40s3cr3t2@127.0.0.1:{port}/x",
            "s3cr3t1@s3cr3t2",
        ),
        (
            "postgres://bob@127.0.0.1:{port}/x?password=s3cr3t%20b",
            "s3cr3t b",
        ),
    ] {
        let (port, server) = refusing_server();
        let url = url.replace("{port}", &port.to_string());
        let out = batchproc(tmp.path())
            .args(["files", "d", "--sink", &url])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        // sqlx sent the password decoded: that is the form a driver's
        // message could echo.
        assert_eq!(text(&server.join().unwrap()), sent);
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("password authentication failed"), "{err}");
        assert_output_hidden(&url, &out);
    }
}

#[test]
fn an_http_token_shows_neither_in_stderr_nor_in_the_error_column() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/x"), "1").unwrap();
    // Nothing listens on port 1.
    let spec =
        "http:GET http://bob:s3cr3t-u@127.0.0.1:1/items/{name}?token=s3cr3t-t&api_key=s3cr3t-k&n=1";
    for on_error in ["skip", "abort"] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "--on-error", on_error, "-p", spec])
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
        assert_output_hidden(on_error, &out);
        if on_error == "abort" {
            // The failure is printed, URL and all.
            assert_redacted(on_error, &stderr_of(&out));
        }
    }
    let db = tmp.path().join("batchproc.db");
    let error: String = query(&db, "SELECT error FROM files WHERE path = 'd/x'")[0].get(0);
    assert_redacted("the error column", &error);
    assert!(error.contains("token=***&api_key=***&n=1"), "{error}");
    for row in query(&db, "SELECT command FROM batchproc_runs") {
        assert_redacted("batchproc_runs.command", &row.get::<String, _>(0));
    }
    assert_runs_hidden(tmp.path(), "sqlite:batchproc.db");
}

#[test]
fn a_bad_http_spec_shows_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    for spec in [
        // An unknown placeholder, and a URL that does not parse.
        "http:GET http://127.0.0.1:1/{nope}?token=s3cr3t-t",
        "http:GET http://127.0.0.1:1/a b?token=s3cr3t-t",
    ] {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-p", spec])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr_of(&out));
        assert_output_hidden(spec, &out);
        assert_redacted(spec, &stderr_of(&out));
    }
}

/// On a terminal (a pseudo-terminal from `script`), with the progress bar
/// drawn, nothing shows a password either.
#[test]
fn a_terminal_with_its_progress_bar_shows_no_password() {
    let Some(db) = fresh_db() else { return };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n*** SKIPPED: no `script` to run batchproc on a terminal ***\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 8);
    let url = format!(
        "{}?password=s3cr3t-b",
        db.url_with_password("s3cr3t1@s3cr3t2")
    );
    let bin = assert_cmd::cargo::cargo_bin("batchproc");
    // A tenth of a second per file on one worker: the bar draws.
    let command = format!(
        "'{}' files d -w 1 -p 'exec:sleep 0.1' --sink '{url}'",
        bin.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}{}", stderr_of(&out));
    assert!(screen.contains("items"), "no progress bar:\n{screen}");
    assert_redacted("the terminal", &screen);
    assert_hidden("script's stderr", &stderr_of(&out));
}
