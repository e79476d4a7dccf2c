//! The `batchproc` command: parse the flags, run, print what a person needs
//! (warnings as they come, a progress bar, one summary line), handle
//! signals, and map the outcome to an exit code (see `--help`).

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use batchproc::pool::{Cancel, CancelReason};
use batchproc::{Pipeline, RunStatus};
use cli::{Command, Terminal};

// Records are built on worker threads and freed on the sink's thread; glibc's
// malloc serialises those cross-thread frees on an arena lock (measured: a
// tenth of a 1M-row query run spent in its futex waits).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: u8 = 2;
/// Paused at `--max-runtime`: unfinished, `--resume` continues.
const PAUSED: u8 = 3;
/// EX_TEMPFAIL: another run holds the sink; try again later.
const TEMPFAIL: u8 = 75;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Files(args) => run(args.pipeline()),
        Command::Query(args) => run(args.pipeline()),
        Command::Queue(args) => run(args.pipeline()),
        Command::Runs(args) => match batchproc::runs(&args.sink) {
            Ok(runs) => match cli::print_runs(&runs, args.json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
                Err(e) => fail(&e.to_string(), 1),
            },
            Err(e) => fail(&e.to_string(), USAGE),
        },
        Command::Failures(args) => match batchproc::failures(&args.sink, &args.table, args.min) {
            Ok(rows) => written(cli::print_failures(&rows, args.json)),
            Err(e) => fail(&e.to_string(), USAGE),
        },
        Command::List { config } => match cli::list(config.as_deref()) {
            Ok(lines) => written(std::io::Write::write_all(
                &mut std::io::stdout(),
                lines.as_bytes(),
            )),
            Err(e) => usage_error(e),
        },
        Command::Run(_) => unreachable!("cli::parse turns a named pipeline into its command"),
        Command::Completions { shell } => written(cli::completions(shell, &mut std::io::stdout())),
        Command::Man { dir: None } => written(cli::man(&mut std::io::stdout())),
        Command::Man { dir: Some(dir) } => match cli::man_pages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{}: {e}", dir.display()), 1),
        },
    }
}

/// A usage or config error (exit 2), or `--help`/`--version` (exit 0).
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        e.exit();
    }
    // clap's message quotes a wrong argument, which may be a URL with its
    // password: it goes out redacted (and plain, no colours).
    let mut message = e.render().to_string();
    // Right under clap's first line, which names only the flag.
    if let Some(hint) = cli::env_hint(&e) {
        let at = message.find('\n').unwrap_or(message.len());
        message.insert_str(at, &format!("\n  {hint}"));
    }
    cli::say(message.trim_end());
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(USAGE))
}

/// The exit code of a command that only writes to stdout.
fn written(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(e) => fail(&e.to_string(), 1),
    }
}

/// Runs a pipeline with signals watched and its events on stderr, and
/// writes its `--summary-json`.
fn run(invocation: cli::Invocation) -> ExitCode {
    let cli::Invocation {
        pipeline,
        dry_run,
        quiet,
        summary_json,
        sink,
        logging,
        max_runtime,
        shard,
    } = invocation;
    cli::log::init(logging);
    let to_stdout = summary_json.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout && (sink == "-" || sink == "csv:-") {
        return fail(
            "--summary-json -: stdout carries the CSV records (-o -); give the summary a file",
            USAGE,
        );
    }
    if dry_run {
        return plan(pipeline);
    }
    let ending = Ending { quiet, max_runtime };
    let (code, mut summary) = execute(pipeline, ending, &sink);
    summary["shard"] = serde_json::json!(shard);
    if let Some(path) = summary_json {
        if let Err(e) = cli::summary::write(&path, &summary) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::from(141);
            }
            let message = format!("--summary-json {}: {e}", path.display());
            // The run's own failure says more; a success must not hide this.
            return if code == 0 {
                fail(&message, 1)
            } else {
                warn_and(code, &message)
            };
        }
    }
    ExitCode::from(code)
}

/// `--dry-run`: the plan on stdout, or why the run would be refused.
fn plan(pipeline: Pipeline) -> ExitCode {
    let cancel = Cancel::new();
    let _signals = watch_signals(&cancel);
    match pipeline.cancel(cancel).plan() {
        Ok(plan) => written(std::io::Write::write_all(
            &mut std::io::stdout(),
            plan.to_string().as_bytes(),
        )),
        Err(e @ batchproc::Error::Config(_)) => fail(&e.to_string(), USAGE),
        Err(batchproc::Error::Interrupted) => ExitCode::from(130),
        Err(e) => fail(&e.to_string(), 1),
    }
}

