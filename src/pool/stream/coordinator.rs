//! The calling thread's side of an ordered map: it takes the input in
//! chunks sized by the items' cost, queues them for the workers, takes back
//! what a worker gave back, and passes results on in input order.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use super::{Done, End, CHUNK_TIME, MAX_CHUNK};
use crate::pool::{Cancel, CancelReason};

/// The calling thread's side of a run.
pub(super) struct Coordinator<'a, T, R, E, C> {
    run: &'a Cancel,
    window: usize,
    /// The longest chunk the window allows: half a window's share per worker.
    most: usize,
    /// The length of the next chunk, from the last chunk's cost per item.
    len: usize,
    /// Every item was taken and its result passed on.
    complete: bool,
    each: C,
    /// Index of the next item to take from the input.
    next: usize,
    /// Results passed to `each`: also the index the next to pass on has.
    delivered: usize,
    /// Finished chunks waiting for their turn, by their first item's index.
    finished: BTreeMap<usize, Vec<R>>,
    /// Items a worker gave back, by index: handed out before new ones.
    given_back: VecDeque<(usize, Vec<T>)>,
    error: Option<E>,
    panicked: Option<Box<dyn Any + Send>>,
}

impl<'a, T, R, E, C: FnMut(Vec<R>) -> Result<(), E>> Coordinator<'a, T, R, E, C> {
    pub(super) fn new(run: &'a Cancel, window: usize, workers: usize, each: C) -> Self {
        Coordinator {
            run,
            window: window.max(1),
            most: (window / (2 * workers)).clamp(1, MAX_CHUNK),
            len: 1,
            complete: false,
            each,
            next: 0,
            delivered: 0,
            finished: BTreeMap::new(),
            given_back: VecDeque::new(),
            error: None,
            panicked: None,
        }
    }

    /// The first error, the first panic, and whether every item's result
    /// was passed on.
    pub(super) fn outcome(self) -> (Option<E>, Option<Box<dyn Any + Send>>, bool) {
        (self.error, self.panicked, self.complete)
    }

    pub(super) fn run(
        &mut self,
        mut input: impl Iterator<Item = T>,
        chunks: &Sender<(usize, Vec<T>)>,
        done: &Receiver<Done<T, R, E>>,
    ) {
        let (mut pending, mut exhausted, mut in_flight) = (None, false, 0usize);
        loop {
            // Results already back go on before the input is read again: a
            // slow input must not hold back the results of what came before.
            while in_flight > 0 {
                let Ok(finished) = done.try_recv() else {
                    break;
                };
                in_flight -= 1;
                self.finish(finished);
            }
            self.deliver();
            if self.run.is_cancelled() {
                pending = None;
                self.given_back.clear();
            } else if pending.is_none() {
                pending = self.given_back.pop_front();
                if pending.is_none() && !exhausted {
                    pending = self.take(&mut input);
                    exhausted = pending.is_none() && self.next - self.delivered < self.window;
                }
            }
            // Without a pending chunk the window is not full of finished
            // results (those would have been passed on), so in_flight > 0
            // unless the run is over.
            if pending.is_none() && in_flight == 0 {
                // An input that says it is empty need not be read to its end.
                let ended = exhausted || input.size_hint().1 == Some(0);
                self.complete = ended && self.delivered == self.next && self.error.is_none();
                return;
            }
            if let Some(chunk) = pending.take() {
                match chunks.try_send(chunk) {
                    Ok(()) => {
                        in_flight += 1;
                        continue;
                    }
                    Err(TrySendError::Full(chunk)) => pending = Some(chunk),
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            let mut select = Select::new();
            let recv = select.recv(done);
            if pending.is_some() {
                select.send(chunks);
            }
            let op = select.select();
            if op.index() != recv {
                let chunk = pending.take().expect("send is offered only when pending");
                if op.send(chunks, chunk).is_err() {
                    return;
                }
                in_flight += 1;
                continue;
            }
            let Ok(finished) = op.recv(done) else {
                return;
            };
            in_flight -= 1;
            self.finish(finished);
            self.deliver();
        }
    }

    /// The next chunk from the input, within the window.
    ///
    /// An input that says it holds the whole chunk, or knows its exact
    /// length (a slice, a range), is taken in one go. Any other may be slow (a channel, a file): a chunk
    /// of it ends once filling it has taken longer than its work would, so
    /// that items already here do not wait for later ones, and at a cancel.
    fn take(&mut self, input: &mut impl Iterator<Item = T>) -> Option<(usize, Vec<T>)> {
        let room = self.window - (self.next - self.delivered);
        let want = self.len.min(room);
        let (lower, upper) = input.size_hint();
        let chunk: Vec<T> = if lower >= want || upper == Some(lower) {
            input.by_ref().take(want).collect()
        } else {
            let started = Instant::now();
            let mut chunk = Vec::new();
            for item in input.by_ref().take(want) {
                chunk.push(item);
                if started.elapsed() > CHUNK_TIME || self.run.is_cancelled() {
                    break;
                }
            }
            chunk
        };
        if chunk.is_empty() {
            return None;
        }
        let base = self.next;
        self.next += chunk.len();
        Some((base, chunk))
    }

    fn finish(&mut self, done: Done<T, R, E>) {
        let ran = done.results.len();
        if ran > 0 {
            let each = done.took.as_nanos() / ran as u128;
            let len = CHUNK_TIME.as_nanos() / each.max(1);
            self.len = usize::try_from(len).map_or(self.most, |len| len.clamp(1, self.most));
        }
        match done.end {
            End::Ran => {
                if !done.rest.is_empty() {
                    self.give_back(done.base + ran, done.rest);
                }
                if ran > 0 {
                    self.finished.insert(done.base, done.results);
                }
            }
            End::Failed(e) => self.error = Some(e),
            End::Dropped => {}
            End::Panicked(payload) => {
                self.panicked.get_or_insert(payload);
            }
        }
    }

    /// Splits what a worker gave back into chunks of the current length,
    /// to go out again ahead of anything given back later or not yet taken.
    fn give_back(&mut self, base: usize, rest: Vec<T>) {
        let mut parts = Vec::new();
        let mut rest = rest.into_iter();
        let mut at = base;
        loop {
            let part: Vec<T> = rest.by_ref().take(self.len).collect();
            if part.is_empty() {
                break;
            }
            let len = part.len();
            parts.push((at, part));
            at += len;
        }
        for part in parts.into_iter().rev() {
            self.given_back.push_front(part);
        }
    }

    fn deliver(&mut self) {
        while !self.run.is_cancelled() {
            let Some(results) = self.finished.remove(&self.delivered) else {
                return;
            };
            self.delivered += results.len();
            if let Err(e) = (self.each)(results) {
                if self.run.cancel_with(CancelReason::Failed) {
                    self.error = Some(e);
                }
            }
        }
    }
}
