//! The validated configuration of a run: flags checked, defaults applied,
//! URLs parsed. Every error here is a usage error (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::checkpoint;
use crate::cli::{FilesArgs, OnError, QueryArgs, RunArgs};
use crate::processor::{self, Fields, Processor};
use crate::rate::Rate;
use crate::record::DisplayPath;
use crate::retry::RetryPolicy;
use crate::sink::{validate_table_name, SinkSpec};
use crate::source::files::{FileSource, Filters};
use crate::source::query::{QuerySource, SourceDb};

/// What every pipeline needs besides its source and processors.
pub struct RunConfig {
    pub sink: SinkSpec,
    pub table: String,
    /// The pool's size: fixed when equal, else grown and shrunk by the backlog.
    pub min_workers: usize,
    pub max_workers: usize,
    pub queue: usize,
    /// Further tries of a retryable failure (`--retries`); with any, the
    /// output gains an `attempts` column.
    pub retry: RetryPolicy,
    pub rate: Option<Rate>,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub on_error: OnError,
    /// Per attempt at an item (`--timeout`).
    pub timeout: Option<Duration>,
    pub quiet: bool,
    pub resume: bool,
    pub checkpoint: bool,
    /// Items the source may run ahead of the checkpoint watermark.
    pub window: usize,
    /// What gives results their meaning: source, processors, sink, table.
    pub fingerprint: String,
}

impl RunConfig {
    fn from_args(args: RunArgs, default_table: &str, meaning: &[(&str, String)]) -> Result<Self> {
        let (min_workers, max_workers) = pool_size(&args)?;
        let table = args.table.unwrap_or_else(|| default_table.to_owned());
        validate_table_name(&table)?;
        let sink = SinkSpec::parse(&args.sink)?;
        let batch_size = args
            .batch_size
            .map_or_else(|| default_batch_size(&sink), |n| n as usize);
        if args.resume && !sink.keeps_checkpoints() {
            bail!("--resume needs a sink that keeps checkpoints: SQLite, Postgres or a CSV file (not stdout or a device)");
        }
        let mut parts = meaning.to_vec();
        parts.push(("sink", sink.to_string()));
        parts.push(("table", table.clone()));
        // The output's columns are part of its meaning (a resumed CSV must
        // keep its header); added only when present, so the fingerprints of
        // runs without --retries stay what they were.
        if args.retries > 0 {
            parts.push(("attempts", "column".into()));
        }
        Ok(RunConfig {
            fingerprint: checkpoint::fingerprint(&parts),
            sink,
            table,
            min_workers,
            max_workers,
            queue: args.queue.map_or(64 * max_workers, |n| n as usize),
            retry: RetryPolicy::new(args.retries),
            rate: args.rate,
            batch_size,
            flush_interval: Duration::from_secs(1),
            on_error: args.on_error,
            timeout: args.timeout,
            quiet: args.quiet,
            resume: args.resume,
            checkpoint: !args.no_checkpoint,
            window: 100_000,
        })
    }
}

/// `--workers N` is a fixed pool (N, N); `--min-workers`/`--max-workers` a
/// dynamic one; neither, a fixed pool of one worker per CPU. clap already
/// refuses `--workers` together with the other two.
fn pool_size(args: &RunArgs) -> Result<(usize, usize)> {
    let cpus = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let (min, max) = match (args.workers, args.min_workers, args.max_workers) {
        (Some(n), _, _) => (n as usize, n as usize),
        (None, None, None) => (cpus(), cpus()),
        (None, min, Some(max)) => (min.map_or(1, |n| n as usize), max as usize),
        (None, Some(min), None) => (min as usize, cpus().max(min as usize)),
    };
    if min > max {
        bail!("--min-workers {min} is more than --max-workers {max}");
    }
    Ok((min, max))
}

/// Rows per transaction unless `--batch-size` says otherwise. A Postgres
/// transaction costs four round trips and a COPY start besides its rows:
/// measured on 1M rows, 1000-row batches took 2.2-2.4 s, 5000-row ones
/// 1.8-1.9 s (psql \copy: 1.4 s). SQLite and CSV commits are local and
/// cheap, and smaller batches lose less work to a SIGKILL.
fn default_batch_size(sink: &SinkSpec) -> usize {
    match sink {
        SinkSpec::Postgres(_) => 5000,
        _ => 1000,
    }
}

