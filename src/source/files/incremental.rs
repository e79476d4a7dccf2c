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
//! Memory: one hash map entry per row of the table, held for the run: the
//! path's bytes in an allocation of their own, size, mtime and two flags
//! (measured: 100,000 rows of 45-byte paths add about 15 MB of peak RSS,
//! some 150 bytes a row). Reading them takes a few percent of a re-run.

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
    rows: HashMap<Box<[u8]>, Row>,
    /// How finely the sink keeps a time, in nanoseconds.
    resolution: i64,
    /// The walk met a directory it could not read: rows under it were not
    /// met, and none can be told gone.
    unreadable: AtomicBool,
}

#[derive(Debug)]
struct Row {
    size: Option<i64>,
    /// Nanoseconds since the epoch; None when unreadable.
    mtime: Option<i64>,
    current: bool,
    /// The walk met this path (as anything but a directory).
    met: AtomicBool,
}

impl Previous {
    /// How finely the sink keeps a time, in nanoseconds (1 until said).
    pub(crate) fn set_resolution(&mut self, nanos: i64) {
        self.resolution = nanos.max(1);
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
            },
        );
        self.rows.insert(row.0, row.1);
    }

    /// Whether the row of the file at `path` is current; marks it met.
    fn unchanged(&self, path: &Path, meta: &Metadata) -> bool {
        let Some(row) = self.rows.get(path.as_os_str().as_bytes()) else {
            return false;
        };
        row.met.store(true, Ordering::Relaxed);
        let mtime = meta
            .mtime()
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(meta.mtime_nsec()));
        row.current
            && row.size == Some(meta.len() as i64)
            // The sink may have kept the time truncated or rounded to its
            // resolution: within it is the same time.
            && matches!((row.mtime, mtime), (Some(a), Some(b)) if (a - b).abs() < self.resolution)
    }

    /// The walk met `path`, as something other than a directory.
    fn met(&self, path: &Path) {
        if let Some(row) = self.rows.get(path.as_os_str().as_bytes()) {
            row.met.store(true, Ordering::Relaxed);
        }
    }
}

impl FileSource {
    /// Whether the file's earlier row is current (marking it met).
    pub(super) fn unchanged(&self, path: &Path, meta: &Metadata) -> bool {
        self.previous
            .as_ref()
            .is_some_and(|p| p.unchanged(path, meta))
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
