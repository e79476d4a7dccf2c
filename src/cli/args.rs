//! The flags of the commands that run a pipeline (`files`, `query`, and
//! `run` through them), and how they become a [`Pipeline`] and the
//! [`Invocation`] around it.

use std::path::PathBuf;

use batchproc::{Pipeline, Rate};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};

use super::log;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnError {
    /// The first failed item cancels the run; what finished is committed.
    Abort,
    /// Record the failure in the row's `error` column and go on.
    Skip,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// Directories (or files) to walk; paths are stored as walked, starting with DIR as given.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// Processors to run on each file, repeatable or comma-separated (exec:
    /// and http: take the rest of their value whole). Files offer {} (the
    /// path), {name} and {dir} to exec: and http:.
    #[arg(short = 'p', long = "processor", value_name = "SPEC", long_help = processor_help(
        "Processors to run on each file, repeatable or comma-separated; exec: and http: take \
         the rest of their value whole, and files offer them {} (the path), {name} and {dir}:"),
        env = "BATCHPROC_PROCESSOR", hide_env_values = true)]
    pub processors: Vec<String>,

    /// Only files matching GLOB (a glob without / matches the file name, one with / the path under DIR).
    #[arg(
        long,
        value_name = "GLOB",
        env = "BATCHPROC_INCLUDE",
        hide_env_values = true
    )]
    pub include: Vec<String>,

    /// Skip files and directories matching GLOB (same matching as --include).
    #[arg(
        long,
        value_name = "GLOB",
        env = "BATCHPROC_EXCLUDE",
        hide_env_values = true
    )]
    pub exclude: Vec<String>,

    /// Descend at most N directories below DIR (1: only DIR's own entries).
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        env = "BATCHPROC_MAX_DEPTH",
        hide_env_values = true
    )]
    pub max_depth: Option<usize>,

    /// Follow symbolic links (loops are detected; a broken link is then a failed item).
    #[arg(short = 'L', long, env = "BATCHPROC_FOLLOW", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub follow: bool,

    /// Leave out files whose row from an earlier run is current (same path, size and mtime,
    /// no error, every column of this run's processors filled): not opened, not rewritten,
    /// counted as unchanged. SQLite and Postgres sinks.
    #[arg(long, env = "BATCHPROC_INCREMENTAL", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub incremental: bool,

    /// With --incremental: once the walk met everything (no unreadable directory, not
    /// stopped early), delete the rows of files under DIR and through the filters that are
    /// gone, in one transaction; counted as removed.
    #[arg(long, env = "BATCHPROC_PRUNE", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub prune: bool,

    /// With --incremental and --on-error skip: a file that failed in N consecutive runs (at
    /// its current size and mtime) is quarantined: not opened, counted as skipped and
    /// quarantined, until it changes or --retry-failed [default: 3]. `batchproc failures`
    /// lists them.
    #[arg(long, value_name = "N", env = "BATCHPROC_MAX_FAILURES", hide_env_values = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: Option<u32>,

    /// With --incremental and --on-error skip: process quarantined files again (a failure
    /// still adds to their count).
    #[arg(long, env = "BATCHPROC_RETRY_FAILED", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub retry_failed: bool,

    #[command(flatten)]
    pub capacity: Capacity,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The database to read: sqlite:PATH or postgres://…
    #[arg(
        long,
        value_name = "URL",
        env = "BATCHPROC_FROM",
        hide_env_values = true
    )]
    pub from: String,

    /// The query; every column passes through to the output.
    #[arg(
        long,
        value_name = "SQL",
        env = "BATCHPROC_SQL",
        hide_env_values = true
    )]
    pub sql: String,

    /// A unique, orderable column of the query (integer or text): pages are
    /// read with WHERE key > last ORDER BY key, and rows are upserted on it.
    #[arg(
        long,
        value_name = "COLUMN",
        env = "BATCHPROC_KEY",
        hide_env_values = true
    )]
    pub key: String,

    /// Read incrementally: each run reads only the rows whose COLUMN (an
    /// integer, text, timestamp or date) is beyond the largest value the
    /// last succeeded run of this pipeline read, up to the largest there is
    /// when it starts. NULLs are read by the first run only.
    #[arg(
        long,
        value_name = "COLUMN",
        env = "BATCHPROC_CURSOR",
        hide_env_values = true
    )]
    pub cursor: Option<String>,

    /// Rows per page read from the source.
    #[arg(long, value_name = "N", default_value_t = 5000, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "BATCHPROC_PAGE_SIZE", hide_env_values = true)]
    pub page_size: u32,

    /// Row processors, repeatable or comma-separated: NAME:COLUMN for a
    /// content processor (e.g. sha256:body), or exec:/http: on the whole row
    /// ({} the key, {COLUMN} a column's value).
    #[arg(short = 'p', long = "processor", value_name = "SPEC", long_help = processor_help(
        "Row processors, repeatable or comma-separated: NAME:COLUMN for a content processor \
         (sha256:body), exec:/http: on the whole row ({} the key, {COLUMN} a column's value):"),
        env = "BATCHPROC_PROCESSOR", hide_env_values = true)]
    pub processors: Vec<String>,

    #[command(flatten)]
    pub capacity: Capacity,

    #[command(flatten)]
    pub run: RunArgs,
}

