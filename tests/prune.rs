//! `files --incremental --prune`: only rows the walk covers (under the
//! directories given, through the filters) are deleted, and only after a
//! walk that met everything: not after a fail-fast stop, nor when a
//! directory could not be read.

mod common;

use std::path::Path;

use common::*;
use sqlx::Row;

/// A json run that passes unchanged files and prunes gone ones.
const PRUNE_JSON: [&str; 6] = ["files", "d", "-p", "json", "--incremental", "--prune"];

fn paths(db: &Path) -> Vec<String> {
    query(db, "SELECT path FROM files ORDER BY path")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn write(dir: &Path, files: &[&str]) {
    for f in files {
        let path = dir.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, f).unwrap();
    }
}

#[test]
fn only_rows_the_walk_covers_are_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let all = [
        "d/a.txt",
        "d/b.log",
        "d/skip/c.txt",
        "d/x/deep/e.txt",
        "other/f.txt",
    ];
    write(dir, &all);
    batchproc(dir)
        .args(["files", "d", "other", "-p", "sha256", "-q"])
        .assert()
        .success();
    for f in all {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    // Every file is gone, but this walk covers only d, no *.log, nothing
    // under skip/ and nothing deeper than two levels: only d/a.txt's row goes.
    let out = batchproc(dir)
        .args(["files", "d", "-p", "sha256", "--incremental", "--prune"])
        .args([
            "--exclude",
            "*.log",
            "--exclude",
            "skip",
            "--max-depth",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("0 ok, 0 failed, 1 removed in"),
        "{}",
        stderr_of(&out)
    );
    let db = dir.join("batchproc.db");
    assert_eq!(
        paths(&db),
        ["d/b.log", "d/skip/c.txt", "d/x/deep/e.txt", "other/f.txt"]
    );
    // --include: only matching rows.
    batchproc(dir)
        .args([
            "files",
            "d",
            "other",
            "-p",
            "sha256",
            "--incremental",
            "--prune",
        ])
        .args(["--include", "*.txt", "-q"])
        .assert()
        .success();
    assert_eq!(paths(&db), ["d/b.log"]);
}

#[test]
fn nothing_is_pruned_after_a_fail_fast_stop_or_an_unreadable_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, &["d/a.json", "d/gone.json", "d/locked/l.json"]);
    std::fs::write(dir.join("d/a.json"), "{}").unwrap();
    std::fs::write(dir.join("d/gone.json"), "{}").unwrap();
    std::fs::write(dir.join("d/locked/l.json"), "{}").unwrap();
    batchproc(dir)
        .args(["files", "d", "-p", "json", "-q"])
        .assert()
        .success();
    std::fs::remove_file(dir.join("d/gone.json")).unwrap();
    let db = dir.join("batchproc.db");
    let before = paths(&db);

    // An item fails under fail-fast: the run stops, nothing is pruned.
    std::fs::write(dir.join("d/bad.json"), "{oops").unwrap();
    let out = batchproc(dir)
        .args(PRUNE_JSON)
        .args(["-w", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(paths(&db).contains(&"d/gone.json".to_string()));
    std::fs::remove_file(dir.join("d/bad.json")).unwrap();

    // A directory the walk cannot read: its files' rows were not met.
    let locked = dir.join("d/locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = batchproc_unprivileged(dir)
        .args(PRUNE_JSON)
        .args(["--on-error", "skip"])
        .output()
        .unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--prune: the walk could not read every directory"),
        "{err}"
    );
    let mut after = paths(&db);
    after.retain(|p| p != "d/bad.json" && p != "d/locked");
    assert_eq!(after, before);

    // Readable again: the walk is complete, and the gone file's row goes
    // (with the failed rows of the directory and of bad.json).
    batchproc(dir).args(PRUNE_JSON).arg("-q").assert().success();
    assert_eq!(paths(&db), ["d/a.json", "d/locked/l.json"]);
}
