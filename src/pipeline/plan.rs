//! `--dry-run`: everything a run checks before its first item (the source
//! opens, the processors and their programs, the sink and its table), then
//! what the run would do — how many items, how many an unfinished run
//! already did, what it would create or change in the sink — with nothing
//! written: no database file, no table, no runs row. With `--incremental`
//! the earlier rows are read as a run reads them and the walk itself says
//! which files it would pass (unchanged, quarantined), so the plan's
//! numbers are the run's. A shard's plan reads the items to count its own
//! (a query's rows too: a `count(*)` cannot tell shards apart).

use std::cell::Cell;

use super::run::{output_schema, run_spec};
use super::{config::RunConfig, Error};
use crate::checkpoint::ItemKey;
use crate::db::Url;
use crate::pool::Cancel;
use crate::processor::Work;
use crate::sink::sql::{Dialect, Postgres, Sqlite};
use crate::sink::SinkSpec;
use crate::source::files::Previous;
use crate::source::shard::Shard;
use crate::source::{Found, Source};

/// What a run would do, as a dry run found it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The sink, password redacted, and the table (database sinks).
    pub sink: String,
    pub table: Option<String>,
    /// Items the source holds now (with `--incremental`: those it would
    /// process, not counting the files it would pass).
    pub items: u64,
    /// With `--incremental`: files whose row is current, which the run
    /// would pass without opening them.
    pub unchanged: Option<u64>,
    /// With `--incremental`: of the files it would pass, those quarantined
    /// by the poison ledger (counted as skipped by the run).
    pub quarantined: u64,
    /// Of those, the ones the unfinished run `--resume` would continue
    /// already committed.
    pub done: u64,
    /// That run's id.
    pub resumes: Option<i64>,
    /// `--resume` was asked for (and found nothing to resume if `resumes`
    /// is None).
    pub resume: bool,
    /// What the run would create or change in the sink, in order (SQL where
    /// it is SQL); empty when the sink is ready as it is.
    pub changes: Vec<String>,
    /// What else the run would say before its first item (the range a
    /// `--cursor` run reads).
    pub notes: Vec<String>,
}

impl Plan {
    /// ` (95 unchanged, 2 quarantined)` with `--incremental`.
    fn passed(&self) -> String {
        match (self.unchanged, self.quarantined) {
            (None, _) => String::new(),
            (Some(u), 0) => format!(" ({u} unchanged)"),
            (Some(u), q) => format!(" ({u} unchanged, {q} quarantined)"),
        }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to_do = self.items - self.done;
        match self.resumes {
            Some(run) => writeln!(
                f,
                "would resume run {run}: {}, {} already done, {to_do} to do",
                items(self.items),
                self.done
            )?,
            None if self.resume => writeln!(
                f,
                "nothing to resume: would process {} in a new run",
                items(self.items)
            )?,
            None => writeln!(f, "would process {}{}", items(self.items), self.passed())?,
        }
        match &self.table {
            Some(table) => writeln!(f, "into {}, table {table}", self.sink)?,
            None => writeln!(f, "into {}", self.sink)?,
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        if self.changes.is_empty() {
            writeln!(f, "the sink needs no changes")?;
        }
        for change in &self.changes {
            writeln!(f, "  {change}")?;
        }
        Ok(())
    }
}

/// `1 item`, `2 items`.
fn items(n: u64) -> String {
    match n {
        1 => "1 item".into(),
        n => format!("{n} items"),
    }
}

/// The plan of `source` through `work` into the configured sink.
pub(super) fn plan<S, W>(
    cfg: RunConfig,
    command: &'static str,
    mut source: S,
    work: W,
    cancel: &Cancel,
) -> Result<Plan, Error>
where
    S: Source,
    W: Work<Item = S::Item>,
{
    let schema = output_schema(work.schema(), cfg.attempts_column()).map_err(Error::Config)?;
    let cursored = source.cursored().is_some();
    let spec = cfg
        .checkpoint
        .then(|| run_spec(&cfg, command, &source, &work, cursored));
    let mut previous = Previous::default();
    let mut insert = |row| previous.insert(row);
    let earlier: Option<&mut dyn FnMut(_)> = cfg.incremental.then_some(&mut insert);
    let mut sink = cfg
        .sink
        .plan(&cfg.table, &schema, spec.as_ref(), earlier)
        .map_err(|e| Error::Config(e.context(format!("sink {}", cfg.sink))))?;
    if cfg.incremental {
        previous.set_resolution(match &cfg.sink {
            SinkSpec::Database(Url::Postgres(_)) => Postgres::TIME_RESOLUTION_NS,
            _ => Sqlite::TIME_RESOLUTION_NS,
        });
        previous.set_run(sink.resume.as_ref().map(|(id, _)| *id));
        previous.quarantine_at(cfg.quarantine_at);
        source.remember(previous);
    }
    source.leave_out(&cfg.sink.own_files());
    let mut notes = std::mem::take(&mut sink.notes);
    if let (Some(range), Some(source)) = (&sink.cursor, source.cursored()) {
        let after = range.after.as_deref();
        let upto = match &range.upto {
            Some(upto) => upto.clone(),
            None => source.bound(after).map_err(Error::Config)?,
        };
        notes.push(source.restrict(after, &upto).map_err(Error::Config)?);
    }
    let shard = cfg.shard.as_ref();
    let count = |after| {
        if shard.is_some() {
            return Ok(walk(&source, after, shard, cancel)?.0);
        }
        let n = Cell::new(0);
        source
            .count(after, cancel, &|seen| n.set(seen))
            .map_err(Error::Config)?;
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        Ok(n.get())
    };
    let (items, unchanged, quarantined) = match cfg.incremental {
        true => {
            let walked = walk(&source, None, shard, cancel)?;
            (walked.0, Some(walked.1), walked.2)
        }
        false => (count(None)?, None, 0),
    };
    let done = match &sink.resume {
        Some((_, point)) => {
            let beyond = count(point.watermark.as_ref())?;
            let to_do = beyond.saturating_sub(point.done.len() as u64) + point.retry.len() as u64;
            items.saturating_sub(to_do)
        }
        None => 0,
    };
    let database = matches!(cfg.sink, crate::sink::SinkSpec::Database(_));
    Ok(Plan {
        sink: crate::redact::redact(&cfg.sink.to_string()),
        table: database.then(|| cfg.table.clone()),
        items,
        unchanged,
        quarantined,
        done,
        resumes: sink.resume.map(|(id, _)| id),
        resume: cfg.resume,
        changes: sink.changes,
        notes,
    })
}

/// Walks the source as a run would: the items it would process, the files
/// it would pass unchanged, and those it would pass quarantined (of the
/// shard's, with one).
fn walk<S: Source>(
    source: &S,
    after: Option<&ItemKey>,
    shard: Option<&Shard>,
    cancel: &Cancel,
) -> Result<(u64, u64, u64), Error> {
    let mut counts = (0, 0, 0);
    for found in source.items(after).map_err(Error::Config)? {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let found = found.map_err(Error::Config)?;
        if shard.is_some_and(|shard| !shard.keeps::<S>(&found)) {
            continue;
        }
        match found {
            Found::Item(..) => counts.0 += 1,
            Found::Unchanged(_) => counts.1 += 1,
            Found::Quarantined(_) => counts.2 += 1,
            Found::Skipped(_) | Found::Wait => {}
        }
    }
    Ok(counts)
}
