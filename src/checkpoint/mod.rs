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

pub mod postgres;
pub mod sqlite;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pool::Cancel;

/// An item's identity in the source, as checkpointed. Within one run all
/// keys are of one kind, and the source yields them in a deterministic
/// order: for files, `(root index, path)`, where `PathBuf`'s component-wise
/// order is exactly the order of a depth-first walk with sorted siblings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKey {
    Path { root: u32, path: PathBuf },
    Int(i64),
    Text(String),
}

impl ItemKey {
    pub fn path(root: u32, path: impl Into<PathBuf>) -> Self {
        ItemKey::Path {
            root,
            path: path.into(),
        }
    }

    /// The stored form: a small kind tag (the root index for paths, -1 for
    /// integers, -2 for text) and the key's bytes.
    pub fn encode(&self) -> (i64, Vec<u8>) {
        use std::os::unix::ffi::OsStrExt;
        match self {
            ItemKey::Path { root, path } => (*root as i64, path.as_os_str().as_bytes().to_vec()),
            ItemKey::Int(i) => (-1, i.to_string().into_bytes()),
            ItemKey::Text(s) => (-2, s.as_bytes().to_vec()),
        }
    }

    pub fn decode(tag: i64, bytes: Vec<u8>) -> Option<Self> {
        use std::os::unix::ffi::OsStringExt;
        Some(match tag {
            -1 => ItemKey::Int(String::from_utf8(bytes).ok()?.parse().ok()?),
            -2 => ItemKey::Text(String::from_utf8(bytes).ok()?),
            root => ItemKey::Path {
                root: u32::try_from(root).ok()?,
                path: PathBuf::from(std::ffi::OsString::from_vec(bytes)),
            },
        })
    }
}

/// How far an earlier attempt of this run got.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    /// Every item up to and including this key (source order) is committed.
    pub watermark: Option<ItemKey>,
    /// Keys committed beyond the watermark.
    pub done: HashSet<ItemKey>,
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
    /// The batch's items that commit beyond the new watermark (those of
    /// `insert`), by sequence number.
    pub beyond: Vec<Seq>,
}

/// One row of `batchproc runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub status: String,
    pub ok: i64,
    pub failed: i64,
    pub skipped: i64,
    pub attempts: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub table: Option<String>,
    pub command: String,
}

/// An item beyond the watermark, in source order.
#[derive(Debug)]
struct Entry {
    key: ItemKey,
    committed: bool,
    /// Has a checkpoint row (committed beyond the watermark of its time).
    persisted: bool,
}

#[derive(Debug, Default)]
struct Tracker {
    /// Items the source has reached and the watermark has not passed, in
    /// the order the source yielded them: `window[i]` has sequence number
    /// `base + i`. Workers and batches name items by that number, so the
    /// per-item bookkeeping is index arithmetic, not key hashing.
    window: VecDeque<Entry>,
    base: Seq,
    /// Checkpoint rows of an earlier attempt the source has not reached yet.
    resumed: HashSet<ItemKey>,
    watermark: Option<ItemKey>,
}

impl Tracker {
    fn push(&mut self, key: ItemKey, committed: bool) -> Seq {
        self.window.push_back(Entry {
            key,
            committed,
            persisted: committed,
        });
        self.base + self.window.len() as Seq - 1
    }

    fn entry(&mut self, seq: Seq) -> Option<&mut Entry> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.window.get_mut(index)
    }
}

/// An item's place in the source's order within one attempt of a run.
pub type Seq = u64;

/// Shared by the source (which dispatches) and the batcher (which commits).
/// The watermark logic follows the order the source yields items in, so it
/// never compares keys itself (a database's collation may order text keys
/// differently from Rust).
#[derive(Debug)]
pub struct Ledger {
    tracker: Mutex<Tracker>,
    room: Condvar,
    window: usize,
    /// Where the run resumes: the source starts after this key.
    start: Option<ItemKey>,
    /// Walk entries passed over as not regular files.
    pub skipped: AtomicU64,
}