/// The capacity of the work queue (`files`, `query`; in `queue`, `--queue`
/// names the queue to drain).
#[derive(Debug, Args)]
pub struct Capacity {
    /// Capacity of the bounded queue between the source and the workers [default: 64 per (maximum) worker].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "BATCHPROC_QUEUE", hide_env_values = true)]
    pub queue: Option<u32>,
}

/// Options every pipeline has.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads, a fixed number [default: number of CPUs].
    #[arg(short, long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=4096),

        env = "BATCHPROC_WORKERS", hide_env_values = true)]
    pub workers: Option<u32>,

    /// A pool sized by the backlog: never fewer than N workers
    /// [default: 1 when only --max-workers is given].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=4096), env = "BATCHPROC_MIN_WORKERS", hide_env_values = true)]
    pub min_workers: Option<u32>,

    /// A pool sized by the backlog: a worker is added while items wait and every worker is busy
    /// (not waiting for --rate), up to M, and retires after a second idle
    /// [default: the larger of --min-workers and the number of CPUs].
    #[arg(long, value_name = "M", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=4096), env = "BATCHPROC_MAX_WORKERS", hide_env_values = true)]
    pub max_workers: Option<u32>,

    /// Run an item whose failure may be transient (a timeout, HTTP 429 or 5xx) up to N more times,
    /// after an exponential backoff with jitter (0.5 s, 1 s, 2 s … at most 30 s; longer if the server
    /// says Retry-After). Adds an `attempts` column to the output.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=100), env = "BATCHPROC_RETRIES", hide_env_values = true)]
    pub retries: u32,

    /// Start at most N items per second, minute or hour across all workers (N/s, N/m, N/h), evenly
    /// spaced; every retry counts as a start.
    #[arg(
        long,
        value_name = "N/UNIT",
        env = "BATCHPROC_RATE",
        hide_env_values = true
    )]
    pub rate: Option<Rate>,

    /// Where results go: sqlite:PATH, postgres://…, csv:PATH, - (CSV on stdout), or a path ending in .db/.sqlite/.csv.
    #[arg(
        short = 'o',
        long,
        value_name = "URL",
        default_value = "sqlite:batchproc.db",
        env = "BATCHPROC_SINK",
        hide_env_values = true
    )]
    pub sink: String,

    /// Table to write (database sinks); created if missing, rows keyed by the key column
    /// [default: files for `files`, rows for `query`, the queue's name for `queue`].
    #[arg(
        short,
        long,
        value_name = "NAME",
        env = "BATCHPROC_TABLE",
        hide_env_values = true
    )]
    pub table: Option<String>,

    /// Rows per sink transaction; a batch also ends at 32 MiB of data, and a partial one is
    /// flushed after about a second [default: 5000 for SQLite, 50000 for Postgres, 1000 for CSV].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "BATCHPROC_BATCH_SIZE", hide_env_values = true)]
    pub batch_size: Option<u32>,

    /// Fail an item still running after DURATION (e.g. 500ms, 30s, 2m): its command is
    /// killed, its request or file read abandoned.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "BATCHPROC_TIMEOUT", hide_env_values = true)]
    pub timeout: Option<std::time::Duration>,

    /// Start no new item once DURATION (e.g. 30m, 5h) has passed since the run started: items in
    /// flight finish (or are cut at --timeout), what finished is committed, and the run ends
    /// paused with exit 3; --resume continues it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "BATCHPROC_MAX_RUNTIME", hide_env_values = true)]
    pub max_runtime: Option<std::time::Duration>,

    /// What a failed item does to the run.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = OnError::Abort, env = "BATCHPROC_ON_ERROR", hide_env_values = true)]
    pub on_error: OnError,

    /// Continue the latest unfinished run of this same pipeline (same source,
    /// filters, processors, sink and table), skipping what it committed.
    #[arg(long, env = "BATCHPROC_RESUME", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub resume: bool,

    /// Handle only shard I of N (from 1): the items whose key hashes to I. N runs, one per shard,
    /// on one host or many, together handle every item once; each resumes on its own, and
    /// they may run at once into one Postgres database (into one SQLite file, one at a time).
    #[arg(
        long,
        value_name = "I/N",
        env = "BATCHPROC_SHARD",
        hide_env_values = true
    )]
    pub shard: Option<String>,

    /// Take the shard from the scheduler: JOB_COMPLETION_INDEX (a Kubernetes Indexed Job,
    /// from 0) with --shards N, or else SLURM_ARRAY_TASK_ID (a Slurm array; the count from
    /// SLURM_ARRAY_TASK_COUNT unless --shards is given).
    #[arg(long, env = "BATCHPROC_SHARD_FROM_ENV", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub shard_from_env: bool,

    /// With --shard-from-env: the number of shards (a Kubernetes Job's completions).
    #[arg(
        long,
        value_name = "N",
        env = "BATCHPROC_SHARDS",
        hide_env_values = true
    )]
    pub shards: Option<String>,

    /// The shard the flags above name, once checked (`cli::parse`).
    #[arg(skip)]
    pub(super) shard_of: Option<(u32, u32)>,

    /// Write no run or checkpoint rows (for measuring their cost; such a run cannot be resumed).
    #[arg(
        long,
        env = "BATCHPROC_NO_CHECKPOINT",
        hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_checkpoint: bool,

    /// Check everything a run checks, print what it would do (items, those
    /// already done, changes to the sink) on stdout, and write nothing.
    #[arg(long, env = "BATCHPROC_DRY_RUN", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub dry_run: bool,

    /// No progress bar and no summary line; errors are still printed.
    #[arg(short, long, env = "BATCHPROC_QUIET", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub quiet: bool,

    /// Write the end-of-run summary as one JSON object to PATH (`-`:
    /// stdout): run id, status, counts, duration, sink (password
    /// redacted) and exit code. Written for every ending, errors included.
    #[arg(
        long,
        value_name = "PATH",
        env = "BATCHPROC_SUMMARY_JSON",
        hide_env_values = true
    )]
    pub summary_json: Option<PathBuf>,

    /// Log more on stderr, repeatable: -v the run's start and end, retries, and items failed
    /// under --on-error skip or skipped; -vv also each batch commit (rows, time). Without it only
    /// warnings and errors show, as `batchproc: …` lines. RUST_LOG, when set, replaces this filter
    /// (RUST_LOG=debug also shows sqlx's statements).
    #[arg(short, long, action = clap::ArgAction::Count, env = "BATCHPROC_VERBOSE", hide_env_values = true)]
    pub verbose: u8,

    /// How log lines are written: text for people (coloured on a terminal unless NO_COLOR is
    /// set), or json, one object per line for log shippers (the `batchproc: …` lines too).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = log::LogFormat::Text, env = "BATCHPROC_LOG_FORMAT", hide_env_values = true)]
    pub log_format: log::LogFormat,
}

