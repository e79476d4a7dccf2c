//! The Postgres sink's session: connecting, the advisory lock that keeps a
//! second run of the same pipeline out, and reconnecting after a lost
//! connection with the session state restored.

use std::time::Duration;

use anyhow::{bail, Result};
use backon::BackoffBuilder;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;

use super::table;
use crate::checkpoint::runs;
use crate::db;
use crate::db::Conn;
use crate::pool::Cancel;
use crate::record::Schema;
use crate::sink::{Busy, Stopped};

/// How long to keep trying to reconnect before the run fails.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// A connection and what must be restored on a new one.
pub(super) struct Session {
    options: PgConnectOptions,
    pub(super) conn: Option<PgConnection>,
    /// The staging table's columns, once created.
    pub(super) stage: Option<Schema>,
    /// The advisory lock key held for this run.
    lock: Option<String>,
    /// Interrupted, a reconnect stops trying.
    cancel: Cancel,
}

impl Session {
    pub(super) async fn connect(url: &str, cancel: Cancel) -> Result<Session> {
        // Like SQLite's synchronous=NORMAL: a commit returns before its WAL
        // is flushed. A server crash may lose the last commits, but records
        // and checkpoint go together, so a resume redoes exactly those.
        let options = db::postgres_options(url)?.options([("synchronous_commit", "off")]);
        let conn = db::postgres_with(&options)
            .await
            .map_err(|e| db::cannot_connect(url, &e))?;
        Ok(Session {
            options,
            conn: Some(conn),
            stage: None,
            lock: None,
            cancel,
        })
    }

    pub(super) fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Commits wait for the server's WAL flush again (a queue acks what a
    /// commit holds: a commit lost in a server crash would lose messages),
    /// on this connection and any made after it.
    pub(super) async fn durable(&mut self) -> Result<()> {
        self.options = self.options.clone().options([("synchronous_commit", "on")]);
        sqlx::query("SET synchronous_commit = on")
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub(super) fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("connected")
    }

    /// Takes the advisory lock on the pipeline's fingerprint, for the
    /// session's life: it dies with the process.
    pub(super) async fn lock(&mut self, fingerprint: &str) -> Result<()> {
        take_lock(self.conn(), fingerprint).await?;
        self.lock = Some(fingerprint.to_owned());
        Ok(())
    }

    /// Replaces a dead connection: reconnects with backoff, then restores
    /// the session state (staging table, advisory lock).
    pub(super) async fn reconnect(&mut self) -> Result<()> {
        self.conn = None;
        let mut delays = reconnect_delays();
        let stopped = || Stopped("reconnecting to Postgres");
        let mut conn = loop {
            let attempt = tokio::select! {
                attempt = db::postgres_with(&self.options) => attempt,
                () = interrupted(&self.cancel) => bail!(stopped()),
            };
            match attempt {
                Ok(conn) => break conn,
                Err(e) => match delays.next() {
                    Some(delay) => tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = interrupted(&self.cancel) => bail!(stopped()),
                    },
                    None => bail!(
                        "connection lost and not back within {}s: {}",
                        RECONNECT_FOR.as_secs(),
                        crate::redact::redact(&e.to_string())
                    ),
                },
            }
        };
        if let Some(schema) = &self.stage {
            table::create_stage(&mut conn, schema).await?;
        }
        if let Some(fingerprint) = &self.lock {
            take_lock(&mut conn, fingerprint).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }
}

pub(super) use crate::db::connection_lost;

/// The waits between attempts to reconnect, for up to [`RECONNECT_FOR`].
pub(super) fn reconnect_delays() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(RECONNECT_FOR))
        .with_max_times(usize::MAX)
        .with_jitter()
        .build()
}

/// How long a lock held by another session is waited for: the session of
/// a run killed a moment ago lives on until the server notices its client
/// is gone, and a `--resume` right after the kill must not take it for a
/// live run. A live run holds the lock far longer.
const LOCK_GRACE: Duration = Duration::from_secs(3);

async fn take_lock(conn: &mut PgConnection, fingerprint: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + LOCK_GRACE;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(fingerprint)
            .fetch_one(&mut *conn)
            .await?;
        if got {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let who = runs::live_run(Conn::Postgres(conn), Some(fingerprint))
                .await
                .unwrap_or_else(|| "another batchproc run".into());
            bail!(Busy(format!(
                "{who} of this pipeline is working on this database; try again when it ends"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves once `cancel` is interrupted, for a wait to race against.
async fn interrupted(cancel: &Cancel) {
    while !cancel.is_interrupted() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
