//! The directory walk: odd names, special files, symlinks and filters.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;
use sqlx::Row;

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// path bytes -> (sha256, error) from the default table.
fn rows_by_path(db: &Path) -> BTreeMap<Vec<u8>, (Option<String>, Option<String>)> {
    query(
        db,
        "SELECT CAST(path AS BLOB) AS p, typeof(path) AS t, sha256, error FROM files",
    )
    .into_iter()
    .map(|r| (r.get::<Vec<u8>, _>("p"), (r.get("sha256"), r.get("error"))))
    .collect()
}

#[test]
fn odd_names_are_stored_without_loss_and_hash_right() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let names: Vec<&[u8]> = vec![
        b"with space.txt",
        b"new\nline.txt",
        "ünïcödé ✓.txt".as_bytes(),
        b"bad\xff\xfeutf8.bin",
        b"-leading-dash",
        b"$(rm -rf ~).txt",
        b"quote\"and'apostrophe",
    ];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(d.join(OsStr::from_bytes(name)), format!("content {i}\n")).unwrap();
    }
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q"])
        .assert()
        .success()
        .stderr("");
    let rows = rows_by_path(&tmp.path().join("batchproc.db"));
    assert_eq!(rows.len(), names.len());
    for name in names {
        let path = d.join(OsStr::from_bytes(name));
        let mut key = b"d/".to_vec();
        key.extend_from_slice(name);
        let (sha, error) = &rows[&key];
        assert_eq!(sha.as_deref(), Some(sha256sum(&path).as_str()), "{path:?}");
        assert_eq!(error, &None);
    }
    // Valid UTF-8 names are TEXT (queryable as strings); the invalid one is kept as a BLOB.
    let types: Vec<String> = query(
        &tmp.path().join("batchproc.db"),
        "SELECT typeof(path) AS t FROM files ORDER BY t",
    )
    .iter()
    .map(|r| r.get("t"))
    .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "blob").count(),
        1,
        "{types:?}"
    );
}

#[test]
fn odd_names_survive_the_csv_sink_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"bad\xffname")), "x").unwrap();
    std::fs::write(d.join("comma,and\nnewline"), "y").unwrap();
    let out = batchproc(tmp.path())
        .args(["files", "d", "-q", "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let paths: Vec<Vec<u8>> = reader
        .byte_records()
        .map(|r| r.unwrap()[0].to_vec())
        .collect();
    assert_eq!(
        paths,
        vec![b"d/bad\xffname".to_vec(), b"d/comma,and\nnewline".to_vec()]
    );
}

#[test]
fn fifo_socket_and_symlink_loop_do_not_hang_or_appear() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "a\n").unwrap();
    mkfifo(&d.join("pipe"));
    let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
    std::os::unix::fs::symlink("..", d.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("link-to-a")).unwrap();
    batchproc(tmp.path())
        .args(["files", "d", "-p", "sha256", "-q"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
    let rows = rows_by_path(&tmp.path().join("batchproc.db"));
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec![b"d/a.txt".to_vec()]
    );
}

