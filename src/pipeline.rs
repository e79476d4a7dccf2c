//! A run: the source walks into a bounded queue, the worker pool processes
//! (with retries and the rate limit), this thread batches the results
//! (`batcher`) and the committer writes each batch into the sink together
//! with the checkpoint that covers them (`commit`). One cancellation token joins the stages: a
//! failed item (under fail-fast), a failed sink or a signal stops new work,
//! and everything that finished is still committed.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::bounded;

use crate::batcher::Batcher;
use crate::checkpoint::{self, Ledger, ResumePoint, RunSpec};
use crate::cli::OnError;
use crate::commit::Committer;
use crate::config::{FilesConfig, QueryConfig, RunConfig};
use crate::pool::{Cancel, CancelReason, Pool, PoolStats};
use crate::progress::{say, Progress, Summary};
use crate::rate::RateLimit;
use crate::record::{Column, ColumnType, Schema, Value};
use crate::retry::{retry_item, Tried};
use crate::sink::SinkSpec;
use crate::source::files::{dir_done, done_before, FileSource, Visit};
use crate::source::Source;
use crate::work::files::FileWork;
use crate::work::rows::RowWork;
use crate::work::{Buffer, Work};
use crate::{RunError, RunStatus};

/// Counts the items still to do, ahead of the source, for the progress bar.
type Counter<'a> = Box<dyn FnOnce(&ResumePoint, &Progress, &Cancel) + Send + 'a>;

/// Runs the `files` pipeline to the end, or until cancelled.
pub fn run_files(cfg: FilesConfig, cancel: &Cancel) -> Result<(RunStatus, Summary), RunError> {
    let FilesConfig {
        run,
        mut source,
        processors,
    } = cfg;
    let work = FileWork::new(processors, source.follow, run.timeout);
    let counted = source.clone();
    let count: Counter =
        Box::new(move |point, progress, cancel| count_ahead(&counted, point, progress, cancel));
    run_pipeline(
        run,
        work,
        cancel,
        |sink| {
            // Only now do the sink's files exist, to be left out of the walk.
            source.exclude_files = sink
                .own_files()
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| (m.dev(), m.ino()))
                .collect();
            source
        },
        Some(count),
    )
}

/// Runs the `query` pipeline to the end, or until cancelled.
pub fn run_query(cfg: QueryConfig, cancel: &Cancel) -> Result<(RunStatus, Summary), RunError> {
    let QueryConfig {
        run,
        mut source,
        processors,
    } = cfg;
    let from = source.from.to_string();
    let shape = source
        .describe()
        .map_err(|e| RunError::Config(e.context(format!("query on {from}"))))?;
    let work = RowWork::new(&shape, processors, run.timeout).map_err(RunError::Config)?;
    source.shape = Some(shape);
    run_pipeline(run, work, cancel, |_| source, None)
}