/// A run as the command line asked for it, and what to do around it.
pub struct Invocation {
    pub pipeline: Pipeline,
    /// `--dry-run`: plan, do not run.
    pub dry_run: bool,
    pub quiet: bool,
    pub summary_json: Option<PathBuf>,
    /// The sink as given, for a summary of a run that never got a report.
    pub sink: String,
    pub logging: log::Logging,
    /// `--max-runtime`, for the line a paused run ends with.
    pub max_runtime: Option<std::time::Duration>,
    /// `--shard`, as `I/N`, for the summary.
    pub shard: Option<String>,
}

/// Flags that exclude each other, by arg id: [`RunArgs::settle`] lets the
/// command line win over the environment, and a config file's key gives
/// way to either.
pub(super) const EXCLUSIVE: [(&[&str], &[&str]); 3] = [
    (&["workers"], &["min_workers", "max_workers"]),
    (&["resume"], &["no_checkpoint"]),
    (&["shard"], &["shard_from_env", "shards"]),
];

impl RunArgs {
    /// Settles flags that exclude each other when one of them comes from
    /// the environment: the command line wins. Both on the command line
    /// (or both in the environment) is a usage error, as clap would say.
    pub(super) fn settle(&mut self, matches: &ArgMatches) -> Result<(), String> {
        let from_env = |id: &str| matches.value_source(id) == Some(ValueSource::EnvVariable);
        if self.workers.is_some() && (self.min_workers.is_some() || self.max_workers.is_some()) {
            let range_from_env = (self.min_workers.is_none() || from_env("min_workers"))
                && (self.max_workers.is_none() || from_env("max_workers"));
            match (from_env("workers"), range_from_env) {
                (true, false) => self.workers = None,
                (false, true) => (self.min_workers, self.max_workers) = (None, None),
                _ => {
                    return Err("the argument '--workers <N>' cannot be used with \
                                '--min-workers <N>' or '--max-workers <M>'"
                        .into())
                }
            }
        }
        if self.shard.is_some() && (self.shard_from_env || self.shards.is_some()) {
            let env_side_from_env = (!self.shard_from_env || from_env("shard_from_env"))
                && (self.shards.is_none() || from_env("shards"));
            match (from_env("shard"), env_side_from_env) {
                (true, false) => self.shard = None,
                (false, true) => (self.shard_from_env, self.shards) = (false, None),
                // Refused with the other shard errors, in one line.
                _ => {}
            }
        }
        if self.resume && self.no_checkpoint {
            match (from_env("resume"), from_env("no_checkpoint")) {
                (true, false) => self.resume = false,
                (false, true) => self.no_checkpoint = false,
                _ => {
                    return Err(
                        "the argument '--no-checkpoint' cannot be used with '--resume'".into(),
                    )
                }
            }
        }
        Ok(())
    }
}

