//! Fail-fast ordered map over an iterator, streaming each result in input
//! order to a callback; [`super::try_map`] is built on it.
//!
//! The calling thread coordinates: it pulls items one at a time and hands
//! each to an idle worker through a rendezvous channel, so nothing is taken
//! from the iterator before a worker (and window space) is ready for it, and
//! the iterator itself never crosses threads. Results come back tagged with
//! their index and wait in a reorder buffer until their turn.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::Builder;

use crossbeam_channel::{Receiver, Select, Sender};

/// What became of one item handed to a worker.
enum Done<R, E> {
    Ok(R),
    /// The first failure of the run.
    Err(E),
    /// Not run (the run had already failed), or failed after another did.
    Dropped,
    Panicked(Box<dyn Any + Send>),
}

/// Runs `f` on every item of `input` with at most `workers` calls at once,
/// and passes each result to `each`, on the calling thread, in input order.
///
/// At most `window` items are taken from `input` ahead of the oldest result
/// not yet passed on, which bounds the reorder buffer; a window smaller than
/// `workers` leaves workers idle, and one slow item stalls the rest once the
/// window fills behind it.
///
/// The first error, from `f` or `each`, in time, cancels the run: items not
/// yet started are never started, `each` is not called again, and the error
/// is returned once the calls in flight have finished. A panic in `f` stops
/// the run too (only once the panic hook has run, so a few more items may
/// start) and is then resumed on the calling thread.
///
/// `f` runs on scoped threads, so it may borrow; it must be `Sync`. If no
/// thread can be spawned at all, everything runs on the calling thread.
///
/// ```
/// use batchproc::pool::try_for_each_ordered;
///
/// let mut lines = Vec::new();
/// let squares = try_for_each_ordered(
///     4,
///     16,
///     1..=5u64,
///     |n| Ok::<_, String>(n * n),
///     |sq| {
///         lines.push(sq.to_string());
///         Ok(())
///     },
/// );
/// assert_eq!(squares, Ok(()));
/// assert_eq!(lines, ["1", "4", "9", "16", "25"]);
///
/// let failed = try_for_each_ordered(2, 4, 0.., |n: u64| {
///     if n == 7 { Err(format!("item {n}")) } else { Ok(n) }
/// }, |_| Ok(()));
/// assert_eq!(failed, Err("item 7".to_string()));
/// ```
pub fn try_for_each_ordered<T, R, E, F, C>(
    workers: usize,
    window: usize,
    input: impl IntoIterator<Item = T>,
    f: F,
    mut each: C,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<R, E> + Sync,
    C: FnMut(R) -> Result<(), E>,
{
    let stop = AtomicBool::new(false);
    let (error, panicked) = std::thread::scope(|scope| {
        // Created in the scope so that they are dropped before it joins:
        // closing `item_tx` is what tells idle workers to exit.
        let (item_tx, item_rx) = crossbeam_channel::bounded::<(usize, T)>(0);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut spawned = 0;
        for _ in 0..workers.max(1) {
            let (item_rx, done_tx, f, stop) = (item_rx.clone(), done_tx.clone(), &f, &stop);
            let worker = move || work(&item_rx, &done_tx, f, stop);
            if Builder::new().spawn_scoped(scope, worker).is_err() {
                break;
            }
            spawned += 1;
        }
        if spawned == 0 {
            let error = input.into_iter().try_for_each(|t| f(t).and_then(&mut each));
            return (error.err(), None);
        }
        // Workers alone hold these now: if they all die, the channels say so.
        drop((item_rx, done_tx));
        let mut order = Coordinator {
            stop: &stop,
            window: window.max(1),
            each: &mut each,
            next: 0,
            delivered: 0,
            reorder: VecDeque::new(),
            error: None,
            panicked: None,
        };
        order.run(input.into_iter(), &item_tx, &done_rx);
        (order.error, order.panicked)
    });
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
    error.map_or(Ok(()), Err)
}

fn work<T, R, E>(
    items: &Receiver<(usize, T)>,
    done: &Sender<(usize, Done<R, E>)>,
    f: impl Fn(T) -> Result<R, E>,
    stop: &AtomicBool,
) {
    for (index, item) in items {
        // Checked after receiving: the coordinator may hand out an item just
        // as another worker fails.
        let outcome = if stop.load(SeqCst) {
            Done::Dropped
        } else {
            match panic::catch_unwind(AssertUnwindSafe(|| f(item))) {
                Ok(Ok(r)) => Done::Ok(r),
                // Whoever raises the flag first owns the error.
                Ok(Err(e)) if !stop.swap(true, SeqCst) => Done::Err(e),
                Ok(Err(_)) => Done::Dropped,
                Err(payload) => {
                    stop.store(true, SeqCst);
                    Done::Panicked(payload)
                }
            }
        };
        if done.send((index, outcome)).is_err() {
            return;
        }
    }
}

/// The calling thread's side of a run.
struct Coordinator<'a, R, E, C> {
    stop: &'a AtomicBool,
    window: usize,
    each: &'a mut C,
    /// Index of the next item to take from the input.
    next: usize,
    /// Results passed to `each`; also the index of `reorder[0]`.
    delivered: usize,
    reorder: VecDeque<Option<R>>,
    error: Option<E>,
    panicked: Option<Box<dyn Any + Send>>,
}

