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
//! A literal program is looked up in PATH before the run (a typo is exit 2,
//! not one failed item per file) and spawned by that path; argv[0] stays as
//! written.
//!
//! The child gets stdin from /dev/null, its stdout and stderr are read by
//! this thread with poll(2) (no reader threads; each capped, the excess read
//! and dropped so the child never blocks on a full pipe), and it runs in a
//! process group of its own. The group is killed with SIGKILL on timeout or
//! cancellation, and also once the command itself has exited — so a
//! background process it left behind cannot hold the pipes open or outlive
//! the run — and the command is always reaped: no orphans, no zombies.
//!
//! The groups running are also listed, so that an immediate exit (a second
//! Ctrl-C) can kill them first: a group of its own does not get the
//! terminal's SIGINT. Only a SIGKILL of batchproc itself leaves them running
//! to their end (PR_SET_PDEATHSIG would need a pre_exec hook, which makes std
//! fork instead of posix_spawn — a cost on every item).
//!
//! Columns: `exit_code` (NULL when killed by a signal) and `output` (stdout
//! without trailing whitespace; text, or bytes if not UTF-8). A non-zero exit
//! fails the item with `exit status N: <first line of stderr>` and still
//! records both columns.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Result};

use super::template::{Fields, Subject, Template};
use super::{io_message, ItemFailure, ItemProcessor, Pass, Processor};
use crate::record::{Column, ColumnType, Value};
use crate::work::{Cx, Retry};

/// Bytes of stdout kept in `output`.
const OUTPUT_CAP: usize = 64 * 1024;
/// Bytes of stderr kept for the error message.
const STDERR_CAP: usize = 16 * 1024;
/// How often a waiting worker looks at the cancel token and the deadline.
const TICK: Duration = Duration::from_millis(50);

pub fn columns() -> Vec<Column> {
    vec![
        Column::new("exit_code", ColumnType::Int),
        Column::new("output", ColumnType::Text),
    ]
}

pub struct Exec {
    spec: String,
    argv: Vec<Template>,
    /// The program found in PATH before the run, when argv[0] is literal.
    program: Option<PathBuf>,
}

impl Exec {
    pub fn parse(command: &str) -> Result<Exec> {
        let Some(words) = shlex::split(command) else {
            bail!("unbalanced quotes or a trailing backslash in the command");
        };
        if words.first().is_none_or(|w| w.is_empty()) {
            bail!("needs a command, e.g. exec:wc -c {{}}");
        }
        let argv: Vec<Template> = words.iter().map(|w| Template::parse(w)).collect();
        let program = match argv[0].literal() {
            Some(name) => {
                let name = std::ffi::OsStr::from_bytes(name);
                // which's own error ("cannot find binary path") adds nothing.
                Some(which::which(name).map_err(|_| {
                    anyhow::anyhow!(
                        "cannot run {:?}: not found in PATH or not executable",
                        words[0]
                    )
                })?)
            }
            None => None,
        };
        Ok(Exec {
            spec: format!("exec:{command}"),
            argv,
            program,
        })
    }
}

impl Processor for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn columns(&self) -> Vec<Column> {
        columns()
    }

    fn begin(&self) -> Pass<'_> {
        Pass::Item(self)
    }

    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn bind(&mut self, fields: &Fields) -> Result<()> {
        for arg in &mut self.argv {
            arg.bind(fields)?;
        }
        Ok(())
    }
}

