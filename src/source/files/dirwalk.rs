//! The sorted depth-first walk used when symlinks are not followed: it
//! yields what `walkdir` (`sort_by_file_name`, `follow_links(false)`, a
//! `filter_entry`) yields, in the same order and with the same errors, and
//! exists for speed (issue 14: an `--incremental` re-run is mostly walk).
//!
//! - Each directory's `std::fs::DirEntry`s are kept while its entries are
//!   visited, so a file's metadata comes from `DirEntry::metadata`, which
//!   on Linux is `statx(dirfd, name)` relative to the open directory, as
//!   `find` does. walkdir's `DirEntry::metadata` stats the full path, and
//!   the kernel resolves every component again for every file.
//! - Each listing is sorted by its names' bytes (`OsStr` order, as
//!   walkdir's `sort_by_file_name`) by comparing the paths' bytes, which
//!   share the directory's prefix; walkdir's sorter re-parses both paths
//!   into components on every comparison. (The user time this saves, not
//!   the stat, is most of what a re-run gained: a full-path lookup in a
//!   warm dcache costs little more than one name.)
//!
//! What it keeps of walkdir's behaviour: the root is `lstat`ed and, when
//! it is a link and root links are followed, `stat`ed to decide whether to
//! descend; a directory that cannot be listed is an error with its path,
//! after the directory itself; errors of a listing come before its entries;
//! nothing deeper than `max_depth` is listed; the filter prunes a directory
//! it rejects (only a real directory: a rejected root link is still
//! entered, like walkdir's `skip_current_dir`, which a link does not call).
//!
//! With `--follow`, walkdir still walks (loop detection by device and inode
//! of the ancestors); its entries and errors are wrapped in the same types.

use std::fs::{FileType, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Directories whose `std` entries (and so open descriptors) are kept at
/// once: deeper than this, the oldest level gives up its descriptor and
/// its files are stated by path, so a very deep tree cannot run out of
/// descriptors (walkdir keeps at most 10 open for the same reason).
const MAX_OPEN: usize = 32;

/// One thing the walk met.
pub(super) struct Entry {
    path: PathBuf,
    depth: usize,
    file_type: FileType,
    stat: Stat,
}

/// How to get an entry's metadata.
enum Stat {
    /// Relative to the directory still open in the entry.
    Std(std::fs::DirEntry),
    /// `lstat` of the path (a root, or a level that gave up its descriptor).
    Lstat,
    /// walkdir's (which follows links when it was told to).
    Walkdir(walkdir::DirEntry),
}

impl Entry {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn into_path(self) -> PathBuf {
        self.path
    }

    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    pub(super) fn file_type(&self) -> FileType {
        self.file_type
    }

    pub(super) fn metadata(&self) -> Result<Metadata> {
        match &self.stat {
            Stat::Std(entry) => entry.metadata().map_err(|e| Error::io(&self.path, e)),
            Stat::Lstat => {
                std::fs::symlink_metadata(&self.path).map_err(|e| Error::io(&self.path, e))
            }
            Stat::Walkdir(entry) => entry.metadata().map_err(Error::Walkdir),
        }
    }
}

impl From<walkdir::DirEntry> for Entry {
    fn from(entry: walkdir::DirEntry) -> Self {
        Entry {
            path: entry.path().to_path_buf(),
            depth: entry.depth(),
            file_type: entry.file_type(),
            stat: Stat::Walkdir(entry),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, Error>;

/// Why the walk could not read a place.
#[derive(Debug)]
pub(super) enum Error {
    /// An I/O error, at a path unless reading a listing failed midway.
    Io {
        path: Option<PathBuf>,
        err: std::io::Error,
    },
    Walkdir(walkdir::Error),
}

impl Error {
    fn io(path: &Path, err: std::io::Error) -> Self {
        Error::Io {
            path: Some(path.to_path_buf()),
            err,
        }
    }

    pub(super) fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. } => path.as_deref(),
            Error::Walkdir(e) => e.path(),
        }
    }

    pub(super) fn loop_ancestor(&self) -> Option<&Path> {
        match self {
            Error::Io { .. } => None,
            Error::Walkdir(e) => e.loop_ancestor(),
        }
    }

    pub(super) fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Error::Io { err, .. } => Some(err),
            Error::Walkdir(e) => e.io_error(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { err, .. } => err.fmt(f),
            Error::Walkdir(e) => e.fmt(f),
        }
    }
}

