//! `exec:CMD ARG…`: runs a command per item, like `xargs -n1` or `parallel`
//! but without a shell. The text after `exec:` is split once into argv by
//! shell-like word rules (shlex: quotes and backslashes honoured, nothing
//! else — no variables, globs, pipes or command substitution); bad quoting
//! is a configuration error. Placeholders (see `template`) are substituted
//! into the arguments afterwards, also inside an argument, and an argument
//! is never split again: whatever a file name or a column holds reaches the
//! command as bytes, never as code. (A value starting with `-` may still
//! look like an option to the command, as with xargs: write `./{}` or `--`.)
//!
//! In parts: [`command`] builds the command for an item, [`group`] runs it
//! in a process group of its own that nothing outlives, [`capture`] keeps
//! the first part of its output, and the [`watchdog`] ends the commands
//! running should batchproc itself be killed.
//!
//! Columns: `exit_code` (NULL when killed by a signal) and `output` (stdout
//! without trailing whitespace; text, or bytes if not UTF-8). A non-zero exit
//! fails the item with `exit status N: <first line of stderr>` and still
//! records both columns.

mod capture;
mod command;
mod group;
mod watchdog;

use std::os::unix::process::ExitStatusExt;

use anyhow::Result;

use super::template::{Fields, Subject};
use super::{io_message, Cx, ItemFailure, ItemProcessor, Kind, Pass, Processor, Reads};
use crate::record::{Column, ColumnType, Quoted, Value};
use command::CommandLine;
use group::Group;

pub(super) static KIND: Kind = Kind {
    name: "exec",
    reads: Reads::Item,
    argument: "CMD ARG…",
    help: "a command per item, run without a shell",
    columns: || {
        vec![
            Column::new("exit_code", ColumnType::Int),
            Column::new("output", ColumnType::Text),
        ]
    },
    parse: |command| Ok(Box::new(Exec::parse(command)?)),
};

struct Exec {
    spec: String,
    command: CommandLine,
}

impl Exec {
    fn parse(command: &str) -> Result<Exec> {
        let command_line = CommandLine::parse(command)?;
        watchdog::start()?;
        Ok(Exec {
            spec: format!("exec:{command}"),
            command: command_line,
        })
    }
}

impl Processor for Exec {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn begin(&self) -> Pass<'_> {
        Pass::Item(self)
    }

    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn bind(&mut self, fields: &Fields) -> Result<()> {
        self.command.bind(fields)
    }
}

impl ItemProcessor for Exec {
    fn run(&self, subject: &Subject, cx: &Cx) -> Result<Vec<Value>, ItemFailure> {
        let (mut command, program) = self.command.command(subject);
        let group = Group::spawn(&mut command).map_err(|e| {
            ItemFailure::new(format!(
                "cannot run {}: {}",
                Quoted(&program),
                io_message(&e)
            ))
        })?;
        let finished = group.run(cx)?;
        let reason = finished.stderr.first_line();
        let output = finished.stdout.into_output();
        match (finished.status.code(), finished.status.signal()) {
            (Some(0), _) => Ok(vec![Value::Int(0), output]),
            (Some(code), _) => Err(ItemFailure {
                message: match reason {
                    Some(line) => format!("exit status {code}: {line}"),
                    None => format!("exit status {code}"),
                },
                values: Some(vec![Value::Int(code as i64), output]),
                retry: None,
            }),
            (None, signal) => Err(ItemFailure {
                message: format!("killed by signal {}", signal.unwrap_or(0)),
                values: Some(vec![Value::Null, output]),
                retry: None,
            }),
        }
    }
}
