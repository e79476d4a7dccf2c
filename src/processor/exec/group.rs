//! Running one command in a process group of its own, until it exits, the
//! attempt's deadline passes or the run is cancelled, reading its output on
//! the way (poll(2), no reader threads). No path leaves anything behind:
//!
//! - on timeout or cancellation the whole group gets SIGKILL;
//! - once the command exits, its group gets SIGKILL too (a background
//!   process it started must not hold the pipes open or outlive the item),
//!   before the command is reaped: `waitid(WNOWAIT)` sees the exit without
//!   reaping, so the group id cannot have been reused by then;
//! - a drop guard kills and reaps on every early return;
//! - the [`watchdog`](super::watchdog) is told of every group while it
//!   runs, and kills it should batchproc die first (SIGKILL, or the
//!   immediate exit of a second Ctrl-C).

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use super::capture::{Capture, OUTPUT_CAP, STDERR_CAP};
use super::watchdog;
use crate::processor::{io_message, Cx, ItemFailure, Retry};

/// How often a waiting worker looks at the cancel token and the deadline.
const TICK: Duration = Duration::from_millis(50);

/// A command's exit status and what it wrote.
pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
}

/// A running command and its process group, killed and reaped when dropped
/// before it finished.
pub(super) struct Group {
    child: Child,
    pgid: Pid,
    reaped: bool,
}

impl Group {
    /// Spawns `command` (already in a group of its own) and tells the
    /// watchdog. A SIGKILL landing between these two lines misses this one
    /// command.
    pub(super) fn spawn(command: &mut Command) -> io::Result<Group> {
        let child = command.spawn()?;
        let pgid = Pid::from_child(&child);
        watchdog::started(pgid);
        Ok(Group {
            child,
            pgid,
            reaped: false,
        })
    }

    /// Reads the command's output until it exits, or kills it at the
    /// deadline or on cancellation.
    pub(super) fn run(mut self, cx: &Cx) -> Result<Finished, ItemFailure> {
        let mut stdout = Capture::new(OUTPUT_CAP);
        let mut stderr = Capture::new(STDERR_CAP);
        let mut out_pipe = self.child.stdout.take();
        let mut err_pipe = self.child.stderr.take();
        let mut buf = [0u8; 16 * 1024];
        // Polled beside the pipes, so a cancel ends the wait at once.
        let cancelled = cx
            .cancel
            .fd()
            .map_err(|e| ItemFailure::new(format!("pipe: {}", io_message(&e))))?;
        while out_pipe.is_some() || err_pipe.is_some() {
            let wait = cx.deadline.map_or(TICK, |d| d.remaining().min(TICK));
            // Rounded up to a millisecond: a zero timeout would spin until
            // the deadline.
            let wait = Timespec::try_from(wait.max(Duration::from_millis(1)))
                .expect("a tick fits a timespec");
            let (out_ready, err_ready) = {
                let mut fds = Vec::with_capacity(3);
                fds.push(PollFd::new(&cancelled, PollFlags::IN));
                let (mut out_at, mut err_at) = (None, None);
                if let Some(p) = &out_pipe {
                    out_at = Some(fds.len());
                    fds.push(PollFd::new(p, PollFlags::IN));
                }
                if let Some(p) = &err_pipe {
                    err_at = Some(fds.len());
                    fds.push(PollFd::new(p, PollFlags::IN));
                }
                match poll(&mut fds, Some(&wait)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(ItemFailure::new(format!("poll: {e}"))),
                }
                let ready = |at: Option<usize>| at.is_some_and(|i| !fds[i].revents().is_empty());
                (ready(out_at), ready(err_at))
            };
            self.check(cx)?;
            if out_ready {
                if let Some(p) = out_pipe.as_mut() {
                    if !stdout.fill(p, &mut buf) {
                        out_pipe = None;
                    }
                }
            }
            if err_ready {
                if let Some(p) = err_pipe.as_mut() {
                    if !stderr.fill(p, &mut buf) {
                        err_pipe = None;
                    }
                }
            }
            if !(out_ready || err_ready) && self.exited() {
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
            // A sleep that the run's cancel cuts short.
            cx.cancel.wait_timeout(pause);
            pause = (pause * 2).min(TICK);
        }
        let status = self
            .reap()
            .map_err(|e| ItemFailure::new(format!("wait: {}", io_message(&e))))?;
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
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
    /// its pid, and so its process group id, from being reused).
    fn exited(&self) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        matches!(
            rustix::process::waitid(WaitId::Pid(self.pgid), options),
            Ok(Some(_))
        )
    }

    fn kill(&self) {
        // The leader is not reaped yet, so the group id is still ours.
        let _ = rustix::process::kill_process_group(self.pgid, Signal::KILL);
    }

    /// Kills what is left of the group, then reaps the command. The
    /// watchdog forgets it first: once reaped, its pid may be someone else's.
    fn reap(&mut self) -> io::Result<ExitStatus> {
        self.kill();
        watchdog::ended(self.pgid);
        self.reaped = true;
        self.child.wait()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.reap();
        }
    }
}
