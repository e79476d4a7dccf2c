//! `batchproc queue` on pgmq queues in the real local Postgres: drains
//! compared record by record with what Postgres itself computes, SIGKILLs
//! between commit and ack and at random points, a consumer that dies with
//! messages leased, poison messages, two consumers at once, and `--follow`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::pg::{fresh_db, PgDb};
use common::pgmq::{counts, create_queue, send};
use common::queue::{
    assert_matches, assert_shared, count_rewrites, idle, pg_records, poison_runs, refusing_script,
    sqlite_count, sqlite_records, until, wait_with_timeout, watch_rewrites_sqlite, POISON_FLAGS,
};
use common::{batchproc, batchproc_std, query, stderr_of};
use sqlx::Row;

/// Each message's payload (the JSON text Postgres gives) and the SHA-256
/// of it, computed by Postgres: taken before the queue is drained.
fn expected(db: &PgDb, queue: &str) -> BTreeMap<i64, (String, String)> {
    db.query(&format!(
        "SELECT msg_id, message::text, encode(sha256(convert_to(message::text, 'UTF8')), 'hex') \
         FROM pgmq.q_{queue}"
    ))
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect()
}

fn payloads(n: usize) -> impl Iterator<Item = serde_json::Value> {
    (0..n).map(|i| serde_json::json!({ "n": i, "text": format!("message {i} ü"), "pad": "x".repeat(i % 200) }))
}

/// `batchproc queue` from the queue in `db` into `sink`.
fn drain(dir: &Path, db: &PgDb, queue: &str, sink: &str, extra: &[&str]) -> std::process::Output {
    batchproc(dir)
        .args(["queue", "--from", &db.url, "--queue", queue, "-o", sink])
        .args(["-p", "sha256:payload"])
        .args(idle(extra))
        .args(extra)
        .output()
        .unwrap()
}

