//! `batchproc queue` on NATS JetStream streams of the real local server:
//! drains compared record by record with digests Python computes, SIGKILLs
//! between commit and ack and at fixed points, a consumer that dies with
//! messages leased, poison messages, two consumers at once, `--follow`, and
//! streams or consumers batchproc must refuse.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::nats::{fresh_stream, NatsStream};
use common::pg::fresh_db;
use common::queue::{
    assert_matches, assert_shared, count_rewrites, idle, pg_records, poison_runs, refusing_script,
    sqlite_count, sqlite_records, until, wait_with_timeout, watch_rewrites_sqlite, POISON_FLAGS,
};
use common::{batchproc, batchproc_std, query, stderr_of};
use sqlx::Row;

fn payloads(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{{\"n\":{i},\"text\":\"message {i} ü\",\"pad\":\"{}\"}}",
                "x".repeat(i % 200)
            )
        })
        .collect()
}

/// Sequence -> (payload, its SHA-256 as Python's hashlib computes it), for
/// payloads published in order on a fresh stream (sequences from 1).
fn expected(payloads: &[String]) -> BTreeMap<i64, (String, String)> {
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, hashlib\n\
             for p in json.load(sys.stdin): print(hashlib.sha256(p.encode()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(payloads).unwrap();
    python.stdin.take().unwrap().write_all(&input).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success());
    let digests = String::from_utf8(out.stdout).unwrap();
    (1..)
        .zip(payloads.iter().zip(digests.lines()))
        .map(|(seq, (p, d))| (seq, (p.clone(), d.to_owned())))
        .collect()
}

fn drain(dir: &Path, s: &NatsStream, sink: &str, extra: &[&str]) -> std::process::Output {
    batchproc(dir)
        .args(["queue", "--from", &s.url, "--queue", &s.name, "-o", sink])
        .args(["-p", "sha256:payload"])
        .args(idle(extra))
        .args(extra)
        .output()
        .unwrap()
}

fn spawn(dir: &Path, s: &NatsStream, sink: &str, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = batchproc_std(dir);
    cmd.args(["queue", "--from", &s.url, "--queue", &s.name, "-o", sink])
        .args(["-p", "sha256:payload"])
        .args(idle(extra))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// `(num_pending, num_ack_pending)` of the consumer batchproc uses.
fn left(s: &NatsStream) -> (u64, u64) {
    s.consumer_counts("batchproc").unwrap()
}

#[test]
fn drains_10000_messages_into_sqlite_and_postgres_record_for_record() {
    let Some(s) = fresh_stream() else { return };
    let Some(pg) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sent = payloads(10_000);
    s.publish(&sent);
    let want = expected(&sent);

    let out = drain(tmp.path(), &s, "sqlite:out.db", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("10000 ok, 0 failed") && err.contains("held: 0"),
        "{err}"
    );
    let db = tmp.path().join("out.db");
    assert_matches(&sqlite_records(&db), &want);
    let meta = query(
        &db,
        "SELECT DISTINCT subject, deliveries, published IS NOT NULL FROM messages",
    );
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].get::<String, _>(0), format!("{}.m", s.name));
    assert_eq!(meta[0].get::<i64, _>(1), 1);
    assert!(meta[0].get::<bool, _>(2));
    assert_eq!(left(&s), (0, 0));

    // A second durable consumer sees every message again: into Postgres.
    let out = drain(tmp.path(), &s, &pg.url, &["--consumer", "pg"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_matches(&pg_records(&pg), &want);
    assert_eq!(s.consumer_counts("pg"), Some((0, 0)));
}

#[test]
fn a_payload_that_is_not_utf8_is_kept_as_bytes() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    s.publish(&[&b"plain"[..], &[0xff, 0xfe, b'x'][..]]);
    let out = drain(tmp.path(), &s, "sqlite:out.db", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = query(
        &tmp.path().join("out.db"),
        "SELECT typeof(payload), hex(payload), payload_sha256 FROM messages ORDER BY id",
    );
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("text".into(), "706C61696E".into()),
            ("blob".into(), "FFFE78".into())
        ]
    );
    // sha256 of ff fe 78, as `printf '\xff\xfex' | sha256sum` gives it.
    let sha: String = rows[1].get(2);
    assert_eq!(
        sha,
        "91ec73f6566b11922bd0bf233be91576023a9173100a75442d998a5675776078"
    );
}