impl From<walkdir::Error> for Error {
    fn from(err: walkdir::Error) -> Self {
        Error::Walkdir(err)
    }
}

/// `OsStr` order of the names of two entries of one listing. Both paths
/// are the directory's path joined with a name (which holds no `/`): the
/// same prefix, then the name, so their bytes order as the names do
/// without finding where the names start (`Path::file_name` would parse
/// components on every comparison).
fn by_name_bytes(a: &Path, b: &Path) -> std::cmp::Ordering {
    a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes())
}

/// A walk of `start` without following links (but a root link, if told).
pub(super) struct Walk<F> {
    start: Option<PathBuf>,
    min_depth: usize,
    max_depth: usize,
    follow_root_links: bool,
    /// walkdir's `filter_entry`: false drops the entry and prunes a directory.
    keep: F,
    /// The listings being visited, deepest last.
    stack: Vec<std::vec::IntoIter<Result<Entry>>>,
    /// The shallowest level that still holds its directory open.
    oldest_open: usize,
}

impl<F: FnMut(&Entry) -> bool> Walk<F> {
    pub(super) fn new(
        start: PathBuf,
        min_depth: usize,
        max_depth: Option<usize>,
        follow_root_links: bool,
        keep: F,
    ) -> Self {
        Walk {
            start: Some(start),
            min_depth,
            max_depth: max_depth.unwrap_or(usize::MAX),
            follow_root_links,
            keep,
            stack: Vec::new(),
            oldest_open: 0,
        }
    }

    /// Lists the directory `dir` (at `depth`): errors first, then the
    /// entries by name.
    fn push(&mut self, dir: &Path, depth: usize) {
        if depth >= self.max_depth {
            return;
        }
        if self.stack.len() - self.oldest_open >= MAX_OPEN {
            for entry in self.stack[self.oldest_open]
                .as_mut_slice()
                .iter_mut()
                .flatten()
            {
                entry.stat = Stat::Lstat;
            }
            self.oldest_open += 1;
        }
        let listing = match std::fs::read_dir(dir) {
            Err(err) => vec![Err(Error::io(dir, err))],
            Ok(read) => {
                let mut errors = Vec::new();
                let mut entries = Vec::new();
                for entry in read {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(err) => {
                            errors.push(Err(Error::Io { path: None, err }));
                            continue;
                        }
                    };
                    let path = entry.path();
                    match entry.file_type() {
                        Ok(file_type) => entries.push(Entry {
                            path,
                            depth: depth + 1,
                            file_type,
                            stat: Stat::Std(entry),
                        }),
                        Err(err) => errors.push(Err(Error::io(&path, err))),
                    }
                }
                entries.sort_unstable_by(|a, b| by_name_bytes(&a.path, &b.path));
                errors.extend(entries.into_iter().map(Ok));
                errors
            }
        };
        self.stack.push(listing.into_iter());
    }

    /// The root: what walkdir's `DirEntry::from_path(0, start, false)` and
    /// `handle_entry` make of it.
    fn root(&mut self, start: PathBuf) -> Option<Result<Entry>> {
        let meta = match std::fs::symlink_metadata(&start) {
            Ok(meta) => meta,
            Err(err) => return Some(Err(Error::io(&start, err))),
        };
        let entry = Entry {
            path: start,
            depth: 0,
            file_type: meta.file_type(),
            stat: Stat::Lstat,
        };
        let descend = if entry.file_type.is_dir() {
            true
        } else if entry.file_type.is_symlink() && self.follow_root_links {
            match std::fs::metadata(&entry.path) {
                Ok(meta) => meta.is_dir(),
                Err(err) => return Some(Err(Error::io(&entry.path, err))),
            }
        } else {
            false
        };
        if self.min_depth > 0 {
            if descend {
                self.push(&entry.path, 0);
            }
            return None;
        }
        let keep = (self.keep)(&entry);
        if descend && (keep || !entry.file_type.is_dir()) {
            self.push(&entry.path, 0);
        }
        keep.then_some(Ok(entry))
    }
}

