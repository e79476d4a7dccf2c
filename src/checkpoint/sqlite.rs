//! The bookkeeping tables in SQLite (`batchproc_runs`, `batchproc_checkpoints`),
//! used by the SQLite sink inside its batch transactions and by the CSV sink
//! in its state file. The schema lives in migrations/sqlite and is applied
//! with sqlx's migrator: a no-op when current, an upgrade when older.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{CheckpointUpdate, ItemKey, ResumePoint, RunSpec, RunStart};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row statement (3 parameters each, far under SQLite's limit).
const CHUNK: usize = 500;

pub async fn migrate(conn: &mut SqliteConnection) -> Result<()> {
    MIGRATOR
        .run(conn)
        .await
        .context("applying batchproc's bookkeeping migrations")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Opens a new run, or re-opens the latest run of this pipeline when it is
/// unfinished and `spec.resume` asks for it.
pub async fn start_run(conn: &mut SqliteConnection, spec: &RunSpec) -> Result<RunStart> {
    let latest = sqlx::query(
        "SELECT id, status, ok, failed, csv_length, watermark_root, watermark_key \
         FROM batchproc_runs WHERE fingerprint = ? ORDER BY id DESC LIMIT 1",
    )
    .bind(&spec.fingerprint)
    .fetch_optional(&mut *conn)
    .await?;
    let unfinished = latest.filter(|r| r.get::<String, _>("status") != "succeeded");
    if let (true, Some(run)) = (spec.resume, &unfinished) {
        return resume_run(conn, spec, run).await;
    }
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO batchproc_runs (fingerprint, command, sink_table, status, started_at) \
         VALUES (?, ?, ?, 'running', ?) RETURNING id",
    )
    .bind(&spec.fingerprint)
    .bind(&spec.command)
    .bind(&spec.table)
    .bind(now())
    .fetch_one(&mut *conn)
    .await?;
    let notice = match (&unfinished, spec.resume) {
        (_, true) => Some(format!(
            "nothing to resume for this pipeline; starting run {run_id}"
        )),
        (Some(old), false) => Some(format!(
            "run {} of this pipeline did not finish; --resume would continue it (starting run {run_id})",
            old.get::<i64, _>("id")
        )),
        (None, false) => None,
    };
    Ok(RunStart {
        run_id,
        resumed: false,
        point: ResumePoint::default(),
        done_before: 0,
        csv_length: None,
        notice,
    })
}

async fn resume_run(
    conn: &mut SqliteConnection,
    spec: &RunSpec,
    run: &SqliteRow,
) -> Result<RunStart> {
    let run_id: i64 = run.get("id");
    sqlx::query(
        "UPDATE batchproc_runs SET status = 'running', attempts = attempts + 1, \
         finished_at = NULL, command = ? WHERE id = ?",
    )
    .bind(&spec.command)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    let watermark = match (
        run.get::<Option<i64>, _>("watermark_root"),
        run.get::<Option<Vec<u8>>, _>("watermark_key"),
    ) {
        (Some(tag), Some(key)) => Some(ItemKey::decode(tag, key).context("corrupt watermark")?),
        _ => None,
    };
    let done = sqlx::query("SELECT root, key FROM batchproc_checkpoints WHERE run_id = ?")
        .bind(run_id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| ItemKey::decode(r.get("root"), r.get("key")).context("corrupt checkpoint row"))
        .collect::<Result<_>>()?;
    let done_before = (run.get::<i64, _>("ok") + run.get::<i64, _>("failed")) as u64;
    Ok(RunStart {
        run_id,
        resumed: true,
        point: ResumePoint { watermark, done },
        done_before,
        csv_length: run.get::<Option<i64>, _>("csv_length").map(|n| n as u64),
        notice: Some(format!(
            "resuming run {run_id}: {done_before} items already committed"
        )),
    })
}

/// Writes one batch's bookkeeping; call inside the batch's transaction.
pub async fn record(
    conn: &mut SqliteConnection,
    run_id: i64,
    update: &CheckpointUpdate,
    csv_length: Option<u64>,
) -> Result<()> {
    let (root, key) = update.watermark.as_ref().map(ItemKey::encode).unzip();
    sqlx::query(
        "UPDATE batchproc_runs SET ok = ok + ?, failed = failed + ?, watermark_root = ?, \
         watermark_key = ?, csv_length = COALESCE(?, csv_length) WHERE id = ?",
    )
    .bind(update.ok as i64)
    .bind(update.failed as i64)
    .bind(root)
    .bind(key)
    .bind(csv_length.map(|n| n as i64))
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    for chunk in update.delete.chunks(CHUNK) {
        let rows = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "DELETE FROM batchproc_checkpoints WHERE run_id = ? AND (root, key) IN (VALUES {rows})"
        );
        let mut q = sqlx::query(&sql).bind(run_id);
        for (tag, bytes) in chunk.iter().map(ItemKey::encode) {
            q = q.bind(tag).bind(bytes);
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in update.insert.chunks(CHUNK) {
        let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO batchproc_checkpoints (run_id, root, key) VALUES {rows}");
        let mut q = sqlx::query(&sql);
        for (tag, bytes) in chunk.iter().map(ItemKey::encode) {
            q = q.bind(run_id).bind(tag).bind(bytes);
        }
        q.execute(&mut *conn).await?;
    }
    commit_delay().await;
    Ok(())
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

/// Marks the run finished (or interrupted); a succeeded run needs no checkpoint rows.
pub async fn end_run(
    conn: &mut SqliteConnection,
    run_id: i64,
    status: &str,
    skipped: u64,
) -> Result<()> {
    sqlx::query(
        "UPDATE batchproc_runs SET status = ?, skipped = skipped + ?, finished_at = ? WHERE id = ?",
    )
    .bind(status)
    .bind(skipped as i64)
    .bind(now())
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    if status == "succeeded" {
        sqlx::query("DELETE FROM batchproc_checkpoints WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// One row of `batchproc runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub status: String,
    pub ok: i64,
    pub failed: i64,
    pub skipped: i64,
    pub attempts: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub table: Option<String>,
    pub command: String,
}

/// Every run, newest first.
pub async fn list_runs(conn: &mut SqliteConnection) -> Result<Vec<RunRow>> {
    let rows = sqlx::query(
        "SELECT id, status, ok, failed, skipped, attempts, started_at, finished_at, sink_table, command \
         FROM batchproc_runs ORDER BY id DESC",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RunRow {
            id: r.get("id"),
            status: r.get("status"),
            ok: r.get("ok"),
            failed: r.get("failed"),
            skipped: r.get("skipped"),
            attempts: r.get("attempts"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            table: r.get("sink_table"),
            command: r.get("command"),
        })
        .collect())
}