impl<R, E, C: FnMut(R) -> Result<(), E>> Coordinator<'_, R, E, C> {
    fn run<T>(
        &mut self,
        mut input: impl Iterator<Item = T>,
        items: &Sender<(usize, T)>,
        done: &Receiver<(usize, Done<R, E>)>,
    ) {
        let (mut pending, mut exhausted, mut in_flight) = (None, false, 0usize);
        loop {
            let stopped = self.stop.load(SeqCst);
            if stopped {
                pending = None;
            } else if pending.is_none() && !exhausted && self.next - self.delivered < self.window {
                pending = input.next().map(|t| (self.next, t));
                self.next += usize::from(pending.is_some());
                exhausted = pending.is_none();
            }
            // Without a pending item the window is not full of finished
            // results (those would have been delivered), so in_flight > 0
            // unless the run is over.
            if pending.is_none() && in_flight == 0 {
                return;
            }
            let mut select = Select::new();
            let recv = select.recv(done);
            if pending.is_some() {
                select.send(items);
            }
            let op = select.select();
            if op.index() != recv {
                let item = pending.take().expect("send is offered only when pending");
                if op.send(items, item).is_err() {
                    return;
                }
                in_flight += 1;
                continue;
            }
            let Ok((index, outcome)) = op.recv(done) else {
                return;
            };
            in_flight -= 1;
            match outcome {
                Done::Ok(r) => self.store(index, r),
                Done::Err(e) => self.error = Some(e),
                Done::Dropped => {}
                Done::Panicked(payload) => {
                    self.panicked.get_or_insert(payload);
                }
            }
            self.deliver();
        }
    }

    fn store(&mut self, index: usize, result: R) {
        let slot = index - self.delivered;
        if self.reorder.len() <= slot {
            self.reorder.resize_with(slot + 1, || None);
        }
        self.reorder[slot] = Some(result);
    }

    fn deliver(&mut self) {
        while !self.stop.load(SeqCst) {
            let Some(result) = self.reorder.front_mut().and_then(Option::take) else {
                return;
            };
            self.reorder.pop_front();
            self.delivered += 1;
            if let Err(e) = (self.each)(result) {
                if !self.stop.swap(true, SeqCst) {
                    self.error = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::testing::jitter;
    use std::cell::Cell;

    #[test]
    fn delivers_in_input_order_within_the_window() {
        let window = 6;
        let pulled = Cell::new(0usize);
        let mut delivered = Vec::new();
        let input = (0..400u64).inspect(|_| pulled.set(pulled.get() + 1));
        let ran = try_for_each_ordered(
            4,
            window,
            input,
            |i| {
                std::thread::sleep(jitter(i, 3));
                Ok::<_, ()>(i)
            },
            |i| {
                // The one being delivered is still counted as pulled.
                assert!(pulled.get() - delivered.len() <= window);
                delivered.push(i);
                Ok(())
            },
        );
        assert_eq!(ran, Ok(()));
        assert_eq!(delivered, (0..400).collect::<Vec<_>>());
    }

    #[test]
    fn an_error_from_each_stops_the_run() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let mut seen = Vec::new();
        let ran = try_for_each_ordered(
            2,
            4,
            0u32..,
            |i| {
                calls.fetch_add(1, SeqCst);
                Ok(i)
            },
            |i| {
                seen.push(i);
                if i == 10 {
                    Err("full")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(ran, Err("full"));
        assert_eq!(seen, (0..=10).collect::<Vec<_>>());
        // Nothing is pulled beyond the window.
        assert!(calls.load(SeqCst) <= 11 + 4);
    }

    #[test]
    fn a_window_of_one_runs_one_at_a_time() {
        let ran = try_for_each_ordered(8, 1, 0..50u64, Ok::<_, ()>, |_| Ok(()));
        assert_eq!(ran, Ok(()));
    }
}
