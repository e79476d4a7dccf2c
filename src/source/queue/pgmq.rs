//! pgmq as a queue: the table `pgmq.q_NAME` in Postgres, read and written
//! with plain SQL (the pgmq extension itself is not needed), the way the
//! extension's own functions do it: a read leases messages by moving their
//! visibility time (`vt`) ahead, an ack deletes them or moves them to the
//! archive table `pgmq.a_NAME`.
//!
//! The broker is called from several threads at once, so it keeps one
//! connection per caller (a [`Lane`]), each with a current-thread runtime of
//! its own: the reader's polling never waits behind the sink's acks, nor an
//! ack behind a lease extension. A lost connection is replaced with backoff,
//! and the statement run again: settling twice changes nothing, and a fetch
//! whose answer was lost only leaves its messages leased until the lease
//! ends, when they are delivered again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use backon::BackoffBuilder;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;
use tokio::runtime::Runtime;

use super::broker::{Backlog, Broker, InTransaction, Message};
use crate::db;
use crate::redact::redact;

/// How long to keep trying to reconnect before a call fails.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// A statement that has not answered in this long is taken for a dead
/// connection (a server gone without a word never closes the socket).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often an empty queue is read again while `fetch` waits: without
/// the extension there is no notification to wait for.
const POLL: Duration = Duration::from_millis(100);

/// pgmq's own limit: longer names make table and index names past
/// Postgres's 63 bytes.
const MAX_NAME: usize = 47;

/// Which connection a call uses.
#[derive(Clone, Copy)]
enum Lane {
    Reader = 0,
    Sink = 1,
    Other = 2,
}

/// One lane's runtime and connection (None until first used, or once lost).
struct Connection {
    rt: Runtime,
    conn: Option<PgConnection>,
}

/// A pgmq queue.
pub(crate) struct Pgmq {
    url: String,
    queue: String,
    options: PgConnectOptions,
    reconnect_for: Duration,
    lanes: [Mutex<Connection>; 3],
    sql: Sql,
    /// The sink's transaction acks: `ack` has nothing left to do.
    consumed_by_sink: AtomicBool,
}

/// The statements, with the queue's tables in them.
struct Sql {
    fetch: String,
    ack: String,
    term: String,
    release: String,
    extend: String,
    backlog: String,
}

impl Pgmq {
    /// Connects to `url` and checks that the queue's table (and with
    /// `archive` its archive table) exists. Every error here is a
    /// configuration error (exit 2).
    pub(crate) fn open(url: &str, queue: &str, lease: Duration, archive: bool) -> Result<Pgmq> {
        let valid = queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if queue.is_empty() || !valid || queue.len() > MAX_NAME {
            bail!(
                "bad pgmq queue name {queue:?}: use up to {MAX_NAME} letters, digits and underscores"
            );
        }
        // As pgmq.format_table_name makes them: `MyQueue` is pgmq.q_myqueue.
        // The name holds nothing that needs escaping.
        let table = queue.to_ascii_lowercase();
        let (q, a) = (format!("pgmq.\"q_{table}\""), format!("pgmq.\"a_{table}\""));
        let options = db::postgres_options(url)?;
        let rt = db::runtime()?;
        let (conn, has_archive, headers) = rt.block_on(async {
            let mut conn = db::postgres_with(&options)
                .await
                .map_err(|e| db::cannot_connect(url, &e))?;
            let checked = check_tables(&mut conn, &q, &a).await;
            let (has_queue, has_archive, headers) = checked.map_err(|e| {
                anyhow!(
                    "cannot look for pgmq queue {queue:?} in {}: {}",
                    redact(url),
                    redact(&e.to_string())
                )
            })?;
            let db = redact(url);
            if !has_queue {
                bail!("no pgmq queue {queue:?} in {db} (table pgmq.q_{table})");
            }
            if archive && !has_archive {
                bail!("no archive table pgmq.a_{table} for pgmq queue {queue:?} in {db}");
            }
            // Read now, not at the first fetch, so that a table of another
            // shape is a configuration error.
            let shape =
                format!("SELECT msg_id, read_ct, enqueued_at, vt, message FROM {q} LIMIT 0");
            if let Err(e) = sqlx::query(&shape).execute(&mut conn).await {
                bail!(
                    "table pgmq.q_{table} in {db} is not a pgmq queue: {}",
                    redact(&e.to_string())
                );
            }
            Ok((conn, has_archive, headers))
        })?;
        // Newer pgmq has a `headers` column, to be kept in the archive too.
        let columns = if headers {
            "msg_id, read_ct, enqueued_at, vt, message, headers"
        } else {
            "msg_id, read_ct, enqueued_at, vt, message"
        };
        // A literal: the lease is the same for every statement.
        let secs = lease.as_secs_f64();
        let delete = format!("DELETE FROM {q} WHERE msg_id = ANY($1::bigint[])");
        let archive_sql = format!(
            "WITH d AS ({delete} RETURNING {columns}) INSERT INTO {a} ({columns}) SELECT {columns} FROM d"
        );
        let sql = Sql {
            fetch: format!(
                "WITH m AS (SELECT msg_id FROM {q} WHERE vt <= clock_timestamp() ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 UPDATE {q} q SET vt = clock_timestamp() + make_interval(secs => {secs}), read_ct = q.read_ct + 1 \
                 FROM m WHERE q.msg_id = m.msg_id \
                 RETURNING q.msg_id, q.read_ct, q.enqueued_at, coalesce(q.message::text, 'null')"
            ),
            ack: if archive { archive_sql.clone() } else { delete.clone() },
            term: if has_archive { archive_sql } else { delete },
            release: format!("UPDATE {q} SET vt = clock_timestamp() WHERE msg_id = ANY($1::bigint[])"),
            extend: format!(
                "UPDATE {q} SET vt = clock_timestamp() + make_interval(secs => {secs}) WHERE msg_id = ANY($1::bigint[])"
            ),
            backlog: format!(
                "SELECT count(*) FILTER (WHERE vt <= now()), count(*) FILTER (WHERE vt > now()) FROM {q}"
            ),
        };
        let lane = |conn| -> Result<Mutex<Connection>> {
            Ok(Mutex::new(Connection {
                rt: db::runtime()?,
                conn,
            }))
        };
        Ok(Pgmq {
            url: url.to_owned(),
            queue: queue.to_owned(),
            options,
            reconnect_for: RECONNECT_FOR,
            lanes: [
                Mutex::new(Connection {
                    rt,
                    conn: Some(conn),
                }),
                lane(None)?,
                lane(None)?,
            ],
            sql,
            consumed_by_sink: AtomicBool::new(false),
        })
    }