/// The pipeline shared by every source: sink checks, bookkeeping, the
/// threads, the batcher, the end of the run.
fn run_pipeline<W, S>(
    cfg: RunConfig,
    work: W,
    cancel: &Cancel,
    make_source: impl FnOnce(&SinkSpec) -> S,
    count: Option<Counter>,
) -> Result<(RunStatus, Summary), RunError>
where
    W: Work,
    S: Source<Item = W::Item>,
{
    let started = Instant::now();
    let RunConfig {
        sink: sink_spec,
        table,
        min_workers,
        max_workers,
        queue,
        retry,
        rate,
        batch_size,
        flush_interval,
        on_error,
        timeout: _,
        quiet,
        resume,
        checkpoint,
        window,
        fingerprint,
    } = cfg;
    let config_error = |e: anyhow::Error| RunError::Config(e.context(format!("sink {sink_spec}")));
    let run_error = |e: anyhow::Error| RunError::Failed(e.context(format!("sink {sink_spec}")));
    let mut sink = sink_spec.open(&table).map_err(RunError::Config)?;
    let attempts_column = retry.retries() > 0;
    let schema = output_schema(work.schema(), attempts_column).map_err(RunError::Config)?;
    sink.prepare(&schema).map_err(config_error)?;
    let checker = sink.checker();

    let run = if checkpoint {
        let spec = RunSpec {
            fingerprint,
            command: checkpoint::command_line(),
            table: Some(table.clone()),
            resume,
        };
        sink.start_run(&spec).map_err(config_error)?
    } else {
        None
    };
    if let Some(notice) = run.as_ref().and_then(|r| r.notice.as_ref()) {
        if !quiet {
            say(&format!("batchproc: {notice}"));
        }
    }
    let source = make_source(&sink_spec);
    let point = run.as_ref().map(|r| r.point.clone()).unwrap_or_default();
    let ledger = Ledger::new(point.clone(), window);

    let progress = Progress::new(quiet);
    let abort = on_error == OnError::Abort;
    let first_failure: OnceLock<String> = OnceLock::new();
    let pool_error: OnceLock<std::io::Error> = OnceLock::new();
    let source_error: OnceLock<anyhow::Error> = OnceLock::new();
    let write_error: OnceLock<anyhow::Error> = OnceLock::new();
    let pool_stats: OnceLock<PoolStats> = OnceLock::new();
    let rate = rate.map(RateLimit::new);
    let (item_tx, item_rx) = bounded(queue);
    let (out_tx, out_rx) = bounded(queue);

    let (summary, sink_error) = std::thread::scope(|scope| {
        if let (true, Some(count)) = (progress.is_shown(), count) {
            let (point, progress) = (&point, &progress);
            scope.spawn(move || count(point, progress, cancel));
        }
        let ledger = &ledger;
        let source_error = &source_error;
        scope.spawn(move || {
            if let Err(e) = source.run(item_tx, ledger, cancel) {
                cancel.cancel(CancelReason::Failed);
                let _ = source_error.set(e);
            }
        });
        let (work, first_failure) = (&work, &first_failure);
        let pool = Pool::dynamic(min_workers, max_workers);
        let (pool_error, pool_stats, retry, rate) = (&pool_error, &pool_stats, &retry, &rate);
        scope.spawn(move || {
            let ran = pool.run(item_rx, out_tx, cancel, Buffer::default, |buf, chunk| {
                let mut outcomes = Vec::with_capacity(chunk.len());
                for (seq, item) in chunk {
                    // Once cancelled, the rest of the chunk is not started.
                    if cancel.is_cancelled() {
                        break;
                    }
                    let tried = retry_item(item, retry, cancel, |item| {
                        let ready = rate.as_ref().is_none_or(|r| r.until_ready(cancel));
                        ready.then(|| work.process(buf, item, cancel))
                    });
                    // Cancelled while waiting for the rate limit: not started.
                    let Some(Tried {
                        mut outcome,
                        attempts,
                    }) = tried
                    else {
                        break;
                    };
                    if attempts_column {
                        // Before `error`, which stays the last column.
                        let at = outcome.record.values.len() - 1;
                        let attempts = Value::Int(attempts.into());
                        outcome.record.values.insert(at, attempts);
                    }
                    if abort && !outcome.cancelled {
                        if let Some(error) = &outcome.error {
                            let label = work.label(&outcome.record);
                            let _ = first_failure.set(format!("{label}: {error}"));
                            cancel.cancel(CancelReason::Failed);
                        }
                    }
                    outcomes.push((seq, outcome));
                }
                outcomes
            });
            match ran {
                Ok(stats) => {
                    let _ = pool_stats.set(stats);
                }
                Err(e) => {
                    cancel.cancel(CancelReason::Failed);
                    let _ = pool_error.set(e);
                }
            }
        });
        let (committer, _) = Committer::spawn(scope, sink.as_mut(), &write_error, cancel);
        let batcher = Batcher {
            committer,
            checker: checker.as_ref(),
            label: &|record| work.label(record),
            first_failure,
            cancel,
            ledger,
            checkpoint: run.is_some(),
            batch_size,
            flush_interval,
            abort,
            progress: &progress,
        };
        batcher.drain(out_rx, cancel)
    });
    progress.finish();

    let summary = Summary {
        elapsed: started.elapsed(),
        pool: pool_stats.into_inner().unwrap_or_default(),
        ..summary
    };
    // The write that failed, not the batcher's note that the sink had.
    let sink_error = write_error.into_inner().or(sink_error);
    let sink_error = match pool_error.into_inner() {
        Some(e) => Some(anyhow::Error::new(e).context("cannot start worker threads")),
        None => sink_error,
    };
    if let Some(e) = sink_error {
        if run.is_some() {
            let _ = sink.end_run(RunStatus::Failed, 0);
        }
        return Err(run_error(e));
    }
    if let Some(e) = source_error.into_inner() {
        // What finished is committed; the run is failed and resumable.
        if run.is_some() {
            let _ = sink.end_run(RunStatus::Failed, 0);
        }
        let _ = sink.finish();
        return Err(RunError::Failed(e.context("source")));
    }
    if let Some(failure) = first_failure.get() {
        say(&format!("batchproc: error: {failure}"));
    }
    let status = match cancel.reason() {
        Some(CancelReason::Interrupted) => RunStatus::Interrupted,
        _ if summary.failed > 0 => RunStatus::Failed,
        _ => RunStatus::Succeeded,
    };
    if run.is_some() {
        let skipped = ledger.skipped.load(Ordering::Relaxed);
        sink.end_run(status, skipped).map_err(run_error)?;
    }
    sink.finish().map_err(run_error)?;
    Ok((status, summary))
}