pub struct FilesConfig {
    pub run: RunConfig,
    pub source: FileSource,
    pub processors: Vec<Box<dyn Processor>>,
}

impl FilesConfig {
    pub fn from_args(args: FilesArgs) -> Result<Self> {
        let roots = check_roots(args.dirs)?;
        if args.max_depth == Some(0) {
            bail!("--max-depth must be at least 1");
        }
        let mut processors = processor::parse_list(&args.processors)?;
        for p in &mut processors {
            p.bind(&Fields::File)
                .with_context(|| format!("-p {:?}", p.spec()))?;
        }
        let specs: Vec<String> = processors.iter().map(|p| p.spec()).collect();
        let run = RunConfig::from_args(
            args.run,
            "files",
            &[
                ("command", "files".into()),
                ("roots", format!("{roots:?}")),
                ("include", format!("{:?}", args.include)),
                ("exclude", format!("{:?}", args.exclude)),
                ("max_depth", format!("{:?}", args.max_depth)),
                ("follow", args.follow.to_string()),
                ("processors", processor::fingerprint_part(&specs)),
            ],
        )?;
        Ok(FilesConfig {
            run,
            source: FileSource {
                roots,
                filters: Filters::new(&args.include, &args.exclude)?,
                max_depth: args.max_depth,
                follow: args.follow,
                exclude_files: Default::default(),
            },
            processors,
        })
    }
}

pub struct QueryConfig {
    pub run: RunConfig,
    pub source: QuerySource,
    /// `(processor, column name)` pairs from `-p NAME:COLUMN`; item
    /// processors (`exec:`, `http:`) have no column.
    pub processors: Vec<(Box<dyn Processor>, Option<String>)>,
}

impl QueryConfig {
    pub fn from_args(args: QueryArgs) -> Result<Self> {
        let from = SourceDb::parse(&args.from)?;
        let mut processors: Vec<(Box<dyn Processor>, Option<String>)> = Vec::new();
        for spec in processor::split_specs(&args.processors) {
            if processor::is_item_spec(spec) {
                let p = processor::parse_one(spec)?;
                processor::refuse_twice(
                    processors
                        .iter()
                        .filter(|(_, c)| c.is_none())
                        .map(|(p, _)| p.as_ref()),
                    p.as_ref(),
                )?;
                processors.push((p, None));
                continue;
            }
            let Some((name, column)) = spec.split_once(':') else {
                bail!("query processors take a column: {spec}:COLUMN (e.g. sha256:body)");
            };
            let mut one = processor::parse_list(&[name.to_owned()])?;
            if processors
                .iter()
                .any(|(p, c)| p.name() == name && c.as_deref() == Some(column))
            {
                bail!("processor {spec:?} is given twice");
            }
            processors.push((one.remove(0), Some(column.to_owned())));
        }
        let specs: Vec<String> = processors
            .iter()
            .map(|(p, c)| match c {
                Some(c) => format!("{}:{c}", p.name()),
                None => p.spec(),
            })
            .collect();
        let run = RunConfig::from_args(
            args.run,
            "rows",
            &[
                ("command", "query".into()),
                ("from", from.to_string()),
                ("sql", args.sql.clone()),
                ("key", args.key.clone()),
                ("processors", processor::fingerprint_part(&specs)),
            ],
        )?;
        Ok(QueryConfig {
            run,
            source: QuerySource {
                from,
                sql: args.sql,
                key: args.key,
                page_size: args.page_size as usize,
                shape: None,
            },
            processors,
        })
    }
}

/// Every root must exist, and no root may lie inside another (or be the
/// same directory spelt differently): its files would be processed twice.
fn check_roots(dirs: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut roots: Vec<(PathBuf, PathBuf)> = Vec::new();
    for dir in dirs {
        let canonical =
            std::fs::canonicalize(&dir).with_context(|| format!("{}", DisplayPath(&dir)))?;
        if roots.iter().any(|(given, _)| *given == dir) {
            continue;
        }
        for (given, other) in &roots {
            if canonical.starts_with(other) || other.starts_with(&canonical) {
                bail!(
                    "{} and {} overlap: give only one of them",
                    DisplayPath(given),
                    DisplayPath(&dir)
                );
            }
        }
        roots.push((dir, canonical));
    }
    Ok(roots.into_iter().map(|(given, _)| given).collect())
}
