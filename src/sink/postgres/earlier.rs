//! `--incremental` and `--prune` on Postgres: reading the rows an earlier
//! run wrote, and deleting the rows of files that are gone, in one
//! transaction with the run's bookkeeping (retried on a new connection
//! when the old one is lost, like a batch).

use anyhow::Result;
use futures_util::TryStreamExt;
use sqlx::Row;

use super::conn::connection_lost;
use super::Writer;
use crate::checkpoint::{runs, CheckpointUpdate};
use crate::db::Conn;
use crate::record::Value;
use crate::sink::sql::{self, EarlierRow};

/// Streams the rows of `table` to `each` on any connection (a dry run's
/// too, which only reads); a column `has` denies reads as NULL.
pub(in crate::sink) async fn read_earlier(
    conn: &mut sqlx::PgConnection,
    table: &str,
    processors: &[String],
    has: &dyn Fn(&str) -> bool,
    each: &mut dyn FnMut(EarlierRow),
) -> Result<()> {
    let sql = sql::select_earlier::<sql::Postgres>(table, processors, has);
    let mut rows = sqlx::query(&sql).fetch(conn);
    while let Some(row) = rows.try_next().await? {
        each(EarlierRow {
            path: row.try_get(0)?,
            size: row.try_get(1)?,
            mtime: row.try_get(2)?,
            current: row.try_get::<Option<bool>, _>(3)?.unwrap_or(false),
            failures: row.try_get(4)?,
            failed_run: row.try_get(5)?,
            error: row.try_get(6)?,
        });
    }
    Ok(())
}

impl Writer {
    /// Streams the table's rows to `each` (never all in memory at once here).
    pub(super) async fn earlier_rows(
        &mut self,
        processors: &[String],
        each: &mut dyn FnMut(EarlierRow),
    ) -> Result<()> {
        read_earlier(
            self.session.conn(),
            &self.table,
            processors,
            &|_| true,
            each,
        )
        .await
    }

    pub(super) async fn remove(
        &mut self,
        keys: &[Value],
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        loop {
            match self.try_remove(keys, checkpoint).await {
                Err(e) if e.downcast_ref::<sqlx::Error>().is_some_and(connection_lost) => {
                    self.session.reconnect().await?;
                }
                done => return done,
            }
        }
    }

    async fn try_remove(
        &mut self,
        keys: &[Value],
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        use sqlx::Connection;
        let key = self
            .session
            .stage
            .as_ref()
            .map_or("path".to_owned(), |s| s.key_column().name.clone());
        let mut tx = self.session.conn().begin().await?;
        for chunk in keys.chunks(sql::DELETE_CHUNK) {
            let sql = sql::delete_keys(&self.table, &key, chunk.len());
            let mut query = sqlx::query(&sql);
            for value in chunk {
                // Postgres keys are text: a path that is not UTF-8 never had a row.
                query = match value {
                    Value::Text(s) => query.bind(s.as_str()),
                    _ => query.bind(None::<String>),
                };
            }
            query.execute(&mut *tx).await?;
        }
        if let (Some(update), Some(run_id)) = (checkpoint, self.run_id) {
            runs::record(Conn::Postgres(&mut tx), run_id, update, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