#[test]
fn follow_walks_links_skips_loops_and_fails_broken_links() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "a\n").unwrap();
    mkfifo(&d.join("pipe"));
    std::os::unix::fs::symlink("..", d.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink("a.txt", d.join("link-to-a")).unwrap();
    std::os::unix::fs::symlink("pipe", d.join("link-to-pipe")).unwrap();

    // A loop is a warning and a skip, as with `find -L`: a default
    // (fail-fast) run goes on and succeeds.
    let out = batchproc(tmp.path())
        .args(["files", "d", "-L", "-p", "sha256", "-w", "1"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("batchproc: warning: d/sub/loop: symlink loop back to d (skipped)"),
        "{err}"
    );
    assert!(err.contains("2 ok, 0 failed, 3 skipped"), "{err}");
    let a = sha256sum(&d.join("a.txt"));
    let rows = rows_by_path(&tmp.path().join("batchproc.db"));
    assert_eq!(rows[&b"d/a.txt".to_vec()], (Some(a.clone()), None));
    assert_eq!(rows[&b"d/link-to-a".to_vec()], (Some(a.clone()), None));
    assert_eq!(rows.len(), 2, "{rows:?}");

    // A broken link is a failure: fail-fast stops there, named on stderr.
    std::os::unix::fs::symlink("missing.txt", d.join("broken")).unwrap();
    std::fs::remove_file(tmp.path().join("batchproc.db")).unwrap();
    let out = batchproc(tmp.path())
        .args(["files", "d", "-L", "-p", "sha256", "-w", "1"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("batchproc: error: d/broken: "), "{err}");

    // Skip mode: the broken link is a row with an error; the FIFO is never
    // opened; the loop has no row.
    let out = batchproc(tmp.path())
        .args([
            "files",
            "d",
            "-L",
            "-p",
            "sha256",
            "--on-error",
            "skip",
            "-q",
        ])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let rows = rows_by_path(&tmp.path().join("batchproc.db"));
    assert_eq!(rows[&b"d/a.txt".to_vec()], (Some(a.clone()), None));
    assert_eq!(rows[&b"d/link-to-a".to_vec()], (Some(a), None));
    assert!(rows[&b"d/broken".to_vec()].1.is_some());
    assert_eq!(rows.len(), 3, "{rows:?}");
}

#[test]
fn include_exclude_and_max_depth_filter_like_find() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    for dir in ["d", "d/keep", "d/skip", "d/keep/deep"] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
    }
    for f in [
        "top.csv",
        "top.txt",
        "keep/k.csv",
        "skip/s.csv",
        "keep/deep/x.csv",
    ] {
        std::fs::write(d.join(f), "a\n").unwrap();
    }
    let paths = |args: &[&str]| -> Vec<String> {
        let out = batchproc(tmp.path())
            .args(["files", "d", "-q", "-o", "-"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let mut r = csv::Reader::from_reader(out.stdout.as_slice());
        let mut v: Vec<String> = r.records().map(|r| r.unwrap()[0].to_owned()).collect();
        v.sort();
        v
    };
    // Oracle: find(1) over the same tree.
    let find = |args: &[&str]| -> Vec<String> {
        let out = std::process::Command::new("find")
            .current_dir(tmp.path())
            .arg("d")
            .args(args)
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(paths(&[]), find(&["-type", "f"]));
    assert_eq!(
        paths(&["--include", "*.csv"]),
        find(&["-type", "f", "-name", "*.csv"])
    );
    assert_eq!(
        paths(&["--max-depth", "2"]),
        find(&["-maxdepth", "2", "-type", "f"])
    );
    assert_eq!(
        paths(&["--include", "*.csv", "--exclude", "skip"]),
        find(&["-path", "d/skip", "-prune", "-o", "-type", "f", "-name", "*.csv", "-print"])
    );
    // Path globs: * stays within a directory; a leading / anchors at the root.
    assert_eq!(paths(&["--include", "keep/*.csv"]), ["d/keep/k.csv"]);
    assert_eq!(
        paths(&["--exclude", "/keep"]),
        find(&["-path", "d/keep", "-prune", "-o", "-type", "f", "-print"])
    );
    assert_eq!(
        paths(&["--exclude", "keep/"]),
        find(&["-path", "d/keep", "-prune", "-o", "-type", "f", "-print"])
    );
    assert_eq!(
        paths(&["--exclude", "keep/**"]),
        ["d/skip/s.csv", "d/top.csv", "d/top.txt"]
    );
}

#[test]
fn a_file_given_as_root_is_processed_and_matched_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("one.csv"), "a\n").unwrap();
    let out = batchproc(tmp.path())
        .args(["files", "one.csv", "--include", "*.csv", "-q", "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .next(),
        Some("one.csv")
    );
}

#[test]
fn the_sink_s_own_files_are_not_walked() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.txt"), "a\n").unwrap();
    for _ in 0..2 {
        batchproc(tmp.path())
            .args(["files", ".", "-q"])
            .assert()
            .success();
        batchproc(tmp.path())
            .args(["files", ".", "-q", "-o", "out.csv", "-t", "x"])
            .assert()
            .success();
    }
    let db = tmp.path().join("batchproc.db");
    let paths: Vec<String> = query(&db, "SELECT path FROM files")
        .iter()
        .map(|r| r.get(0))
        .collect();
    // out.csv and its state file were written by the other run: they are ordinary files here.
    assert!(
        !paths.iter().any(|p| p.contains("batchproc.db")),
        "{paths:?}"
    );
    assert!(paths.contains(&"./a.txt".to_owned()), "{paths:?}");
    let csv = std::fs::read_to_string(tmp.path().join("out.csv")).unwrap();
    assert!(
        !csv.contains("./out.csv,") && !csv.contains("out.csv.state.db"),
        "{csv}"
    );
}

#[test]
fn a_file_that_vanishes_before_its_turn_is_a_warning_not_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("a.txt"), "a\n").unwrap();
    std::fs::write(d.join("b.txt"), "b\n").unwrap();
    // The only worker holds on in a.txt's command until b.txt is gone.
    let hold = "exec:sh -c 'if [ {} = d/a.txt ]; then touch started; \
                while [ ! -e release ]; do sleep 0.02; done; fi'";
    let child = batchproc_std(tmp.path())
        .args(["files", "d", "-p", "sha256", "-p", hold, "-w", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !tmp.path().join("started").exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::remove_file(d.join("b.txt")).unwrap();
    std::fs::write(tmp.path().join("release"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("batchproc: warning: d/b.txt: vanished before it was read"),
        "{err}"
    );
    let db = tmp.path().join("batchproc.db");
    assert_eq!(count(&db, "files"), 1);
    let skipped: i64 = query(&db, "SELECT skipped FROM batchproc_runs")[0].get(0);
    assert_eq!(skipped, 1);
}

#[test]
fn a_directory_that_vanishes_during_the_walk_is_a_warning_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("zz")).unwrap();
    // More files than the walk reads ahead, so it has not yet listed d/zz
    // when the first item's command removes it (as a cleanup job would).
    const FILES: usize = 3000;
    for i in 0..FILES {
        std::fs::write(d.join(format!("a/{i:05}")), "x").unwrap();
    }
    for i in 0..5 {
        std::fs::write(d.join(format!("zz/{i}")), "y").unwrap();
    }
    let out = batchproc(tmp.path())
        .args(["files", "d", "-w", "2", "-p", "sha256"])
        .args(["-p", "exec:sh -c 'test {} != d/a/00000 || rm -r d/zz'"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("batchproc: warning: d/zz: vanished before it was read"),
        "{err}"
    );
    // Every file the walk found has its row: the run did not stop there.
    let db = tmp.path().join("batchproc.db");
    assert_eq!(count(&db, "files"), FILES as i64);
    assert!(
        err.contains(&format!("{FILES} ok, 0 failed, 1 skipped")),
        "{err}"
    );
    let run = &query(&db, "SELECT status, ok, skipped FROM batchproc_runs")[0];
    assert_eq!(run.get::<String, _>(0), "succeeded");
    assert_eq!(run.get::<i64, _>(1), FILES as i64);
    assert_eq!(run.get::<i64, _>(2), 1);
}

#[test]
fn an_mtime_chrono_cannot_represent_is_stored_as_null() {
    // tmpfs keeps 64-bit timestamps that ext4 would clamp.
    let Ok(tmp) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let f = tmp.path().join("future.txt");
    std::fs::write(&f, "x").unwrap();
    let far = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(far)
        .unwrap();
    let out = batchproc(tmp.path())
        .args(["files", "future.txt", "-q", "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().nth(1), Some("future.txt,1,,"), "{text}");
}
