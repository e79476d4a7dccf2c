//! A run's settings: as given ([`Options`], what [`Pipeline`](super::Pipeline)
//! collects) and resolved ([`RunConfig`]: checked, defaults applied, URLs
//! parsed). Every error here is a usage error (exit 2).

use std::time::Duration;

use anyhow::{bail, Result};

use super::rate::Rate;
use super::retry::RetryPolicy;
use super::OnError;
use crate::sink::{validate_table_name, SinkSpec};
use crate::source::shard::Shard;

/// The settings as given; None: the default.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) processors: Vec<String>,
    pub(super) sink: Option<String>,
    pub(super) table: Option<String>,
    pub(super) workers: Option<usize>,
    pub(super) min_workers: Option<usize>,
    pub(super) max_workers: Option<usize>,
    pub(super) queue: Option<usize>,
    pub(super) retries: u32,
    pub(super) rate: Option<Rate>,
    pub(super) batch_size: Option<usize>,
    pub(super) timeout: Option<Duration>,
    pub(super) max_runtime: Option<Duration>,
    pub(super) on_error: OnError,
    pub(super) resume: bool,
    pub(super) checkpoint: bool,
    pub(super) incremental: bool,
    pub(super) prune: bool,
    pub(super) max_failures: Option<u32>,
    pub(super) retry_failed: bool,
    /// `(index, count)`, checked when resolved.
    pub(super) shard: Option<(u32, u32)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            processors: Vec::new(),
            sink: None,
            table: None,
            workers: None,
            min_workers: None,
            max_workers: None,
            queue: None,
            retries: 0,
            rate: None,
            batch_size: None,
            timeout: None,
            max_runtime: None,
            on_error: OnError::Abort,
            resume: false,
            checkpoint: true,
            incremental: false,
            prune: false,
            max_failures: None,
            retry_failed: false,
            shard: None,
        }
    }
}

/// What every run needs besides its source and processors.
pub(crate) struct RunConfig {
    pub(crate) sink: SinkSpec,
    pub(crate) table: String,
    /// The pool's size: fixed when equal, else grown and shrunk by the backlog.
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    /// Capacity of the queue to the workers, in chunks.
    pub(crate) queue: usize,
    /// Further tries of a retryable failure (`--retries`); with any, the
    /// output gains an `attempts` column.
    pub(crate) retry: RetryPolicy,
    pub(crate) rate: Option<Rate>,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) on_error: OnError,
    /// Per attempt at an item (`--timeout`).
    pub(crate) timeout: Option<Duration>,
    /// From the run's start until no new item starts (`--max-runtime`).
    pub(crate) max_runtime: Option<Duration>,
    pub(crate) resume: bool,
    pub(crate) checkpoint: bool,
    /// Pass items whose row from an earlier run is current (`--incremental`).
    pub(crate) incremental: bool,
    /// Delete the rows of items gone (`--prune`, with `--incremental`).
    pub(crate) prune: bool,
    /// Consecutive failed runs after which an unchanged file is passed as
    /// quarantined; None: never (fail-fast, `--retry-failed`).
    pub(crate) quarantine_at: Option<u32>,
    /// Items the source may run ahead of the checkpoint watermark.
    pub(crate) window: usize,
    /// Only this shard's items (`--shard I/N`).
    pub(crate) shard: Option<Shard>,
}

