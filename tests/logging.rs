//! Logging (`-v`, `-vv`, `RUST_LOG`, `--log-format json`): what the log
//! lines say, that they stay on stderr (stdout may be CSV), that they show
//! no password and no colour where none belongs, and that a run without
//! them prints what it always did. Every run here drops any `RUST_LOG` of
//! the test's own environment unless the test sets one.

mod common;

use std::path::Path;
use std::process::Output;

use common::http::Server;
use common::pg::fresh_db;
use common::*;
use serde_json::Value;

/// `files` over `d` with the csv processor, going on past a failed file.
const FILES_SKIP: [&str; 6] = ["files", "d", "-p", "csv", "--on-error", "skip"];

/// `d/f00000.csv`… (`a,b` and one row) and `d/bad.csv` (a row too long).
fn tree(root: &Path, good: usize) {
    many_csv_files(&root.join("d"), good);
    std::fs::write(root.join("d/bad.csv"), "a,b\n1,2,3\n").unwrap();
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = batchproc(dir);
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The stderr lines that contain `needle`.
fn lines_with<'a>(stderr: &'a str, needle: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(needle)).collect()
}

/// Every stderr line as JSON (each must parse).
fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The one JSON line whose message is `message`.
fn event<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["message"] == message).collect();
    assert_eq!(found.len(), 1, "{message}: {lines:#?}");
    found[0]
}

#[test]
fn verbose_logs_the_start_and_end_and_the_default_run_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), 4);
    let args = FILES_SKIP;

    // Default: the warning and the summary line, nothing else.
    let out = run(tmp.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(
        lines[0],
        "batchproc: warning: d/bad.csv: csv: line 2: record has 3 fields, expected 2"
    );
    assert!(
        lines[1].starts_with("batchproc: 4 ok, 1 failed in "),
        "{err}"
    );

    // -v, and the same from the environment.
    for (extra, env) in [
        (&["-v"][..], &[][..]),
        (&[][..], &[("BATCHPROC_VERBOSE", "1")][..]),
    ] {
        let args = [&args[..], extra].concat();
        let out = run(tmp.path(), &args, env);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        let started = lines_with(&err, "INFO batchproc: run started");
        assert_eq!(started.len(), 1, "{err}");
        for field in [
            "run_id=",
            "source=\"files\"",
            "sink=\"sqlite:batchproc.db\"",
            "workers=",
        ] {
            assert!(started[0].contains(field), "{field}: {err}");
        }
        assert!(
            started[0].contains("command=\"batchproc files d -p csv"),
            "{err}"
        );
        let ended = lines_with(&err, "INFO batchproc: run ended");
        assert_eq!(ended.len(), 1, "{err}");
        for field in ["status=\"failed\"", "ok=4", "failed=1", "elapsed_seconds="] {
            assert!(ended[0].contains(field), "{field}: {err}");
        }
        // The item the run went on without, by its path.
        let skipped = lines_with(&err, "INFO batchproc: item skipped");
        assert_eq!(skipped.len(), 1, "{err}");
        assert!(
            skipped[0].contains("item=\"d/bad.csv\" failed=true"),
            "{err}"
        );
        assert!(skipped[0].contains("cause=\"csv: line 2"), "{err}");
        // No batch commits at -v; the summary line is still the last.
        assert!(!err.contains("batch committed"), "{err}");
        assert!(err
            .lines()
            .last()
            .unwrap()
            .starts_with("batchproc: 4 ok, 1 failed in "));
    }
}

