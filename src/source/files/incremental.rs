//! `--incremental` and `--prune` for the files source: the rows an earlier
//! run left in the sink table ([`Previous`], read once at the start by
//! `Sink::earlier_rows`), which the walk asks whether a file's row is still
//! current, and the rows of files the walk no longer meets.
//!
//! A row is current when its size and mtime are the file's (mtime at the
//! sink's resolution: Postgres keeps microseconds), it was written without
//! an error and it holds every column this run's processors write. Such a
//! file is not opened, processed nor written again. Columns of a kind, not
//! of a command: a row `exec:a` wrote is current for `exec:b` too.
//!
//! The poison ledger rides on the same rows: a file whose row holds an
//! error at its current size and mtime has failed `failures` consecutive
//! runs; the walk hands that count on with the item ([`Tally`]), so that a
//! failure writes it plus one, and passes the file as quarantined once it
//! reached `--max-failures` (unless `--retry-failed`). A failure the
//! running run itself counted (an earlier attempt of it, before a kill or
//! an interrupt: `failed_run` is this run) is not counted again.
//!
//! Memory: one hash map entry per row of the table, held for the run: the
//! path's bytes in an allocation of their own, size, mtime and two flags
//! (measured: 100,000 rows of 45-byte paths add about 15 MB of peak RSS,
//! some 150 bytes a row), and for failed rows their count and error.
//! Reading them takes a few percent of a re-run.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::walk::{FileItem, WalkError};
use super::FileSource;
use crate::checkpoint::ItemKey;
use crate::record::Value;
use crate::sink::sql::EarlierRow;

/// The rows of an earlier run, by path.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    /// foldhash, not std's SipHash: the walk looks up every file here, and
    /// SipHash was 13% of an unchanged re-run (paths are not attacker-chosen
    /// keys worth SipHash's flood resistance: the sink's own rows).
    rows: HashMap<Box<[u8]>, Row, foldhash::fast::RandomState>,
    /// How finely the sink keeps a time, in nanoseconds.
    resolution: i64,
    /// The walk met a directory it could not read: rows under it were not
    /// met, and none can be told gone.
    unreadable: AtomicBool,
    /// This run's id (None without run records): failures it counted
    /// already are not counted again.
    run: Option<i64>,
    /// Consecutive failed runs after which a file is quarantined; None:
    /// never (`--retry-failed`, or fail-fast).
    quarantine_at: Option<i64>,
}

#[derive(Debug)]
struct Row {
    size: Option<i64>,
    /// Nanoseconds since the epoch; None when unreadable.
    mtime: Option<i64>,
    current: bool,
    /// The walk met this path (as anything but a directory).
    met: AtomicBool,
    /// Only for a row that holds an error.
    failed: Option<Box<Failed>>,
}

#[derive(Debug)]
struct Failed {
    failures: i64,
    failed_run: Option<i64>,
    error: String,
}

/// What a failure of this item writes in the ledger's columns: the count
/// of consecutive failed runs before this one, and this run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) before: i64,
    pub(crate) run: Option<i64>,
}

/// What the walk makes of a file with an earlier row.
pub(crate) enum Verdict {
    /// Its row is current: not opened.
    Unchanged,
    /// It failed in `failures` consecutive runs, as it is now: not opened.
    Quarantined { failures: i64, error: String },
    /// To be processed; a failure counts from `Tally`.
    Process(Tally),
}

impl Previous {
    /// How finely the sink keeps a time, in nanoseconds (1 until said).
    pub(crate) fn set_resolution(&mut self, nanos: i64) {
        self.resolution = nanos.max(1);
    }

    /// This run's id, once its run row exists.
    pub(crate) fn set_run(&mut self, run: Option<i64>) {
        self.run = run;
    }

    /// Quarantine files after `failures` consecutive failed runs (None: never).
    pub(crate) fn quarantine_at(&mut self, failures: Option<u32>) {
        self.quarantine_at = failures.map(i64::from);
    }

    pub(crate) fn insert(&mut self, row: EarlierRow) {
        let mtime = row
            .mtime
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .and_then(|t| t.timestamp_nanos_opt());
        let row = (
            row.path.into_boxed_slice(),
            Row {
                size: row.size,
                mtime,
                current: row.current,
                met: AtomicBool::new(false),
                failed: row.error.map(|error| {
                    Box::new(Failed {
                        failures: row.failures.unwrap_or(0).max(0),
                        failed_run: row.failed_run,
                        error,
                    })
                }),
            },
        );
        self.rows.insert(row.0, row.1);
    }

    /// What to do with the file at `path`; marks its row met.
    fn verdict(&self, path: &Path, meta: &Metadata) -> Verdict {
        let Some(row) = self.rows.get(path.as_os_str().as_bytes()) else {
            return Verdict::Process(self.fresh());
        };
        row.met.store(true, Ordering::Relaxed);
        if !self.same(row, meta) {
            return Verdict::Process(self.fresh());
        }
        if row.current {
            return Verdict::Unchanged;
        }
        let tally = self.tally(row);
        match (&row.failed, self.quarantine_at) {
            (Some(f), Some(at)) if tally.before >= at => Verdict::Quarantined {
                failures: tally.before,
                error: f.error.clone(),
            },
            _ => Verdict::Process(tally),
        }
    }

