//! Tests of the pgmq broker against the real server.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use sqlx::Connection as _;

use std::sync::atomic::Ordering;

use super::*;

const LONG: Duration = Duration::from_secs(60);

/// pgmq's tables for `queue`, as `pgmq.create` makes them.
fn ddl(queue: &str, archive: bool) -> String {
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS pgmq;
         CREATE TABLE pgmq.q_{queue} (msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
             read_ct int NOT NULL DEFAULT 0, enqueued_at timestamptz NOT NULL DEFAULT now(),
             vt timestamptz NOT NULL, message jsonb);
         CREATE INDEX ON pgmq.q_{queue} (vt);"
    );
    if archive {
        sql += &format!(
            "CREATE TABLE pgmq.a_{queue} (msg_id bigint PRIMARY KEY,
                 read_ct int NOT NULL DEFAULT 0, enqueued_at timestamptz NOT NULL DEFAULT now(),
                 archived_at timestamptz NOT NULL DEFAULT now(), vt timestamptz NOT NULL,
                 message jsonb);"
        );
    }
    sql
}

/// A fresh database on the local server, dropped with the value; like
/// tests/common/pg.rs (unreachable: fail under CI=true, else skip loudly).
struct Db {
    url: String,
    admin: String,
    name: String,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    db::runtime().unwrap().block_on(f)
}

fn fresh_db() -> Option<Db> {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var("BATCHPROC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!(
        "bp_pgmq_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let created = block_on(async {
        let mut conn = PgConnection::connect(&admin).await?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(&sql).execute(&mut conn).await?;
        }
        conn.close().await
    });
    if let Err(e) = created {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Postgres at {admin} is unreachable under CI: {e}");
        }
        eprintln!("\n*** SKIPPED: Postgres at {admin} is unreachable ({e}) ***\n");
        return None;
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Some(Db { url, admin, name })
}

/// A fresh database holding the queue `jobs`.
fn with_queue(archive: bool) -> Option<Db> {
    let db = fresh_db()?;
    db.execute(&ddl("jobs", archive));
    Some(db)
}

impl Db {
    fn execute(&self, sql: &str) {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        })
    }

    fn int(&self, sql: &str) -> i64 {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        })
    }

    /// Sends `{"n": 0}`… to `jobs`.
    fn send(&self, n: usize) {
        self.execute(&format!(
            "INSERT INTO pgmq.q_jobs (vt, message) \
             SELECT clock_timestamp(), jsonb_build_object('n', i) FROM generate_series(0, {n} - 1) i"
        ));
    }

    fn admin(&self, sql: &str) {
        block_on(async {
            let mut conn = PgConnection::connect(&self.admin).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        })
    }

    fn terminate_sessions(&self) {
        self.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ));
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = block_on(async {
            let mut conn = PgConnection::connect(&self.admin).await?;
            sqlx::query(&sql).execute(&mut conn).await
        });
    }
}

fn ids(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.id).collect()
}

fn backlog(waiting: u64, held: u64) -> Backlog {
    Backlog { waiting, held }
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Pgmq>();
}

#[test]
fn fetched_and_acked_messages_leave_the_queue() {
    let Some(db) = with_queue(false) else { return };
    db.send(25);
    let q = Pgmq::open(&db.url, "jobs", LONG, false).unwrap();
    assert_eq!(q.backlog().unwrap(), backlog(25, 0));
    let mut got = Vec::new();
    loop {
        let batch = q.fetch(10, Duration::from_millis(200)).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10);
        got.extend(batch);
    }
    assert_eq!(ids(&got), (1..=25).collect::<Vec<_>>());
    for (n, m) in got.iter().enumerate() {
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body, serde_json::json!({ "n": n }));
        assert_eq!((m.deliveries, m.subject.as_ref()), (1, None));
        assert!(m.published.is_some());
    }
    assert_eq!(q.backlog().unwrap(), backlog(0, 25));
    q.ack(&ids(&got)).unwrap();
    assert_eq!(q.backlog().unwrap(), backlog(0, 0));
    assert_eq!(db.int("SELECT count(*) FROM pgmq.q_jobs"), 0);
}

#[test]
fn archive_moves_acked_messages() {
    let Some(db) = with_queue(true) else { return };
    db.send(5);
    let q = Pgmq::open(&db.url, "jobs", LONG, true).unwrap();
    let got = q.fetch(100, Duration::from_secs(1)).unwrap();
    assert_eq!(got.len(), 5);
    q.ack(&ids(&got)).unwrap();
    assert_eq!(db.int("SELECT count(*) FROM pgmq.q_jobs"), 0);
    let archived = "SELECT count(*) FROM pgmq.a_jobs WHERE read_ct = 1 AND message = jsonb_build_object('n', msg_id - 1)";
    assert_eq!(db.int(archived), 5);
}

