//! The Postgres sink: a typed table keyed by the schema's key column. Into
//! an empty table each batch is sent with COPY straight into the table;
//! into a table with rows (or once a batch meets a key already there),
//! batches go with COPY into a session-local staging table and are upserted
//! from it (`INSERT … ON CONFLICT … DO UPDATE`). Either way in the same transaction as the run's
//! checkpoint rows, which live in the same database. A connection lost
//! mid-run is re-opened with backoff and the batch retried (`conn`): the
//! transaction that died with it left nothing behind.

mod conn;
mod copy;
pub(in crate::sink) mod earlier;
pub(super) mod table;

use anyhow::{Context, Result};
use sqlx::Connection;
use tokio::runtime::Runtime;

use super::sql::{self, Dialect, EarlierRow, Postgres};
use super::{Checker, Encoder, Refusal, Sink};
use crate::checkpoint::{runs, CheckpointUpdate, ItemKey, RunEnd, RunSpec, RunStart};
use crate::db::{self, Conn};
use crate::events::Shared;
use crate::pool::Cancel;
use crate::record::{ColumnType, Record, Schema, Value};
use conn::{connection_lost, Session};
use table::STAGE;

pub(crate) struct PostgresSink {
    rt: Runtime,
    writer: Writer,
}

/// Everything but the runtime, so that `rt.block_on(writer.…)` borrows apart.
struct Writer {
    session: Session,
    table: String,
    run_id: Option<i64>,
    statements: Statements,
    /// Whether to try COPY straight into the table first: when the table
    /// was empty, until a batch meets a key already there (another writer
    /// was quicker), after which every batch takes the upsert path.
    direct: bool,
    events: Shared,
    /// A queue in this database: the statement that consumes a batch's
    /// messages in its transaction (`$1`: their ids).
    consume: Option<String>,
}

#[derive(Default)]
struct Statements {
    /// COPY into the table itself, which is a plain insert; the statement's
    /// start, to which the format is added.
    direct: String,
    /// COPY into the staging table, and the upsert from it.
    stage: String,
    upsert: String,
    /// The columns' types, for the binary format; None when an existing
    /// column's type has another binary form (`numeric`): CSV then.
    binary: Option<Vec<ColumnType>>,
}

impl Statements {
    /// The COPY statement for `data` (binary or CSV) into the table or
    /// the staging table.
    fn copy(&self, direct: bool, data: &[u8]) -> String {
        let format = match copy::is_binary(data) {
            true => "binary",
            false => "csv",
        };
        let into = if direct { &self.direct } else { &self.stage };
        format!("{into} FROM STDIN (FORMAT {format})")
    }
}

impl PostgresSink {
    pub(crate) fn open(url: &str, table: &str, events: Shared, cancel: Cancel) -> Result<Self> {
        let rt = db::runtime()?;
        let mut session = rt.block_on(Session::connect(url, cancel))?;
        rt.block_on(db::migrate(Conn::Postgres(session.conn())))?;
        Ok(PostgresSink {
            rt,
            writer: Writer {
                session,
                table: table.to_owned(),
                run_id: None,
                statements: Statements::default(),
                direct: true,
                events,
                consume: None,
            },
        })
    }
}