/// What the source should do with an item.
#[derive(Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// Queue it, under this sequence number.
    Go(Seq),
    /// An earlier attempt committed it.
    Done,
    /// The run was cancelled while waiting for room.
    Cancelled,
}

impl Ledger {
    pub fn new(point: ResumePoint, window: usize) -> Self {
        Ledger {
            start: point.watermark.clone(),
            tracker: Mutex::new(Tracker {
                resumed: point.done,
                watermark: point.watermark,
                ..Tracker::default()
            }),
            room: Condvar::new(),
            window: window.max(1),
            skipped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watermark the run resumed from: the source starts after it.
    pub fn resumed_after(&self) -> Option<&ItemKey> {
        self.start.as_ref()
    }

    /// True when an earlier attempt committed this key beyond its watermark.
    pub fn is_checkpointed(&self, key: &ItemKey) -> bool {
        self.lock().resumed.contains(key)
    }

    /// Registers the source's next item (in source order): done already, or
    /// to be queued once the window has room.
    pub fn dispatch(&self, key: ItemKey, cancel: &Cancel) -> Dispatch {
        let mut t = self.lock();
        if !t.resumed.is_empty() && t.resumed.remove(&key) {
            t.push(key, true);
            return Dispatch::Done;
        }
        while t.window.len() >= self.window {
            if cancel.is_cancelled() {
                return Dispatch::Cancelled;
            }
            t = self
                .room
                .wait_timeout(t, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Dispatch::Go(t.push(key, false))
    }

    /// Plans the bookkeeping for committing the items `seqs` without
    /// changing the ledger: the batch may yet fail.
    pub fn plan(&self, seqs: &[Seq]) -> CheckpointUpdate {
        let t = self.lock();
        let mut batch: Vec<Seq> = seqs.to_vec();
        batch.sort_unstable();
        let mut watermark = t.watermark.clone();
        let mut delete = Vec::new();
        // The contiguous prefix: window entries committed before, or in
        // this batch (walked in step with the sorted batch).
        let mut next_in_batch = batch.iter().peekable();
        let mut prefix_end = t.base;
        for (seq, entry) in (t.base..).zip(&t.window) {
            while next_in_batch.next_if(|s| **s < seq).is_some() {}
            let in_batch = next_in_batch.next_if(|s| **s == seq).is_some();
            if !(entry.committed || in_batch) {
                break;
            }
            watermark = Some(entry.key.clone());
            prefix_end = seq + 1;
            if entry.persisted {
                delete.push(entry.key.clone());
            }
        }
        let beyond: Vec<Seq> = batch.into_iter().filter(|s| *s >= prefix_end).collect();
        let insert = beyond
            .iter()
            .filter_map(|s| t.window.get((s - t.base) as usize))
            .map(|e| e.key.clone())
            .collect();
        CheckpointUpdate {
            watermark,
            insert,
            delete,
            beyond,
            ..CheckpointUpdate::default()
        }
    }

    /// Records that a planned update of the items `seqs` was committed.
    pub fn apply(&self, seqs: &[Seq], update: &CheckpointUpdate) {
        let mut t = self.lock();
        for seq in seqs {
            if let Some(entry) = t.entry(*seq) {
                entry.committed = true;
            }
        }
        for seq in &update.beyond {
            if let Some(entry) = t.entry(*seq) {
                entry.persisted = true;
            }
        }
        while t.window.front().is_some_and(|e| e.committed) {
            t.window.pop_front();
            t.base += 1;
        }
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
        ItemKey::path(0, p)
    }

    fn go(ledger: &Ledger, p: &str) -> Seq {
        match ledger.dispatch(key(p), &Cancel::new()) {
            Dispatch::Go(seq) => seq,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn path_order_is_walk_order() {
        // A depth-first walk with sorted siblings visits a/b before a.txt.
        assert!(key("d/a/b") < key("d/a.txt"));
        assert!(key("d/a.txt") < key("d/b"));
    }

    #[test]
    fn keys_round_trip_through_their_stored_form() {
        for k in [key("d/x\ny"), ItemKey::Int(-42), ItemKey::Text("é".into())] {
            let (tag, bytes) = k.encode();
            assert_eq!(ItemKey::decode(tag, bytes), Some(k));
        }
    }

    #[test]
    fn watermark_advances_only_over_a_contiguous_prefix() {
        let ledger = Ledger::new(ResumePoint::default(), 100);
        let [s1, s2, s3, s4] = ["d/1", "d/2", "d/3", "d/4"].map(|p| go(&ledger, p));
        // 4 and 2 finish first: no prefix yet, both become checkpoint rows.
        let u = ledger.plan(&[s4, s2]);
        assert_eq!(u.watermark, None);
        assert_eq!(u.insert, [key("d/2"), key("d/4")]);
        ledger.apply(&[s4, s2], &u);
        // 1 finishes: the prefix is 1..2; row for 2 is deleted, 4 stays.
        let u = ledger.plan(&[s1]);
        assert_eq!(u.watermark, Some(key("d/2")));
        assert_eq!(u.delete, [key("d/2")]);
        assert!(u.insert.is_empty());
        ledger.apply(&[s1], &u);
        // 3 finishes: everything dispatched is done, watermark jumps to 4.
        let u = ledger.plan(&[s3]);
        assert_eq!(u.watermark, Some(key("d/4")));
        assert_eq!(u.delete, [key("d/4")]);
        ledger.apply(&[s3], &u);
        // The window is empty again and numbering goes on.
        assert_eq!(go(&ledger, "d/5"), s4 + 1);
    }

    #[test]
    fn a_batch_spanning_the_prefix_and_beyond_splits() {
        let ledger = Ledger::new(ResumePoint::default(), 100);
        let seqs = ["d/1", "d/2", "d/3", "d/4", "d/5"].map(|p| go(&ledger, p));
        // 1, 2 and 5 commit together while 3 and 4 are in flight.
        let batch = [seqs[4], seqs[0], seqs[1]];
        let u = ledger.plan(&batch);
        assert_eq!(u.watermark, Some(key("d/2")));
        assert_eq!(u.insert, [key("d/5")]);
        assert_eq!(u.beyond, [seqs[4]]);
        assert!(u.delete.is_empty());
        ledger.apply(&batch, &u);
        let u = ledger.plan(&[seqs[3], seqs[2]]);
        assert_eq!(u.watermark, Some(key("d/5")));
        assert_eq!(u.delete, [key("d/5")]);
        assert!(u.insert.is_empty());
    }

    #[test]
    fn resumed_rows_are_skipped_and_cleared_once_passed() {
        // An earlier attempt committed d/2 and d/9 beyond its watermark d/1.
        let point = ResumePoint {
            watermark: Some(key("d/1")),
            done: [key("d/2"), key("d/9")].into(),
        };
        let ledger = Ledger::new(point, 100);
        let cancel = Cancel::new();
        assert_eq!(ledger.resumed_after(), Some(&key("d/1")));
        assert_eq!(ledger.dispatch(key("d/2"), &cancel), Dispatch::Done);
        let s3 = go(&ledger, "d/3");
        // d/3 commits: the watermark passes d/2, whose row goes; d/9 has
        // not been reached, so its row stays and it is still skipped later.
        let u = ledger.plan(&[s3]);
        assert_eq!(u.watermark, Some(key("d/3")));
        assert_eq!(u.delete, [key("d/2")]);
        ledger.apply(&[s3], &u);
        assert!(ledger.is_checkpointed(&key("d/9")));
        assert_eq!(ledger.dispatch(key("d/9"), &cancel), Dispatch::Done);
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
