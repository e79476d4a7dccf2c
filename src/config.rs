//! The validated configuration of a run: flags checked, defaults applied,
//! the sink URL parsed. Every error here is a usage error (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::checkpoint;
use crate::cli::{FilesArgs, OnError};
use crate::processor::{self, Processor};
use crate::record::DisplayPath;
use crate::sink::{validate_table_name, SinkSpec};
use crate::source::files::{FileSource, Filters};

pub struct FilesConfig {
    pub source: FileSource,
    pub processors: Vec<Box<dyn Processor>>,
    pub sink: SinkSpec,
    pub table: String,
    pub workers: usize,
    pub queue: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub on_error: OnError,
    pub quiet: bool,
    pub resume: bool,
    pub checkpoint: bool,
    /// Items the walk may run ahead of the checkpoint watermark.
    pub window: usize,
    pub fingerprint: String,
}

impl FilesConfig {
    pub fn from_args(args: FilesArgs) -> Result<Self> {
        let roots = check_roots(args.dirs)?;
        if args.max_depth == Some(0) {
            bail!("--max-depth must be at least 1");
        }
        validate_table_name(&args.table)?;
        let workers = match args.workers {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let processors = processor::parse_list(&args.processors)?;
        let sink = SinkSpec::parse(&args.sink)?;
        if args.resume && !sink.keeps_checkpoints() {
            bail!("--resume needs a sink that keeps checkpoints: SQLite, Postgres or a CSV file (not stdout or a device)");
        }
        let names: Vec<&str> = processors.iter().map(|p| p.name()).collect();
        let fingerprint = checkpoint::fingerprint(&[
            ("command", "files".into()),
            ("roots", format!("{roots:?}")),
            ("include", format!("{:?}", args.include)),
            ("exclude", format!("{:?}", args.exclude)),
            ("max_depth", format!("{:?}", args.max_depth)),
            ("follow", args.follow.to_string()),
            ("processors", names.join(",")),
            ("sink", sink.to_string()),
            ("table", args.table.clone()),
        ]);
        Ok(FilesConfig {
            source: FileSource {
                roots,
                filters: Filters::new(&args.include, &args.exclude)?,
                max_depth: args.max_depth,
                follow: args.follow,
                exclude_files: Default::default(),
            },
            processors,
            sink,
            table: args.table,
            workers,
            queue: args.queue.map_or(64 * workers, |n| n as usize),
            batch_size: args.batch_size as usize,
            flush_interval: Duration::from_secs(1),
            on_error: args.on_error,
            quiet: args.quiet,
            resume: args.resume,
            checkpoint: !args.no_checkpoint,
            window: 100_000,
            fingerprint,
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
