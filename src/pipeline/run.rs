//! The wiring of a run: open the sink and its bookkeeping, then run the
//! stages on their threads — the source driver into a bounded queue, the
//! worker pool, the committer — while this thread batches the outcomes;
//! then finish. One cancellation token joins the stages: a failed item
//! (under fail-fast), a failed source or sink, or a signal stops new work,
//! and everything that finished is still committed. `--max-runtime` passes
//! the run's [`Cutoff`] instead, which stops only the starting of items.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use super::batcher::Batcher;
use super::committer::{Committer, Settle};
use super::config::RunConfig;
use super::finish::{finish, Ended, Failure, FirstFailure, Report};
use super::log;
use super::rate::RateLimit;
use super::worker::Step;
use super::{Error, OnError};
use crate::checkpoint::{
    command_line, CursorRange, Fingerprint, Ledger, Part, ResumePoint, RunSpec,
};
use crate::events::Shared;
use crate::pool::{Cancel, Pool};
use crate::processor::{Buffer, SpareCores, Work};
use crate::record::{Column, ColumnType, Quoted, Schema};
use crate::sink::{Busy, Sink};
use crate::source::cutoff::Cutoff;
use crate::source::driver::{drive, Queue};
use crate::source::files::Previous;
use crate::source::shard::{self, Shard};
use crate::source::{Cursored, Pace, Source};

/// A run refused before any work: busy (another run holds the sink) or
/// misconfigured.
fn refused(e: anyhow::Error) -> Error {
    match e.chain().any(|c| c.is::<Busy>()) {
        true => Error::Busy(e),
        false => Error::Config(e),
    }
}

