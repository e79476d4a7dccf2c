//! A dry run's look at the sink: the checks a run makes before its first
//! item (the file can be written, the table fits), what the run would
//! create or change, and what `--resume` would continue, all found without
//! writing anything: no database file, no table, no runs row.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use super::{csv, postgres, sql, sqlite, SinkSpec};
use crate::checkpoint::{runs, CursorRange, ResumePoint, RunSpec};
use crate::db::{self, Conn, Url};
use crate::record::Schema;
use sql::EarlierRow;

/// What a run would do to its sink.
#[derive(Debug, Default)]
pub(crate) struct SinkPlan {
    /// The changes, in order, one line each (SQL where it is SQL).
    pub(crate) changes: Vec<String>,
    /// The unfinished run `--resume` would continue, and how far it got.
    pub(crate) resume: Option<(i64, ResumePoint)>,
    /// With `--cursor`: the range the run would read (its upper bound not
    /// read yet, unless a resumed run stored one).
    pub(crate) cursor: Option<CursorRange>,
    /// What the plan should say besides (an older schema, a live run).
    pub(crate) notes: Vec<String>,
}

const BOOKKEEPING: &str =
    "create batchproc's run tables (batchproc_runs, batchproc_checkpoints, batchproc_failures)";

impl SinkSpec {
    /// The plan for a run writing `schema` into `table`; `run` is the run's
    /// bookkeeping (None with `--no-checkpoint`).
    pub(crate) fn plan(
        &self,
        table: &str,
        schema: &Schema,
        run: Option<&RunSpec>,
        earlier: Option<&mut dyn FnMut(EarlierRow)>,
    ) -> Result<SinkPlan> {
        match self {
            SinkSpec::Database(Url::Sqlite(path)) => {
                db::check_file_path(path, "SQLite database")?;
                if !path.exists() {
                    let mut plan = SinkPlan {
                        changes: vec![
                            format!("create the SQLite database {}", path.display()),
                            sql::create_table::<sql::Sqlite>(table, schema),
                            BOOKKEEPING.into(),
                        ],
                        ..SinkPlan::default()
                    };
                    plan.first_run(run);
                    return Ok(plan);
                }
                db::runtime()?.block_on(async {
                    let mut conn = read_only(path).await?;
                    let table_plan = sqlite::table::plan(&mut conn, table, schema).await?;
                    if let Some(each) = earlier {
                        let has = has_column(&table_plan.existing);
                        let sql = sql::select_earlier::<sql::Sqlite>(
                            table,
                            &sql::processor_columns(schema),
                            &has,
                        );
                        sqlite_earlier(&mut conn, &sql, &table_plan.existing, each).await?;
                    }
                    let mut plan = SinkPlan {
                        changes: table_plan.statements,
                        ..SinkPlan::default()
                    };
                    plan.bookkeeping(Conn::Sqlite(&mut conn), run).await?;
                    conn.close().await?;
                    Ok(plan)
                })
            }
            SinkSpec::Database(Url::Postgres(url)) => db::runtime()?.block_on(async {
                let mut conn = db::postgres(url).await?;
                let (table_plan, _) = postgres::table::plan(&mut conn, table, schema).await?;
                if let (Some(each), false) = (earlier, table_plan.existing.is_empty()) {
                    let has = has_column(&table_plan.existing);
                    let processors = sql::processor_columns(schema);
                    postgres::earlier::read_earlier(&mut conn, table, &processors, &has, each)
                        .await?;
                }
                let table = table_plan;
                let mut plan = SinkPlan {
                    changes: table.statements,
                    ..SinkPlan::default()
                };
                plan.bookkeeping(Conn::Postgres(&mut conn), run).await?;
                Ok(plan)
            }),
            SinkSpec::Csv(path) => {
                db::check_file_path(path, "CSV")?;
                let mut plan = SinkPlan::default();
                match csv::state_path(path).filter(|s| s.exists()) {
                    Some(state) => db::runtime()?.block_on(async {
                        let mut conn = read_only(&state).await?;
                        plan.bookkeeping(Conn::Sqlite(&mut conn), run).await?;
                        conn.close().await?;
                        anyhow::Ok(())
                    })?,
                    None => plan.first_run(run),
                }
                // The state file's tables are not the CSV's business to list.
                plan.changes.retain(|c| c != BOOKKEEPING);
                // A CSV resume does not retry earlier failures (their rows
                // are in the file already; see CsvSink::start_run).
                if let Some((_, point)) = &mut plan.resume {
                    point.retry.clear();
                }
                plan.changes.push(match (&plan.resume, path.exists()) {
                    (Some(_), _) => format!("append to {}", path.display()),
                    (None, true) => format!("replace {}", path.display()),
                    (None, false) => format!("create {}", path.display()),
                });
                Ok(plan)
            }
            SinkSpec::Stdout => Ok(SinkPlan {
                changes: vec!["write CSV to stdout".into()],
                ..SinkPlan::default()
            }),
        }
    }
}

