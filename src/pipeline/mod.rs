//! A run, from Rust: [`Pipeline`] configures one (source, processors, sink,
//! controls) and runs it to the end, returning a [`Report`]. The stages of a
//! run are the files of this folder:
//!
//! - [`config`]: the options checked and resolved (defaults, pool size);
//! - [`run`]: the wiring — sink, bookkeeping, the threads, the end;
//! - [`worker`]: what a worker does with a chunk of items (retries, the
//!   rate limit, fail-fast);
//! - [`batcher`]: outcomes into sink batches with their checkpoints;
//! - [`committer`]: the thread that writes the batches;
//! - [`finish`]: the first failure, how the run ended, the summary;
//! - [`plan`]: a dry run, what a run would do;
//! - [`queue`]: the settings of a queue source, and what it needs of the rest;
//! - [`log`]: the `tracing` events a run emits (start, end, batches,
//!   retries, skipped items).

mod batcher;
mod committer;
mod config;
mod finish;
pub(crate) mod log;
mod plan;
mod queue;
mod rate;
mod retry;
mod run;
#[cfg(test)]
mod tests;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use finish::{Report, RunStatus, Summary};
pub use log::TARGET as LOG_TARGET;
pub use plan::Plan;
pub use rate::Rate;

use crate::events::{Events, Shared, Silent};
use crate::pool::Cancel;
use crate::processor::Work;
use crate::source::{files, query, Source, Spec};

/// What a failed item does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The first failed item cancels the run (errgroup semantics): no new
    /// item starts, what finished is committed, the run is failed.
    #[default]
    Abort,
    /// Record the failure on the item's row (`error`) and go on.
    Skip,
}

/// A run that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration, found before any work: a bad option or URL, an
    /// unreachable database, an incompatible table.
    #[error("{}", crate::record::error_line(.0))]
    Config(anyhow::Error),
    /// A failure during the run (the sink or the source failed), with the
    /// report of what the run got through. What finished is committed and
    /// the run can be resumed.
    #[error("{}", crate::record::error_line(.0))]
    Failed(anyhow::Error, Box<Report>),
    /// Another run of the pipeline (or another program) holds the sink;
    /// nothing was done. Worth trying again later (`batchproc` exits 75).
    #[error("{}", crate::record::error_line(.0))]
    Busy(anyhow::Error),
    /// The caller's token was cancelled before the run started.
    #[error("cancelled before the run started")]
    Interrupted,
}

impl Error {
    /// The reader of stdout went away (`batchproc … -o - | head`).
    pub fn is_broken_pipe(&self) -> bool {
        let (Error::Config(e) | Error::Busy(e) | Error::Failed(e, _)) = self else {
            return false;
        };
        e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                || c.downcast_ref::<csv::Error>().is_some_and(|e| {
                    matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
                })
        })
    }
}

/// A batch job: a source of items, the processors to run on each, and the
/// sink for the records, with the controls of the `batchproc` command line
/// (the same defaults). Nothing is checked until [`Pipeline::run`]; a bad
/// setting is then an [`Error::Config`].
///
/// ```
/// use batchproc::{Pipeline, RunStatus};
///
/// let dir = tempfile::tempdir().unwrap();
/// let db = dir.path().join("out.db");
/// let report = Pipeline::files(["fixtures/sample"])
///     .processor("sha256,lines")
///     .sink(format!("sqlite:{}", db.display()))
///     .workers(2)
///     .run()
///     .unwrap();
/// assert_eq!(report.status, RunStatus::Succeeded);
/// assert!(report.summary.ok > 0 && report.summary.failed == 0);
///
/// // The same pipeline again with `resume`: nothing was left unfinished.
/// let again = Pipeline::files(["fixtures/sample"])
///     .processor("sha256,lines")
///     .sink(format!("sqlite:{}", db.display()))
///     .resume(true)
///     .run()
///     .unwrap();
/// assert_eq!(again.summary.ok, report.summary.ok);
/// ```
pub struct Pipeline {
    source: Spec,
    options: config::Options,
    /// A source-specific setting given to another source, reported by `run`.
    misuse: Option<&'static str>,
    events: Shared,
    cancel: Cancel,
}