/// The columns the sink gets: the work's, and with `--retries` the number
/// of tries each item took, before `error` (which stays last).
fn output_schema(schema: &Schema, attempts: bool) -> Result<Schema> {
    let mut schema = schema.clone();
    if attempts {
        if schema.columns.iter().any(|c| c.name == "attempts") {
            anyhow::bail!(
                "--retries adds a column named \"attempts\" and the output already has one; rename it in --sql"
            );
        }
        let at = schema.columns.len() - 1;
        schema
            .columns
            .insert(at, Column::new("attempts", ColumnType::Int));
    }
    Ok(schema)
}

/// Counts the items still to do, ahead of the real walk, so the progress
/// bar can show an ETA.
fn count_ahead(source: &FileSource, point: &ResumePoint, progress: &Progress, cancel: &Cancel) {
    let after = point.watermark.as_ref();
    let mut total = 0;
    source.walk(
        |dir| dir_done(after, dir),
        |visit| {
            if let Visit::Item(item) = visit {
                if !done_before(after, &item.key) && !point.done.contains(&item.key) {
                    total += 1;
                    if total % 1024 == 0 {
                        progress.set_total(total);
                    }
                }
            }
            !cancel.is_cancelled()
        },
    );
    progress.set_total(total);
}

#[cfg(test)]
mod tests {
    //! The pipeline with a processor whose failures are transient, into a
    //! real SQLite sink: what `--retries` does end to end, until a real
    //! processor (http) can fail that way through the binary.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use backon::ExponentialBuilder;
    use crossbeam_channel::Sender;
    use sqlx::Row;

    use super::*;
    use std::time::Duration;

    use crate::checkpoint::{Dispatch, ItemKey, Seq};
    use crate::record::Record;
    use crate::retry::RetryPolicy;
    use crate::work::{Outcome, Retry};

    /// Item `id` fails transiently `id - 1` times, then succeeds; item 9
    /// fails for good on its first try.
    struct Flaky {
        schema: Schema,
        tries: Arc<Mutex<HashMap<i64, u32>>>,
    }

    impl Work for Flaky {
        type Item = i64;

        fn schema(&self) -> &Schema {
            &self.schema
        }