#[test]
fn a_kill_between_commit_and_ack_leaves_records_that_a_rerun_recognises() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_db = tmp.path().join("out.db");
    // A first message creates the table, to watch for rewrites from the start.
    let mut sent = vec!["first".to_owned()];
    s.publish(&sent);
    let first = drain(tmp.path(), &s, "sqlite:out.db", &["--lease", "1s"]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    watch_rewrites_sqlite(&out_db);
    sent.extend(payloads(500));
    s.publish(&sent[1..]);
    let mut want = expected(&sent);
    want.remove(&1);

    let child = spawn(
        tmp.path(),
        &s,
        "sqlite:out.db",
        &["--batch-size", "50", "--lease", "1s"],
        &[("BATCHPROC_TEST_ACK_DELAY_MS", "600000")],
    );
    until("a batch committed", || sqlite_count(&out_db) > 1);
    common::sigkill_after(child, Duration::ZERO);
    let committed = sqlite_count(&out_db) - 1;
    assert_eq!(left(&s).0 + left(&s).1, 500, "nothing acked yet");

    std::thread::sleep(Duration::from_millis(1500));
    let out = drain(
        tmp.path(),
        &s,
        "sqlite:out.db",
        &["--lease", "1s", "--summary-json", "summary.json"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["redelivered"], committed, "{summary}");
    assert_eq!(summary["ok"], 500 - committed, "{summary}");
    let mut records = sqlite_records(&out_db);
    records.remove(&1);
    assert_matches(&records, &want);
    assert_eq!(count_rewrites(&out_db), 0, "a record was written twice");
    assert_eq!(left(&s), (0, 0));
}

#[test]
fn sigkills_at_fixed_points_then_reruns_give_every_record_once() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_db = tmp.path().join("out.db");
    let sent = payloads(3000);
    s.publish(&sent);
    let want = expected(&sent);
    let env = [
        ("BATCHPROC_TEST_COMMIT_DELAY_MS", "30"),
        ("BATCHPROC_TEST_ACK_DELAY_MS", "30"),
    ];
    let extra = ["--batch-size", "100", "--lease", "1s", "-w", "2"];
    for ms in [40, 250, 600, 900, 1400, 2000] {
        let child = spawn(tmp.path(), &s, "sqlite:out.db", &extra, &env);
        common::sigkill_after(child, Duration::from_millis(ms));
        if sqlite_count(&out_db) > 0 {
            watch_rewrites_sqlite(&out_db);
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    let out = drain(
        tmp.path(),
        &s,
        "sqlite:out.db",
        &["--idle", "2s", "--lease", "1s"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    common::integrity_ok(&out_db, "after the kills");
    assert_matches(&sqlite_records(&out_db), &want);
    assert_eq!(left(&s), (0, 0));
    if !query(
        &out_db,
        "SELECT 1 FROM sqlite_master WHERE name = 'rewrites'",
    )
    .is_empty()
    {
        assert_eq!(count_rewrites(&out_db), 0, "a record was written twice");
    }
}

#[test]
fn messages_a_dead_consumer_held_are_reported_then_redelivered() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sent = payloads(200);
    s.publish(&sent);
    let want = expected(&sent);
    let child = spawn(
        tmp.path(),
        &s,
        "sqlite:a.db",
        &["--lease", "5s", "-p", "exec:sleep 0.05", "-w", "1"],
        &[],
    );
    until("messages leased", || {
        s.consumer_counts("batchproc").is_some_and(|c| c.1 > 0)
    });
    common::sigkill_after(child, Duration::ZERO);
    let held = left(&s).1;

    let out = drain(
        tmp.path(),
        &s,
        "sqlite:b.db",
        &["--idle", "200ms", "--lease", "5s"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains(&format!("held: {held}")), "{held} held: {err}");

    std::thread::sleep(Duration::from_secs(5));
    let out = drain(tmp.path(), &s, "sqlite:b.db", &["--lease", "5s"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("{held} ok")),
        "{}",
        stderr_of(&out)
    );
    assert_matches(&sqlite_records(&tmp.path().join("b.db")), &want);
    assert_eq!(left(&s), (0, 0));
}

#[test]
fn a_poison_message_is_recorded_and_terminated_after_max_deliveries() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    s.publish(&["good", "bad"]);
    refusing_script(tmp.path());
    let run = || drain(tmp.path(), &s, "sqlite:out.db", &POISON_FLAGS);
    poison_runs(run);
    let rows = query(
        &tmp.path().join("out.db"),
        "SELECT payload, error FROM messages ORDER BY id",
    );
    let rows: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(rows[0], ("good".into(), None));
    let error = rows[1].1.as_deref().unwrap();
    assert!(error.contains("poison: delivered 3 times"), "{error}");
    // Terminated: never delivered again.
    assert_eq!(left(&s), (0, 0));
    let again = run();
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert!(
        stderr_of(&again).contains("0 ok, 0 failed"),
        "{}",
        stderr_of(&again)
    );
}

#[test]
fn two_consumers_share_a_stream_and_each_message_is_processed_once() {
    let Some(s) = fresh_stream() else { return };
    let Some(sink) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sent = payloads(1500);
    s.publish(&sent);
    let want = expected(&sent);
    let extra = [
        "-p",
        "exec:sleep 0.005",
        "-w",
        "2",
        "--batch-size",
        "100",
        "--idle",
        "1s",
    ];
    let a = spawn(tmp.path(), &s, &sink.url, &extra, &[]);
    let b = spawn(tmp.path(), &s, &sink.url, &extra, &[]);
    for mut child in [a, b] {
        assert!(child.wait().unwrap().success());
    }
    assert_matches(&pg_records(&sink), &want);
    assert_shared(&sink, 1500);
    assert_eq!(left(&s), (0, 0));
}

#[test]
fn follow_keeps_consuming_until_sigterm() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_db = tmp.path().join("out.db");
    let child = spawn(tmp.path(), &s, "sqlite:out.db", &["--follow"], &[]);
    s.publish(&payloads(100));
    until("the first wave", || sqlite_count(&out_db) == 100);
    std::thread::sleep(Duration::from_millis(800));
    s.publish(&payloads(50));
    until("the second wave", || sqlite_count(&out_db) == 150);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    assert_eq!(left(&s), (0, 0));
}

#[test]
fn bad_servers_streams_and_consumers_are_refused_before_any_work() {
    let Some(s) = fresh_stream() else { return };
    let tmp = tempfile::tempdir().unwrap();
    s.publish(&["one", "two"]);
    let refused = |args: &[&str], needle: &str| {
        let out = batchproc(tmp.path())
            .arg("queue")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    };
    refused(
        &["--from", "nats://u:s3cret@127.0.0.1:1", "--queue", &s.name],
        "127.0.0.1:1",
    );
    refused(
        &["--from", &s.url, "--queue", "NO_SUCH_STREAM"],
        "NO_SUCH_STREAM",
    );
    refused(
        &["--from", &s.url, "--queue", &s.name, "--archive"],
        "--archive",
    );
    s.create_consumer(async_nats::jetstream::consumer::Config {
        durable_name: Some("pushed".into()),
        deliver_subject: Some("somewhere".into()),
        ..Default::default()
    });
    refused(
        &["--from", &s.url, "--queue", &s.name, "--consumer", "pushed"],
        "push consumer",
    );
    // Nothing was consumed.
    assert_eq!(s.consumer_counts("batchproc"), None);
    assert!(!tmp.path().join("batchproc.db").exists());
}