/// Runs `source` through `work` into the configured sink; `command` names
/// the source in the fingerprint (`files`, `query`).
pub(super) fn run<S, W>(
    cfg: RunConfig,
    command: &'static str,
    mut source: S,
    work: W,
    events: Shared,
    cancel: &Cancel,
) -> Result<Report, Error>
where
    S: Source,
    W: Work<Item = S::Item>,
{
    let started = Instant::now();
    let sink_name = cfg.sink.to_string();
    // pipeline::open has checked that a cursor has run records to live in.
    let cursored = source.cursored().is_some();
    let config_error = |e: anyhow::Error| refused(e.context(format!("sink {sink_name}")));
    let schema = output_schema(work.schema(), cfg.attempts_column()).map_err(Error::Config)?;
    let mut sink = cfg
        .sink
        .open(&cfg.table, &events, cancel)
        .map_err(refused)?;
    sink.prepare(&schema).map_err(config_error)?;
    // Read before the run row exists (a resume changes no record row), but
    // handed to the source once the run's id is known.
    let previous = match cfg.incremental {
        true => Some(earlier_rows(sink.as_mut(), &schema).map_err(config_error)?),
        false => None,
    };
    if source.queue().is_some() {
        set_up_queue(&mut source, sink.as_mut()).map_err(config_error)?;
    }
    let checker = sink.checker();
    let encoder = sink.encoder();
    // Only now do the sink's files exist, to be left out of a walk.
    source.leave_out(&cfg.sink.own_files());

    let run = match cfg.checkpoint {
        true => {
            let spec = run_spec(&cfg, command, &source, &work, cursored);
            sink.start_run(&spec).map_err(config_error)?
        }
        false => None,
    };
    if let Some(mut previous) = previous {
        previous.set_run(run.as_ref().map(|r| r.run_id));
        previous.quarantine_at(cfg.quarantine_at);
        source.remember(previous);
    }
    if let Some(notice) = run.as_ref().and_then(|r| r.notice.as_ref()) {
        events.notice(notice);
    }
    let range = run.as_ref().and_then(|r| r.cursor.as_ref());
    if let (Some(range), Some(source)) = (range, source.cursored()) {
        let line = settle_range(range, source, sink.as_mut()).map_err(Error::Config)?;
        events.notice(&line);
    }
    log::run_started(&log::Start {
        run_id: run.as_ref().map(|r| r.run_id),
        source: command,
        sink: &sink_name,
        table: &cfg.table,
        min_workers: cfg.min_workers,
        max_workers: cfg.max_workers,
        resume: cfg.resume,
        shard: cfg.shard.map(|s| s.to_string()),
    });
    let point = run.as_ref().map(|r| r.point.clone()).unwrap_or_default();
    let ledger = Ledger::new(point.clone(), cfg.window);

    let abort = cfg.on_error == OnError::Abort;
    let failure = FirstFailure::new(cancel, &events);
    let rate = cfg.rate.map(RateLimit::new);
    let pace = Pace::default();
    let cutoff = Cutoff::new(cancel);
    // Ends the helpers that would outlive the stages: the count, the timer.
    let ended = Cancel::new();
    let (item_tx, item_rx) = bounded(cfg.queue);
    let (out_tx, out_rx) = bounded(cfg.queue);

    // A queue's messages are settled on the sink's thread after each commit.
    let settle = source.queue().map(|queue| {
        move |keys: &[crate::checkpoint::ItemKey]| {
            if let Err(e) = queue.committed(keys) {
                log::ack_failed(keys.len(), &e);
            }
        }
    });
    let settle = settle.as_ref().map(|f| f as &Settle<'_>);
    let (summary, pool_stats) = std::thread::scope(|scope| {
        if events.wants_total() {
            let (source, point, events, ended) = (&source, &point, &events, &ended);
            let shard = cfg.shard.as_ref();
            scope.spawn(move || count_ahead(source, shard, point, events, ended));
        }
        let (source, ledger, pace, failure, cutoff) = (&source, &ledger, &pace, &failure, &cutoff);
        if let Some(limit) = cfg.max_runtime {
            // From the run's start: opening the sink counts too.
            let left = limit.saturating_sub(started.elapsed());
            let ended = &ended;
            scope.spawn(move || cutoff.arm(left, ended));
        }
        let queue = Queue {
            sender: item_tx,
            sharers: cfg.max_workers,
        };
        scope.spawn(move || {
            if let Err(e) = drive(source, cfg.shard.as_ref(), ledger, queue, pace, cutoff) {
                failure.set(Failure::Source(e));
            }
        });
        let step = Step {
            source,
            work: &work,
            retry: &cfg.retry,
            rate: rate.as_ref(),
            attempts_column: cfg.attempts_column(),
            abort,
            ledger,
            pace,
            failure,
            cancel,
            cutoff,
            outcomes: out_tx.clone(),
        };
        // The batcher reads every result to the end, so nothing finished
        // before a cancel need be dropped.
        let pool = Pool::dynamic(cfg.min_workers, cfg.max_workers).grace(Duration::MAX);
        let spare = spare_cores(&pool);
        let workers = scope.spawn(move || {
            let buffer = || Buffer::new(Some(spare.clone()));
            match pool.run(item_rx, out_tx, cancel, buffer, |buf, chunk| {
                step.run(buf, chunk)
            }) {
                Ok(stats) => stats,
                Err(e) => {
                    failure.set(Failure::Workers(e));
                    Default::default()
                }
            }
        });
        let committer = Committer::spawn(scope, sink.as_mut(), settle, failure);
        let batcher = Batcher {
            committer,
            checker: checker.as_ref(),
            encoder: encoder.as_ref(),
            source,
            failure,
            ledger,
            events: &events,
            checkpoint: run.is_some(),
            batch_size: cfg.batch_size,
            flush_interval: cfg.flush_interval,
            abort,
            prune: cfg.prune,
            shard: cfg.shard,
            acks: source.queue().is_some(),
        };
        let summary = batcher.drain(out_rx);
        ended.cancel();
        (summary, workers.join().expect("the worker pool panicked"))
    });

    let mut summary = summary;
    if let Some(queue) = source.queue() {
        let (end, error) = queue.end();
        summary.redelivered = end.redelivered;
        summary.held = end.held;
        if let Some(e) = error {
            events.warning(&format!(
                "queue: {}",
                crate::record::error_line(&e.context("settling the messages left"))
            ));
        }
    }
    summary.elapsed = started.elapsed();
    summary.pool = pool_stats;
    let ended = Ended {
        failure,
        summary,
        ledger: &ledger,
        run_id: run.as_ref().map(|r| r.run_id),
        abort,
        paused: cutoff.held_back(),
        sink_name: sink_name.clone(),
    };
    let result = finish(sink.as_mut(), ended, cancel);
    log::run_ended(&result);
    result
}

/// A queue run's sink: it looks up the records of redelivered messages,
/// and when it is the queue's own database it consumes messages in the
/// transactions that commit their records.
fn set_up_queue<S: Source>(source: &mut S, sink: &mut dyn Sink) -> anyhow::Result<()> {
    sink.durable()?;
    let lookup = sink.lookup()?;
    let queue = source.queue_mut().expect("a queue source");
    queue.recognise(lookup);
    if let Some(offer) = queue.in_transaction() {
        if sink.consume_in_transaction(&offer)? {
            queue.consumed_by_sink();
        }
    }
    Ok(())
}

/// Fixes an incremental run's range: a resumed run keeps the one it
/// stored; a new run reads its upper bound now and stores it before any
/// record commits. A line saying what the run reads.
fn settle_range(
    range: &CursorRange,
    source: &mut dyn Cursored,
    sink: &mut dyn Sink,
) -> anyhow::Result<String> {
    let after = range.after.as_deref();
    let upto = match &range.upto {
        Some(upto) => upto.clone(),
        None => {
            let upto = source.bound(after)?;
            sink.set_cursor(&upto)?;
            upto
        }
    };
    source.restrict(after, &upto)
}

/// `--incremental`: the rows an earlier run left in the table, each with
/// whether it holds every column this run's processors write.
fn earlier_rows(sink: &mut dyn Sink, schema: &Schema) -> anyhow::Result<Previous> {
    let processors = crate::sink::sql::processor_columns(schema);
    let mut previous = Previous::default();
    let resolution = sink.earlier_rows(&processors, &mut |row| previous.insert(row))?;
    previous.set_resolution(resolution);
    Ok(previous)
}

/// Whether some CPU has no busy worker of `pool` on it: then a worker's
/// large file may use that CPU too.
fn spare_cores(pool: &Pool) -> SpareCores {
    let gauge = pool.gauge();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(move || gauge.busy() < cpus)
}

/// What the bookkeeping needs to open the run of this pipeline, or to
/// find the one a resume would continue.
pub(super) fn run_spec<S: Source, W: Work>(
    cfg: &RunConfig,
    command: &str,
    source: &S,
    work: &W,
    cursor: bool,
) -> RunSpec {
    let fingerprint = fingerprint(cfg, command, source, work);
    RunSpec {
        fingerprint: fingerprint.digest(),
        legacy_fingerprint: fingerprint.legacy(),
        command: command_line(),
        table: Some(cfg.table.clone()),
        resume: cfg.resume,
        cursor,
        queue: source.queue().is_some(),
        shard: cfg.shard.map(|shard| shard.to_string()),
    }
}

/// What gives the run's results their meaning, in a fixed order: the
/// command, the source's parts, the shard (with `--shard`), the
/// processors, the sink, the table, and whether there is an `attempts`
/// column (a resumed CSV keeps its header).
fn fingerprint<S: Source, W: Work>(
    cfg: &RunConfig,
    command: &str,
    source: &S,
    work: &W,
) -> Fingerprint {
    let mut fp = Fingerprint::default();
    fp.add("command", Part::Text(command.to_owned()));
    source.fingerprint(&mut fp);
    // Added only with a shard, so other pipelines keep their fingerprint;
    // with it each shard resumes its own run and takes its own lock.
    if let Some(shard) = &cfg.shard {
        fp.add("shard", Part::Text(shard.to_string()));
    }
    fp.add("processors", Part::Processors(work.specs()))
        .add("sink", Part::Text(cfg.sink.to_string()))
        .add("table", Part::Text(cfg.table.clone()));
    // Added only when present, so runs without --retries keep their fingerprint.
    if cfg.attempts_column() {
        fp.add("attempts", Part::Text("column".into()));
    }
    fp
}

/// The columns the sink gets: the work's, and with `--retries` the number
/// of tries each item took, before `error` (which stays last).
pub(super) fn output_schema(schema: &Schema, attempts: bool) -> anyhow::Result<Schema> {
    let mut schema = schema.clone();
    if attempts {
        if schema.columns.iter().any(|c| c.name == "attempts") {
            anyhow::bail!(
                "--retries adds a column named {} and the output already has one; rename it in --sql",
                Quoted("attempts")
            );
        }
        let at = schema.columns.len() - 1;
        schema
            .columns
            .insert(at, Column::new("attempts", ColumnType::Int));
    }
    Ok(schema)
}

/// Counts the items still to do, ahead of the run, for a progress total.
/// Items an earlier attempt committed beyond its watermark are met again
/// by the count, but not done again. A shard's items are counted only
/// where counting reads them; elsewhere (a query's `count(*)`) the total
/// stays unknown rather than wrong.
fn count_ahead<S: Source>(
    source: &S,
    shard: Option<&Shard>,
    point: &ResumePoint,
    events: &Shared,
    stop: &Cancel,
) {
    let done = point.done.len() as u64;
    let report = |n: u64| events.total(n.saturating_sub(done));
    let after = point.watermark.as_ref();
    let counted = match shard {
        None => source.count(after, stop, &report),
        Some(shard) if source.counts_by_reading() => {
            shard::count(source, shard, after, stop, &report)
        }
        Some(_) => return,
    };
    if let Err(e) = counted {
        events.warning(&format!(
            "cannot count the items ahead: {}",
            crate::record::error_line(&e)
        ));
    }
}
