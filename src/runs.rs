//! `batchproc runs`: the runs recorded in a sink's bookkeeping, newest first,
//! as a table for people or JSON for scripts.

use anyhow::{bail, Context, Result};

use crate::checkpoint::sqlite::{self as store, RunRow};
use crate::cli::RunsArgs;
use crate::sink::SinkSpec;

pub fn list(args: &RunsArgs) -> Result<()> {
    let spec = SinkSpec::parse(&args.sink)?;
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print!("{}", table(&runs));
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
