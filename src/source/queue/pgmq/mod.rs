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

use std::collections::HashMap;
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
    /// The read_ct of each message fetched and not settled: the receipt
    /// that its release or extension is of this delivery.
    receipts: Mutex<HashMap<i64, i32>>,
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
            // Only the delivery this process read (its read_ct): once its
            // lease ran out another consumer may hold the message, whose
            // lease a release or an extension from here must not touch.
            release: format!(
                "UPDATE {q} q SET vt = clock_timestamp() FROM unnest($1::bigint[], $2::int[]) AS r(id, ct) \
                 WHERE q.msg_id = r.id AND q.read_ct = r.ct"
            ),
            extend: format!(
                "UPDATE {q} q SET vt = clock_timestamp() + make_interval(secs => {secs}) \
                 FROM unnest($1::bigint[], $2::int[]) AS r(id, ct) WHERE q.msg_id = r.id AND q.read_ct = r.ct"
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
            receipts: Mutex::default(),
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

    /// Runs `sql` on the deliveries of `ids` this process holds (by their
    /// receipts); `done` forgets them then.
    fn with_receipts(&self, what: &str, sql: &str, ids: &[i64], done: bool) -> Result<()> {
        let (ids, cts): (Vec<i64>, Vec<i32>) = {
            let receipts = self.receipts();
            ids.iter()
                .filter_map(|id| Some((*id, *receipts.get(id)?)))
                .unzip()
        };
        if ids.is_empty() {
            return Ok(());
        }
        self.run(Lane::Other, what, async |c| {
            sqlx::query(sql)
                .bind(&ids)
                .bind(&cts)
                .execute(c)
                .await
                .map(drop)
        })?;
        if done {
            self.forget(&ids);
        }
        Ok(())
    }

    fn receipts(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i32>> {
        self.receipts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, ids: &[i64]) {
        let mut receipts = self.receipts();
        for id in ids {
            receipts.remove(id);
        }
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
                let mut receipts = self.receipts();
                for m in &messages {
                    receipts.insert(m.id, m.deliveries as i32);
                }
                return Ok(messages);
            }
            // Outside the lane's lock, so another fetching thread is not held up.
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    // An ack or a term needs no receipt: the record is committed, so
    // whoever holds the message now is done with it too.
    fn ack(&self, ids: &[i64]) -> Result<()> {
        self.settle(Lane::Sink, "acknowledging messages", &self.sql.ack, ids)?;
        self.forget(ids);
        Ok(())
    }

    fn term(&self, ids: &[i64]) -> Result<()> {
        let what = "setting poison messages aside";
        self.settle(Lane::Sink, what, &self.sql.term, ids)?;
        self.forget(ids);
        Ok(())
    }

    fn release(&self, ids: &[i64]) -> Result<()> {
        self.with_receipts("releasing messages", &self.sql.release, ids, true)
    }

    fn extend(&self, ids: &[i64]) -> Result<()> {
        self.with_receipts("extending leases", &self.sql.extend, ids, false)
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

    fn consumed(&self, ids: &[i64]) {
        self.forget(ids);
    }

    fn in_transaction(&self) -> Option<InTransaction> {
        Some(InTransaction {
            url: self.url.clone(),
            sql: self.sql.ack.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
