//! Building the command for one item: the argv templates of `exec:CMD ARG…`
//! filled in from the item, with no shell and no second split.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Result};

use crate::processor::template::{Fields, Subject, Template};
use crate::record::Quoted;

/// A command line whose arguments may hold placeholders.
pub(super) struct CommandLine {
    argv: Vec<Template>,
    /// The program found in PATH before the run, when argv[0] is literal.
    program: Option<PathBuf>,
}

impl CommandLine {
    /// Splits `text` into words like a shell would (quotes and backslashes,
    /// nothing else), and finds a literal program in PATH now: a typo is a
    /// configuration error, not one failed item per file.
    pub(super) fn parse(text: &str) -> Result<CommandLine> {
        let Some(words) = shlex::split(text) else {
            bail!("unbalanced quotes or a trailing backslash in the command");
        };
        if words.first().is_none_or(|w| w.is_empty()) {
            bail!("needs a command, e.g. exec:wc -c {{}}");
        }
        let argv: Vec<Template> = words.iter().map(|w| Template::parse(w)).collect();
        let program = match argv[0].literal() {
            // which's own error ("cannot find binary path") adds nothing.
            Some(name) => Some(which::which(OsStr::from_bytes(name)).map_err(|_| {
                anyhow!(
                    "cannot run {}: not found in PATH or not executable",
                    Quoted(&words[0])
                )
            })?),
            None => None,
        };
        Ok(CommandLine { argv, program })
    }

    pub(super) fn bind(&mut self, fields: &Fields) -> Result<()> {
        for arg in &mut self.argv {
            arg.bind(fields)?;
        }
        Ok(())
    }

    /// The command for `subject`, with stdin from /dev/null, stdout and
    /// stderr piped, in a process group of its own. argv[0] stays as
    /// written; a program found before the run is spawned by its path (no
    /// PATH search per item).
    pub(super) fn command(&self, subject: &Subject) -> (Command, String) {
        let arg0 = self.argv[0].render_os(subject);
        let mut command = match &self.program {
            Some(path) => {
                let mut c = Command::new(path);
                c.arg0(&arg0);
                c
            }
            None => Command::new(&arg0),
        };
        for arg in &self.argv[1..] {
            command.arg(arg.render_os(subject));
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        (command, arg0.to_string_lossy().into_owned())
    }
}