fn spawn(
    dir: &Path,
    db: &PgDb,
    queue: &str,
    sink: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = batchproc_std(dir);
    cmd.args(["queue", "--from", &db.url, "--queue", queue, "-o", sink])
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

#[test]
fn drains_10000_messages_into_sqlite_and_postgres_record_for_record() {
    let Some(db) = fresh_db() else { return };
    let Some(other) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for q in ["to_sqlite", "to_other", "to_same"] {
        create_queue(&db.url, q, false);
        send(&db.url, q, payloads(10_000));
    }

    let want = expected(&db, "to_sqlite");
    let out = drain(tmp.path(), &db, "to_sqlite", "sqlite:out.db", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("10000 ok, 0 failed") && err.contains("held: 0"),
        "{err}"
    );
    assert_matches(&sqlite_records(&tmp.path().join("out.db")), &want);
    assert_eq!(counts(&db.url, "to_sqlite"), (0, 0, 0));

    // Another database: acked after each commit.
    let want = expected(&db, "to_other");
    let out = drain(tmp.path(), &db, "to_other", &other.url, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_matches(&pg_records(&other), &want);
    assert_eq!(counts(&db.url, "to_other"), (0, 0, 0));

    // The queue's own database: deleted in the sink's transactions.
    let want = expected(&db, "to_same");
    let out = drain(
        tmp.path(),
        &db,
        "to_same",
        &db.url,
        &["--batch-size", "700"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_matches(&pg_records(&db), &want);
    assert_eq!(counts(&db.url, "to_same"), (0, 0, 0));
    let deliveries: i64 = db.query("SELECT max(deliveries) FROM messages")[0].get(0);
    assert_eq!(deliveries, 1);
}

#[test]
fn a_kill_between_commit_and_ack_leaves_records_that_a_rerun_recognises() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_db = tmp.path().join("out.db");
    create_queue(&db.url, "jobs", false);
    // A first message creates the table, to watch for rewrites from the start.
    send(&db.url, "jobs", [serde_json::json!("first")]);
    let first = drain(tmp.path(), &db, "jobs", "sqlite:out.db", &[]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    watch_rewrites_sqlite(&out_db);
    send(&db.url, "jobs", payloads(500));
    let want = expected(&db, "jobs");

    // Acks wait long after each commit: the kill lands between the two.
    let child = spawn(
        tmp.path(),
        &db,
        "jobs",
        "sqlite:out.db",
        &["--batch-size", "50", "--lease", "1s"],
        &[("BATCHPROC_TEST_ACK_DELAY_MS", "600000")],
    );
    until("a batch committed", || sqlite_count(&out_db) > 1);
    common::sigkill_after(child, Duration::ZERO);
    let committed = sqlite_count(&out_db) - 1;
    assert!(committed > 0);
    assert_eq!(
        counts(&db.url, "jobs").0 + counts(&db.url, "jobs").1,
        500,
        "nothing acked yet"
    );

    // The leases run out; the rerun meets the committed ones again.
    std::thread::sleep(Duration::from_millis(1500));
    let out = drain(
        tmp.path(),
        &db,
        "jobs",
        "sqlite:out.db",
        &["--summary-json", "summary.json"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["redelivered"], committed, "{summary}");
    assert_eq!(summary["ok"], 500 - committed, "{summary}");
    let mut records = sqlite_records(&out_db);
    records.retain(|id, _| want.contains_key(id));
    assert_matches(&records, &want);
    assert_eq!(count_rewrites(&out_db), 0, "a record was written twice");
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
}

#[test]
fn in_the_queues_own_database_the_delete_commits_with_the_records() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(400));
    let want = expected(&db, "jobs");
    let child = spawn(
        tmp.path(),
        &db,
        "jobs",
        &db.url,
        &["--batch-size", "40"],
        &[("BATCHPROC_TEST_ACK_DELAY_MS", "600000")],
    );
    let committed = || {
        db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'messages'")[0].get::<i64, _>(0)
            > 0
            && db.query("SELECT count(*) FROM messages")[0].get::<i64, _>(0) > 0
    };
    until("a batch committed", committed);
    common::sigkill_after(child, Duration::ZERO);
    db.wait_for_other_sessions_to_end();
    // Killed before any ack: still, every committed message is gone from
    // the queue, and every other one is still in it.
    let records: i64 = db.query("SELECT count(*) FROM messages")[0].get(0);
    let (visible, invisible, _) = counts(&db.url, "jobs");
    assert_eq!(records + visible + invisible, 400);
    let both: i64 =
        db.query("SELECT count(*) FROM messages m JOIN pgmq.q_jobs q ON q.msg_id = m.id")[0].get(0);
    assert_eq!(both, 0, "a message both recorded and still queued");

    // The rest, after the dead run's leases (30 s by default) are let go.
    db.execute("UPDATE pgmq.q_jobs SET vt = now()");
    let out = drain(tmp.path(), &db, "jobs", &db.url, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_matches(&pg_records(&db), &want);
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
}

#[test]
fn sigkills_at_random_points_then_reruns_give_every_record_once() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_db = tmp.path().join("out.db");
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(3000));
    let want = expected(&db, "jobs");
    let env = [
        ("BATCHPROC_TEST_COMMIT_DELAY_MS", "30"),
        ("BATCHPROC_TEST_ACK_DELAY_MS", "30"),
    ];
    let extra = ["--batch-size", "100", "--lease", "1s", "-w", "2"];
    // Fixed kill points across a run's life (its start, its first batches, later).
    for ms in [40, 250, 600, 900, 1400, 2000] {
        let child = spawn(tmp.path(), &db, "jobs", "sqlite:out.db", &extra, &env);
        common::sigkill_after(child, Duration::from_millis(ms));
        if out_db.exists() && sqlite_count(&out_db) > 0 {
            watch_rewrites_sqlite(&out_db);
        }
        // The dead run's leases run out before the next one.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let out = drain(tmp.path(), &db, "jobs", "sqlite:out.db", &["--idle", "2s"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    common::integrity_ok(&out_db, "after the kills");
    assert_matches(&sqlite_records(&out_db), &want);
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
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
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(200));
    let want = expected(&db, "jobs");
    let child = spawn(
        tmp.path(),
        &db,
        "jobs",
        "sqlite:a.db",
        &["--lease", "5s", "-p", "exec:sleep 0.05", "-w", "1"],
        &[],
    );
    until("messages leased", || counts(&db.url, "jobs").1 > 0);
    common::sigkill_after(child, Duration::ZERO);
    let held = counts(&db.url, "jobs").1;

    // Another consumer drains what it can and says what is held.
    let out = drain(tmp.path(), &db, "jobs", &db.url, &["--idle", "200ms"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains(&format!("held: {held}")), "{held} held: {err}");

    // Once the lease ran out, the next run gets them: every record once.
    std::thread::sleep(Duration::from_secs(5));
    let out = drain(tmp.path(), &db, "jobs", &db.url, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("{held} ok")),
        "{}",
        stderr_of(&out)
    );
    assert_matches(&pg_records(&db), &want);
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
}

#[test]
fn a_poison_message_is_recorded_and_archived_after_max_deliveries() {
    poison(false);
}

/// The same with the sink in the queue's database, whose transactions
/// delete the messages they commit: the poison one is archived all the same.
#[test]
fn a_poison_message_is_archived_by_a_sink_in_the_queues_database() {
    poison(true);
}

fn poison(same_database: bool) {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sink = match same_database {
        true => db.url.clone(),
        false => "sqlite:out.db".to_owned(),
    };
    create_queue(&db.url, "jobs", true);
    send(
        &db.url,
        "jobs",
        [serde_json::json!("good"), serde_json::json!("bad")],
    );
    refusing_script(tmp.path());
    let run = || drain(tmp.path(), &db, "jobs", &sink, &POISON_FLAGS);
    poison_runs(run);
    let select = "SELECT payload, error FROM messages ORDER BY id";
    let rows: Vec<(String, Option<String>)> = match same_database {
        true => db
            .query(select)
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        false => query(&tmp.path().join("out.db"), select)
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], ("\"good\"".into(), None));
    let error = rows[1].1.as_deref().unwrap();
    assert!(error.contains("poison: delivered 3 times"), "{error}");
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 1), "the bad one archived");
}

