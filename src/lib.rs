//! batchproc: batch jobs over many items. A source feeds a bounded queue, a
//! worker pool runs processors, and a sink commits the records in batches.
//!
//! The binary is a thin shell over [`run`]; the stages are public so the
//! pipeline's building blocks (notably [`pool`]) can be used from Rust.

mod batcher;
pub mod checkpoint;
pub mod cli;
pub mod commit;
pub mod config;
pub mod pipeline;
pub mod pool;
pub mod processor;
pub mod progress;
pub mod rate;
pub mod record;
pub mod retry;
pub mod runs;
pub mod sink;
pub mod source;
pub mod work;

/// The README's Rust examples, run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

use std::process::ExitCode;

use cli::{Cli, Command};
use pool::{Cancel, CancelReason};

/// How a run ended (each maps to an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every item succeeded: exit 0.
    Succeeded,
    /// The run was aborted by a failed item, or finished with failed items: exit 1.
    Failed,
    /// Interrupted by SIGINT/SIGTERM after committing what finished: exit 130.
    Interrupted,
}

/// A run that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad flag, bad URL, unreachable or incompatible sink: exit 2.
    #[error("{}", record::error_line(.0))]
    Config(anyhow::Error),
    /// A failure during the run (the sink failed mid-run): exit 1.
    #[error("{}", record::error_line(.0))]
    Failed(anyhow::Error),
}

impl RunStatus {
    pub fn exit_code(self) -> ExitCode {
        match self {
            RunStatus::Succeeded => ExitCode::SUCCESS,
            RunStatus::Failed => ExitCode::from(1),
            RunStatus::Interrupted => ExitCode::from(130),
        }
    }
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            _ if self.is_broken_pipe() => ExitCode::from(141),
            RunError::Config(_) => ExitCode::from(2),
            RunError::Failed(_) => ExitCode::from(1),
        }
    }

    /// The reader of stdout went away (`batchproc … -o - | head`): like
    /// other Unix tools, stop quietly with 141 (128 + SIGPIPE).
    pub fn is_broken_pipe(&self) -> bool {
        let (RunError::Config(e) | RunError::Failed(e)) = self;
        e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                || c.downcast_ref::<csv::Error>().is_some_and(|e| {
                    matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe)
                })
        })
    }
}

/// Runs one command line to its end.
pub fn run(cli: Cli) -> Result<RunStatus, RunError> {
    match cli.command {
        Command::Files(args) => {
            let cfg = config::FilesConfig::from_args(args).map_err(RunError::Config)?;
            let (quiet, sink) = (cfg.run.quiet, cfg.run.sink.to_string());
            let cancel = Cancel::new();
            let _signals = watch_signals(&cancel).map_err(RunError::Failed)?;
            finish(pipeline::run_files(cfg, &cancel)?, quiet, &sink)
        }
        Command::Query(args) => {
            let cfg = config::QueryConfig::from_args(args).map_err(RunError::Config)?;
            let (quiet, sink) = (cfg.run.quiet, cfg.run.sink.to_string());
            let cancel = Cancel::new();
            let _signals = watch_signals(&cancel).map_err(RunError::Failed)?;
            finish(pipeline::run_query(cfg, &cancel)?, quiet, &sink)
        }
        Command::Runs(args) => {
            runs::list(&args).map_err(RunError::Config)?;
            Ok(RunStatus::Succeeded)
        }
    }
}

/// Prints the summary line (unless quiet) and passes the status on.
fn finish(
    (status, summary): (RunStatus, progress::Summary),
    quiet: bool,
    sink: &str,
) -> Result<RunStatus, RunError> {
    if !quiet {
        let prefix = match status {
            RunStatus::Interrupted => "interrupted: ",
            _ => "",
        };
        progress::say(&format!("batchproc: {prefix}{} -> {sink}", summary.line()));
    }
    Ok(status)
}

/// SIGINT/SIGTERM cancel the run, which then commits what finished; a second
/// signal exits at once (exit 130), for a user who does not want to wait.
fn watch_signals(cancel: &Cancel) -> anyhow::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if cancel.reason() == Some(CancelReason::Interrupted) {
                // exec: commands run in groups of their own, out of reach
                // of the terminal's signal: end them before leaving.
                processor::kill_running_commands();
                std::process::exit(130);
            }
            cancel.cancel(CancelReason::Interrupted);
        }
    });
    Ok(handle)
}
