//! `--summary-json`: how a run ended, as one JSON object for a scheduler or
//! a monitoring script, written however the run ended.

use std::io::Write;
use std::path::Path;

use batchproc::Report;
use serde_json::{json, Value};

/// The summary of a run that produced a report (it ran, whatever became of
/// it). `error` is the line printed for a failure, if any.
pub fn of_report(report: &Report, error: Option<&str>, exit_code: u8) -> Value {
    let status = report.status.name();
    let s = &report.summary;
    json!({
        "run_id": report.run_id,
        "status": status,
        "exit_code": exit_code,
        "ok": s.ok,
        "failed": s.failed,
        "skipped": s.skipped,
        "quarantined": s.quarantined,
        "unchanged": s.unchanged,
        "removed": s.removed,
        "redelivered": s.redelivered,
        "held": s.held,
        "bytes": s.bytes,
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "workers_peak_busy": s.pool.peak_busy,
        "workers_average_busy": s.pool.average_busy,
        "sink": report.sink,
        "error": error.map(batchproc::redact),
    })
}

/// The summary of a run that never started: refused before any work
/// (`status` says why: `error`, `busy`, `interrupted`).
pub fn of_refusal(status: &str, sink: &str, error: Option<&str>, exit_code: u8) -> Value {
    json!({
        "run_id": null,
        "status": status,
        "exit_code": exit_code,
        "ok": 0,
        "failed": 0,
        "skipped": 0,
        "quarantined": 0,
        "unchanged": 0,
        "removed": 0,
        "redelivered": 0,
        "held": null,
        "bytes": 0,
        "elapsed_seconds": 0.0,
        "sink": batchproc::redact(sink),
        "error": error.map(batchproc::redact),
    })
}

/// Writes `summary` as one line to `path` (`-`: stdout).
pub fn write(path: &Path, summary: &Value) -> std::io::Result<()> {
    let mut line = summary.to_string();
    line.push('\n');
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())?;
        out.flush()
    } else {
        std::fs::write(path, line)
    }
}