impl ItemProcessor for Exec {
    fn run(&self, subject: &Subject, cx: &Cx) -> Result<Vec<Value>, ItemFailure> {
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
        let mut group = Group::spawn(&mut command).map_err(|e| {
            ItemFailure::new(format!(
                "cannot run {:?}: {}",
                arg0.to_string_lossy(),
                io_message(&e)
            ))
        })?;
        let (status, stdout, stderr) = group.run(cx)?;
        let output = output_value(stdout);
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(vec![Value::Int(0), output]),
            (Some(code), _) => Err(ItemFailure {
                message: match first_line(&stderr.kept) {
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

/// The process groups of the commands running now.
static RUNNING: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

fn running() -> MutexGuard<'static, Vec<libc::pid_t>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kills every command still running, for a process about to exit at once.
pub fn kill_running() {
    for pgid in running().iter() {
        // SAFETY: a plain syscall; every listed group's leader is unreaped.
        unsafe { libc::killpg(*pgid, libc::SIGKILL) };
    }
}

/// A running command and its process group, killed and reaped when dropped
/// early (a panic, an error): no path leaves a child behind.
struct Group {
    child: Child,
    reaped: bool,
}

impl Group {
    fn spawn(command: &mut Command) -> std::io::Result<Group> {
        // Not spawned under the lock: that would serialise the workers'
        // spawns. A second Ctrl-C landing between these two lines misses
        // this one command.
        let child = command.spawn()?;
        running().push(child.id() as libc::pid_t);
        Ok(Group {
            child,
            reaped: false,
        })
    }

    /// Kills what is left of the group, then reaps the command. It leaves
    /// the list first: once reaped, its pid may belong to someone else.
    fn reap(&mut self) -> std::io::Result<ExitStatus> {
        self.kill();
        let pgid = self.child.id() as libc::pid_t;
        running().retain(|p| *p != pgid);
        self.reaped = true;
        self.child.wait()
    }

    /// Reads the command's output until it exits, or kills it at the
    /// deadline or on cancellation.
    fn run(&mut self, cx: &Cx) -> Result<(ExitStatus, Capture, Capture), ItemFailure> {
        let mut stdout = Capture::new(OUTPUT_CAP);
        let mut stderr = Capture::new(STDERR_CAP);
        let mut out_pipe = self.child.stdout.take();
        let mut err_pipe = self.child.stderr.take();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let mut fds = [
                pollfd(out_pipe.as_ref().map(|p| p.as_raw_fd())),
                pollfd(err_pipe.as_ref().map(|p| p.as_raw_fd())),
            ];
            if fds.iter().all(|f| f.fd < 0) {
                break;
            }
            let wait = cx.deadline.map_or(TICK, |d| d.remaining().min(TICK));
            // Rounded up: a 0 ms poll would spin until the deadline.
            let ms = wait.as_micros().div_ceil(1000) as libc::c_int;
            // SAFETY: fds is a live array of fds.len() pollfd entries.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if ready < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(ItemFailure::new(format!("poll: {}", io_message(&e))));
                }
            }
            self.check(cx)?;
            if ready > 0 {
                if fds[0].revents != 0 {
                    if let Some(p) = out_pipe.as_mut() {
                        if !stdout.fill(p, &mut buf) {
                            out_pipe = None;
                        }
                    }
                }
                if fds[1].revents != 0 {
                    if let Some(p) = err_pipe.as_mut() {
                        if !stderr.fill(p, &mut buf) {
                            err_pipe = None;
                        }
                    }
                }
            } else if self.exited() {
                // The command is gone but something it started still holds
                // a pipe open: end the group, then read to the end.
                self.kill();
            }
        }
        // Both pipes closed: the command is exiting. Wait for it without
        // reaping it, so its group id cannot be reused before the kill.
        let mut pause = Duration::from_micros(20);
        while !self.exited() {
            self.check(cx)?;
            std::thread::sleep(pause);
            pause = (pause * 2).min(TICK);
        }
        let status = self
            .reap()
            .map_err(|e| ItemFailure::new(format!("wait: {}", io_message(&e))))?;
        Ok((status, stdout, stderr))
    }

    /// Stops at the deadline or on cancellation (the drop kills the group).
    fn check(&self, cx: &Cx) -> Result<(), ItemFailure> {
        if cx.cancel.is_cancelled() {
            return Err(ItemFailure::new("cancelled"));
        }
        match cx.deadline {
            Some(d) if d.passed() => Err(ItemFailure {
                message: d.message(),
                values: None,
                retry: Some(Retry::default()),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the command has exited, leaving it unreaped (a zombie keeps
    /// its pid and so its process group id from being reused).
    fn exited(&self) -> bool {
        // SAFETY: siginfo_t is plain data (all-zero is valid), and waitid
        // only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // With WNOHANG the pid field stays 0 while the child runs.
        r == 0 && unsafe { info.si_pid() } != 0
    }

    fn kill(&self) {
        // SAFETY: a plain syscall; the leader is not reaped yet, so the
        // group id is still ours.
        unsafe { libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL) };
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.reap();
        }
    }
}

fn pollfd(fd: Option<std::os::fd::RawFd>) -> libc::pollfd {
    libc::pollfd {
        // A negative fd is skipped by poll.
        fd: fd.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// The first part of a stream, and how much more there was.
struct Capture {
    kept: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Capture {
            kept: Vec::new(),
            cap,
            dropped: 0,
        }
    }

    /// Reads what is there; false at the end of the stream (or on an error,
    /// which ends it too).
    fn fill(&mut self, pipe: &mut impl Read, buf: &mut [u8]) -> bool {
        match pipe.read(buf) {
            Ok(0) => false,
            Ok(n) => {
                let room = self.cap - self.kept.len();
                let keep = n.min(room);
                self.kept.extend_from_slice(&buf[..keep]);
                self.dropped += (n - keep) as u64;
                true
            }
            Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
        }
    }
}

/// stdout without trailing whitespace, as text when it is UTF-8. A
/// truncated output is cut at a character boundary and says so at its end.
fn output_value(capture: Capture) -> Value {
    let Capture {
        mut kept, dropped, ..
    } = capture;
    if dropped > 0 {
        let total = kept.len() as u64 + dropped;
        if let Err(e) = std::str::from_utf8(&kept) {
            if e.error_len().is_none() {
                kept.truncate(e.valid_up_to());
            }
        }
        let kept_len = kept.len();
        kept.extend_from_slice(
            format!("\n[batchproc: output truncated: kept {kept_len} of {total} bytes]").as_bytes(),
        );
    } else {
        let end = kept
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        kept.truncate(end);
    }
    match String::from_utf8(kept) {
        Ok(s) => Value::Text(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

/// The first non-blank line of stderr, trimmed, for the error message.
fn first_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    const MAX: usize = 300;
    Some(match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    })
}