#[test]
fn two_consumers_share_a_queue_and_each_message_is_processed_once() {
    let Some(db) = fresh_db() else { return };
    let Some(sink) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(1500));
    let want = expected(&db, "jobs");
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
    let a = spawn(tmp.path(), &db, "jobs", &sink.url, &extra, &[]);
    let b = spawn(tmp.path(), &db, "jobs", &sink.url, &extra, &[]);
    for mut child in [a, b] {
        assert!(child.wait().unwrap().success());
    }
    assert_matches(&pg_records(&sink), &want);
    // Both took part, and nothing was processed twice.
    assert_shared(&sink, 1500);
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
}

#[test]
fn follow_keeps_consuming_until_sigterm() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out_db = tmp.path().join("out.db");
    create_queue(&db.url, "jobs", false);
    let child = spawn(tmp.path(), &db, "jobs", "sqlite:out.db", &["--follow"], &[]);
    send(&db.url, "jobs", payloads(100));
    until("the first wave", || sqlite_count(&out_db) == 100);
    // Idle far longer than --idle: still there.
    std::thread::sleep(Duration::from_millis(800));
    send(&db.url, "jobs", payloads(50));
    until("the second wave", || sqlite_count(&out_db) == 150);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
    let interrupted: String = query(&out_db, "SELECT status FROM batchproc_runs")[0].get(0);
    assert_eq!(interrupted, "interrupted");
}