#[test]
fn json_lines_each_parse_with_their_fields() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), 3);
    let args = [&FILES_SKIP[..], &["-vv", "--log-format", "json"]].concat();
    let out = run(tmp.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "{field}: {line}");
        }
    }
    let started = event(&lines, "run started");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "batchproc");
    assert_eq!(started["run_id"], 1);
    assert_eq!(started["source"], "files");
    assert_eq!(started["sink"], "sqlite:batchproc.db");
    assert!(started["workers"].as_u64().unwrap() >= 1);
    let ended = event(&lines, "run ended");
    assert_eq!(ended["status"], "failed");
    assert_eq!(
        (ended["ok"].as_u64(), ended["failed"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(ended["elapsed_seconds"].as_f64().unwrap() >= 0.0);
    let skipped = event(&lines, "item skipped");
    assert_eq!(skipped["item"], "d/bad.csv");
    assert_eq!(skipped["failed"], true);
    // -vv: the batch commits, whose rows add up to the items.
    let rows: u64 = lines
        .iter()
        .filter(|l| l["message"] == "batch committed")
        .map(|l| {
            assert_eq!(l["level"], "DEBUG");
            assert!(l["elapsed_seconds"].is_f64(), "{l}");
            l["rows"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(rows, 4);
    // The `batchproc: …` lines are objects too: the warning and the summary.
    let warning = event(
        &lines,
        "d/bad.csv: csv: line 2: record has 3 fields, expected 2",
    );
    assert_eq!(warning["level"], "WARN");
    let summary = lines.last().unwrap();
    assert_eq!(summary["level"], "INFO");
    assert!(summary["message"]
        .as_str()
        .unwrap()
        .starts_with("3 ok, 1 failed in "));
}

/// With `-o -`, stdout is the CSV records alone, however much is logged.
#[test]
fn logs_never_reach_csv_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = many_csv_files(&tmp.path().join("d"), 20);
    for (flags, env) in [
        (&["-v"][..], &[][..]),
        (&["-vv", "--log-format", "json"][..], &[][..]),
        (&[][..], &[("RUST_LOG", "debug")][..]),
    ] {
        let args = [&["files", "d", "-p", "lines", "-o", "-"][..], flags].concat();
        let out = run(tmp.path(), &args, env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("run started"),
            "{flags:?} {env:?}"
        );
        let mut reader = csv::Reader::from_reader(&out.stdout[..]);
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, ["path", "size", "mtime", "lines", "error"]);
        let mut rows: Vec<(String, String, String, String)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].into(), r[1].into(), r[3].into(), r[4].into())
            })
            .collect();
        rows.sort();
        let expected: Vec<(String, String, String, String)> = paths
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                let size = std::fs::metadata(p).unwrap().len();
                (
                    format!("d/{name}"),
                    size.to_string(),
                    "2".into(),
                    String::new(),
                )
            })
            .collect();
        assert_eq!(rows, expected, "{flags:?} {env:?}");
    }
}

#[test]
fn a_retry_is_logged_with_its_item_attempt_wait_and_cause() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("d/x"), "").unwrap();
    let spec = format!("http:GET {}", server.url("/flaky/{name}"));
    let args = [
        "files",
        "d",
        "--retries",
        "2",
        "-p",
        &spec,
        "-v",
        "--log-format",
        "json",
    ];
    let out = run(tmp.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    let retry = event(&lines, "retrying item");
    assert_eq!(retry["level"], "INFO");
    assert_eq!(retry["item"], "d/x");
    assert_eq!(retry["attempt"], 1);
    assert_eq!(retry["max_attempts"], 3);
    // The first backoff is 0.5 s plus jitter.
    assert!(retry["wait_seconds"].as_f64().unwrap() >= 0.5, "{retry}");
    assert!(retry["cause"].as_str().unwrap().contains("503"), "{retry}");
    assert_eq!(event(&lines, "run ended")["status"], "succeeded");
}