#[test]
fn an_expired_lease_delivers_again() {
    let Some(db) = with_queue(false) else { return };
    db.send(1);
    let q = Pgmq::open(&db.url, "jobs", Duration::from_secs(1), false).unwrap();
    let first = q.fetch(10, Duration::ZERO).unwrap();
    assert_eq!((ids(&first), first[0].deliveries), (vec![1], 1));
    assert!(q.fetch(10, Duration::ZERO).unwrap().is_empty());
    assert_eq!(q.backlog().unwrap(), backlog(0, 1));
    let again = q.fetch(10, Duration::from_secs(10)).unwrap();
    assert_eq!((ids(&again), again[0].deliveries), (vec![1], 2));
}

#[test]
fn released_messages_are_visible_at_once() {
    let Some(db) = with_queue(false) else { return };
    db.send(3);
    let q = Pgmq::open(&db.url, "jobs", LONG, false).unwrap();
    assert_eq!(q.fetch(10, Duration::ZERO).unwrap().len(), 3);
    q.release(&[1, 2]).unwrap();
    let again = q.fetch(10, Duration::from_secs(5)).unwrap();
    assert_eq!(ids(&again), [1, 2]);
    assert!(again.iter().all(|m| m.deliveries == 2));
    assert_eq!(q.backlog().unwrap(), backlog(0, 3));
}

/// A consumer whose lease ran out, and whose message another consumer
/// took since, neither hands that message back nor extends its lease.
#[test]
fn a_lapsed_lease_neither_releases_nor_extends_the_next_delivery() {
    let Some(db) = with_queue(false) else { return };
    db.send(1);
    let late = Pgmq::open(&db.url, "jobs", Duration::from_secs(1), false).unwrap();
    assert_eq!(late.fetch(10, Duration::ZERO).unwrap().len(), 1);
    let other = Pgmq::open(&db.url, "jobs", LONG, false).unwrap();
    let taken = other.fetch(10, Duration::from_secs(10)).unwrap();
    assert_eq!((taken[0].id, taken[0].deliveries), (1, 2));
    let vt_us = "SELECT (extract(epoch FROM vt) * 1000000)::bigint FROM pgmq.q_jobs";
    let leased = db.int(vt_us);
    late.extend(&[1]).unwrap();
    late.release(&[1]).unwrap();
    assert_eq!(db.int(vt_us), leased);
    assert_eq!(other.backlog().unwrap(), backlog(0, 1));
    other.release(&[1]).unwrap();
    assert_eq!(other.backlog().unwrap(), backlog(1, 0));
}

#[test]
fn extend_keeps_a_message_past_its_lease() {
    let Some(db) = with_queue(false) else { return };
    db.send(1);
    let q = Pgmq::open(&db.url, "jobs", Duration::from_secs(3), false).unwrap();
    assert_eq!(q.fetch(10, Duration::ZERO).unwrap().len(), 1);
    let vt_ms = "SELECT (extract(epoch FROM vt) * 1000)::bigint FROM pgmq.q_jobs";
    let leased_until = db.int(vt_ms);
    std::thread::sleep(Duration::from_secs(2));
    q.extend(&[1]).unwrap();
    // At least the 2 s slept: the check below has that much slack.
    assert!(db.int(vt_ms) - leased_until >= 2000);
    let past = format!(
        "SELECT count(*) FROM pgmq.q_jobs WHERE now() > to_timestamp({leased_until} / 1000.0)"
    );
    while db.int(&past) == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(q.fetch(10, Duration::ZERO).unwrap().is_empty());
    assert_eq!(q.backlog().unwrap(), backlog(0, 1));
}

#[test]
fn concurrent_fetchers_never_get_the_same_message() {
    let Some(db) = with_queue(false) else { return };
    db.send(400);
    // Two processes' worth, each fetching from two threads.
    let queues: Vec<Arc<Pgmq>> = (0..2)
        .map(|_| Arc::new(Pgmq::open(&db.url, "jobs", LONG, false).unwrap()))
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let q = Arc::clone(&queues[i % 2]);
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let batch = ids(&q.fetch(7, Duration::from_millis(300)).unwrap());
                    if batch.is_empty() {
                        return mine;
                    }
                    q.ack(&batch).unwrap();
                    mine.extend(batch);
                }
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    assert_eq!(db.int("SELECT count(*) FROM pgmq.q_jobs"), 0);
}

