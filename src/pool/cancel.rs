//! The cancellation token every stage of a run and every job of a pool
//! honours: a flag to poll, a channel to select on, a blocking wait and an
//! async one, so that whatever a job is doing it can stop at once.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Why a token was cancelled.
///
/// ```
/// use batchproc::pool::{Cancel, CancelReason};
///
/// // Ctrl-C cancels the signals token; every run's token descends from it.
/// let signals = Cancel::new();
/// let run = signals.child();
/// signals.cancel_with(CancelReason::Interrupted);
/// assert_eq!(run.reason(), Some(CancelReason::Interrupted));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`Cancel::cancel`]: the caller asked for it.
    Cancelled,
    /// A job failed (or panicked) and the pool stopped the rest; in the
    /// command-line tool, also an item under fail-fast or the sink.
    Failed,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl CancelReason {
    fn code(self) -> u8 {
        match self {
            CancelReason::Cancelled => 1,
            CancelReason::Failed => 2,
            CancelReason::Interrupted => 3,
        }
    }

    fn from_code(code: u8) -> Option<CancelReason> {
        match code {
            1 => Some(CancelReason::Cancelled),
            2 => Some(CancelReason::Failed),
            3 => Some(CancelReason::Interrupted),
            _ => None,
        }
    }
}

/// The error of work that stopped because its token was cancelled.
///
/// It converts into [`std::io::Error`] (kind `Interrupted`), [`String`] and
/// any error that takes a `std::error::Error` (`anyhow::Error`,
/// `Box<dyn Error>`), so that a job can write `cx.check()?` whatever its
/// error type, and [`pool()`](super::pool()) can report a cancellation in
/// the job's own error type.
///
/// ```
/// use batchproc::pool::{Cancel, Cancelled};
///
/// let cx = Cancel::new();
/// assert_eq!(cx.check(), Ok(()));
/// cx.cancel();
/// assert_eq!(cx.check(), Err(Cancelled));
/// let io: std::io::Error = Cancelled.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::Interrupted);
/// assert_eq!(String::from(Cancelled), "cancelled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl From<Cancelled> for std::io::Error {
    fn from(e: Cancelled) -> Self {
        std::io::Error::new(std::io::ErrorKind::Interrupted, e)
    }
}

impl From<Cancelled> for String {
    fn from(e: Cancelled) -> Self {
        e.to_string()
    }
}

/// A cancellation token, cheap to clone and share: once cancelled, nothing
/// that holds it should start new work, and long work should stop early.
///
/// Work learns of it in the way that suits it: [`is_cancelled`] or
/// [`check`] between steps, [`wait_timeout`] instead of a sleep, [`done`]
/// in a [`select!`](super::channel::select) beside its own channels, or
/// [`cancelled`] in async code. The first reason given wins.
///
/// A [`child`](Cancel::child) token is cancelled with its parent, but
/// cancelling the child leaves the parent alone: a pool run takes a child
/// of the caller's token, so its own failures stop only itself.
///
/// [`is_cancelled`]: Cancel::is_cancelled
/// [`check`]: Cancel::check
/// [`wait_timeout`]: Cancel::wait_timeout
/// [`done`]: Cancel::done
/// [`cancelled`]: Cancel::cancelled
///
/// ```
/// use batchproc::pool::{Cancel, CancelReason};
///
/// let signals = Cancel::new();
/// let run = signals.child();
/// run.cancel_with(CancelReason::Failed);
/// assert!(run.is_cancelled() && !signals.is_cancelled());
///
/// let next = signals.child();
/// signals.cancel_with(CancelReason::Interrupted);
/// assert_eq!(next.reason(), Some(CancelReason::Interrupted));
/// ```
#[derive(Debug, Clone)]
pub struct Cancel(Arc<Token>);

#[derive(Debug)]
struct Token {
    reason: AtomicU8,
    parent: Option<Cancel>,
    /// Children to wake when this token is cancelled. Weak, so that a
    /// long-lived token does not keep every run's token alive.
    children: Mutex<Vec<Weak<Token>>>,
    /// Dropped when the token (or an ancestor) is cancelled: `done`'s
    /// receiver then reports the channel closed, which wakes every blocking
    /// wait and `select!` on it at once.
    alarm: Mutex<Option<Sender<()>>>,
    done: Receiver<()>,
    /// Wakes async waiters.
    notify: tokio::sync::Notify,
    /// For `poll(2)` beside other descriptors: a pipe made on first use,
    /// whose write end is closed at the cancel (the read end then polls
    /// readable, at end of file).
    pipe: OnceLock<OwnedFd>,
    pipe_writer: Mutex<Option<OwnedFd>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::with_parent(None)
    }
}