impl Pipeline {
    fn new(source: Spec) -> Self {
        Pipeline {
            source,
            options: config::Options::default(),
            misuse: None,
            events: Arc::new(Silent),
            cancel: Cancel::new(),
        }
    }

    /// Every regular file under `dirs` (paths stored as walked, like `find`).
    pub fn files<P: Into<PathBuf>>(dirs: impl IntoIterator<Item = P>) -> Self {
        Self::new(Spec::Files(files::Spec {
            roots: dirs.into_iter().map(Into::into).collect(),
            ..files::Spec::default()
        }))
    }

    /// Every row of `sql` on the database `from` (`sqlite:PATH` or
    /// `postgres://…`), read in pages ordered by the unique column `key`.
    pub fn query(from: impl Into<String>, sql: impl Into<String>, key: impl Into<String>) -> Self {
        Self::new(Spec::Query(query::Spec {
            from: from.into(),
            sql: sql.into(),
            key: key.into(),
            cursor: None,
            page_size: 5000,
        }))
    }

    fn files_only(mut self, setting: &'static str, f: impl FnOnce(&mut files::Spec)) -> Self {
        match &mut self.source {
            Spec::Files(spec) => f(spec),
            _ => self.misuse = Some(setting),
        }
        self
    }

    /// Only files matching `glob` (files source; repeatable).
    pub fn include(self, glob: impl Into<String>) -> Self {
        self.files_only("include", |s| s.include.push(glob.into()))
    }

    /// Leave out files and directories matching `glob` (files source; repeatable).
    pub fn exclude(self, glob: impl Into<String>) -> Self {
        self.files_only("exclude", |s| s.exclude.push(glob.into()))
    }

    /// Descend at most `depth` levels (files source; 1: the roots' own entries).
    pub fn max_depth(self, depth: usize) -> Self {
        self.files_only("max_depth", |s| s.max_depth = Some(depth))
    }

    /// Follow symbolic links (files source).
    pub fn follow(self, follow: bool) -> Self {
        self.files_only("follow", |s| s.follow = follow)
    }

    /// Rows per page read from the database (query source; default 5000).
    pub fn page_size(mut self, rows: usize) -> Self {
        match &mut self.source {
            Spec::Query(spec) => spec.page_size = rows,
            _ => self.misuse = Some("page_size"),
        }
        self
    }

    /// Read incrementally (query source): each run reads only the rows whose
    /// `column` lies beyond the largest value the last succeeded run of the
    /// pipeline read, up to the largest value there is when it starts. Rows
    /// whose `column` is NULL are read by the first such run only.
    pub fn cursor(mut self, column: impl Into<String>) -> Self {
        match &mut self.source {
            Spec::Query(spec) => spec.cursor = Some(column.into()),
            _ => self.misuse = Some("cursor"),
        }
        self
    }

    /// Processors, as `-p` takes them: a name (`sha256`), names separated
    /// by commas, `NAME:COLUMN` for query rows, or `exec:…`/`http:…` whole.
    /// Repeatable.
    pub fn processor(mut self, spec: impl Into<String>) -> Self {
        self.options.processors.push(spec.into());
        self
    }

    /// Where the records go: `sqlite:PATH` (the default, `batchproc.db`),
    /// `postgres://…`, `csv:PATH`, `-` (CSV on stdout), or a path ending in
    /// `.db`, `.sqlite` or `.csv`.
    pub fn sink(mut self, url: impl Into<String>) -> Self {
        self.options.sink = Some(url.into());
        self
    }

