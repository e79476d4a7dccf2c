//! Sinks: CSV to a file and to stdout, idempotent reruns, tables with other columns.

mod common;

use std::collections::BTreeMap;

use common::*;
use sqlx::Row;

fn sha_oracle() -> BTreeMap<String, String> {
    oracle("sample.sha256")
        .into_iter()
        .map(|(k, v)| (format!("sample/{k}"), v))
        .collect()
}

fn parse_csv(bytes: &[u8]) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r.iter().map(str::to_owned).collect())
        })
        .collect();
    (header, rows)
}

#[test]
fn csv_sink_to_a_file_and_to_stdout_parse_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out_csv = tmp.path().join("hashes.csv");
    batchproc(&fixtures())
        .args(["files", "sample", "-p", "sha256,lines", "-q", "--sink"])
        .arg(format!("csv:{}", out_csv.display()))
        .assert()
        .success()
        .stdout("");
    let from_file = std::fs::read(&out_csv).unwrap();
    let stdout = batchproc(&fixtures())
        .args(["files", "sample", "-p", "sha256,lines", "-q", "--sink", "-"])
        .output()
        .unwrap();
    assert!(stdout.status.success());
    for bytes in [from_file.as_slice(), stdout.stdout.as_slice()] {
        let (header, rows) = parse_csv(bytes);
        assert_eq!(
            header,
            ["path", "size", "mtime", "sha256", "lines", "error"]
        );
        let oracle = sha_oracle();
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            oracle.keys().collect::<Vec<_>>()
        );
        for (path, row) in &rows {
            assert_eq!(row[3], oracle[path], "{path}");
            assert_eq!(row[5], "", "{path}");
        }
    }
    // A bare .csv path is a CSV sink too.
    batchproc(tmp.path())
        .args(["files"])
        .arg(fixtures().join("sample"))
        .args(["-q", "-o", "bare.csv"])
        .assert()
        .success();
    assert_eq!(
        parse_csv(&std::fs::read(tmp.path().join("bare.csv")).unwrap())
            .1
            .len(),
        sha_oracle().len()
    );
}

#[test]
fn rerun_is_idempotent_and_updates_changed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 50);
    let run = || {
        batchproc(tmp.path())
            .args(["files", "d", "-p", "sha256", "-q"])
            .assert()
            .success()
    };
    run();
    run();
    let db = tmp.path().join("batchproc.db");
    assert_eq!(count(&db, "files"), 50);
    std::fs::write(d.join("f00007.csv"), "changed\n").unwrap();
    run();
    assert_eq!(count(&db, "files"), 50);
    let row = &query(
        &db,
        "SELECT sha256, size FROM files WHERE path = 'd/f00007.csv'",
    )[0];
    assert_eq!(
        row.get::<String, _>("sha256"),
        sha256sum(&d.join("f00007.csv"))
    );
    assert_eq!(row.get::<i64, _>("size"), 8);
    let integrity: String = query(&db, "PRAGMA integrity_check")[0].get(0);
    assert_eq!(integrity, "ok");
}

#[test]
fn existing_table_with_other_columns_keeps_them_and_gains_new_processor_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 3);
    let db = tmp.path().join("my.db");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"CREATE TABLE inventory (owner TEXT DEFAULT 'ops', path TEXT UNIQUE, size BIGINT, reviewed INTEGER)\"); \
             c.execute(\"INSERT INTO inventory (path, reviewed) VALUES ('d/f00001.csv', 1)\"); c.commit()",
        )
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-p",
            "lines",
            "-q",
            "-o",
            "my.db",
            "-t",
            "inventory",
        ])
        .assert()
        .success();
    let rows = query(
        &db,
        "SELECT path, owner, reviewed, lines, size FROM inventory ORDER BY path",
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].get::<String, _>("path"), "d/f00001.csv");
    assert_eq!(rows[1].get::<Option<i64>, _>("reviewed"), Some(1));
    assert_eq!(rows[0].get::<String, _>("owner"), "ops");
    for row in &rows {
        assert_eq!(row.get::<i64, _>("lines"), 2);
        assert_eq!(
            row.get::<i64, _>("size"),
            std::fs::metadata(tmp.path().join(row.get::<String, _>("path")))
                .unwrap()
                .len() as i64
        );
    }
}