impl<F: FnMut(&Entry) -> bool> Iterator for Walk<F> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(start) = self.start.take() {
            if let Some(root) = self.root(start) {
                return Some(root);
            }
        }
        loop {
            let next = self.stack.last_mut()?.next();
            let entry = match next {
                None => {
                    self.stack.pop();
                    self.oldest_open = self.oldest_open.min(self.stack.len());
                    continue;
                }
                Some(Err(err)) => return Some(Err(err)),
                Some(Ok(entry)) => entry,
            };
            if entry.depth < self.min_depth {
                if entry.file_type.is_dir() {
                    self.push(&entry.path, entry.depth);
                }
                continue;
            }
            if !(self.keep)(&entry) {
                continue;
            }
            if entry.file_type.is_dir() {
                self.push(&entry.path, entry.depth);
            }
            return Some(Ok(entry));
        }
    }
}

/// [`by_name_bytes`] for walkdir's sorter under `--follow` (its listed
/// paths are the directory's joined with each name too).
pub(super) fn by_name(a: &walkdir::DirEntry, b: &walkdir::DirEntry) -> std::cmp::Ordering {
    by_name_bytes(a.path(), b.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::fs::symlink;

    /// What a walk yields, comparably: path, depth, kind and inode (by the
    /// entry's own `metadata`), or the error's path.
    fn outline(walk: impl Iterator<Item = Result<Entry>>) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        walk.map(|r| match r {
            Ok(e) => format!(
                "{:?} {} {:?} {:?}",
                e.path(),
                e.depth(),
                e.file_type(),
                e.metadata().map(|m| m.ino()).ok()
            ),
            Err(e) => format!("error at {:?}", e.path()),
        })
        .collect()
    }

    /// The walk must yield exactly what walkdir yields with the same options.
    #[test]
    fn yields_what_walkdir_yields() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        for dir in ["a/b/c", "z", "B", ".h", "a/empty", "x/y/z"] {
            std::fs::create_dir_all(t.join(dir)).unwrap();
        }
        for file in [
            "a/f",
            "a/b/f",
            "a/b/c/f",
            "z/z.txt",
            "B/y",
            "a10",
            "a.1",
            "A",
            "x/y/z/deep",
        ] {
            std::fs::write(t.join(file), "x").unwrap();
        }
        std::fs::write(t.join(OsStr::from_bytes(b"bad\xffname\nline")), "x").unwrap();
        // Deeper than MAX_OPEN: the shallower levels stat by path.
        let mut deep = t.join("deep");
        for level in 0..MAX_OPEN + 8 {
            deep.push(format!("{level}"));
            std::fs::create_dir_all(&deep).unwrap();
            std::fs::write(deep.with_extension("f"), "x").unwrap();
        }
        symlink("../a", t.join("z/linkdir")).unwrap();
        symlink("nowhere", t.join("broken")).unwrap();
        symlink("..", t.join("a/b/loop")).unwrap();
        symlink(&t, tmp.path().join("rootlink")).unwrap();
        let skip_b = |p: &Path| p.file_name().is_some_and(|n| n == "b");
        for root in [t.clone(), tmp.path().join("rootlink"), t.join("a/f")] {
            for (min, max, follow_root) in [
                (0, None, true),
                (1, None, false),
                (0, Some(1), true),
                (0, Some(2), false),
            ] {
                for filtered in [false, true] {
                    let mut walkdir = walkdir::WalkDir::new(&root)
                        .follow_root_links(follow_root)
                        .min_depth(min)
                        .sort_by_file_name();
                    if let Some(max) = max {
                        walkdir = walkdir.max_depth(max);
                    }
                    let expected = outline(
                        walkdir
                            .into_iter()
                            .filter_entry(|e| !(filtered && skip_b(e.path())))
                            .map(|r| r.map(Entry::from).map_err(Error::from)),
                    );
                    let ours = outline(Walk::new(
                        root.clone(),
                        min,
                        max,
                        follow_root,
                        |e: &Entry| !(filtered && skip_b(e.path())),
                    ));
                    assert_eq!(
                        ours, expected,
                        "{root:?} {min} {max:?} {follow_root} {filtered}"
                    );
                }
            }
        }
    }
}