impl RunConfig {
    pub(super) fn resolve(options: &Options, default_table: &str) -> Result<Self> {
        let (min_workers, max_workers) = pool_size(options)?;
        let table = options
            .table
            .clone()
            .unwrap_or_else(|| default_table.to_owned());
        validate_table_name(&table)?;
        let sink = SinkSpec::parse(options.sink.as_deref().unwrap_or("sqlite:batchproc.db"))?;
        if options.resume && !sink.keeps_checkpoints() {
            bail!("--resume needs a sink that keeps checkpoints: SQLite, Postgres or a CSV file (not stdout or a device)");
        }
        if options.resume && !options.checkpoint {
            bail!("--resume needs checkpoints: it cannot go with --no-checkpoint");
        }
        // A paused run is for a resume to continue; without checkpoints
        // nothing could, and its exit 3 would ask for what cannot be done.
        if options.max_runtime.is_some() && !(options.checkpoint && sink.keeps_checkpoints()) {
            bail!(
                "--max-runtime pauses a run for --resume to continue: it needs checkpoints \
                   (not --no-checkpoint, not CSV on stdout or a device)"
            );
        }
        if options.max_runtime == Some(Duration::ZERO) {
            bail!("--max-runtime must be more than 0");
        }
        if options.prune && !options.incremental {
            bail!("--prune needs --incremental: it deletes the rows the incremental walk no longer meets");
        }
        if options.incremental && !matches!(sink, SinkSpec::Database(_)) {
            bail!(
                "--incremental needs a database sink (SQLite or Postgres): a CSV file is \
                 rewritten by every run, so it keeps no earlier rows to compare with"
            );
        }
        let quarantine_at = quarantine_at(options)?;
        let shard = options
            .shard
            .map(|(index, count)| Shard::new(index, count))
            .transpose()?;
        for (name, value) in [
            ("--batch-size", options.batch_size),
            ("--queue", options.queue),
        ] {
            if value == Some(0) {
                bail!("{name} must be at least 1");
            }
        }
        Ok(RunConfig {
            batch_size: options
                .batch_size
                .unwrap_or_else(|| sink.default_batch_size()),
            sink,
            table,
            min_workers,
            max_workers,
            // Enough that a grown pool is not starved.
            queue: options.queue.unwrap_or(64 * max_workers),
            retry: RetryPolicy::new(options.retries),
            rate: options.rate,
            flush_interval: Duration::from_secs(1),
            on_error: options.on_error,
            timeout: options.timeout,
            max_runtime: options.max_runtime,
            resume: options.resume,
            checkpoint: options.checkpoint,
            incremental: options.incremental,
            prune: options.prune,
            quarantine_at,
            window: 100_000,
            shard,
        })
    }

    /// Whether the output has an `attempts` column (`--retries`).
    pub(crate) fn attempts_column(&self) -> bool {
        self.retry.retries() > 0
    }
}

/// The poison ledger's threshold. Its flags need `--incremental` (the
/// counts live in the rows it reads) and `--on-error skip`: under fail-fast
/// a failure stops the run, and quarantining would turn that stop into a
/// quiet skip. Failures are still counted under fail-fast.
fn quarantine_at(options: &Options) -> Result<Option<u32>> {
    let given = options.max_failures.is_some() || options.retry_failed;
    if given && !options.incremental {
        bail!("--max-failures and --retry-failed need --incremental: the failure counts live in the rows it reads");
    }
    if given && options.on_error != OnError::Skip {
        bail!("--max-failures and --retry-failed need --on-error skip: under fail-fast the first failure stops the run");
    }
    if options.max_failures == Some(0) {
        bail!("--max-failures must be at least 1");
    }
    let skip = options.incremental && options.on_error == OnError::Skip;
    Ok((skip && !options.retry_failed).then(|| options.max_failures.unwrap_or(3)))
}

/// `--workers N` is a fixed pool (N, N); `--min-workers`/`--max-workers` a
/// dynamic one; neither, a fixed pool of one worker per CPU.
fn pool_size(options: &Options) -> Result<(usize, usize)> {
    let cpus = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let (min, max) = match (options.workers, options.min_workers, options.max_workers) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            bail!("--workers cannot be used with --min-workers or --max-workers")
        }
        (Some(n), None, None) => (n, n),
        (None, None, None) => (cpus(), cpus()),
        (None, min, Some(max)) => (min.unwrap_or(1), max),
        (None, Some(min), None) => (min, cpus().max(min)),
    };
    if min == 0 {
        bail!("the pool needs at least one worker");
    }
    if min > max {
        bail!("--min-workers {min} is more than --max-workers {max}");
    }
    Ok((min, max))
}