#[test]
fn stat_only_run_writes_path_size_mtime() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    many_csv_files(&d, 1200);
    batchproc(tmp.path())
        .args(["files", "d", "-q", "--batch-size", "100"])
        .assert()
        .success();
    let db = tmp.path().join("batchproc.db");
    assert_eq!(count(&db, "files"), 1200);
    let cols: Vec<String> = query(&db, "SELECT name FROM pragma_table_info('files')")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, ["path", "size", "mtime", "error"]);
}

/// The README's first command, as a new user types it (from a copy of the
/// repository root, so the committed fixtures stay clean).
#[test]
fn readme_quick_start_command_works() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = tmp.path().join("fixtures/sample");
    std::fs::create_dir_all(sample.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixtures().join("sample"))
        .arg(&sample)
        .status()
        .unwrap();
    assert!(status.success());
    let out = batchproc(tmp.path())
        .args([
            "files",
            "fixtures/sample",
            "--workers",
            "16",
            "-p",
            "sha256,lines",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = stderr_of(&out);
    assert!(err.starts_with("batchproc: 13 ok, 0 failed in "), "{err}");
    assert!(
        err.ends_with("-> sqlite:batchproc.db\n") && err.lines().count() == 1,
        "{err}"
    );
    // Not a terminal: no progress bar, no control characters.
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let db = tmp.path().join("batchproc.db");
    let sums = oracle("sample.sha256");
    let rows = query(&db, "SELECT path, sha256 FROM files");
    assert_eq!(rows.len(), sums.len());
    for row in rows {
        let path: String = row.get("path");
        assert_eq!(
            row.get::<String, _>("sha256"),
            sums[path.strip_prefix("fixtures/sample/").unwrap()]
        );
    }
    // The README's `sqlite3` query, run as written, prints what it shows.
    let readme = std::fs::read_to_string(fixtures().join("../README.md")).unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("$ sqlite3 batchproc.db"));
    let sql = lines.next().unwrap().split('"').nth(1).unwrap();
    let shown: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    let printed: Vec<String> = query(&db, sql)
        .iter()
        .map(|r| {
            let path: String = r.get(0);
            let (size, lines, sha): (i64, i64, String) = (r.get(1), r.get(2), r.get(3));
            format!("{path}|{size}|{lines}|{sha}")
        })
        .collect();
    assert_eq!(printed, shown);
}

#[test]
fn a_closed_stdout_or_stderr_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3000);
    // `batchproc … -o - | head -1`: the reader goes away.
    let mut child = batchproc_std(tmp.path())
        .args(["files", "d", "-o", "-", "--batch-size", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "");
    // stderr on a full device: the run still completes.
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = batchproc_std(tmp.path())
        .args(["files", "d", "-o", "x.db"])
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A rerun with other processors keeps the earlier processors' values only
/// for files that did not change; for changed files they are cleared rather
/// than left stale next to the new size.
#[test]
fn columns_of_processors_not_rerun_are_cleared_when_the_file_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("changed.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(d.join("same.csv"), "a,b\n1,2\n").unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256,csv", "-q"])
        .assert()
        .success();
    std::fs::write(d.join("changed.csv"), "a,b\n1,2\n3,4\n").unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "lines", "-q"])
        .assert()
        .success();
    let db = tmp.path().join("batchproc.db");
    let rows: BTreeMap<String, (Option<String>, Option<i64>, i64)> =
        query(&db, "SELECT path, sha256, csv_rows, lines FROM files")
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
    assert_eq!(rows["d/changed.csv"], (None, None, 3));
    assert_eq!(
        rows["d/same.csv"],
        (Some(sha256sum(&d.join("same.csv"))), Some(1), 2)
    );
}
