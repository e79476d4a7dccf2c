// The bookkeeping SQL, shared by SQLite and Postgres: this file is
// `include!`d into `checkpoint::sqlite` and `checkpoint::postgres`, each of
// which defines `Conn`, `DbRow` and `MIGRATOR` first. Placeholders are `$N`,
// which both drivers accept.

use anyhow::{Context, Result};
use sqlx::Row;

use super::{CheckpointUpdate, ItemKey, ResumePoint, RunRow, RunSpec, RunStart};

/// Rows per multi-row statement (3 parameters each, far under SQLite's limit).
const CHUNK: usize = 500;

pub async fn migrate(conn: &mut Conn) -> Result<()> {
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
pub async fn start_run(conn: &mut Conn, spec: &RunSpec) -> Result<RunStart> {
    let latest = sqlx::query(
        "SELECT id, status, ok, failed, csv_length, watermark_root, watermark_key \
         FROM batchproc_runs WHERE fingerprint = $1 ORDER BY id DESC LIMIT 1",
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
         VALUES ($1, $2, $3, 'running', $4) RETURNING id",
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
    conn: &mut Conn,
    spec: &RunSpec,
    run: &DbRow,
) -> Result<RunStart> {
    let run_id: i64 = run.get("id");
    sqlx::query(
        "UPDATE batchproc_runs SET status = 'running', attempts = attempts + 1, \
         finished_at = NULL, command = $1 WHERE id = $2",
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
    let done = sqlx::query("SELECT root, key FROM batchproc_checkpoints WHERE run_id = $1")
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
    conn: &mut Conn,
    run_id: i64,
    update: &CheckpointUpdate,
    csv_length: Option<u64>,
) -> Result<()> {
    let (root, key) = update.watermark.as_ref().map(ItemKey::encode).unzip();
    sqlx::query(
        "UPDATE batchproc_runs SET ok = ok + $1, failed = failed + $2, watermark_root = $3, \
         watermark_key = $4, csv_length = COALESCE($5, csv_length) WHERE id = $6",
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
        let rows = placeholders(chunk.len(), 2, 2);
        let sql = format!(
            "DELETE FROM batchproc_checkpoints WHERE run_id = $1 AND (root, key) IN (VALUES {rows})"
        );
        let mut q = sqlx::query(&sql).bind(run_id);
        for (tag, bytes) in chunk.iter().map(ItemKey::encode) {
            q = q.bind(tag).bind(bytes);
        }
        q.execute(&mut *conn).await?;
    }
    for chunk in update.insert.chunks(CHUNK) {
        let rows = placeholders(chunk.len(), 3, 1);
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

/// `($first, $first+1, …), (…)`: `rows` groups of `width` numbered placeholders.
fn placeholders(rows: usize, width: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..width).map(|c| format!("${}", first + r * width + c)).collect();
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

/// Marks the run finished (or interrupted); a succeeded run needs no checkpoint rows.
pub async fn end_run(
    conn: &mut Conn,
    run_id: i64,
    status: &str,
    skipped: u64,
) -> Result<()> {
    sqlx::query(
        "UPDATE batchproc_runs SET status = $1, skipped = skipped + $2, finished_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(skipped as i64)
    .bind(now())
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    if status == "succeeded" {
        sqlx::query("DELETE FROM batchproc_checkpoints WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Every run, newest first.
pub async fn list_runs(conn: &mut Conn) -> Result<Vec<RunRow>> {
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
