//! The queue source's benchmark helper, as `make bench` runs it (benches/run.sh,
//! `queue_rows`): it fills a pgmq queue or a NATS JetStream stream with N
//! messages of SIZE bytes, and drains one with the plainest consumer there is
//! — fetch a batch, acknowledge every message, nothing else — whose rate is
//! the queue's own ceiling, the rate `batchproc queue` is measured against.
//!
//!     queue_bench load-pgmq URL QUEUE N SIZE       # pgmq.q_QUEUE made anew, N messages
//!     queue_bench load-nats URL STREAM N SIZE      # stream made anew (subjects STREAM.>)
//!     queue_bench ceiling-pgmq URL QUEUE BATCH     # read + delete until empty
//!     queue_bench ceiling-nats URL STREAM BATCH    # fetch + ack until empty
//!     queue_bench left-pgmq URL QUEUE              # messages still in the queue
//!     queue_bench left-nats URL STREAM CONSUMER    # ... not yet acked by CONSUMER
//!     queue_bench delete-nats URL STREAM           # the stream deleted (pgmq: drop the database)
//!     queue_bench floor-sqlite FILE N SIZE BATCH   # SQLite alone writing such messages' rows
//!
//! A ceiling run prints one JSON line, `{"messages":N,"seconds":S,
//! "per_second":R,"server":"…"}` (the server's version), and exits non-zero
//! if it drained fewer messages than the queue held when it started. Every
//! message is the JSON text `{"id": I, "data": "…"}`, SIZE bytes long, in
//! both queues (pgmq stores it as jsonb, whose text is the same). pgmq needs
//! no extension: its tables are made as `pgmq.create` makes them.
//!
//! `floor-sqlite` is the other side of a drain into SQLite: the rows
//! `batchproc queue -p sha256:payload` writes for N NATS messages (id,
//! subject, payload, published, deliveries, payload_sha256), inserted into a
//! new SQLite file with the sink's settings (WAL, `synchronous=FULL` as for
//! a queue run), BATCH rows a transaction, with nothing else to do. A drain
//! into SQLite cannot be faster than this; it prints the same JSON line.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use sqlx::{Connection, PgConnection};

/// Publishes in flight before the loader waits for their acks.
const PUBLISH_WINDOW: usize = 4096;
/// The lease a ceiling read takes, as `batchproc queue`'s default `--lease`.
const LEASE: Duration = Duration::from_secs(30);
/// The durable consumer of `ceiling-nats` (batchproc's is `batchproc`).
const CEILING_CONSUMER: &str = "ceiling";