pub(super) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A flag's long help: its lead, then the processor table.
pub(super) fn processor_help(lead: &str) -> String {
    format!("{lead}\n{}", batchproc::processors_help())
}

impl FilesArgs {
    pub fn pipeline(self) -> Invocation {
        let mut p = Pipeline::files(self.dirs)
            .follow(self.follow)
            .incremental(self.incremental)
            .prune(self.prune)
            .retry_failed(self.retry_failed);
        if let Some(n) = self.max_failures {
            p = p.max_failures(n);
        }
        for glob in self.include {
            p = p.include(glob);
        }
        for glob in self.exclude {
            p = p.exclude(glob);
        }
        if let Some(depth) = self.max_depth {
            p = p.max_depth(depth);
        }
        self.run.apply(p, self.processors, self.capacity.queue)
    }
}

impl QueryArgs {
    pub fn pipeline(self) -> Invocation {
        let mut p =
            Pipeline::query(self.from, self.sql, self.key).page_size(self.page_size as usize);
        if let Some(column) = self.cursor {
            p = p.cursor(column);
        }
        self.run.apply(p, self.processors, self.capacity.queue)
    }
}

impl RunArgs {
    /// The options every pipeline has (and the work queue's capacity);
    /// and whether the run is quiet.
    pub(super) fn apply(
        self,
        mut p: Pipeline,
        processors: Vec<String>,
        capacity: Option<u32>,
    ) -> Invocation {
        for spec in processors {
            p = p.processor(spec);
        }
        let sink = self.sink.clone();
        p = p
            .sink(self.sink)
            .retries(self.retries)
            .resume(self.resume)
            .checkpoint(!self.no_checkpoint)
            .on_error(match self.on_error {
                OnError::Abort => batchproc::OnError::Abort,
                OnError::Skip => batchproc::OnError::Skip,
            });
        let options = [
            (
                self.workers,
                Pipeline::workers as fn(Pipeline, usize) -> Pipeline,
            ),
            (self.min_workers, Pipeline::min_workers),
            (self.max_workers, Pipeline::max_workers),
            (capacity, Pipeline::queue),
            (self.batch_size, Pipeline::batch_size),
        ];
        for (value, set) in options {
            if let Some(n) = value {
                p = set(p, n as usize);
            }
        }
        if let Some(table) = self.table {
            p = p.table(table);
        }
        if let Some(rate) = self.rate {
            p = p.rate(rate);
        }
        if let Some(timeout) = self.timeout {
            p = p.timeout(timeout);
        }
        if let Some(limit) = self.max_runtime {
            p = p.max_runtime(limit);
        }
        if let Some((index, count)) = self.shard_of {
            p = p.shard(index, count);
        }
        Invocation {
            pipeline: p,
            dry_run: self.dry_run,
            quiet: self.quiet,
            summary_json: self.summary_json,
            sink,
            logging: log::Logging {
                verbose: self.verbose,
                format: self.log_format,
            },
            max_runtime: self.max_runtime,
            shard: self
                .shard_of
                .map(|(index, count)| format!("{index}/{count}")),
        }
    }
}