#[test]
fn rust_log_shows_batch_commits_and_overrides_verbose() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 7);
    let args = ["files", "d", "-p", "lines", "--batch-size", "3"];
    let out = run(tmp.path(), &args, &[("RUST_LOG", "debug")]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    let commits = lines_with(&err, "DEBUG batchproc: batch committed");
    assert!(!commits.is_empty(), "{err}");
    let rows: usize = commits
        .iter()
        .map(|l| {
            let rows = l.split("rows=").nth(1).unwrap();
            rows.split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(rows, 7, "{err}");
    // RUST_LOG wins over -vv: only the run's end at info.
    let args = [&args[..], &["-vv"]].concat();
    let out = run(tmp.path(), &args, &[("RUST_LOG", "batchproc=info")]);
    let err = text(&out.stderr);
    assert!(
        err.contains("run ended") && !err.contains("batch committed"),
        "{err}"
    );
    // An empty RUST_LOG is no RUST_LOG: -vv's commits show.
    let out = run(tmp.path(), &args, &[("RUST_LOG", "")]);
    assert!(text(&out.stderr).contains("batch committed"));
}

/// The password of a Postgres sink shows in no log line, whatever the
/// format or level (`RUST_LOG=trace` lets sqlx's own events through too).
#[test]
fn a_sink_password_never_shows_in_the_logs() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3);
    let urls = [
        db.url_with_password("s3cr3t-a"),
        format!("{}?sslmode=disable&password=s3cr3t-b", db.url),
    ];
    for url in &urls {
        for (flags, env) in [
            (&["-vv"][..], &[][..]),
            (&["-vv", "--log-format", "json"][..], &[][..]),
            (&[][..], &[("RUST_LOG", "trace")][..]),
            (&["--log-format", "json"][..], &[("RUST_LOG", "trace")][..]),
        ] {
            let args = [&["files", "d", "-p", "sha256", "--sink", url][..], flags].concat();
            let out = run(tmp.path(), &args, env);
            let err = text(&out.stderr);
            assert!(out.status.success(), "{err}");
            assert!(!err.contains("s3cr3t"), "{flags:?} {env:?}:\n{err}");
            assert!(!text(&out.stdout).contains("s3cr3t"));
            let started = lines_with(&err, "run started");
            assert_eq!(started.len(), 1, "{err}");
            assert!(started[0].contains("***"), "{err}");
            if flags.contains(&"json") {
                json_lines(&out);
            }
        }
    }
}

/// Log lines are never coloured off a terminal, and on one only without
/// `NO_COLOR` (any non-empty value).
#[test]
fn no_colour_off_a_terminal_or_under_no_color() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), 2);
    let args = [&FILES_SKIP[..], &["-vv"]].concat();
    let out = run(tmp.path(), &args, &[]);
    let err = text(&out.stderr);
    assert!(err.contains("run started"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");

    // On a terminal, -q keeps the progress bar (and its escapes) away:
    // only the logs could colour.
    let bin = assert_cmd::cargo::cargo_bin("batchproc");
    let command = format!(
        "'{}' files d -p csv --on-error skip -q -v -o t.db",
        bin.display()
    );
    let shown = |env: &[(&str, &str)]| {
        let (_, screen) = on_terminal(tmp.path(), &command, env)?;
        assert!(screen.contains("run started"), "{screen}");
        Some(screen)
    };
    let Some(coloured) = shown(&[]) else { return };
    assert!(coloured.contains('\x1b'), "no colour on a terminal");
    let empty = shown(&[("NO_COLOR", "")]).unwrap();
    assert!(empty.contains('\x1b'), "an empty NO_COLOR is unset");
    let plain = shown(&[("NO_COLOR", "1")]).unwrap();
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

/// With the progress bar drawn, each log line still comes out whole: the
/// bar is cleared for it and redrawn after, never drawn inside it.
#[test]
fn log_lines_are_written_whole_above_the_progress_bar() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 6);
    let bin = assert_cmd::cargo::cargo_bin("batchproc");
    // A tenth of a second per file on one worker: the bar draws, and
    // batches of two commit while it does.
    let command = format!(
        "'{}' files d -w 1 -p 'exec:sleep 0.1' -vv --batch-size 2",
        bin.display()
    );
    let Some((ok, screen)) = on_terminal(tmp.path(), &command, &[("NO_COLOR", "1")]) else {
        return;
    };
    assert!(ok, "{screen}");
    assert!(screen.contains("items"), "no progress bar:\n{screen}");
    for (start, end) in [
        ("run started", "resume=false"),
        ("batch committed", "elapsed_seconds="),
        ("run ended", "workers_average_busy="),
    ] {
        let at = screen
            .find(start)
            .unwrap_or_else(|| panic!("{start}:\n{screen}"));
        let line = &screen[at..];
        let line = &line[..line.find('\n').unwrap_or(line.len())];
        assert!(line.contains(end), "{start} torn: {line:?}");
        assert!(!line.contains('\x1b'), "{start} torn: {line:?}");
        // What shows before it on its line once the bar was cleared
        // (`ESC[2K`): the time and level only, none of the bar.
        let before = &screen[screen[..at].rfind('\n').map_or(0, |i| i + 1)..at];
        let shown = before.rsplit("\x1b[2K").next().unwrap();
        assert!(
            !shown.contains("items"),
            "{start} on the bar's line: {before:?}"
        );
    }
}
