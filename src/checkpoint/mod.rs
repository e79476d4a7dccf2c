//! Checkpoints: what makes a killed run resumable with each item's record
//! committed exactly once.
//!
//! Items have a place in the source's deterministic order (an [`ItemKey`]).
//! The [`Ledger`] follows them: dispatched, committed. The run's *watermark*
//! is the last key of the contiguous committed prefix; items committed beyond
//! it are kept as checkpoint rows. Every sink batch writes its records, those
//! rows and the new watermark in one transaction ([`CheckpointUpdate`]). On
//! resume the source skips keys at or below the watermark (pruning whole
//! directories) and the few checkpointed keys beyond it.
//!
//! The ledger also bounds the window: the source may run at most `window`
//! items ahead of the watermark, so a resume never loads more than that and
//! one stuck item cannot grow memory without bound.

pub mod store;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pool::Cancel;

/// An item's place in the walk order: the root it was found under, then its
/// path. `PathBuf` orders component by component, which is exactly the order
/// of a depth-first walk whose siblings are sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    pub root: u32,
    pub path: PathBuf,
}

/// How far an earlier attempt of this run got.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    pub watermark: Option<ItemKey>,
    /// Keys committed beyond the watermark.
    pub done: BTreeSet<ItemKey>,
}

/// What a run asks of the bookkeeping when it starts.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub fingerprint: String,
    pub command: String,
    pub table: Option<String>,
    pub resume: bool,
}

/// The run a sink opened: a new one, or an unfinished one continued.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: i64,
    pub resumed: bool,
    pub point: ResumePoint,
    /// Items committed by earlier attempts (the run's `ok` + `failed`).
    pub done_before: u64,
    /// CSV sink: committed length of the CSV file.
    pub csv_length: Option<u64>,
    /// A line for the user (resuming, nothing to resume, resumable run exists).
    pub notice: Option<String>,
}

/// The bookkeeping that commits with one batch of records.
#[derive(Debug, Clone, Default)]
pub struct CheckpointUpdate {
    pub ok: u64,
    pub failed: u64,
    pub watermark: Option<ItemKey>,
    /// Checkpoint rows to add: committed keys beyond the new watermark.
    pub insert: Vec<ItemKey>,
    /// Checkpoint rows the new watermark made redundant.
    pub delete: Vec<ItemKey>,
}

#[derive(Debug, Default)]
struct Tracker {
    /// The furthest key the walk has reached (dispatched or passed as done):
    /// keys beyond it may still come, so the watermark never passes it.
    walked: Option<ItemKey>,
    inflight: BTreeSet<ItemKey>,
    done: BTreeSet<ItemKey>,
    watermark: Option<ItemKey>,
}

/// Shared by the source (which dispatches) and the batcher (which commits).
#[derive(Debug)]
pub struct Ledger {
    tracker: Mutex<Tracker>,
    room: Condvar,
    window: usize,
    /// Walk entries passed over as not regular files, beyond the watermark.
    pub skipped: AtomicU64,
}

