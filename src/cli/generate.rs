//! Shell completions and man pages, both made from the same clap model as
//! the command line itself, so that they cannot drift from it.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "batchproc", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the man page batchproc(1) to `out`.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let mut page = Vec::new();
    // As generate_to does: there is no page for `help`, so none is listed.
    let command = Cli::command().disable_help_subcommand(true);
    clap_mangen::Man::new(command).render(&mut page)?;
    out.write_all(&page)?;
    out.flush()
}

/// Writes batchproc.1 and a page for each command (batchproc-files.1, …),
/// as git does, into `dir`.
pub fn man_pages(dir: &Path) -> io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
}
