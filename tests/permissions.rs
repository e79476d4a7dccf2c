//! Files and directories the user may not read or write: an unreadable file
//! or directory fails its item, a sink where nothing can be written is a
//! usage error before any work, and a read-only SQLite source in WAL mode
//! is read while its writer has it open. Run as an ordinary user would meet
//! permissions, also under root (see `batchproc_unprivileged`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_unreadable_file_is_an_item_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("ok.txt"), "x").unwrap();
    std::fs::write(d.join("secret.txt"), "x").unwrap();
    chmod(&d.join("secret.txt"), 0o000);
    let out = batchproc_unprivileged(tmp.path())
        .args(["files", "d", "-p", "sha256", "--on-error", "skip"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("warning: d/secret.txt: open: Permission denied"),
        "{err}"
    );
    let rows = query(
        &tmp.path().join("batchproc.db"),
        "SELECT path, sha256, error FROM files ORDER BY path",
    );
    assert_eq!(rows.len(), 2);
    use sqlx::Row;
    assert_eq!(
        rows[0].get::<Option<String>, _>(1).as_deref(),
        Some(sha256sum(&d.join("ok.txt")).as_str())
    );
    assert_eq!(
        rows[1].get::<Option<String>, _>(2).as_deref(),
        Some("open: Permission denied")
    );
}

#[test]
fn an_unreadable_directory_stops_a_default_run_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "a").unwrap();
    std::fs::write(d.join("sub/b.txt"), "b").unwrap();
    chmod(&d.join("sub"), 0o000);
    let out = batchproc_unprivileged(tmp.path())
        .args(["files", "d", "-p", "sha256"])
        .output()
        .unwrap();
    chmod(&d.join("sub"), 0o755);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("batchproc: error: d/sub: Permission denied"),
        "{err}"
    );
}

#[test]
fn a_sink_that_cannot_be_written_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    many_csv_files(&tmp.path().join("d"), 3);
    std::fs::create_dir(tmp.path().join("ro")).unwrap();
    std::fs::write(tmp.path().join("locked.db"), "").unwrap();
    chmod(&tmp.path().join("ro"), 0o555);
    chmod(&tmp.path().join("locked.db"), 0o444);
    for (sink, message) in [
        (
            "sqlite:ro/out.db",
            "cannot write SQLite database ro/out.db: directory ro is not writable (permission denied)",
        ),
        (
            "csv:ro/out.csv",
            "cannot write CSV ro/out.csv: directory ro is not writable (permission denied)",
        ),
        (
            "sqlite:locked.db",
            "SQLite database locked.db is not writable (permission denied)",
        ),
    ] {
        let out = batchproc_unprivileged(tmp.path())
            .args(["files", "d", "-p", "sha256", "--sink", sink])
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{sink}: {err}");
        assert_eq!(err, format!("batchproc: error: {message}\n"));
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("ro")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A writer (Python's sqlite3) keeps the database open in WAL mode with
/// its rows still in the WAL, in a directory the reader cannot write: the
/// rows are read all the same. Without the `-shm` file SQLite cannot read
/// it there at all, and the message says why.
#[test]
fn a_read_only_sqlite_source_in_wal_mode_is_read_while_its_writer_has_it_open() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let writer = "import sqlite3, sys\n\
        c = sqlite3.connect('src/src.db', isolation_level=None)\n\
        c.execute('PRAGMA journal_mode=WAL')\n\
        c.execute('PRAGMA wal_autocheckpoint=0')\n\
        c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')\n\
        c.executemany('INSERT INTO t VALUES (?, ?)', [(i, 'v%d' % i) for i in range(1, 101)])\n\
        print('ready', flush=True)\n\
        sys.stdin.read()\n";
    let mut holder = Command::new("python3")
        .args(["-c", writer])
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    assert!(std::fs::metadata(src.join("src.db-wal")).unwrap().len() > 0);
    chmod(&src, 0o555);
    let read = |out: &str| {
        batchproc_unprivileged(tmp.path())
            .args([
                "query",
                "--from",
                "sqlite:src/src.db",
                "--sql",
                "SELECT * FROM t",
            ])
            .args(["--key", "id", "-t", "t", "--sink", out])
            .output()
            .unwrap()
    };
    let out = read("sqlite:out.db");
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    use sqlx::Row;
    let rows: Vec<(i64, String)> = query(
        &tmp.path().join("out.db"),
        "SELECT id, v FROM t ORDER BY id",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let expected: Vec<(i64, String)> = (1..=100).map(|i| (i, format!("v{i}"))).collect();
    assert_eq!(rows, expected);
    // The writer closed it (WAL checkpointed away); with the database
    // still in WAL mode, no -shm and no way to create one:
    chmod(&src, 0o755);
    execute(&src.join("src.db"), "PRAGMA journal_mode=WAL");
    let _ = std::fs::remove_file(src.join("src.db-shm"));
    let _ = std::fs::remove_file(src.join("src.db-wal"));
    chmod(&src, 0o555);
    let out = read("sqlite:out2.db");
    chmod(&src, 0o755);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("src/src.db is in WAL mode and has no -shm file")
            && err.contains("directory src is not writable"),
        "{err}"
    );
}