        fn process(&self, _: &mut Buffer, id: i64, _: &Cancel) -> Outcome {
            let mut tries = self.tries.lock().unwrap();
            let n = tries.entry(id).or_default();
            *n += 1;
            let (error, retry) = match id {
                9 => (Some("bad input".to_owned()), None),
                _ if i64::from(*n) < id => (Some(format!("busy ({n})")), Some(Retry::default())),
                _ => (None, None),
            };
            let values = vec![
                Value::Int(id),
                error.clone().map_or(Value::Null, Value::Text),
            ];
            Outcome {
                cancelled: false,
                vanished: false,
                record: Record {
                    values,
                    failed: error.is_some(),
                },
                error,
                bytes: 0,
                retry,
            }
        }

        fn label(&self, record: &Record) -> String {
            format!("id={:?}", record.values[0])
        }
    }

    struct Ids(Vec<i64>);

    impl Source for Ids {
        type Item = i64;

        fn run(
            self,
            queue: Sender<Vec<(Seq, i64)>>,
            ledger: &Ledger,
            cancel: &Cancel,
        ) -> Result<()> {
            for id in self.0 {
                if let Dispatch::Go(seq) = ledger.dispatch(ItemKey::Int(id), cancel) {
                    if queue.send(vec![(seq, id)]).is_err() {
                        break;
                    }
                }
            }
            Ok(())
        }
    }

    type Stored = (i64, i64, Option<String>);

    /// Runs `ids` through `Flaky` with three retries into SQLite; returns
    /// the status, the summary, the rows (id, attempts, error) and the
    /// tries each item got.
    fn run(
        ids: Vec<i64>,
        on_error: OnError,
    ) -> (RunStatus, Summary, Vec<Stored>, HashMap<i64, u32>) {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("out.db");
        let quick = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(5));
        let cfg = RunConfig {
            sink: SinkSpec::Sqlite(db.clone()),
            table: "flaky".into(),
            min_workers: 2,
            max_workers: 3,
            queue: 2,
            retry: RetryPolicy::new(3).with_backoff(quick),
            rate: None,
            timeout: None,
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            on_error,
            quiet: true,
            resume: false,
            checkpoint: true,
            window: 1000,
            fingerprint: "flaky".into(),
        };
        let work = Flaky {
            schema: Schema {
                columns: vec![
                    Column::new("id", ColumnType::Int),
                    Column::new("error", ColumnType::Text),
                ],
                key: 0,
            },
            tries: Arc::default(),
        };
        let tries = work.tries.clone();
        let (status, summary) =
            run_pipeline(cfg, work, &Cancel::new(), |_| Ids(ids), None).unwrap();
        let (rt, mut conn) = crate::sink::sqlite::connect(&db).unwrap();
        let rows = rt
            .block_on(
                sqlx::query("SELECT id, attempts, error FROM flaky ORDER BY id")
                    .fetch_all(&mut conn),
            )
            .unwrap();
        let rows = rows
            .iter()
            .map(|r| (r.get("id"), r.get("attempts"), r.get("error")))
            .collect();
        let tries = tries.lock().unwrap().clone();
        (status, summary, rows, tries)
    }

    #[test]
    fn retried_items_record_their_attempts_and_the_last_error() {
        let (status, summary, rows, tries) = run(vec![1, 2, 3, 4, 5, 9], OnError::Skip);
        assert_eq!(status, RunStatus::Failed);
        assert_eq!((summary.ok, summary.failed), (4, 2));
        let expected = [
            (1, 1, None),
            (2, 2, None),
            (3, 3, None),
            (4, 4, None),
            // Three retries are four tries: the fifth would have succeeded.
            (5, 4, Some("busy (4)".to_owned())),
            (9, 1, Some("bad input".to_owned())),
        ];
        assert_eq!(rows, expected);
        // Each try ran once: attempts counts them all.
        for (id, attempts, _) in expected {
            assert_eq!(tries[&id], attempts as u32, "id {id}");
        }
    }

    #[test]
    fn fail_fast_waits_for_the_last_try() {
        let (status, summary, rows, _) = run(vec![4, 3, 2, 1], OnError::Abort);
        assert_eq!(status, RunStatus::Succeeded);
        assert_eq!((summary.ok, summary.failed), (4, 0));
        assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }
}