#[test]
fn term_archives_when_there_is_an_archive_table() {
    let Some(db) = with_queue(true) else { return };
    db.execute(&ddl("plain", false));
    db.send(2);
    let q = Pgmq::open(&db.url, "jobs", LONG, false).unwrap();
    assert_eq!(q.fetch(10, Duration::ZERO).unwrap().len(), 2);
    q.term(&[1]).unwrap();
    q.ack(&[2]).unwrap();
    assert_eq!(db.int("SELECT count(*) FROM pgmq.q_jobs"), 0);
    assert_eq!(db.int("SELECT count(*) FROM pgmq.a_jobs"), 1);
    assert_eq!(db.int("SELECT min(msg_id) FROM pgmq.a_jobs"), 1);

    db.execute("INSERT INTO pgmq.q_plain (vt, message) VALUES (now(), '{}')");
    let plain = Pgmq::open(&db.url, "plain", LONG, false).unwrap();
    assert_eq!(plain.fetch(10, Duration::ZERO).unwrap().len(), 1);
    plain.term(&[1]).unwrap();
    assert_eq!(db.int("SELECT count(*) FROM pgmq.q_plain"), 0);
}

#[test]
fn names_are_lowercased_and_headers_archived() {
    let Some(db) = with_queue(true) else { return };
    db.execute(
        "ALTER TABLE pgmq.q_jobs ADD headers jsonb; ALTER TABLE pgmq.a_jobs ADD headers jsonb;
         INSERT INTO pgmq.q_jobs (vt, message, headers) VALUES (now(), '{}', '{\"h\": 1}')",
    );
    let q = Pgmq::open(&db.url, "Jobs", LONG, true).unwrap();
    assert_eq!(q.fetch(10, Duration::ZERO).unwrap().len(), 1);
    q.ack(&[1]).unwrap();
    let kept = "SELECT count(*) FROM pgmq.a_jobs WHERE headers = '{\"h\": 1}'";
    assert_eq!(db.int(kept), 1);
}

#[test]
fn a_sink_can_ack_in_its_own_transaction() {
    let Some(db) = with_queue(true) else { return };
    db.send(3);
    let q = Pgmq::open(&db.url, "jobs", LONG, true).unwrap();
    assert_eq!(q.fetch(10, Duration::ZERO).unwrap().len(), 3);
    let tx = q.in_transaction().unwrap();
    assert_eq!(tx.url, db.url);
    block_on(async {
        let mut conn = PgConnection::connect(&tx.url).await.unwrap();
        let mut t = conn.begin().await.unwrap();
        sqlx::query(&tx.sql)
            .bind(vec![1_i64, 2])
            .execute(&mut *t)
            .await
            .unwrap();
        t.commit().await.unwrap();
    });
    assert_eq!(db.int("SELECT count(*) FROM pgmq.a_jobs"), 2);
    assert_eq!(db.int("SELECT count(*) FROM pgmq.q_jobs"), 1);
    q.term(&[3]).unwrap();
    assert_eq!(db.int("SELECT count(*) FROM pgmq.a_jobs"), 3);
}

#[test]
fn missing_tables_and_bad_names_are_named() {
    let Some(db) = with_queue(false) else { return };
    let url = db.url.replacen("postgres@", "postgres:s3cret@", 1);
    let err = |queue, archive| {
        let e = Pgmq::open(&url, queue, LONG, archive)
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("s3cret") && !e.contains('\n'), "{e}");
        e
    };
    let redacted = redact(&url);
    assert_eq!(
        err("nope", false),
        format!("no pgmq queue \"nope\" in {redacted} (table pgmq.q_nope)")
    );
    assert!(err("jobs", true).contains("no archive table pgmq.a_jobs"));
    assert!(err("a-b", false).contains("bad pgmq queue name \"a-b\""));
    assert!(err("", false).contains("bad pgmq queue name"));
    db.execute("CREATE TABLE pgmq.q_odd (id int)");
    assert!(err("odd", false).contains("pgmq.q_odd"));
}

#[test]
fn an_unreachable_server_is_one_line() {
    let started = Instant::now();
    let url = "postgres://postgres:s3cret@127.0.0.1:1/app";
    let e = Pgmq::open(url, "jobs", LONG, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("cannot connect to postgres://postgres:***@127.0.0.1:1/app: "),
        "{e}"
    );
    assert!(!e.contains('\n'));
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_lost_connection_is_replaced_or_the_call_fails() {
    let Some(db) = with_queue(false) else { return };
    db.send(2);
    let mut q = Pgmq::open(&db.url, "jobs", LONG, false).unwrap();
    assert_eq!(q.fetch(1, Duration::ZERO).unwrap().len(), 1);
    q.ack(&[1]).unwrap();
    db.terminate_sessions();
    assert_eq!(ids(&q.fetch(1, Duration::from_secs(5)).unwrap()), [2]);
    q.ack(&[2]).unwrap();

    q.reconnect_for = Duration::from_secs(1);
    db.admin(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        db.name
    ));
    db.terminate_sessions();
    let started = Instant::now();
    let e = q.backlog().err().unwrap().to_string();
    assert!(
        e.contains("lost the connection to") && e.contains(&db.url),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}