const USAGE: &str = "usage: queue_bench load-pgmq URL QUEUE N SIZE | load-nats URL STREAM N SIZE
                   | ceiling-pgmq URL QUEUE BATCH | ceiling-nats URL STREAM BATCH
                   | left-pgmq URL QUEUE | left-nats URL STREAM CONSUMER
                   | delete-nats URL STREAM | floor-sqlite FILE N SIZE BATCH";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}\n{USAGE}"))
    };
    let num = |i: usize| -> Result<usize> {
        let a = arg(i)?;
        a.parse()
            .with_context(|| format!("{a:?} is not a number\n{USAGE}"))
    };
    match arg(0)? {
        "load-pgmq" => load_pgmq(arg(1)?, name(arg(2)?)?, num(3)?, num(4)?).await,
        "load-nats" => load_nats(arg(1)?, arg(2)?, num(3)?, num(4)?).await,
        "ceiling-pgmq" => report(ceiling_pgmq(arg(1)?, name(arg(2)?)?, num(3)?).await?),
        "ceiling-nats" => report(ceiling_nats(arg(1)?, arg(2)?, num(3)?).await?),
        "left-pgmq" => left_pgmq(arg(1)?, name(arg(2)?)?).await,
        "left-nats" => left_nats(arg(1)?, arg(2)?, arg(3)?).await,
        "delete-nats" => {
            let (_client, js) = nats(arg(1)?).await?;
            js.delete_stream(arg(2)?).await?;
            Ok(())
        }
        "floor-sqlite" => report(floor_sqlite(arg(1)?, num(2)?, num(3)?, num(4)?)?),
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

/// A pgmq queue name, spliced into table names: letters, digits and `_`.
fn name(queue: &str) -> Result<&str> {
    ensure!(
        !queue.is_empty()
            && queue
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "queue name {queue:?}: letters, digits and _ only"
    );
    Ok(queue)
}

/// A drained queue: how many messages, in how long, and the server's version.
struct Drained {
    messages: u64,
    expected: u64,
    seconds: f64,
    server: String,
}

fn report(d: Drained) -> Result<()> {
    let line = serde_json::json!({
        "messages": d.messages,
        "seconds": (d.seconds * 1e3).round() / 1e3,
        "per_second": (d.messages as f64 / d.seconds).round(),
        "server": d.server,
    });
    println!("{line}");
    ensure!(
        d.messages >= d.expected,
        "drained {} messages, but the queue held {} when the run started",
        d.messages,
        d.expected
    );
    Ok(())
}

/// Message `id` as JSON text of `size` bytes (at least its skeleton's), in
/// the form Postgres prints a jsonb object: `{"id": 7, "data": "…"}`.
fn message(id: usize, size: usize) -> String {
    let mut text = format!("{{\"id\": {id}, \"data\": \"");
    let head = text.len();
    let data = size.saturating_sub(head + 2);
    let mut x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while text.len() < head + data {
        // 16 hex digits at a time, from a cheap mix of the id
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        text.push_str(&format!("{x:016x}"));
    }
    text.truncate(head + data);
    text.push_str("\"}");
    text
}

async fn pg(url: &str) -> Result<PgConnection> {
    PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// pgmq.q_QUEUE dropped and made again (as `pgmq.create` makes it), then
/// N messages of SIZE bytes sent in one statement, visible at once.
async fn load_pgmq(url: &str, queue: &str, n: usize, size: usize) -> Result<()> {
    let mut conn = pg(url).await?;
    let q = format!("pgmq.q_{queue}");
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS pgmq;
         DROP TABLE IF EXISTS {q}, pgmq.a_{queue};
         CREATE TABLE {q} (
             msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
             read_ct int NOT NULL DEFAULT 0,
             enqueued_at timestamptz NOT NULL DEFAULT now(),
             vt timestamptz NOT NULL,
             message jsonb);
         CREATE INDEX ON {q} (vt);"
    ))
    .execute(&mut conn)
    .await?;
    // The data: hex digits of md5s, cut so that the jsonb's text is SIZE bytes.
    let repeat = size / 32 + 1;
    sqlx::query(&format!(
        "INSERT INTO {q} (vt, message)
         SELECT clock_timestamp(), jsonb_build_object('id', i, 'data', left(repeat(md5(i::text), {repeat}),
                    greatest(0, $2 - length(jsonb_build_object('id', i, 'data', '')::text))))
         FROM generate_series(1, $1::bigint) AS i ORDER BY i"
    ))
    .bind(n as i64)
    .bind(size as i32)
    .execute(&mut conn)
    .await?;
    // Hint bits set and statistics taken now, so that every run that reads
    // the queue finds it in the same state.
    sqlx::raw_sql(&format!("VACUUM (ANALYZE) {q}"))
        .execute(&mut conn)
        .await?;
    let (count, min, max): (i64, i32, i32) = sqlx::query_as(&format!(
        "SELECT count(*), min(length(message::text)), max(length(message::text)) FROM {q}"
    ))
    .fetch_one(&mut conn)
    .await?;
    ensure!(count as usize == n, "{q} holds {count} messages, want {n}");
    eprintln!("queue_bench: {q}: {count} messages of {min}-{max} bytes");
    conn.close().await?;
    Ok(())
}