/// What the line a run ends with depends on.
#[derive(Clone, Copy)]
struct Ending {
    quiet: bool,
    max_runtime: Option<std::time::Duration>,
}

/// The run itself: its exit code and its summary.
fn execute(pipeline: Pipeline, ending: Ending, sink: &str) -> (u8, serde_json::Value) {
    let cancel = Cancel::new();
    let _signals = match watch_signals(&cancel) {
        Ok(handle) => handle,
        Err(e) => {
            let message = format!("cannot watch signals: {e}");
            return refused("error", sink, &message, 1);
        }
    };
    let terminal = Arc::new(Terminal::new(ending.quiet));
    let result = pipeline.cancel(cancel).events(terminal.clone()).run();
    terminal.finish();
    match result {
        Ok(report) => {
            if let Some(failure) = &report.failure {
                cli::say(&format!("batchproc: error: {failure}"));
            }
            summarize(&report, ending);
            let code = match report.status {
                RunStatus::Succeeded => 0,
                RunStatus::Failed => 1,
                RunStatus::Interrupted => 130,
                RunStatus::Paused => PAUSED,
            };
            let summary = cli::summary::of_report(&report, report.failure.as_deref(), code);
            (code, summary)
        }
        // The reader of stdout went away (`batchproc … -o - | head`): like
        // other Unix tools, stop quietly with 141 (128 + SIGPIPE).
        Err(e) if e.is_broken_pipe() => (141, cli::summary::of_refusal("error", sink, None, 141)),
        Err(e @ batchproc::Error::Config(_)) => refused("error", sink, &e.to_string(), USAGE),
        Err(e @ batchproc::Error::Busy(_)) => refused("busy", sink, &e.to_string(), TEMPFAIL),
        Err(e @ batchproc::Error::Failed(..)) => {
            let message = e.to_string();
            fail(&message, 1);
            let batchproc::Error::Failed(_, report) = &e else {
                unreachable!("matched above")
            };
            summarize(report, ending);
            (1, cli::summary::of_report(report, Some(&message), 1))
        }
        Err(batchproc::Error::Interrupted) => (
            130,
            cli::summary::of_refusal("interrupted", sink, None, 130),
        ),
    }
}

/// A run refused before any work: the message on stderr, and its summary.
fn refused(status: &str, sink: &str, message: &str, code: u8) -> (u8, serde_json::Value) {
    fail(message, code);
    (
        code,
        cli::summary::of_refusal(status, sink, Some(message), code),
    )
}

fn warn_and(code: u8, message: &str) -> ExitCode {
    cli::say(&format!("batchproc: warning: {message}"));
    ExitCode::from(code)
}

/// The one line every run ends with, failed or not (unless `--quiet`).
/// A paused run's says what to do next; its counts are in the runs table
/// and `--summary-json`.
fn summarize(report: &batchproc::Report, ending: Ending) {
    if ending.quiet {
        return;
    }
    if report.status == RunStatus::Paused {
        let limit = ending
            .max_runtime
            .map(|d| format!(" {}", humantime::format_duration(d)))
            .unwrap_or_default();
        let items = report.summary.ok + report.summary.failed;
        // A queue run goes on from the queue itself, not from a resume.
        let next = match report.summary.held {
            Some(_) => "run again to go on with the queue",
            None => "run again with --resume to continue",
        };
        cli::say(&format!(
            "batchproc: paused: max runtime{limit} reached after {items} items; {next}"
        ));
        return;
    }
    let prefix = match report.status {
        RunStatus::Interrupted => "interrupted: ",
        _ => "",
    };
    cli::say(&format!(
        "batchproc: {prefix}{} -> {}",
        report.summary.line(),
        report.sink
    ));
}

fn fail(message: &str, code: u8) -> ExitCode {
    cli::say(&format!("batchproc: error: {message}"));
    ExitCode::from(code)
}

/// SIGINT/SIGTERM cancel the run, which then commits what finished; a second
/// signal exits at once (exit 130), for a user who does not want to wait
/// (`exec:` commands still running die with the process: their watchdog
/// kills them).
fn watch_signals(cancel: &Cancel) -> std::io::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        // Counted here: after a failure has stopped the run, the token's
        // reason stays "failed", and a second Ctrl-C must still exit.
        for (n, _) in signals.forever().enumerate() {
            if n > 0 {
                std::process::exit(130);
            }
            cancel.cancel_with(CancelReason::Interrupted);
        }
    });
    Ok(handle)
}
