//! Run records: the `batchproc_runs` row of each run and its checkpoint rows
//! in `batchproc_checkpoints`, in SQLite (the SQLite sink's database, the
//! CSV sink's state file) or Postgres (the sink's database). The SQL is
//! written once for both ([`Conn`]); `record` runs inside the transaction of
//! the batch it covers.

use anyhow::{Context, Result};
use sqlx::Row;

use super::{CheckpointUpdate, CursorRange, ItemKey, ResumePoint, RunRow, RunSpec, RunStart};
use crate::db::{on_conn, Conn};

/// Rows per multi-row statement (3 parameters each, far under SQLite's limit).
const CHUNK: usize = 500;

/// How a run ended, as `batchproc_runs.status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Succeeded,
    Failed,
    Interrupted,
    /// Stopped at `--max-runtime` with items left (migration 0003).
    Paused,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::Succeeded => "succeeded",
            Ending::Failed => "failed",
            Ending::Interrupted => "interrupted",
            Ending::Paused => "paused",
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How a run ended, for its row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunEnd {
    pub(crate) ending: Ending,
    pub(crate) skipped: u64,
    /// Failed items without a checkpoint, which a resume retries (under
    /// fail-fast, the one that stopped the run): counted as failed until then.
    pub(crate) retry_pending: u64,
    pub(crate) peak_busy: u64,
    pub(crate) average_busy: f64,
}

/// This machine's name, for the run row (who works the run).
pub(crate) fn host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The newest run still marked running (of the pipeline `fingerprint`, or
/// of any), to name it when it holds the sink: `run 3 (pid 1234 on db1,
/// started …)`. None when there is none or the tables are not there yet.
pub(crate) async fn live_run(mut conn: Conn<'_>, fingerprint: Option<&str>) -> Option<String> {
    // Before the columns pid and host exist (an older batchproc holds the
    // sink), the query fails and the run is not named.
    let (id, pid, host, started): (i64, Option<i64>, Option<String>, String) =
        on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT id, pid, host, started_at FROM batchproc_runs \
                 WHERE status = 'running' AND ($1 IS NULL OR fingerprint = $1) \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(fingerprint)
            .fetch_optional(&mut **c)
            .await
            .ok()??
        });
    let who = match (pid, host) {
        (Some(pid), Some(host)) => format!("pid {pid} on {host}, "),
        _ => String::new(),
    };
    Some(format!("run {id} ({who}started {started})"))
}

/// The newest run of a pipeline, as `start_run` needs it.
struct Latest {
    id: i64,
    status: String,
    committed: i64,
    csv_length: Option<i64>,
    watermark: (Option<i64>, Option<Vec<u8>>),
    cursor: CursorRange,
}