impl Writer {
    /// Writes a batch, reconnecting and retrying it while the connection is lost.
    async fn write_batch(
        &mut self,
        csv: Option<&[u8]>,
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        loop {
            match self.try_write(csv, checkpoint).await {
                Ok(()) => return Ok(()),
                Err(e) if connection_lost(&e) => {
                    self.events.warning(&format!(
                        "Postgres connection lost ({}); reconnecting",
                        crate::redact::redact(&e.to_string())
                    ));
                    self.session.reconnect().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn try_write(
        &mut self,
        csv: Option<&[u8]>,
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<(), sqlx::Error> {
        let conn = self.session.conn();
        loop {
            let mut tx = conn.begin().await?;
            if let Some(csv) = csv {
                if self.direct {
                    // New keys (a first run, a fresh table) need no upsert:
                    // COPY them straight in, which halves what the server
                    // writes. A key already there aborts the COPY with a
                    // unique violation: the transaction is rolled back (with
                    // nothing of it kept) and redone through staging.
                    let sql = self.statements.copy(true, csv);
                    match copy::send(&mut tx, &sql, csv).await {
                        Ok(()) => {}
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                            tx.rollback().await?;
                            self.direct = false;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    let sql = self.statements.copy(false, csv);
                    copy::send(&mut tx, &sql, csv).await?;
                    sqlx::query(&self.statements.upsert)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            if let (Some(sql), Some(update)) = (&self.consume, checkpoint) {
                let ids: Vec<i64> = update.acks.iter().filter_map(ItemKey::as_int).collect();
                if !ids.is_empty() {
                    sqlx::query(sql).bind(ids).execute(&mut *tx).await?;
                }
            }
            if let (Some(update), Some(run_id)) = (checkpoint, self.run_id) {
                runs::record(Conn::Postgres(&mut tx), run_id, update, None)
                    .await
                    .map_err(|e| match e.downcast::<sqlx::Error>() {
                        Ok(e) => e,
                        Err(e) => sqlx::Error::Protocol(e.to_string()),
                    })?;
            }
            return tx.commit().await;
        }
    }
}

impl Sink for PostgresSink {
    fn prepare(&mut self, schema: &Schema) -> Result<()> {
        let w = &mut self.writer;
        let table = w.table.clone();
        let conn = w.session.conn();
        let quoted = sql::quote_ident(&table);
        let (existing, empty) = self.rt.block_on(async {
            let existing = table::prepare(conn, &table, schema).await?;
            table::create_stage(conn, schema).await?;
            let empty: bool =
                sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {quoted})"))
                    .fetch_one(&mut *conn)
                    .await?;
            anyhow::Ok((existing, empty))
        })?;
        // Keys can only be new in an empty table; a table with rows (a
        // re-run, a resume) takes the upsert path from the start, so a
        // routine re-run never has a COPY fail on a key and leave an ERROR
        // in the server's log.
        w.direct = empty;
        w.session.stage = Some(schema.clone());
        let cols = sql::column_list(schema);
        let (existing, exact) = (existing.names, existing.exact);
        w.statements = Statements {
            direct: format!("COPY {quoted} ({cols})"),
            stage: format!("COPY {STAGE} ({cols})"),
            upsert: format!(
                "INSERT INTO {quoted} ({cols}) SELECT {cols} FROM {STAGE}{}",
                sql::on_conflict::<Postgres>(&table, schema, &existing)
            ),
            binary: exact.then(|| schema.columns.iter().map(|c| c.ty).collect()),
        };
        Ok(())
    }

    fn start_run(&mut self, spec: &RunSpec) -> Result<Option<RunStart>> {
        let session = &mut self.writer.session;
        let start = self.rt.block_on(async {
            // Consumers of one queue share it: no lock keeps them apart.
            if !spec.queue {
                session.lock(&spec.fingerprint).await?;
            }
            runs::start_run(Conn::Postgres(session.conn()), spec).await
        })?;
        self.writer.run_id = Some(start.run_id);
        Ok(Some(start))
    }

    fn checker(&self) -> Option<Checker> {
        let schema = self.writer.session.stage.as_ref()?;
        let key = schema.key;
        let types: Vec<(String, ColumnType)> = schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect();
        Some(Box::new(move |record: &Record| {
            let refused = |(v, (name, ty)): (&Value, &(String, ColumnType))| match (v, ty) {
                (Value::Bytes(_), ColumnType::Text) => Some(format!(
                    "{name} is not valid UTF-8, which a Postgres TEXT column cannot hold"
                )),
                (Value::Text(s), _) if s.as_bytes().contains(&0) => Some(format!(
                    "{name} contains a NUL character, which Postgres text cannot hold"
                )),
                _ => None,
            };
            let mut reasons = Vec::new();
            let mut columns = Vec::new();
            for (i, reason) in record.values.iter().zip(&types).map(refused).enumerate() {
                if let Some(reason) = reason {
                    reasons.push(reason);
                    columns.push(i);
                }
            }
            (!columns.is_empty()).then(|| Refusal {
                reason: reasons.join("; "),
                key: columns.contains(&key),
                columns,
            })
        }))
    }

    fn encoder(&self) -> Option<Encoder> {
        Some(match self.writer.statements.binary.clone() {
            Some(types) => Box::new(move |batch| copy::encode_binary(&types, batch)),
            None => Box::new(copy::encode),
        })
    }

    fn write(
        &mut self,
        batch: &[Record],
        encoded: Option<&[u8]>,
        checkpoint: Option<&CheckpointUpdate>,
    ) -> Result<()> {
        let w = &mut self.writer;
        let csv = match (encoded, batch.is_empty()) {
            (_, true) => None,
            (Some(csv), false) => Some(std::borrow::Cow::Borrowed(csv)),
            (None, false) => Some(std::borrow::Cow::Owned(match &w.statements.binary {
                Some(types) => copy::encode_binary(types, batch),
                None => copy::encode(batch),
            })),
        };
        self.rt
            .block_on(w.write_batch(csv.as_deref(), checkpoint))
            .with_context(|| format!("writing to table {}", w.table))
    }

    fn set_cursor(&mut self, upto: &str) -> Result<()> {
        let w = &mut self.writer;
        let (Some(conn), Some(run_id)) = (w.session.conn.as_mut(), w.run_id) else {
            anyhow::bail!("no run started");
        };
        self.rt
            .block_on(runs::set_cursor(Conn::Postgres(conn), run_id, upto))
    }

    fn earlier_rows(
        &mut self,
        processors: &[String],
        each: &mut dyn FnMut(EarlierRow),
    ) -> Result<i64> {
        let w = &mut self.writer;
        self.rt
            .block_on(w.earlier_rows(processors, each))
            .with_context(|| format!("reading table {}", w.table))?;
        Ok(Postgres::TIME_RESOLUTION_NS)
    }

    fn remove(&mut self, keys: &[Value], checkpoint: Option<&CheckpointUpdate>) -> Result<()> {
        let w = &mut self.writer;
        self.rt
            .block_on(w.remove(keys, checkpoint))
            .with_context(|| format!("removing rows from table {}", w.table))
    }

    fn lookup(&self) -> Result<crate::source::queue::Lookup> {
        let w = &self.writer;
        let schema = w
            .session
            .stage
            .as_ref()
            .context("the table is not prepared")?;
        let sql = format!(
            "SELECT {key} FROM {table} WHERE {key} = ANY($1) AND error IS NULL",
            key = sql::quote_ident(&schema.key_column().name),
            table = sql::quote_ident(&w.table),
        );
        let options = w.session.options().clone();
        let rt = db::runtime()?;
        let mut conn = rt.block_on(db::postgres_with(&options))?;
        Ok(Box::new(move |ids: &[i64]| {
            rt.block_on(async {
                // A connection lost (a server restart) is made again, with
                // the sink's own patience; any other error is the run's.
                let mut delays = conn::reconnect_delays();
                loop {
                    let e = match sqlx::query_scalar(&sql)
                        .bind(ids)
                        .fetch_all(&mut conn)
                        .await
                    {
                        Ok(found) => return Ok(found),
                        Err(e) => e,
                    };
                    let Some(delay) = delays.next().filter(|_| connection_lost(&e)) else {
                        return Err(e.into());
                    };
                    tokio::time::sleep(delay).await;
                    if let Ok(again) = db::postgres_with(&options).await {
                        conn = again;
                    }
                }
            })
        }))
    }

    fn consume_in_transaction(
        &mut self,
        offer: &crate::source::queue::broker::InTransaction,
    ) -> Result<bool> {
        let queue = db::postgres_options(&offer.url)?;
        let w = &mut self.writer;
        let ours = w.session.options();
        // A URL without a database means the user's own database.
        let database = |o: &sqlx::postgres::PgConnectOptions| {
            o.get_database().unwrap_or(o.get_username()).to_owned()
        };
        let same = queue.get_host() == ours.get_host()
            && queue.get_port() == ours.get_port()
            && database(&queue) == database(ours);
        if same {
            w.consume = Some(offer.sql.clone());
        }
        Ok(same)
    }

    fn durable(&mut self) -> Result<()> {
        self.rt.block_on(self.writer.session.durable())
    }

    fn end_run(&mut self, end: &RunEnd) -> Result<()> {
        let w = &mut self.writer;
        if let (Some(conn), Some(run_id)) = (w.session.conn.as_mut(), w.run_id) {
            self.rt
                .block_on(runs::end_run(Conn::Postgres(conn), run_id, end))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(conn) = self.writer.session.conn.take() {
            self.rt
                .block_on(conn.close())
                .context("closing Postgres connection")?;
        }
        Ok(())
    }
}