#[test]
fn bad_queues_and_sinks_are_refused_before_any_work() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(3));
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
        assert!(!err.contains("panicked"), "{err}");
    };
    refused(&["--from", &db.url, "--queue", "nope"], "nope");
    let down = "postgres://postgres:s3cret@127.0.0.1:1/app";
    refused(&["--from", down, "--queue", "jobs"], "127.0.0.1:1");
    refused(
        &["--from", "redis://127.0.0.1", "--queue", "jobs"],
        "nats://",
    );
    refused(
        &["--from", &db.url, "--queue", "jobs", "-o", "out.csv"],
        "database sink",
    );
    refused(
        &["--from", &db.url, "--queue", "jobs", "--resume"],
        "--resume",
    );
    refused(
        &["--from", &db.url, "--queue", "jobs", "-p", "sha256:body"],
        "no column \"body\"",
    );
    // Nothing was consumed, and no password shown.
    assert_eq!(counts(&db.url, "jobs"), (3, 0, 0));
    assert!(!tmp.path().join("batchproc.db").exists());
    let out = batchproc(tmp.path())
        .args(["queue", "--from", down, "--queue", "jobs"])
        .output()
        .unwrap();
    assert!(!stderr_of(&out).contains("s3cret"));
}

#[test]
fn max_runtime_ends_a_drain_early_and_hands_the_rest_back() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(300));
    let out = drain(
        tmp.path(),
        &db,
        "jobs",
        "sqlite:out.db",
        &["-p", "exec:sleep 0.05", "-w", "1", "--max-runtime", "1s"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("run again to go on with the queue"), "{err}");
    assert!(!err.contains("--resume"), "{err}");
    let done = sqlite_count(&tmp.path().join("out.db"));
    assert!(done > 0 && done < 300, "{done}");
    // What it fetched and did not start is visible again at once.
    assert_eq!(counts(&db.url, "jobs"), (300 - done, 0, 0));
}

#[test]
fn connections_lost_mid_drain_are_made_again_and_nothing_is_lost() {
    let Some(db) = fresh_db() else { return };
    let Some(sink) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    create_queue(&db.url, "jobs", false);
    send(&db.url, "jobs", payloads(600));
    let want = expected(&db, "jobs");
    let child = spawn(
        tmp.path(),
        &db,
        "jobs",
        &sink.url,
        &["-p", "exec:sleep 0.002", "-w", "2", "--batch-size", "50"],
        &[],
    );
    let committed = || {
        sink.query("SELECT count(*) FROM pg_tables WHERE tablename = 'messages'")[0]
            .get::<i64, _>(0)
            > 0
            && sink.query("SELECT count(*) FROM messages")[0].get::<i64, _>(0) > 0
    };
    until("a batch committed", committed);
    // As a server restart would: every session of both databases ends.
    assert!(db.terminate_sessions() > 0);
    sink.terminate_sessions();
    let status = wait_with_timeout(child, Duration::from_secs(120));
    assert!(status.success(), "{status:?}");
    assert_matches(&pg_records(&sink), &want);
    assert_eq!(counts(&db.url, "jobs"), (0, 0, 0));
}

#[test]
fn each_queue_has_a_table_of_its_own_by_default() {
    let Some(db) = fresh_db() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for q in ["Orders", "refunds"] {
        create_queue(&db.url, q, false);
        send(&db.url, q, payloads(3));
        let out = batchproc(tmp.path())
            .args(["queue", "--from", &db.url, "--queue", q, "--idle", "200ms"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    // Both have ids 1..3: in one table, the second queue's messages
    // would have been taken for the first's, or written over them.
    let db_file = tmp.path().join("batchproc.db");
    for table in ["orders", "refunds"] {
        let n: i64 = query(&db_file, &format!("SELECT count(*) FROM {table}"))[0].get(0);
        assert_eq!(n, 3, "{table}");
    }
}