/// Opens a new run, or re-opens the latest run of this pipeline when it is
/// unfinished and `spec.resume` asks for it. A run recorded under the
/// fingerprint of an older batchproc (`spec.legacy_fingerprint`) counts as
/// the same pipeline, and takes the current fingerprint when resumed.
pub(crate) async fn start_run(mut conn: Conn<'_>, spec: &RunSpec) -> Result<RunStart> {
    let latest = latest_run(&mut conn, spec).await?;
    let unfinished = latest.filter(|r| r.status != "succeeded");
    if let (true, Some(run)) = (spec.resume, &unfinished) {
        return resume_run(conn, spec, run).await;
    }
    // A new incremental run starts where the last succeeded one ended; a
    // failed or unfinished run never moved the cursor.
    let after = match spec.cursor {
        true => last_cursor(&mut conn, spec).await?,
        false => None,
    };
    let run_id: i64 = on_conn!(&mut conn, |c| {
        sqlx::query_scalar(
            "INSERT INTO batchproc_runs (fingerprint, command, sink_table, status, started_at, pid, host, \
             cursor_after, shard) VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&spec.fingerprint)
        .bind(&spec.command)
        .bind(&spec.table)
        .bind(now())
        .bind(std::process::id() as i64)
        .bind(host())
        .bind(&after)
        .bind(&spec.shard)
        .fetch_one(&mut **c)
        .await?
    });
    let notice = match (&unfinished, spec.resume) {
        (_, true) => Some(format!(
            "nothing to resume for this pipeline; starting run {run_id}"
        )),
        (Some(_), false) if spec.queue => None,
        (Some(old), false) => Some(format!(
            "run {} of this pipeline did not finish; --resume would continue it (starting run {run_id})",
            old.id
        )),
        (None, false) => None,
    };
    Ok(RunStart {
        run_id,
        resumed: false,
        point: ResumePoint::default(),
        csv_length: None,
        cursor: spec.cursor.then_some(CursorRange { after, upto: None }),
        notice,
    })
}

/// The newest run of this pipeline, if there is one.
async fn latest_run(conn: &mut Conn<'_>, spec: &RunSpec) -> Result<Option<Latest>> {
    Ok(on_conn!(conn, |c| {
        sqlx::query(
            "SELECT id, status, ok + failed AS committed, csv_length, watermark_root, watermark_key, \
             cursor_after, cursor_upto \
             FROM batchproc_runs WHERE fingerprint IN ($1, $2) ORDER BY id DESC LIMIT 1",
        )
        .bind(&spec.fingerprint)
        .bind(&spec.legacy_fingerprint)
        .fetch_optional(&mut **c)
        .await?
        .map(|r| Latest {
            id: r.get("id"),
            status: r.get("status"),
            committed: r.get("committed"),
            csv_length: r.get("csv_length"),
            watermark: (r.get("watermark_root"), r.get("watermark_key")),
            cursor: CursorRange {
                after: r.get("cursor_after"),
                upto: r.get("cursor_upto"),
            },
        })
    }))
}

/// What `--resume` would continue, changing nothing (for a dry run): the
/// run's id and how far it got. None when the latest run finished.
pub(crate) async fn resumable(
    conn: &mut Conn<'_>,
    spec: &RunSpec,
) -> Result<Option<(i64, ResumePoint, CursorRange)>> {
    match latest_run(conn, spec).await? {
        Some(run) if run.status != "succeeded" => {
            let point = resume_point(conn, &run).await?;
            Ok(Some((run.id, point, run.cursor)))
        }
        _ => Ok(None),
    }
}

/// Where a new incremental run of the pipeline starts: the end of the last
/// succeeded run's range (a failed or unfinished run never moved it).
pub(crate) async fn last_cursor(conn: &mut Conn<'_>, spec: &RunSpec) -> Result<Option<String>> {
    Ok(on_conn!(conn, |c| {
        sqlx::query_scalar(
            "SELECT cursor_upto FROM batchproc_runs WHERE fingerprint = $1 \
             AND status = 'succeeded' AND cursor_upto IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(&spec.fingerprint)
        .fetch_optional(&mut **c)
        .await?
    }))
}

/// The watermark, the checkpoints beyond it and the failures to retry of `run`.
async fn resume_point(conn: &mut Conn<'_>, run: &Latest) -> Result<ResumePoint> {
    let watermark = match run.watermark.clone() {
        (Some(tag), Some(key)) => Some(ItemKey::decode(tag, key).context("corrupt watermark")?),
        _ => None,
    };
    let rows: Vec<(i64, Vec<u8>)> = on_conn!(conn, |c| {
        sqlx::query_as("SELECT root, key FROM batchproc_checkpoints WHERE run_id = $1")
            .bind(run.id)
            .fetch_all(&mut **c)
            .await?
    });
    let done = rows
        .into_iter()
        .map(|(tag, key)| ItemKey::decode(tag, key).context("corrupt checkpoint row"))
        .collect::<Result<_>>()?;
    let failed: Vec<(i64, Vec<u8>)> = on_conn!(conn, |c| {
        sqlx::query_as("SELECT root, key FROM batchproc_failures WHERE run_id = $1")
            .bind(run.id)
            .fetch_all(&mut **c)
            .await?
    });
    let retry = failed
        .into_iter()
        .map(|(tag, key)| ItemKey::decode(tag, key).context("corrupt failure row"))
        .collect::<Result<_>>()?;
    Ok(ResumePoint {
        watermark,
        done,
        retry,
    })
}

async fn resume_run(mut conn: Conn<'_>, spec: &RunSpec, run: &Latest) -> Result<RunStart> {
    on_conn!(&mut conn, |c| {
        sqlx::query(
            "UPDATE batchproc_runs SET status = 'running', attempts = attempts + 1, \
             finished_at = NULL, command = $1, fingerprint = $2, pid = $3, host = $4, \
             failed = failed - retry_pending, retry_pending = 0 WHERE id = $5",
        )
        .bind(&spec.command)
        .bind(&spec.fingerprint)
        .bind(std::process::id() as i64)
        .bind(host())
        .bind(run.id)
        .execute(&mut **c)
        .await?;
    });
    let point = resume_point(&mut conn, run).await?;
    let retry_count = point.retry.len();
    Ok(RunStart {
        run_id: run.id,
        resumed: true,
        point,
        csv_length: run.csv_length.map(|n| n as u64),
        cursor: spec.cursor.then(|| run.cursor.clone()),
        notice: Some(format!(
            "resuming run {}: {} items already committed{}",
            run.id,
            run.committed,
            match retry_count {
                0 => String::new(),
                n => format!(", retrying the {n} that failed"),
            }
        )),
    })
}

/// Stores where an incremental run's range ends, read once at its start
/// (before any record commits), so that a resume reads the same range.
pub(crate) async fn set_cursor(mut conn: Conn<'_>, run_id: i64, upto: &str) -> Result<()> {
    on_conn!(&mut conn, |c| {
        sqlx::query("UPDATE batchproc_runs SET cursor_upto = $1 WHERE id = $2")
            .bind(upto)
            .bind(run_id)
            .execute(&mut **c)
            .await?;
    });
    Ok(())
}

/// Writes one batch's bookkeeping; call inside the batch's transaction.
/// `csv_length` is the CSV sink's committed length, when it has one.
pub(crate) async fn record(
    mut conn: Conn<'_>,
    run_id: i64,
    update: &CheckpointUpdate,
    csv_length: Option<u64>,
) -> Result<()> {
    let (root, key) = update.watermark.as_ref().map(ItemKey::encode).unzip();
    on_conn!(&mut conn, |c| {
        sqlx::query(
            "UPDATE batchproc_runs SET ok = ok + $1, failed = failed + $2, watermark_root = $3, \
             watermark_key = $4, csv_length = COALESCE($5, csv_length), \
             unchanged = unchanged + $6, removed = removed + $7 WHERE id = $8",
        )
        .bind(update.ok as i64)
        .bind(update.failed as i64 - update.cleared.len() as i64)
        .bind(root)
        .bind(key)
        .bind(csv_length.map(|n| n as i64))
        .bind(update.unchanged as i64)
        .bind(update.removed as i64)
        .bind(run_id)
        .execute(&mut **c)
        .await?;
    });
    delete_keys(&mut conn, "batchproc_checkpoints", run_id, &update.delete).await?;
    insert_keys(&mut conn, "batchproc_checkpoints", run_id, &update.insert).await?;
    delete_keys(&mut conn, "batchproc_failures", run_id, &update.cleared).await?;
    insert_keys(&mut conn, "batchproc_failures", run_id, &update.failures).await?;
    commit_delay().await;
    Ok(())
}

/// Deletes the rows of `keys` from a table of `(run_id, root, key)` rows.
async fn delete_keys(
    conn: &mut Conn<'_>,
    table: &str,
    run_id: i64,
    keys: &[ItemKey],
) -> Result<()> {
    for chunk in keys.chunks(CHUNK) {
        let rows = placeholders(chunk.len(), 2, 2);
        let sql =
            format!("DELETE FROM {table} WHERE run_id = $1 AND (root, key) IN (VALUES {rows})");
        on_conn!(conn, |c| {
            let mut q = sqlx::query(&sql).bind(run_id);
            for (tag, bytes) in chunk.iter().map(ItemKey::encode) {
                q = q.bind(tag).bind(bytes);
            }
            q.execute(&mut **c).await?;
        });
    }
    Ok(())
}

/// Adds rows for `keys` to a table of `(run_id, root, key)` rows.
async fn insert_keys(
    conn: &mut Conn<'_>,
    table: &str,
    run_id: i64,
    keys: &[ItemKey],
) -> Result<()> {
    for chunk in keys.chunks(CHUNK) {
        let rows = placeholders(chunk.len(), 3, 1);
        let sql = format!("INSERT INTO {table} (run_id, root, key) VALUES {rows}");
        on_conn!(conn, |c| {
            let mut q = sqlx::query(&sql);
            for (tag, bytes) in chunk.iter().map(ItemKey::encode) {
                q = q.bind(run_id).bind(tag).bind(bytes);
            }
            q.execute(&mut **c).await?;
        });
    }
    Ok(())
}

/// `($first, $first+1, …), (…)`: `rows` groups of `width` numbered placeholders.
fn placeholders(rows: usize, width: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..width)
                .map(|c| format!("${}", first + r * width + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Test hook: `BATCHPROC_TEST_COMMIT_DELAY_MS` holds every checkpoint
/// transaction open that long before COMMIT (for the CSV sink: after the CSV
/// is synced), so the crash tests can land SIGKILLs inside commits. Unset in
/// normal use.
async fn commit_delay() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("BATCHPROC_TEST_COMMIT_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis)
    });
    if let Some(d) = delay {
        tokio::time::sleep(*d).await;
    }
}

/// Marks the run ended; a succeeded run needs no checkpoint rows.
pub(crate) async fn end_run(mut conn: Conn<'_>, run_id: i64, end: &RunEnd) -> Result<()> {
    on_conn!(&mut conn, |c| {
        sqlx::query(
            "UPDATE batchproc_runs SET status = $1, skipped = skipped + $2, finished_at = $3, \
             failed = failed + $4, retry_pending = $4, \
             peak_busy = CASE WHEN peak_busy > $5 THEN peak_busy ELSE $5 END, \
             average_busy = $6 WHERE id = $7",
        )
        .bind(end.ending.name())
        .bind(end.skipped as i64)
        .bind(now())
        .bind(end.retry_pending as i64)
        .bind(end.peak_busy as i64)
        .bind(end.average_busy)
        .bind(run_id)
        .execute(&mut **c)
        .await?;
    });
    if end.ending == Ending::Succeeded {
        for table in ["batchproc_checkpoints", "batchproc_failures"] {
            on_conn!(&mut conn, |c| {
                sqlx::query(&format!("DELETE FROM {table} WHERE run_id = $1"))
                    .bind(run_id)
                    .execute(&mut **c)
                    .await?;
            });
        }
    }
    Ok(())
}

/// Every run, newest first.
pub(crate) async fn list_runs(mut conn: Conn<'_>) -> Result<Vec<RunRow>> {
    Ok(on_conn!(&mut conn, |c| {
        sqlx::query(
            "SELECT id, status, ok, failed, skipped, unchanged, removed, attempts, started_at, \
             finished_at, sink_table, command, pid, host, peak_busy, average_busy, shard \
             FROM batchproc_runs ORDER BY id DESC",
        )
        .fetch_all(&mut **c)
        .await?
        .into_iter()
        .map(|r| RunRow {
            id: r.get("id"),
            status: r.get("status"),
            ok: r.get("ok"),
            failed: r.get("failed"),
            skipped: r.get("skipped"),
            unchanged: r.get("unchanged"),
            removed: r.get("removed"),
            attempts: r.get("attempts"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            table: r.get("sink_table"),
            command: r.get("command"),
            pid: r.get("pid"),
            host: r.get("host"),
            peak_busy: r.get("peak_busy"),
            average_busy: r.get("average_busy"),
            shard: r.get("shard"),
        })
        .collect()
    }))
}