impl SinkPlan {
    /// The run tables, if the database lacks them; with `--resume`, the run
    /// it would continue; with `--cursor`, the range a run would start from.
    async fn bookkeeping(&mut self, mut conn: Conn<'_>, run: Option<&RunSpec>) -> Result<()> {
        let sql = match conn {
            Conn::Sqlite(_) => "SELECT count(*) FROM sqlite_master WHERE name = 'batchproc_runs'",
            Conn::Postgres(_) => {
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'batchproc_runs'"
            }
        };
        let found: i64 = db::on_conn!(&mut conn, |c| {
            sqlx::query_scalar(sql).fetch_one(&mut **c).await?
        });
        if found == 0 {
            self.changes.push(BOOKKEEPING.into());
            self.first_run(run);
            return Ok(());
        }
        let pending = db::pending_migrations(conn.reborrow()).await?;
        if !pending.is_empty() {
            // Columns the lookups below read may not exist yet: a run
            // migrates first, so say so, and plan as for a fresh start.
            let versions: Vec<String> = pending.iter().map(|v| format!("{v:04}")).collect();
            self.changes.push(format!(
                "upgrade batchproc's run tables (migrations {})",
                versions.join(", ")
            ));
            self.notes.push(
                "the run tables are from an older batchproc: what --resume or --cursor would \
                 continue is read after the upgrade, so this plan starts afresh"
                    .into(),
            );
            self.first_run(run);
            return Ok(());
        }
        let Some(spec) = run else { return Ok(()) };
        if let Some(live) = runs::live_run(conn.reborrow(), Some(&spec.fingerprint)).await {
            self.notes.push(format!(
                "{live} is marked running: if it is still working, a run now would be refused (exit 75)"
            ));
        }
        if spec.resume {
            if let Some((id, point, cursor)) = runs::resumable(&mut conn, spec).await? {
                self.resume = Some((id, point));
                self.cursor = spec.cursor.then_some(cursor);
                return Ok(());
            }
        }
        if spec.cursor {
            let after = runs::last_cursor(&mut conn, spec).await?;
            self.cursor = Some(CursorRange { after, upto: None });
        }
        Ok(())
    }

    /// A sink with no run records yet: an incremental run reads everything.
    fn first_run(&mut self, run: Option<&RunSpec>) {
        if run.is_some_and(|r| r.cursor) {
            self.cursor = Some(CursorRange::default());
        }
    }
}

/// Whether a table with the columns `existing` has `name` (a dry run reads
/// a table the run would first add columns to).
fn has_column(existing: &[String]) -> impl Fn(&str) -> bool + '_ {
    |name| existing.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// `--incremental`'s earlier rows, read on the dry run's own connection:
/// its read-only, immutable open is what leaves the file untouched (the
/// sink's rusqlite read rides on a database the run already opened).
async fn sqlite_earlier(
    conn: &mut SqliteConnection,
    sql: &str,
    existing: &[String],
    each: &mut dyn FnMut(EarlierRow),
) -> Result<()> {
    use futures_util::TryStreamExt;
    use sqlx::Row;
    if existing.is_empty() {
        return Ok(());
    }
    let mut rows = sqlx::query(sql).fetch(conn);
    while let Some(row) = rows.try_next().await? {
        each(EarlierRow {
            path: row.try_get(0)?,
            size: row.try_get(1).ok().flatten(),
            // Anything but batchproc's own text reads as changed.
            mtime: row.try_get(2).ok().flatten(),
            current: row.try_get::<Option<bool>, _>(3)?.unwrap_or(false),
            failures: row.try_get(4).ok().flatten(),
            failed_run: row.try_get(5).ok().flatten(),
            error: row.try_get(6).ok().flatten(),
        });
    }
    Ok(())
}

/// Opens an existing SQLite file without changing it: read-only, and
/// immutable unless a write-ahead log holds part of its content. A log is
/// left only by a run that did not close the file (killed, or live); it is
/// then read through as any reader does, which updates the read marks in
/// the `-shm` index beside it (SQLite has no way to read a log without
/// that index), but no page of the database or the log.
pub(super) async fn read_only(path: &Path) -> Result<SqliteConnection> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let has_log = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .read_only(true)
        .immutable(!has_log);
    SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot read SQLite database {}", path.display()))
}
