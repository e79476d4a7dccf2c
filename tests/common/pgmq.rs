//! pgmq queues for black-box tests of `batchproc queue`: the tables the
//! pgmq extension makes (the extension itself is not needed), messages sent
//! in bulk, and what a queue holds. For a database from [`super::pg`].

use sqlx::{Connection, PgConnection};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap()
}

/// The queue `name` in the database at `url` as `pgmq.create` makes it:
/// `pgmq.q_NAME`, and with `archive` the archive table `pgmq.a_NAME`.
pub fn create_queue(url: &str, name: &str, archive: bool) {
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS pgmq;
         CREATE TABLE pgmq.q_{name} (
             msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
             read_ct int NOT NULL DEFAULT 0,
             enqueued_at timestamptz NOT NULL DEFAULT now(),
             vt timestamptz NOT NULL,
             message jsonb);
         CREATE INDEX ON pgmq.q_{name} (vt);"
    );
    if archive {
        sql += &format!(
            "CREATE TABLE pgmq.a_{name} (
                 msg_id bigint PRIMARY KEY,
                 read_ct int NOT NULL DEFAULT 0,
                 enqueued_at timestamptz NOT NULL DEFAULT now(),
                 archived_at timestamptz NOT NULL DEFAULT now(),
                 vt timestamptz NOT NULL,
                 message jsonb);
             CREATE INDEX ON pgmq.a_{name} (archived_at);"
        );
    }
    block_on(async {
        let mut conn = connect(url).await;
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    })
}

/// Sends `payloads` to the queue `name`, visible at once; their `msg_id`s
/// follow their order. One statement per 5000 messages.
pub fn send(url: &str, name: &str, payloads: impl IntoIterator<Item = serde_json::Value>) {
    let sql = format!(
        "INSERT INTO pgmq.q_{name} (vt, message) \
         SELECT clock_timestamp(), m::jsonb FROM unnest($1::text[]) WITH ORDINALITY AS t(m, i) ORDER BY i"
    );
    let texts: Vec<String> = payloads.into_iter().map(|p| p.to_string()).collect();
    block_on(async {
        let mut conn = connect(url).await;
        for chunk in texts.chunks(5000) {
            sqlx::query(&sql)
                .bind(chunk)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn.close().await.unwrap();
    })
}

/// What the queue `name` holds: (visible, invisible (leased), archived);
/// archived is 0 when there is no archive table.
pub fn counts(url: &str, name: &str) -> (i64, i64, i64) {
    block_on(async {
        let mut conn = connect(url).await;
        let (visible, invisible): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE vt <= now()), count(*) FILTER (WHERE vt > now()) \
             FROM pgmq.q_{name}"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let has_archive: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("pgmq.a_{name}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let mut archived = 0;
        if has_archive {
            archived = sqlx::query_scalar(&format!("SELECT count(*) FROM pgmq.a_{name}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        }
        conn.close().await.unwrap();
        (visible, invisible, archived)
    })
}
