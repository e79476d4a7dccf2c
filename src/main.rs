//! The `batchproc` command: parse flags, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

// Records are built on worker threads and freed on the sink's thread; glibc's
// malloc serialises those cross-thread frees on an arena lock (measured: a
// tenth of a 1M-row query run spent in its futex waits).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = batchproc::cli::Cli::parse();
    match batchproc::run(cli) {
        Ok(status) => status.exit_code(),
        Err(e) => {
            if !e.is_broken_pipe() {
                batchproc::progress::say(&format!("batchproc: error: {e}"));
            }
            e.exit_code()
        }
    }
}
