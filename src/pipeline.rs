//! A run: the source walks into a bounded queue, the worker pool processes,
//! and this thread batches the results into the sink. One cancellation token
//! joins them: a failed item (under fail-fast), a failed sink or a signal
//! stops new work, and everything that finished is still committed.

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::cli::OnError;
use crate::config::FilesConfig;
use crate::pool::{Cancel, CancelReason, Pool};
use crate::progress::{Progress, Summary};
use crate::record::{DisplayPath, Record};
use crate::sink::Sink;
use crate::source::Source;
use crate::work::{Buffer, FileWork, Outcome};
use crate::{RunError, RunStatus};

/// Runs the `files` pipeline to the end, or until cancelled.
pub fn run_files(cfg: FilesConfig, cancel: &Cancel) -> Result<(RunStatus, Summary), RunError> {
    let started = Instant::now();
    let FilesConfig {
        source,
        processors,
        sink: sink_spec,
        table,
        workers,
        queue,
        batch_size,
        flush_interval,
        on_error,
        quiet,
    } = cfg;
    let work = FileWork::new(processors);
    let mut sink = sink_spec.open(&table).map_err(RunError::Config)?;
    sink.prepare(work.schema())
        .map_err(|e| RunError::Config(e.context(format!("sink {sink_spec}"))))?;

    let progress = Progress::new(quiet);
    let abort = on_error == OnError::Abort;
    let first_failure: OnceLock<String> = OnceLock::new();
    let (item_tx, item_rx) = bounded(queue);
    let (out_tx, out_rx) = bounded(queue);

    let (summary, sink_error) = std::thread::scope(|scope| {
        if progress.is_shown() {
            let (source, progress) = (&source, &progress);
            scope.spawn(move || {
                let mut total = 0;
                source.walk(|_| {
                    total += 1;
                    if total % 1024 == 0 {
                        progress.set_total(total);
                    }
                    !cancel.is_cancelled()
                });
                progress.set_total(total);
            });
        }
        let walk = source.clone();
        scope.spawn(move || walk.run(item_tx, cancel));
        let (work, first_failure) = (&work, &first_failure);
        let pool = Pool::new(workers);
        scope.spawn(move || {
            pool.run(item_rx, out_tx, cancel, Buffer::default, |buf, item| {
                let outcome = work.process(buf, item, cancel);
                if abort && !outcome.cancelled {
                    if let Some(error) = &outcome.error {
                        let path = DisplayPath(&outcome.path);
                        let _ = first_failure.set(format!("{path}: {error}"));
                        cancel.cancel(CancelReason::Failed);
                    }
                }
                outcome
            })
        });
        let batcher = Batcher {
            sink: sink.as_mut(),
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
        ..summary
    };
    if let Some(e) = sink_error {
        return Err(RunError::Failed(e.context(format!("sink {sink_spec}"))));
    }
    sink.finish()
        .map_err(|e| RunError::Failed(e.context(format!("sink {sink_spec}"))))?;
    if let Some(failure) = first_failure.get() {
        eprintln!("batchproc: error: {failure}");
    }
    let status = match cancel.reason() {
        Some(CancelReason::Interrupted) => RunStatus::Interrupted,
        _ if summary.failed > 0 => RunStatus::Failed,
        _ => RunStatus::Succeeded,
    };
    Ok((status, summary))
}

/// Groups outcomes into sink batches: full batches, or whatever is pending
/// once the flush interval passes, so slow runs still show progress.
struct Batcher<'a> {
    sink: &'a mut dyn Sink,
    batch_size: usize,
    flush_interval: std::time::Duration,
    abort: bool,
    progress: &'a Progress,
}

impl Batcher<'_> {
    /// Consumes outcomes until every worker is done. A sink error cancels the
    /// run; the rest of the outcomes are then drained unwritten so no worker
    /// blocks on a full channel.
    fn drain(
        self,
        outcomes: Receiver<Outcome>,
        cancel: &Cancel,
    ) -> (Summary, Option<anyhow::Error>) {
        let mut summary = Summary::default();
        let mut sink_error = None;
        let mut batch: Vec<Record> = Vec::with_capacity(self.batch_size);
        let mut deadline = Instant::now() + self.flush_interval;
        loop {
            let flush = match outcomes.recv_deadline(deadline) {
                Ok(outcome) if outcome.cancelled => false,
                Ok(outcome) => {
                    self.progress.inc();
                    summary.bytes += outcome.bytes;
                    match &outcome.error {
                        None => summary.ok += 1,
                        Some(error) => {
                            summary.failed += 1;
                            if !self.abort {
                                let path = DisplayPath(&outcome.path);
                                self.progress
                                    .println(&format!("batchproc: warning: {path}: {error}"));
                            }
                        }
                    }
                    // Under fail-fast a failed item gets no row: a later run retries it.
                    if outcome.error.is_none() || !self.abort {
                        batch.push(outcome.record);
                    }
                    batch.len() >= self.batch_size
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if flush {
                if sink_error.is_none() {
                    if let Err(e) = self.sink.write(&batch) {
                        cancel.cancel(CancelReason::Failed);
                        sink_error = Some(e);
                    }
                }
                batch.clear();
                deadline = Instant::now() + self.flush_interval;
            }
        }
        if sink_error.is_none() {
            if let Err(e) = self.sink.write(&batch) {
                sink_error = Some(e);
            }
        }
        (summary, sink_error)
    }
}
