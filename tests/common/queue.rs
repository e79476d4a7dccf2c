//! What the queue tests share: the records a sink holds, compared with
//! what they should be, waiting for a condition, and catching a record
//! written twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use sqlx::Row;

use super::pg::PgDb;
use super::query;

/// The flags every queue test adds: a short `--idle` unless `extra` gives
/// one, and the table `messages` unless it names one.
pub fn idle(extra: &[&str]) -> Vec<&'static str> {
    let mut args = Vec::new();
    if !extra.contains(&"--idle") {
        args.extend(["--idle", "300ms"]);
    }
    if !extra.contains(&"-t") {
        args.extend(["-t", "messages"]);
    }
    args
}

/// A record as the tests read it: (payload, payload_sha256, error).
pub type Records = BTreeMap<i64, (String, Option<String>, Option<String>)>;

/// The records of a SQLite sink: id -> (payload, payload_sha256, error).
pub fn sqlite_records(db: &Path) -> Records {
    query(
        db,
        "SELECT id, payload, payload_sha256, error FROM messages",
    )
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
    .collect()
}

pub fn pg_records(db: &PgDb) -> Records {
    db.query("SELECT id, payload, payload_sha256, error FROM messages")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

pub fn assert_matches(records: &Records, expected: &BTreeMap<i64, (String, String)>) {
    assert_eq!(records.len(), expected.len(), "one record per message");
    for (id, (payload, sha)) in expected {
        let (p, s, e) = &records[id];
        assert_eq!(p, payload, "payload of {id}");
        assert_eq!(s.as_deref(), Some(sha.as_str()), "sha256 of {id}");
        assert_eq!(e, &None, "error of {id}");
    }
}

/// Waits until `f` holds, at most 60 s.
pub fn until(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited 60 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sqlite_count(db: &Path) -> i64 {
    let exists =
        db.exists() && !query(db, "SELECT 1 FROM sqlite_master WHERE name = 'messages'").is_empty();
    match exists {
        true => query(db, "SELECT count(*) FROM messages")[0].get(0),
        false => 0,
    }
}

/// Logs any record written a second time (an upsert that found its row).
pub fn watch_rewrites_sqlite(db: &Path) {
    super::execute(
        db,
        "CREATE TABLE IF NOT EXISTS rewrites (id INTEGER); \
         CREATE TRIGGER IF NOT EXISTS rewritten AFTER UPDATE ON messages \
         BEGIN INSERT INTO rewrites VALUES (new.id); END;",
    );
}

pub fn count_rewrites(db: &Path) -> i64 {
    query(db, "SELECT count(*) FROM rewrites")[0].get(0)
}

pub fn wait_with_timeout(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A script that refuses (exit 3) any argument containing `bad`: `exec:`
/// on it makes a poison message of one that does.
pub fn refusing_script(dir: &Path) {
    let check = dir.join("check.sh");
    std::fs::write(
        &check,
        "#!/bin/sh\ncase \"$1\" in *bad*) echo refused >&2; exit 3;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&check, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// `ok` of each run recorded in a Postgres sink, oldest first.
pub fn run_oks(sink: &PgDb) -> Vec<i64> {
    sink.query("SELECT ok FROM batchproc_runs ORDER BY id")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Two consumers that shared a queue: both took part, and their counts
/// add up to `n` (no message was processed twice).
pub fn assert_shared(sink: &PgDb, n: i64) {
    let oks = run_oks(sink);
    assert_eq!(oks.len(), 2, "{oks:?}");
    assert!(oks.iter().all(|ok| *ok > 0), "{oks:?}");
    assert_eq!(oks.iter().sum::<i64>(), n, "{oks:?}");
}

/// The flags of a poison test: the refusing script on each payload, two
/// deliveries allowed, one worker.
pub const POISON_FLAGS: [&str; 6] = [
    "-p",
    "exec:./check.sh {payload}",
    "--max-deliveries",
    "2",
    "-w",
    "1",
];

/// Three runs of a queue holding a good and a bad message: fail-fast fails
/// the first two on the bad one (handed back each time); the third
/// delivery is one too many, so it is recorded without being tried.
pub fn poison_runs(run: impl Fn() -> std::process::Output) {
    use super::stderr_of;
    for attempt in 1..=2 {
        let out = run();
        assert_eq!(
            out.status.code(),
            Some(1),
            "attempt {attempt}: {}",
            stderr_of(&out)
        );
        assert!(stderr_of(&out).contains("refused"), "{}", stderr_of(&out));
    }
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("refused"), "{}", stderr_of(&out));
}