    /// Runs `work` on `lane`'s connection: connected first if need be, and
    /// run again on a new connection when this one is lost.
    fn run<T>(
        &self,
        lane: Lane,
        what: &str,
        work: impl AsyncFn(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T> {
        let mut lane = self.lanes[lane as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Connection { rt, conn } = &mut *lane;
        rt.block_on(async {
            let mut delays = backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(usize::MAX)
                .with_jitter()
                .build();
            let mut deadline = None;
            loop {
                let lost = match conn {
                    Some(c) => match tokio::time::timeout(STATEMENT_TIMEOUT, work(c)).await {
                        Ok(Ok(done)) => return Ok(done),
                        Ok(Err(e)) if !db::connection_lost(&e) => {
                            bail!("pgmq queue {:?}: {what}: {}", self.queue, redact(&e.to_string()))
                        }
                        Ok(Err(e)) => e,
                        Err(_) => sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer in {}s", STATEMENT_TIMEOUT.as_secs()),
                        )),
                    },
                    None => match db::postgres_with(&self.options).await {
                        Ok(c) => {
                            *conn = Some(c);
                            continue;
                        }
                        Err(e) => e,
                    },
                };
                *conn = None;
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.reconnect_for);
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                if Instant::now() + delay > deadline {
                    bail!(
                        "pgmq queue {:?}: {what}: lost the connection to {} and could not reconnect within {}s: {}",
                        self.queue,
                        redact(&self.url),
                        self.reconnect_for.as_secs(),
                        redact(&lost.to_string())
                    );
                }
                tokio::time::sleep(delay).await;
            }
        })
    }

    /// Runs one of the statements that take the message ids as `$1`.
    fn settle(&self, lane: Lane, what: &str, sql: &str, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.run(lane, what, async |c| {
            sqlx::query(sql).bind(ids).execute(c).await.map(drop)
        })
    }
}

/// Whether the queue table and the archive table exist, and whether both
/// have pgmq's newer `headers` column.
async fn check_tables(conn: &mut PgConnection, q: &str, a: &str) -> Result<(bool, bool, bool)> {
    Ok(sqlx::query_as(
        "WITH t AS (SELECT to_regclass($1) AS q, to_regclass($2) AS a) \
         SELECT q IS NOT NULL, a IS NOT NULL, \
           (SELECT count(*) = 2 FROM pg_attribute WHERE attrelid IN (q, a) AND attname = 'headers' AND NOT attisdropped) \
         FROM t",
    )
    .bind(q)
    .bind(a)
    .fetch_one(conn)
    .await?)
}

impl Broker for Pgmq {
    fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Message>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        loop {
            let rows: Vec<(i64, i32, chrono::DateTime<chrono::Utc>, String)> =
                self.run(Lane::Reader, "reading messages", async |c| {
                    sqlx::query_as(&self.sql.fetch).bind(max).fetch_all(c).await
                })?;
            let now = Instant::now();
            if !rows.is_empty() || now >= deadline {
                let mut messages: Vec<Message> = rows
                    .into_iter()
                    .map(|(id, read_ct, enqueued_at, message)| Message {
                        id,
                        subject: None,
                        payload: message.into_bytes(),
                        published: Some(enqueued_at),
                        deliveries: read_ct.into(),
                    })
                    .collect();
                // RETURNING keeps no order.
                messages.sort_unstable_by_key(|m| m.id);
                return Ok(messages);
            }
            // Outside the lane's lock, so another fetching thread is not held up.
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    fn ack(&self, ids: &[i64]) -> Result<()> {
        if self.consumed_by_sink.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.settle(Lane::Sink, "acknowledging messages", &self.sql.ack, ids)
    }

    fn term(&self, ids: &[i64]) -> Result<()> {
        self.settle(
            Lane::Sink,
            "setting poison messages aside",
            &self.sql.term,
            ids,
        )
    }

    fn release(&self, ids: &[i64]) -> Result<()> {
        self.settle(Lane::Other, "releasing messages", &self.sql.release, ids)
    }

    fn extend(&self, ids: &[i64]) -> Result<()> {
        self.settle(Lane::Other, "extending leases", &self.sql.extend, ids)
    }

    fn backlog(&self) -> Result<Backlog> {
        let (waiting, held): (i64, i64) =
            self.run(Lane::Other, "counting messages", async |c| {
                sqlx::query_as(&self.sql.backlog).fetch_one(c).await
            })?;
        Ok(Backlog {
            waiting: waiting as u64,
            held: held as u64,
        })
    }

    fn in_transaction(&self) -> Option<InTransaction> {
        Some(InTransaction {
            url: self.url.clone(),
            sql: self.sql.ack.clone(),
        })
    }

    fn consumed_by_sink(&self) {
        self.consumed_by_sink.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use sqlx::Connection as _;

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
        q.consumed_by_sink();
        q.ack(&[3]).unwrap();
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
}
