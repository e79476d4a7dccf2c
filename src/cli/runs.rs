//! `batchproc runs`: the runs recorded in a sink, newest first, as a table
//! for people or JSON for scripts.

use batchproc::RunRow;

pub fn print_runs(runs: &[RunRow], json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(runs).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")
    } else {
        write!(out, "{}", table(runs))
    }
}

/// Columns of the table; the last (the command) is not padded.
const COLUMNS: usize = 13;

fn table(runs: &[RunRow]) -> String {
    let mut rows = vec![[
        "ID",
        "STATUS",
        "OK",
        "FAILED",
        "SKIPPED",
        "UNCHANGED",
        "REMOVED",
        "ATTEMPTS",
        "BUSY",
        "SHARD",
        "STARTED",
        "DURATION",
        "COMMAND",
    ]
    .map(String::from)];
    for r in runs {
        rows.push([
            r.id.to_string(),
            r.status.clone(),
            r.ok.to_string(),
            r.failed.to_string(),
            r.skipped.to_string(),
            r.unchanged.to_string(),
            r.removed.to_string(),
            r.attempts.to_string(),
            busy(r.peak_busy, r.average_busy),
            r.shard.clone().unwrap_or_else(|| "-".into()),
            r.started_at.clone(),
            duration(&r.started_at, r.finished_at.as_deref()),
            r.command.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..COLUMNS)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == COLUMNS - 1 {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Workers busy, `peak/average` (`-` for a run not ended or recorded
/// before these were kept).
fn busy(peak: Option<i64>, average: Option<f64>) -> String {
    match (peak, average) {
        (Some(p), Some(a)) => format!("{p}/{a:.1}"),
        _ => "-".into(),
    }
}

/// Wall time from start to finish (`-` while unfinished or killed).
fn duration(started: &str, finished: Option<&str>) -> String {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (parse(started), finished.and_then(parse)) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => "-".into(),
    }
}
