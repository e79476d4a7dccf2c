//! `batchproc runs`: the runs recorded in a sink's bookkeeping, newest first,
//! as a table for people or JSON for scripts.

use anyhow::{bail, Context, Result};

use crate::checkpoint::sqlite as store;
use crate::checkpoint::RunRow;
use crate::cli::RunsArgs;
use crate::sink::SinkSpec;

pub fn list(args: &RunsArgs) -> Result<()> {
    let spec = SinkSpec::parse(&args.sink)?;
    if let SinkSpec::Postgres(url) = &spec {
        return print(&postgres_runs(url)?, args.json);
    }
    let Some(path) = spec.state_path() else {
        bail!("{spec} keeps no run records");
    };
    if !path.exists() {
        bail!(
            "{}: no such database (no run has written to {spec})",
            path.display()
        );
    }
    let (rt, mut conn) = crate::sink::sqlite::connect(&path)?;
    let runs = rt
        .block_on(async {
            store::migrate(&mut conn).await?;
            store::list_runs(&mut conn).await
        })
        .with_context(|| format!("reading runs from {}", path.display()))?;
    print(&runs, args.json)
}

fn postgres_runs(url: &str) -> Result<Vec<RunRow>> {
    use sqlx::Connection;
    let redacted = crate::checkpoint::redact(url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to {redacted}: {}",
                crate::checkpoint::redact(&e.to_string())
            )
        })?;
        crate::checkpoint::postgres::migrate(&mut conn).await?;
        crate::checkpoint::postgres::list_runs(&mut conn).await
    })
}

fn print(runs: &[RunRow], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(runs)?);
    } else {
        print!("{}", table(runs));
    }
    Ok(())
}

fn table(runs: &[RunRow]) -> String {
    let mut rows = vec![[
        "ID", "STATUS", "OK", "FAILED", "SKIPPED", "ATTEMPTS", "STARTED", "DURATION", "COMMAND",
    ]
    .map(String::from)];
    for r in runs {
        rows.push([
            r.id.to_string(),
            r.status.clone(),
            r.ok.to_string(),
            r.failed.to_string(),
            r.skipped.to_string(),
            r.attempts.to_string(),
            r.started_at.clone(),
            duration(&r.started_at, r.finished_at.as_deref()),
            r.command.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 8 {
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

/// Wall time from start to finish (`-` while unfinished or killed).
fn duration(started: &str, finished: Option<&str>) -> String {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (parse(started), finished.and_then(parse)) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => "-".into(),
    }
}