    /// The table of a database sink (default `files`, or `rows` for a query).
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.options.table = Some(name.into());
        self
    }

    /// A fixed number of workers (default: one per CPU).
    pub fn workers(mut self, n: usize) -> Self {
        self.options.workers = Some(n);
        self
    }

    /// A pool sized by the backlog, never below `n` workers.
    pub fn min_workers(mut self, n: usize) -> Self {
        self.options.min_workers = Some(n);
        self
    }

    /// A pool sized by the backlog, never above `n` workers.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.options.max_workers = Some(n);
        self
    }

    /// Capacity of the queue between the source and the workers.
    pub fn queue(mut self, chunks: usize) -> Self {
        self.options.queue = Some(chunks);
        self
    }

    /// Try an item whose failure may be transient up to `n` more times.
    pub fn retries(mut self, n: u32) -> Self {
        self.options.retries = n;
        self
    }

    /// Start at most this many items per unit of time, across all workers.
    pub fn rate(mut self, rate: Rate) -> Self {
        self.options.rate = Some(rate);
        self
    }

    /// Records per sink transaction (default 1000; 5000 for Postgres).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.options.batch_size = Some(n);
        self
    }

    /// Fail an item still running after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Start no new item once `limit` has passed since the run started:
    /// items in flight finish (or time out), everything finished is
    /// committed, and the run ends [`RunStatus::Paused`] if items were
    /// left; [`resume`](Pipeline::resume) continues it. Needs checkpoints.
    pub fn max_runtime(mut self, limit: Duration) -> Self {
        self.options.max_runtime = Some(limit);
        self
    }

    /// What a failed item does to the run (default: [`OnError::Abort`]).
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.options.on_error = on_error;
        self
    }

    /// Continue the latest unfinished run of this same pipeline.
    pub fn resume(mut self, resume: bool) -> Self {
        self.options.resume = resume;
        self
    }

    /// Leave out files whose row from an earlier run is current: same
    /// path, size and mtime, no error, every column of this run's
    /// processors filled (files source, database sinks). Counted as
    /// unchanged; not opened, not written.
    pub fn incremental(mut self, incremental: bool) -> Self {
        self.options.incremental = incremental;
        match incremental {
            true => self.files_only("incremental", |s| s.ledger = true),
            false => self,
        }
    }

    /// With [`incremental`](Self::incremental) and [`OnError::Skip`]: pass
    /// (as skipped and quarantined, without opening it) a file that failed
    /// in `runs` consecutive runs and has not changed since (default 3).
    pub fn max_failures(mut self, runs: u32) -> Self {
        self.options.max_failures = Some(runs);
        self.files_only("max_failures", |_| {})
    }

    /// With [`incremental`](Self::incremental): process quarantined files
    /// again (their count goes on from where it was).
    pub fn retry_failed(mut self, retry: bool) -> Self {
        self.options.retry_failed = retry;
        match retry {
            true => self.files_only("retry_failed", |_| {}),
            false => self,
        }
    }

    /// With [`incremental`](Self::incremental): once the walk met
    /// everything, delete the rows of files under the directories (and
    /// through the filters) that are gone. Counted as removed.
    pub fn prune(mut self, prune: bool) -> Self {
        self.options.prune = prune;
        match prune {
            true => self.files_only("prune", |_| {}),
            false => self,
        }
    }

    /// Handle only shard `index` (from 1) of `count`: the items whose key
    /// hashes to it (the hash is written down in docs/DESIGN.md, the same on
    /// every host). `count` runs, one per shard, together handle every item
    /// once; each is a pipeline of its own (it resumes on its own, and runs
    /// at once with the others into one Postgres database). Not for a queue,
    /// which its consumers share already.
    pub fn shard(mut self, index: u32, count: u32) -> Self {
        self.options.shard = Some((index, count));
        self
    }

    /// Whether to keep run and checkpoint rows (default true; without them
    /// a run cannot be resumed).
    pub fn checkpoint(mut self, checkpoint: bool) -> Self {
        self.options.checkpoint = checkpoint;
        self
    }

    /// Where the run's notices, warnings and progress go (default: nowhere).
    pub fn events(mut self, events: Arc<dyn Events>) -> Self {
        self.events = events;
        self
    }

    /// A token that stops the run when cancelled (a signal, say), after
    /// committing what finished: the run then ends
    /// [`RunStatus::Interrupted`]. The run cancels only a child of it for
    /// its own failures, so one token may serve many runs.
    pub fn cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Checks everything a run checks before its first item and says what
    /// it would do (`--dry-run`), writing nothing.
    pub fn plan(self) -> Result<Plan, Error> {
        let (source, options, cancel) = self.checked()?;
        open(source, &options, Planning { cancel })
    }

    /// Runs the pipeline to its end, or until cancelled.
    pub fn run(self) -> Result<Report, Error> {
        let events = self.events.clone();
        let (source, options, cancel) = self.checked()?;
        open(source, &options, Running { events, cancel })
    }

    /// The source, options and token of a pipeline about to start: a
    /// setting the source does not take, or a token already cancelled,
    /// ends it here.
    fn checked(self) -> Result<(Spec, config::Options, Cancel), Error> {
        if let Some(setting) = self.misuse {
            return Err(Error::Config(anyhow::anyhow!(
                "{setting} does not apply to this source"
            )));
        }
        if self.cancel.is_cancelled() {
            // Not even started: no run is recorded, nothing is touched.
            return Err(Error::Interrupted);
        }
        let cancel = self.cancel.child();
        Ok((self.source, self.options, cancel))
    }
}

