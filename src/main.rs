//! The `batchproc` command: parse flags, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

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
