//! Every long flag can come from the environment as `BATCHPROC_<FLAG>`, for
//! a cron line or a container; the command line wins over it, and a bad
//! value names the variable it came from.

mod common;

use common::*;
use predicates::prelude::*;
use predicates::str::contains;

fn tree(root: &std::path::Path) {
    many_csv_files(&root.join("d"), 5);
}

#[test]
fn flags_come_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    batchproc(tmp.path())
        .args(["files", "d"])
        .env("BATCHPROC_PROCESSOR", "lines,sha256")
        .env("BATCHPROC_SINK", "sqlite:from-env.db")
        .env("BATCHPROC_TABLE", "hashed")
        .env("BATCHPROC_WORKERS", "1")
        .env("BATCHPROC_QUIET", "yes")
        .assert()
        .success()
        .stderr("");
    let db = tmp.path().join("from-env.db");
    let rows = query(&db, "SELECT path, lines, sha256 FROM hashed ORDER BY path");
    assert_eq!(rows.len(), 5);
    use sqlx::Row;
    let path: String = rows[0].get(0);
    let digest: String = rows[0].get(2);
    assert_eq!(digest, sha256sum(&tmp.path().join(&path)));
    assert_eq!(rows[0].get::<i64, _>(1), 2);
    assert!(!tmp.path().join("batchproc.db").exists());
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-o", "cli.db", "--min-workers", "1"])
        // Each would conflict with the command line's, or send rows elsewhere.
        .env("BATCHPROC_SINK", "sqlite:env.db")
        .env("BATCHPROC_WORKERS", "3")
        .assert()
        .success();
    assert_eq!(count(&tmp.path().join("cli.db"), "files"), 5);
    assert!(!tmp.path().join("env.db").exists());
    // A false boolean from the environment is no flag at all.
    batchproc(tmp.path())
        .args(["files", "d", "-q", "-o", "cli.db", "--no-checkpoint"])
        .env("BATCHPROC_RESUME", "false")
        .assert()
        .success();
    // Both on the command line is still a usage error.
    batchproc(tmp.path())
        .args(["files", "d", "-w", "2", "--min-workers", "1"])
        .assert()
        .code(2)
        .stderr(contains("cannot be used with"));
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    batchproc(tmp.path())
        .args(["files", "d"])
        .env("BATCHPROC_WORKERS", "lots")
        .assert()
        .code(2)
        .stderr(contains("invalid value 'lots' for '--workers <N>'"))
        .stderr(contains("(the value comes from BATCHPROC_WORKERS)"));
    assert!(!tmp.path().join("batchproc.db").exists());
}

#[test]
fn help_names_the_variables_but_never_their_values() {
    let tmp = tempfile::tempdir().unwrap();
    batchproc(tmp.path())
        .args(["files", "--help"])
        .env("BATCHPROC_SINK", "postgres://me:s3cr3t-pw@db/prod")
        .assert()
        .success()
        .stdout(contains("[env: BATCHPROC_SINK]"))
        .stdout(contains("[env: BATCHPROC_ON_ERROR]"))
        .stdout(predicates::str::contains("s3cr3t-pw").not());
}