/// What a pipeline does once its source and work are open: run, or plan.
/// A trait, not a closure, because it is generic over the source.
trait Start {
    type Output;
    fn start<S, W>(
        self,
        cfg: config::RunConfig,
        command: &'static str,
        source: S,
        work: W,
    ) -> Result<Self::Output, Error>
    where
        S: Source,
        W: Work<Item = S::Item>;
}

/// Resolves the options and opens the source and its work (usage errors),
/// then hands them to `then`.
fn open<T: Start>(source: Spec, options: &config::Options, then: T) -> Result<T::Output, Error> {
    let (command, table) = match &source {
        Spec::Files(_) => ("files", "files".to_owned()),
        Spec::Query(_) => ("query", "rows".to_owned()),
        // Named after the queue: the table is how a redelivered message is
        // recognised, by its id, and two queues' ids are alike.
        Spec::Queue(spec) => ("queue", spec.queue.to_lowercase()),
    };
    let cfg = config::RunConfig::resolve(options, &table).map_err(Error::Config)?;
    let cursored = matches!(&source, Spec::Query(spec) if spec.cursor.is_some());
    if cursored && !(cfg.checkpoint && cfg.sink.keeps_checkpoints()) {
        return Err(Error::Config(anyhow::anyhow!(
            "--cursor needs run records to find the last run's cursor: a database sink or a CSV \
             file, without --no-checkpoint"
        )));
    }
    let (processors, timeout) = (&options.processors, cfg.timeout);
    match source {
        Spec::Files(spec) => {
            let (source, work) = spec.open(processors, timeout).map_err(Error::Config)?;
            then.start(cfg, command, source, work)
        }
        Spec::Query(spec) => {
            let (source, work) = spec.open(processors, timeout).map_err(Error::Config)?;
            then.start(cfg, command, source, work)
        }
        Spec::Queue(mut spec) => {
            queue::fits(&cfg).map_err(Error::Config)?;
            // Sized to the sink's batches, within reason: what is fetched
            // is held under a lease until it commits.
            spec.fetch = cfg.batch_size.min(queue::MAX_FETCH);
            let (source, work) = spec.open(processors, timeout).map_err(Error::Config)?;
            then.start(cfg, command, source, work)
        }
    }
}

struct Running {
    events: Shared,
    cancel: Cancel,
}

impl Start for Running {
    type Output = Report;
    fn start<S, W>(
        self,
        cfg: config::RunConfig,
        command: &'static str,
        source: S,
        work: W,
    ) -> Result<Report, Error>
    where
        S: Source,
        W: Work<Item = S::Item>,
    {
        run::run(cfg, command, source, work, self.events, &self.cancel)
    }
}

struct Planning {
    cancel: Cancel,
}

impl Start for Planning {
    type Output = Plan;
    fn start<S, W>(
        self,
        cfg: config::RunConfig,
        command: &'static str,
        source: S,
        work: W,
    ) -> Result<Plan, Error>
    where
        S: Source,
        W: Work<Item = S::Item>,
    {
        plan::plan(cfg, command, source, work, &self.cancel)
    }
}