    /// The count a failure of the file at `path` (with `meta` if known)
    /// starts from, when no verdict was asked (an earlier failure retried
    /// by a resume, a place the walk could not read).
    fn tally_of(&self, path: &Path, meta: Option<&Metadata>) -> Tally {
        match (self.rows.get(path.as_os_str().as_bytes()), meta) {
            (Some(row), Some(meta)) if self.same(row, meta) => self.tally(row),
            _ => self.fresh(),
        }
    }

    /// Whether the row was written for this size and mtime.
    fn same(&self, row: &Row, meta: &Metadata) -> bool {
        let mtime = meta
            .mtime()
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(meta.mtime_nsec()));
        row.size == Some(meta.len() as i64)
            // The sink may have kept the time truncated or rounded to its
            // resolution: within it is the same time.
            && matches!((row.mtime, mtime), (Some(a), Some(b)) if (a - b).abs() < self.resolution)
    }

    /// Failed runs before this one, of a row written for the file as it is.
    fn tally(&self, row: &Row) -> Tally {
        let before = match &row.failed {
            // This run counted it already (an attempt before a resume).
            Some(f) if self.run.is_some() && f.failed_run == self.run => f.failures - 1,
            Some(f) => f.failures,
            None => 0,
        };
        Tally {
            before: before.max(0),
            run: self.run,
        }
    }

    fn fresh(&self) -> Tally {
        Tally {
            before: 0,
            run: self.run,
        }
    }

    /// The walk met `path`, as something other than a directory.
    fn met(&self, path: &Path) {
        if let Some(row) = self.rows.get(path.as_os_str().as_bytes()) {
            row.met.store(true, Ordering::Relaxed);
        }
    }
}

impl FileSource {
    /// What the walk does with a file, by its earlier row (marking it met).
    pub(super) fn verdict(&self, path: &Path, meta: &Metadata) -> Verdict {
        match &self.previous {
            Some(p) => p.verdict(path, meta),
            None => Verdict::Process(Tally::default()),
        }
    }

    /// The count a failure of this file starts from (see [`Tally`]).
    pub(super) fn tally(&self, path: &Path, meta: Option<&Metadata>) -> Tally {
        self.previous
            .as_ref()
            .map_or_else(Tally::default, |p| p.tally_of(path, meta))
    }

    /// The walk met something that is not a regular file (a link, a FIFO).
    pub(super) fn met(&self, path: &Path) {
        if let Some(previous) = &self.previous {
            previous.met(path);
        }
    }

    /// The walk could not read `item`'s place: a directory means rows under
    /// it were not met; anything else still exists and was met.
    pub(super) fn met_failure(&self, item: &FileItem) {
        let Some(previous) = &self.previous else {
            return;
        };
        let meta = match self.follow {
            true => std::fs::metadata(&item.path),
            false => std::fs::symlink_metadata(&item.path),
        };
        let directory = match meta {
            Ok(m) => m.is_dir(),
            // Gone (vanished): its row may go. Unknown: assume the worst.
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        };
        match (&item.walk_error, directory) {
            (Some(WalkError::Failed(_)), true) => {
                previous.unreadable.store(true, Ordering::Relaxed)
            }
            _ if std::fs::symlink_metadata(&item.path).is_ok() => previous.met(&item.path),
            _ => {}
        }
    }

    /// `--prune`: the rows the walk covers (under a root, through the
    /// filters, within the depth) but did not meet. A resumed attempt walked
    /// only what lies after the watermark it resumed from: a row at or
    /// before it is gone only if its path no longer holds a file.
    pub(super) fn gone_rows(&self, resumed_after: Option<&ItemKey>) -> Result<Vec<Value>, String> {
        let Some(previous) = &self.previous else {
            return Ok(Vec::new());
        };
        if previous.unreadable.load(Ordering::Relaxed) {
            return Err("the walk could not read every directory".into());
        }
        let mut gone = Vec::new();
        for (bytes, row) in &previous.rows {
            if row.met.load(Ordering::Relaxed) {
                continue;
            }
            let path = PathBuf::from(std::ffi::OsString::from_vec(bytes.to_vec()));
            let Some(root) = self.covers(&path) else {
                continue;
            };
            let before = resumed_after.is_some_and(|w| ItemKey::path(root, &path) <= *w);
            if before && self.still_there(&path) {
                continue;
            }
            gone.push(Value::from_path(&path));
        }
        Ok(gone)
    }

    /// The index of the root whose walk would meet a file at `path`.
    fn covers(&self, path: &Path) -> Option<u32> {
        for (index, root) in self.roots.iter().enumerate() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            // A root given as a file exists, or the run would not start.
            if rel.as_os_str().is_empty()
                || self.max_depth.is_some_and(|d| rel.components().count() > d)
            {
                return None;
            }
            // Excludes prune directories: no part of the way may match.
            let mut part = PathBuf::new();
            for component in rel.components() {
                part.push(component);
                if self.filters.excluded(&part) {
                    return None;
                }
            }
            return self.filters.included(rel).then_some(index as u32);
        }
        None
    }

    fn still_there(&self, path: &Path) -> bool {
        let meta = match self.follow {
            true => std::fs::metadata(path),
            false => std::fs::symlink_metadata(path),
        };
        match meta {
            Ok(m) => !m.is_dir(),
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }
}