/// pgmq's own consumer loop: `pgmq.read` (lease a batch: the same statement
/// `batchproc queue` runs, which is pgmq.read's) and `pgmq.delete` of the
/// batch's ids, each its own transaction, until a read comes back empty.
async fn ceiling_pgmq(url: &str, queue: &str, batch: usize) -> Result<Drained> {
    let q = format!("pgmq.q_{queue}");
    let secs = LEASE.as_secs_f64();
    let read = format!(
        "WITH m AS (SELECT msg_id FROM {q} WHERE vt <= clock_timestamp() ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         UPDATE {q} q SET vt = clock_timestamp() + make_interval(secs => {secs}), read_ct = q.read_ct + 1 \
         FROM m WHERE q.msg_id = m.msg_id \
         RETURNING q.msg_id, q.read_ct, q.enqueued_at, coalesce(q.message::text, 'null')"
    );
    let delete = format!("DELETE FROM {q} WHERE msg_id = ANY($1::bigint[])");
    let started = Instant::now();
    let mut conn = pg(url).await?;
    let expected: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {q}"))
        .fetch_one(&mut conn)
        .await?;
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let (mut messages, mut bytes) = (0u64, 0usize);
    loop {
        type Row = (i64, i32, chrono::DateTime<chrono::Utc>, String);
        let rows: Vec<Row> = sqlx::query_as(&read)
            .bind(batch as i64)
            .fetch_all(&mut conn)
            .await?;
        if rows.is_empty() {
            break;
        }
        bytes += rows.iter().map(|r| r.3.len()).sum::<usize>();
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query(&delete).bind(&ids).execute(&mut conn).await?;
        messages += ids.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    conn.close().await?;
    eprintln!("queue_bench: {q}: read and deleted {messages} messages, {bytes} bytes of payload");
    Ok(Drained {
        messages,
        expected: expected as u64,
        seconds,
        server: format!("PostgreSQL {server}"),
    })
}

async fn left_pgmq(url: &str, queue: &str) -> Result<()> {
    let mut conn = pg(url).await?;
    let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM pgmq.q_{queue}"))
        .fetch_one(&mut conn)
        .await?;
    println!("{left}");
    conn.close().await?;
    Ok(())
}

async fn nats(url: &str) -> Result<(async_nats::Client, jetstream::Context)> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// The stream deleted and made again (subjects `STREAM.>`, file storage, as
/// the server's defaults), then N messages of SIZE bytes published to
/// `STREAM.bench`, up to [`PUBLISH_WINDOW`] of them awaiting their acks.
async fn load_nats(url: &str, name: &str, n: usize, size: usize) -> Result<()> {
    let (client, js) = nats(url).await?;
    if js.get_stream(name).await.is_ok() {
        js.delete_stream(name).await?;
    }
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await?;
    let subject = format!("{name}.bench");
    let mut acks = Vec::with_capacity(PUBLISH_WINDOW);
    for id in 1..=n {
        let payload = message(id, size).into_bytes().into();
        acks.push(js.publish(subject.clone(), payload).await?);
        if acks.len() == PUBLISH_WINDOW || id == n {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    let mut stream = js.get_stream(name).await?;
    let state = &stream.info().await?.state;
    ensure!(
        state.messages as usize == n,
        "stream {name} holds {} messages, want {n}",
        state.messages
    );
    eprintln!(
        "queue_bench: stream {name}: {} messages, {} bytes",
        state.messages, state.bytes
    );
    client.flush().await?;
    Ok(())
}

/// A durable pull consumer with explicit acks (as batchproc's): fetch a
/// batch of what is there (no wait), ack every message, flush, until a
/// fetch brings nothing.
async fn ceiling_nats(url: &str, name: &str, batch: usize) -> Result<Drained> {
    let started = Instant::now();
    let (client, js) = nats(url).await?;
    let mut stream = js.get_stream(name).await?;
    let expected = stream.info().await?.state.messages;
    let _ = stream.delete_consumer(CEILING_CONSUMER).await; // from an earlier run, if any
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(CEILING_CONSUMER.to_owned()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: LEASE,
            max_ack_pending: -1,
            ..Default::default()
        })
        .await?;
    let (mut messages, mut bytes) = (0u64, 0usize);
    loop {
        let mut fetched = consumer.fetch().max_messages(batch).messages().await?;
        let mut got = 0;
        while let Some(m) = fetched.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
            bytes += m.payload.len();
            m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            got += 1;
        }
        if got == 0 {
            break;
        }
        client.flush().await?;
        messages += got;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("queue_bench: stream {name}: fetched and acked {messages} messages, {bytes} bytes of payload");
    Ok(Drained {
        messages,
        expected,
        seconds,
        server: format!("NATS {}", client.server_info().version),
    })
}

/// Messages of the stream that the consumer has not acked: not yet
/// delivered, and delivered but unacked.
async fn left_nats(url: &str, name: &str, consumer_name: &str) -> Result<()> {
    let (_client, js) = nats(url).await?;
    let stream = js.get_stream(name).await?;
    let mut consumer: consumer::PullConsumer = stream
        .get_consumer(consumer_name)
        .await
        .map_err(|e| anyhow::anyhow!("no consumer {consumer_name:?} on stream {name}: {e}"))?;
    let info = consumer.info().await?;
    println!("{}", info.num_pending + info.num_ack_pending as u64);
    Ok(())
}

/// SQLite alone writing the rows of `n` messages of `size` bytes, `batch`
/// a transaction (see the module's doc).
fn floor_sqlite(file: &str, n: usize, size: usize, batch: usize) -> Result<Drained> {
    use sha2::Digest;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{file}{suffix}"));
    }
    let mut conn = rusqlite::Connection::open(file)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE floor (id INTEGER PRIMARY KEY, subject TEXT, payload TEXT, \
         published TEXT, deliveries INTEGER, payload_sha256 TEXT)",
    )?;
    let started = Instant::now();
    let published = "2026-12-03T00:00:00.000000000Z";
    for first in (1..=n).step_by(batch.max(1)) {
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO floor VALUES (?1, ?2, ?3, ?4, 1, ?5)")?;
            for id in first..(first + batch).min(n + 1) {
                let payload = message(id, size);
                let digest = format!("{:x}", sha2::Sha256::digest(payload.as_bytes()));
                insert.execute(rusqlite::params![
                    id as i64,
                    "bench_queue.bench",
                    payload,
                    published,
                    digest
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(Drained {
        messages: n as u64,
        expected: n as u64,
        seconds: started.elapsed().as_secs_f64(),
        server: format!("SQLite {}", rusqlite::version()),
    })
}
