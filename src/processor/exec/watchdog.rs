//! The watchdog: a small process that outlives nothing. It is forked once,
//! the first time a run has an `exec:` processor, and is told over a pipe
//! the process group of every command as it starts and as it ends. When
//! batchproc dies, however it dies (SIGKILL included), the pipe's last
//! write end closes, and the watchdog kills every group still listed, then
//! itself.
//!
//! It is a copy of the process that forked it, kept until that process
//! ends: a library user's process pays the pages it writes afterwards
//! once more (copy-on-write), as with any fork.
//!
//! Why not `PR_SET_PDEATHSIG` on each command: it needs a hook between fork
//! and exec, which makes std fork instead of `posix_spawn` (measured: 2,000
//! `exec:true` items went from 1.05 s to 2.55 s), and it ends only the
//! command, not what the command started. The watchdog costs two 4-byte
//! writes per command, and kills whole groups.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal};

/// The most groups the watchdog keeps track of at once: one per worker.
const MOST_GROUPS: usize = 8192;

/// The write end of the watchdog's pipe (close-on-exec, so commands never
/// hold it); set once the watchdog runs.
static PIPE: OnceLock<OwnedFd> = OnceLock::new();

/// Starts the watchdog unless it runs already.
pub(super) fn start() -> Result<()> {
    // Two runs starting at once must not start two watchdogs (each would
    // inherit the other's pipe and never see it end).
    static STARTING: Mutex<()> = Mutex::new(());
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if PIPE.get().is_some() {
        return Ok(());
    }
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .context("cannot start the watchdog of exec: commands: pipe")?;
    // SAFETY: the child runs only `watch`, which makes raw system calls on
    // stack memory (no allocation, no lock, no panic), as a child forked
    // from a process with other threads must.
    match unsafe { nix::unistd::fork() }
        .context("cannot start the watchdog of exec: commands: fork")?
    {
        nix::unistd::ForkResult::Child => {
            drop(write);
            watch(read)
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(read);
            let _ = PIPE.set(write);
            Ok(())
        }
    }
}

/// Tells the watchdog that the group `pgid` runs now.
pub(super) fn started(pgid: Pid) {
    tell(pgid.as_raw_pid());
}

/// Tells the watchdog that the group `pgid` is gone (before it is reaped,
/// so its id cannot have been reused by then).
pub(super) fn ended(pgid: Pid) {
    tell(-pgid.as_raw_pid());
}

fn tell(record: i32) {
    if let Some(pipe) = PIPE.get() {
        // Four bytes are written whole (under PIPE_BUF), even with several
        // workers writing at once. A watchdog gone is no reason to fail an
        // item (and Rust ignores SIGPIPE).
        let _ = rustix::io::write(pipe, &record.to_le_bytes());
    }
}

/// The watchdog's life: keep the list of live groups until the pipe ends,
/// then kill them all, then itself (without running any exit handler of a
/// process it is a copy of).
fn watch(pipe: OwnedFd) -> ! {
    // Nothing batchproc had open stays open here (a socket, a pipe whose
    // reader waits for its end, another watchdog's pipe), but the pipe.
    let keep = pipe.as_raw_fd() as u32;
    // SAFETY: every descriptor of this copy is its own to close, and
    // close_range touches no memory (rustix and nix have no wrapper).
    let closed = unsafe {
        (keep == 0 || libc::close_range(0, keep - 1, 0) == 0)
            && libc::close_range(keep + 1, u32::MAX, 0) == 0
    };
    if !closed {
        // Kernels before 5.9: the usual range, one by one.
        for fd in (0..4096).filter(|fd| *fd != keep) {
            // SAFETY: as above; closing a descriptor that is not open fails harmlessly.
            unsafe { rustix::io::close(fd as i32) };
        }
    }
    // Its own session: a Ctrl-C at the terminal is for batchproc, and a
    // handler batchproc installed must never run in this copy.
    let _ = rustix::process::setsid();
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        // SAFETY: restoring the default action installs no handler.
        let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    }
    let mut groups = [0i32; MOST_GROUPS];
    let mut live = 0usize;
    let mut buf = [0u8; 4096];
    let mut have = 0usize;
    while let Some(space) = buf.get_mut(have..) {
        match rustix::io::read(pipe.as_fd(), space) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let whole = have - have % 4;
        for record in buf[..whole].chunks_exact(4) {
            let pgid = i32::from_le_bytes([record[0], record[1], record[2], record[3]]);
            if pgid > 0 && live < MOST_GROUPS {
                groups[live] = pgid;
                live += 1;
            } else if pgid < 0 {
                if let Some(i) = groups[..live].iter().position(|g| *g == -pgid) {
                    live -= 1;
                    groups[i] = groups[live];
                }
            }
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
        // Let records gather rather than wake for each (a command may start
        // every few hundred µs): the pipe holds thousands, and a kill comes
        // at most this much later.
        let pause = rustix::thread::Timespec {
            tv_sec: 0,
            tv_nsec: 5_000_000,
        };
        let _ = rustix::thread::nanosleep(&pause);
    }
    for pgid in &groups[..live] {
        if let Some(pgid) = Pid::from_raw(*pgid) {
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
    #[allow(clippy::empty_loop)]
    loop {}
}