impl Ledger {
    pub fn new(point: ResumePoint, window: usize) -> Self {
        Ledger {
            tracker: Mutex::new(Tracker {
                walked: None,
                inflight: BTreeSet::new(),
                done: point.done,
                watermark: point.watermark,
            }),
            room: Condvar::new(),
            window: window.max(1),
            skipped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when an earlier attempt committed this key.
    pub fn is_done(&self, key: &ItemKey) -> bool {
        let t = self.lock();
        t.watermark.as_ref().is_some_and(|w| key <= w) || t.done.contains(key)
    }

    /// The source's check: like [`Ledger::is_done`], and a done key counts
    /// as walked past.
    pub fn pass_done(&self, key: &ItemKey) -> bool {
        let mut t = self.lock();
        let done = t.watermark.as_ref().is_some_and(|w| key <= w) || t.done.contains(key);
        if done && t.walked.as_ref().is_none_or(|w| key > w) {
            t.walked = Some(key.clone());
        }
        done
    }

    /// True when everything under the directory `key` is at or below the
    /// watermark, so the walk need not enter it.
    pub fn is_done_dir(&self, key: &ItemKey) -> bool {
        let t = self.lock();
        t.watermark
            .as_ref()
            .is_some_and(|w| key < w && !(w.root == key.root && w.path.starts_with(&key.path)))
    }

    /// Counts a skipped special file, unless an earlier attempt counted it.
    pub fn skip(&self, key: &ItemKey) {
        if !self.is_done(key) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Registers an item about to be queued, waiting while the window is
    /// full. Returns false if the run was cancelled meanwhile.
    pub fn dispatch(&self, key: ItemKey, cancel: &Cancel) -> bool {
        let mut t = self.lock();
        while t.inflight.len() + t.done.len() >= self.window {
            if cancel.is_cancelled() {
                return false;
            }
            t = self
                .room
                .wait_timeout(t, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        t.walked = Some(key.clone());
        t.inflight.insert(key);
        true
    }

    /// Plans the bookkeeping for committing `keys` (with `ok`/`failed`
    /// counts) without changing the ledger: the batch may yet fail.
    pub fn plan(&self, keys: &[ItemKey], ok: u64, failed: u64) -> CheckpointUpdate {
        let t = self.lock();
        let committed: BTreeSet<&ItemKey> = keys.iter().collect();
        let floor = t.inflight.iter().find(|k| !committed.contains(k));
        // The new watermark is the largest committed key below the first
        // uncommitted one that the walk has reached (it dispatches in order,
        // so anything below that key is committed or was never an item).
        let (Some(walked), floor) = (t.walked.as_ref(), floor) else {
            return CheckpointUpdate {
                ok,
                failed,
                insert: keys.to_vec(),
                delete: Vec::new(),
                watermark: t.watermark.clone(),
            };
        };
        let from_done = match floor {
            Some(f) => t.done.range(..f).next_back(),
            None => t.done.range(..=walked).next_back(),
        };
        let from_batch = committed
            .iter()
            .copied()
            .rfind(|k| floor.is_none_or(|f| *k < f) && *k <= walked);
        let candidate = from_done.into_iter().chain(from_batch).max();
        let watermark = match (candidate, &t.watermark) {
            (Some(c), Some(w)) if c > w => Some(c.clone()),
            (Some(c), None) => Some(c.clone()),
            (_, w) => w.clone(),
        };
        let beyond = |k: &ItemKey| watermark.as_ref().is_none_or(|w| k > w);
        let delete = match &watermark {
            Some(w) => t.done.range(..=w).cloned().collect(),
            None => Vec::new(),
        };
        CheckpointUpdate {
            ok,
            failed,
            delete,
            insert: keys.iter().filter(|k| beyond(k)).cloned().collect(),
            watermark,
        }
    }

    /// Records that a planned update was committed.
    pub fn apply(&self, keys: &[ItemKey], update: &CheckpointUpdate) {
        let mut t = self.lock();
        for k in keys {
            t.inflight.remove(k);
        }
        for k in &update.delete {
            t.done.remove(k);
        }
        t.done.extend(update.insert.iter().cloned());
        t.watermark = update.watermark.clone();
        drop(t);
        self.room.notify_all();
    }
}

/// A stable digest of what gives a run's results their meaning.
pub fn fingerprint(parts: &[(&str, String)]) -> String {
    let mut h = Sha256::new();
    for (name, value) in parts {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces the password of any `scheme://user:password@host` in `text` with `***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#', ' ']).unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].find(':') {
                Some(colon) => {
                    out.push_str(&authority[..=colon]);
                    out.push_str("***");
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// The command line as the user typed it, shell-quoted where needed, with
/// passwords redacted.
pub fn command_line() -> String {
    let mut args = std::env::args_os();
    let program = args.next().map(|p| {
        let p = std::path::PathBuf::from(p);
        p.file_name()
            .map_or(p.clone().into_os_string(), |n| n.to_owned())
    });
    let words: Vec<String> = program
        .into_iter()
        .chain(args)
        .map(|a| {
            let s = a.to_string_lossy();
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
            if plain {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        })
        .collect();
    redact(&words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> ItemKey {
        ItemKey {
            root: 0,
            path: p.into(),
        }
    }

    #[test]
    fn path_order_is_walk_order() {
        // A depth-first walk with sorted siblings visits a/b before a.txt.
        assert!(key("d/a/b") < key("d/a.txt"));
        assert!(key("d/a.txt") < key("d/b"));
    }

    #[test]
    fn watermark_advances_only_over_a_contiguous_prefix() {
        let ledger = Ledger::new(ResumePoint::default(), 100);
        let cancel = Cancel::new();
        for p in ["d/1", "d/2", "d/3", "d/4"] {
            assert!(ledger.dispatch(key(p), &cancel));
        }
        // 2 and 4 finish first: no prefix yet, both become checkpoint rows.
        let batch = [key("d/2"), key("d/4")];
        let u = ledger.plan(&batch, 2, 0);
        assert_eq!(u.watermark, None);
        assert_eq!(u.insert, batch);
        ledger.apply(&batch, &u);
        // 1 finishes: the prefix is 1..2; row for 2 is deleted, 4 stays.
        let u = ledger.plan(&[key("d/1")], 1, 0);
        assert_eq!(u.watermark, Some(key("d/2")));
        assert_eq!(u.delete, [key("d/2")]);
        assert!(u.insert.is_empty());
        ledger.apply(&[key("d/1")], &u);
        // 3 finishes: everything dispatched is done, watermark jumps to 4.
        let u = ledger.plan(&[key("d/3")], 1, 0);
        assert_eq!(u.watermark, Some(key("d/4")));
        assert_eq!(u.delete, [key("d/4")]);
        ledger.apply(&[key("d/3")], &u);
        assert!(ledger.is_done(&key("d/3")) && !ledger.is_done(&key("d/5")));
        assert!(ledger.is_done_dir(&key("d/0")) && !ledger.is_done_dir(&key("d")));
    }

    #[test]
    fn watermark_never_passes_keys_not_yet_walked() {
        // An earlier attempt committed d/2 and d/9 beyond its watermark d/1.
        let point = ResumePoint {
            watermark: Some(key("d/1")),
            done: [key("d/2"), key("d/9")].into(),
        };
        let ledger = Ledger::new(point, 100);
        let cancel = Cancel::new();
        assert!(ledger.pass_done(&key("d/2")));
        assert!(!ledger.pass_done(&key("d/3")));
        assert!(ledger.dispatch(key("d/3"), &cancel));
        // d/3 commits; d/4..d/8 have not been walked yet, so d/9 stays a row.
        let u = ledger.plan(&[key("d/3")], 1, 0);
        assert_eq!(u.watermark, Some(key("d/3")));
        assert_eq!(u.delete, [key("d/2")]);
        ledger.apply(&[key("d/3")], &u);
        assert!(ledger.is_done(&key("d/9")));
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("x --sink postgres://bob:s3cr%40t@db:5432/w?sslmode=require y"),
            "x --sink postgres://bob:***@db:5432/w?sslmode=require y"
        );
        assert_eq!(
            redact("sqlite:out.db postgres://bob@db/w"),
            "sqlite:out.db postgres://bob@db/w"
        );
    }
}