impl Cancel {
    /// A token not cancelled yet, with no parent.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_parent(parent: Option<Cancel>) -> Self {
        let (alarm, done) = crossbeam_channel::bounded(0);
        Cancel(Arc::new(Token {
            reason: AtomicU8::new(0),
            parent,
            children: Mutex::new(Vec::new()),
            alarm: Mutex::new(Some(alarm)),
            done,
            notify: tokio::sync::Notify::new(),
            pipe: OnceLock::new(),
            pipe_writer: Mutex::new(None),
        }))
    }

    /// A token cancelled with this one, whose own cancellation does not
    /// reach this one. Its own reason, if it has one, is its reason.
    pub fn child(&self) -> Cancel {
        let child = Self::with_parent(Some(self.clone()));
        {
            let mut children = lock(&self.0.children);
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child.0));
        }
        // Cancelled before the child was listed: `fire` may have missed it.
        if self.is_cancelled() {
            child.fire();
        }
        child
    }

    /// Cancels the token, with [`CancelReason::Cancelled`] unless it was
    /// cancelled already. Returns whether this call cancelled it.
    ///
    /// ```
    /// use batchproc::pool::Cancel;
    ///
    /// let cx = Cancel::new();
    /// assert!(cx.cancel());
    /// assert!(!cx.cancel(), "only the first cancel counts");
    /// assert!(cx.is_cancelled());
    /// ```
    pub fn cancel(&self) -> bool {
        self.cancel_with(CancelReason::Cancelled)
    }

    /// Cancels the token with `reason`, unless it was cancelled already (an
    /// ancestor's cancellation does not count). Returns whether this call
    /// cancelled it: of several failures, the one that did owns the error.
    ///
    /// ```
    /// use batchproc::pool::{Cancel, CancelReason};
    ///
    /// let cx = Cancel::new();
    /// assert!(cx.cancel_with(CancelReason::Interrupted));
    /// assert!(!cx.cancel_with(CancelReason::Failed));
    /// assert_eq!(cx.reason(), Some(CancelReason::Interrupted));
    /// ```
    pub fn cancel_with(&self, reason: CancelReason) -> bool {
        let first = self
            .0
            .reason
            .compare_exchange(0, reason.code(), SeqCst, SeqCst)
            .is_ok();
        if first {
            self.fire();
        }
        first
    }

    /// Wakes everything waiting on this token and its descendants.
    fn fire(&self) {
        drop(lock(&self.0.alarm).take());
        drop(lock(&self.0.pipe_writer).take());
        self.0.notify.notify_waiters();
        let children = std::mem::take(&mut *lock(&self.0.children));
        for child in children.iter().filter_map(Weak::upgrade) {
            Cancel(child).fire();
        }
    }

    /// Whether this token or an ancestor was cancelled.
    ///
    /// ```
    /// use batchproc::pool::Cancel;
    ///
    /// let parent = Cancel::new();
    /// let child = parent.child();
    /// assert!(!child.is_cancelled());
    /// parent.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.reason.load(SeqCst) != 0 || self.0.parent.as_ref().is_some_and(Cancel::is_cancelled)
    }

    /// `Err(Cancelled)` once the token is cancelled: for `?` between the
    /// steps of a long job.
    ///
    /// ```
    /// use batchproc::pool::{Cancel, Cancelled};
    ///
    /// fn steps(cx: &Cancel, done: &mut u32) -> Result<(), Cancelled> {
    ///     for _ in 0..10 {
    ///         cx.check()?;
    ///         *done += 1;
    ///     }
    ///     Ok(())
    /// }
    /// let (cx, mut done) = (Cancel::new(), 0);
    /// cx.cancel();
    /// assert_eq!(steps(&cx, &mut done), Err(Cancelled));
    /// assert_eq!(done, 0);
    /// ```
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Whether this token or one it descends from was cancelled with
    /// [`CancelReason::Interrupted`], even after an earlier failure: the
    /// person asked for the run to end, so nothing should wait any longer.
    ///
    /// ```
    /// use batchproc::pool::{Cancel, CancelReason};
    ///
    /// let signals = Cancel::new();
    /// let run = signals.child();
    /// run.cancel_with(CancelReason::Failed);
    /// assert!(!run.is_interrupted());
    /// signals.cancel_with(CancelReason::Interrupted);
    /// assert!(run.is_interrupted());
    /// assert_eq!(run.reason(), Some(CancelReason::Failed));
    /// ```
    pub fn is_interrupted(&self) -> bool {
        self.0.reason.load(SeqCst) == CancelReason::Interrupted.code()
            || self.0.parent.as_ref().is_some_and(Cancel::is_interrupted)
    }

    /// Why the token was cancelled: its own reason, else its nearest
    /// cancelled ancestor's; None while it is not cancelled.
    ///
    /// ```
    /// use batchproc::pool::{Cancel, CancelReason};
    ///
    /// let cx = Cancel::new();
    /// assert_eq!(cx.reason(), None);
    /// cx.cancel();
    /// assert_eq!(cx.reason(), Some(CancelReason::Cancelled));
    /// ```
    pub fn reason(&self) -> Option<CancelReason> {
        CancelReason::from_code(self.0.reason.load(SeqCst))
            .or_else(|| self.0.parent.as_ref().and_then(Cancel::reason))
    }

    /// Blocks until the token is cancelled.
    ///
    /// ```
    /// use batchproc::pool::Cancel;
    ///
    /// let cx = Cancel::new();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| cx.cancel());
    ///     cx.wait();
    /// });
    /// assert!(cx.is_cancelled());
    /// ```
    pub fn wait(&self) {
        let _ = self.0.done.recv();
    }

    /// Blocks until the token is cancelled or `timeout` has passed, and
    /// says whether it was cancelled: a sleep that ends early on cancel.
    ///
    /// ```
    /// use std::time::Duration;
    /// use batchproc::pool::Cancel;
    ///
    /// let cx = Cancel::new();
    /// assert!(!cx.wait_timeout(Duration::from_millis(1)));
    /// cx.cancel();
    /// assert!(cx.wait_timeout(Duration::from_secs(3600)), "returns at once");
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        !matches!(
            self.0.done.recv_timeout(timeout),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// A channel that nothing is ever sent on, closed once the token is
    /// cancelled: a receive on it then returns (with `Err`) at once, so a
    /// producer or a job can [`select!`](super::channel::select) on it
    /// beside its own channels, as on Go's `ctx.Done()`.
    ///
    /// ```
    /// use batchproc::pool::{channel, Cancel};
    ///
    /// let cx = Cancel::new();
    /// let (tx, rx) = channel::bounded::<u32>(1);
    /// tx.send(1).unwrap();
    /// // The queue is full and nobody reads: the send waits for the cancel.
    /// std::thread::scope(|s| {
    ///     s.spawn(|| cx.cancel());
    ///     channel::select! {
    ///         send(tx, 2) -> _ => panic!("the queue was full"),
    ///         recv(cx.done()) -> _ => assert!(cx.is_cancelled()),
    ///     }
    /// });
    /// # drop(rx);
    /// ```
    pub fn done(&self) -> &Receiver<()> {
        &self.0.done
    }

    /// A descriptor that polls readable once the token is cancelled, for a
    /// `poll(2)` loop over other descriptors (a subprocess's pipes). Made
    /// on first use, close-on-exec.
    pub(crate) fn fd(&self) -> std::io::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.0.pipe.get() {
            return Ok(fd.as_fd());
        }
        let mut writer = lock(&self.0.pipe_writer);
        if self.0.pipe.get().is_none() {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            // Cancelled already: `fire` has been, so the write end goes now.
            if !self.is_cancelled() {
                *writer = Some(write);
            }
            let _ = self.0.pipe.set(read);
        }
        drop(writer);
        // A cancel between the check and the store found no writer to drop.
        if self.is_cancelled() {
            drop(lock(&self.0.pipe_writer).take());
        }
        Ok(self.0.pipe.get().expect("set above").as_fd())
    }

    /// Completes once the token is cancelled: for `tokio::select!` in async
    /// code. The future holds no lock and may be dropped at any time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use batchproc::pool::Cancel;
    ///
    /// let cx = Cancel::new();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let stopped_early = rt.block_on(async {
    ///     let canceller = cx.clone();
    ///     tokio::spawn(async move { canceller.cancel() });
    ///     tokio::select! {
    ///         _ = cx.cancelled() => true,
    ///         _ = tokio::time::sleep(Duration::from_secs(3600)) => false,
    ///     }
    /// });
    /// assert!(stopped_early);
    /// ```
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a cancel in between still wakes it.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the data (a list of weak
/// references, an optional sender) cannot be left half-changed.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
