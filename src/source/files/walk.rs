//! The directory walk (siblings sorted by name, so the order is the same on
//! every run and is the order of `(root index, path)` keys): [`dirwalk`]'s
//! walk, or walkdir's with `--follow` (see there for why two). It
//! yields regular files only; symlinks are followed only with `--follow`
//! (walkdir detects loops); FIFOs, sockets and devices are met but never
//! opened. What vanished while the walk went on, and a symlink loop, are a
//! warning and a skip; a directory or link the walk cannot read otherwise
//! becomes an item with the error, so the error policy decides what happens
//! to it. On resume it
//! prunes directories wholly at or below the watermark without reading them.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use walkdir::WalkDir;

use super::dirwalk::{self, Entry, Walk};
use super::incremental::{Tally, Verdict};
use super::FileSource;
use crate::checkpoint::ItemKey;
use crate::record::DisplayPath;
use crate::source::{Again, Found, Quarantine};

/// One file found by the walk, or a place the walk could not read.
#[derive(Debug, Clone)]
pub(crate) struct FileItem {
    /// The path as walked: it starts with the root as given, like `find`.
    pub(crate) path: PathBuf,
    /// Metadata from the walk (of the link target when following links).
    pub(crate) meta: Option<Metadata>,
    /// Set when the walk failed here (unreadable directory, broken link, loop).
    pub(crate) walk_error: Option<WalkError>,
    /// `--incremental`: what a failure of this item counts from.
    pub(crate) tally: Tally,
}

/// Why the walk could not give an item its metadata.
#[derive(Debug, Clone)]
pub(crate) enum WalkError {
    /// A warning and a skip, as `find -L` does: gone between the directory
    /// listing and the stat (a live tree: log rotation, a cleanup job), or
    /// a symlink loop met with `--follow`.
    Skip(String),
    /// Anything else (an unreadable directory, a broken link with
    /// `--follow`): the item fails with this message.
    Failed(String),
}

impl FileSource {
    /// Every root in order, from after the key `after` on.
    pub(super) fn walk<'s>(
        &'s self,
        after: Option<&ItemKey>,
    ) -> impl Iterator<Item = Result<Found<FileItem>>> + 's {
        let after = after.cloned();
        self.roots
            .iter()
            .enumerate()
            .flat_map(move |(index, root)| self.walk_root(index as u32, root, after.clone()))
    }

    fn walk_root<'s>(
        &'s self,
        index: u32,
        root: &'s Path,
        after: Option<ItemKey>,
    ) -> Box<dyn Iterator<Item = Result<Found<FileItem>>> + 's> {
        match &after {
            Some(ItemKey::Path { root: r, .. }) if *r > index => Box::new(std::iter::empty()),
            Some(ItemKey::Path { root: r, path }) if *r == index && !self.follow => {
                match self.subtrees_after(root, path) {
                    Some(subtrees) => Box::new(subtrees.into_iter().flat_map(
                        move |(start, depth, children)| {
                            self.walk_subtree(index, root, start, depth, children)
                        },
                    )),
                    None => Box::new(self.walk_from(index, root, root, after)),
                }
            }
            _ => Box::new(self.walk_from(index, root, root, after)),
        }
    }

    /// What a walk of `root` meets after the watermark `after`, as whole
    /// subtrees in walk order: for each directory on the way down to
    /// `after`, deepest first, its entries after the one leading there (and
    /// first what is inside `after`, when it is a directory). Only those
    /// directories are listed: walkdir opens and sorts every directory it
    /// meets before a filter can prune it, so a walk that merely skipped the
    /// finished part would still list all of it. None when a directory on
    /// the way cannot be listed (the whole walk, pruned, then decides).
    fn subtrees_after(&self, root: &Path, after: &Path) -> Option<Vec<(PathBuf, usize, bool)>> {
        let names: Vec<&std::ffi::OsStr> = after
            .strip_prefix(root)
            .ok()?
            .components()
            .map(|c| match c {
                std::path::Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let mut subtrees = Vec::new();
        if std::fs::symlink_metadata(after).is_ok_and(|m| m.is_dir()) {
            subtrees.push((after.to_path_buf(), names.len(), true));
        }
        let mut dir = root.to_path_buf();
        let mut levels = Vec::new();
        for name in &names {
            levels.push(dir.clone());
            dir.push(name);
        }
        for (depth, (dir, name)) in levels.iter().zip(&names).enumerate().rev() {
            let mut later: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
                .ok()?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .ok()?;
            later.retain(|n| n.as_os_str() > *name);
            later.sort();
            subtrees.extend(later.into_iter().map(|n| (dir.join(n), depth + 1, false)));
        }
        Some(subtrees)
    }

    /// One subtree after the watermark, `depth` below its root, walked
    /// whole (or only what is inside it, for `children`).
    fn walk_subtree<'s>(
        &'s self,
        index: u32,
        root: &'s Path,
        start: PathBuf,
        depth: usize,
        children: bool,
    ) -> impl Iterator<Item = Result<Found<FileItem>>> + 's {
        let walk = Walk::new(
            start,
            children as usize,
            self.max_depth.map(|max| max.saturating_sub(depth)),
            false,
            move |e: &Entry| !self.filters.excluded(relative(root, e.path())),
        );
        // Deeper than --max-depth: not even opened.
        let beyond = self.max_depth.is_some_and(|max| depth > max);
        walk.take(if beyond { 0 } else { usize::MAX })
            .filter_map(move |entry| self.visit(index, root, entry, None).map(Ok))
    }

    /// The files under `start`, a directory below the root `root`, as the
    /// walk of the root would find them.
    fn walk_under<'s>(
        &'s self,
        index: u32,
        root: &'s Path,
        start: &Path,
    ) -> impl Iterator<Item = Found<FileItem>> + 's {
        self.walk_from(index, root, start, None)
            .filter_map(Result::ok)
    }

    fn walk_from<'s>(
        &'s self,
        index: u32,
        root: &'s Path,
        start: &Path,
        after: Option<ItemKey>,
    ) -> impl Iterator<Item = Result<Found<FileItem>>> + 's {
        let max_depth = self.max_depth.map(|depth| {
            let below = start
                .strip_prefix(root)
                .map_or(0, |p| p.components().count());
            depth.saturating_sub(below)
        });
        let prune = after.clone();
        let keep = move |path: &Path, depth: usize, dir: bool| {
            depth == 0
                || !(self.filters.excluded(relative(root, path))
                    || dir
                        && prune
                            .as_ref()
                            .is_some_and(|w| dir_done(w, &ItemKey::path(index, path))))
        };
        let entries: Box<dyn Iterator<Item = dirwalk::Result<Entry>> + 's> = if self.follow {
            // Loop detection and following are walkdir's; only without
            // links does the faster walk stand in for it.
            let mut walk = WalkDir::new(start)
                .follow_links(true)
                .sort_by(dirwalk::by_name);
            if let Some(max) = max_depth {
                walk = walk.max_depth(max);
            }
            Box::new(
                walk.into_iter()
                    .filter_entry(move |e| keep(e.path(), e.depth(), e.file_type().is_dir()))
                    .map(|e| e.map(Entry::from).map_err(dirwalk::Error::from)),
            )
        } else {
            Box::new(Walk::new(
                start.to_path_buf(),
                0,
                max_depth,
                true,
                move |e: &Entry| keep(e.path(), e.depth(), e.file_type().is_dir()),
            ))
        };
        entries.filter_map(move |entry| self.visit(index, root, entry, after.as_ref()).map(Ok))
    }

    /// What one walk entry is: None for directories, filtered-out files,
    /// the sink's own files, and what an earlier attempt committed (at or
    /// below the watermark `after`).
    fn visit(
        &self,
        index: u32,
        root: &Path,
        entry: dirwalk::Result<Entry>,
        after: Option<&ItemKey>,
    ) -> Option<Found<FileItem>> {
        let (key, item) = match entry {
            Err(err) => self.failed(index, root, err),
            Ok(e) if e.file_type().is_dir() => return None,
            Ok(e) if !self.filters.included(relative(root, e.path())) => return None,
            Ok(e) if !e.file_type().is_file() => {
                self.met(e.path());
                let key = ItemKey::path(index, e.path());
                return after
                    .is_none_or(|w| key > *w)
                    .then_some(Found::Skipped(key));
            }
            Ok(e) => match e.metadata() {
                Ok(meta) if self.exclude_files.contains(&(meta.dev(), meta.ino())) => return None,
                Ok(meta) => {
                    let tally = match self.verdict(e.path(), &meta) {
                        Verdict::Process(tally) => tally,
                        passed => {
                            // The entry's path becomes the key: no copy per file.
                            let key = ItemKey::path(index, e.into_path());
                            return after.is_none_or(|w| key > *w).then_some(match passed {
                                Verdict::Quarantined { failures, error } => {
                                    Found::Quarantined(Quarantine {
                                        key,
                                        failures,
                                        error,
                                    })
                                }
                                _ => Found::Unchanged(key),
                            });
                        }
                    };
                    let item = FileItem {
                        path: e.into_path(),
                        meta: Some(meta),
                        walk_error: None,
                        tally,
                    };
                    (ItemKey::path(index, &item.path), item)
                }
                Err(err) => self.failed(index, root, err),
            },
        };
        after
            .is_none_or(|w| key > *w)
            .then_some(Found::Item(key, item))
    }
}

impl FileSource {
    /// An earlier failure's item again: the file as it is now, gone when
    /// it is no longer a regular file; a directory the walk could not read
    /// fails again while it still cannot be read, and is otherwise walked
    /// (its files follow it, the directory itself is gone).
    /// Files the walk after the watermark `after` will meet are left to it.
    pub(super) fn walk_again(
        &self,
        key: ItemKey,
        after: Option<&ItemKey>,
        out: &mut Vec<Again<FileItem>>,
    ) {
        let ItemKey::Path { root, path } = &key else {
            return out.push(Again {
                key,
                item: None,
                known: true,
            });
        };
        let meta = match self.follow {
            true => std::fs::metadata(path),
            false => std::fs::symlink_metadata(path),
        };
        let failed = |e: std::io::Error| FileItem {
            path: path.clone(),
            meta: None,
            walk_error: Some(WalkError::Failed(e.to_string())),
            tally: self.tally(path, None),
        };
        // Retried without a verdict: an earlier failure is never
        // quarantined, and a count this run made is not made again.
        let item = match meta {
            Ok(meta) if meta.is_file() => Some(FileItem {
                path: path.clone(),
                tally: self.tally(path, Some(&meta)),
                meta: Some(meta),
                walk_error: None,
            }),
            Ok(meta) if meta.is_dir() => match std::fs::read_dir(path) {
                Err(e) => Some(failed(e)),
                Ok(_) => {
                    let (index, start) = (*root, path.clone());
                    let base = &self.roots[index as usize];
                    let under: Vec<_> = self
                        .walk_under(index, base, &start)
                        .filter_map(|found| match found {
                            Found::Item(key, item) if after.is_some_and(|w| key <= *w) => {
                                Some(Again {
                                    key,
                                    item: Some(item),
                                    known: false,
                                })
                            }
                            _ => None,
                        })
                        .collect();
                    out.push(Again {
                        key,
                        item: None,
                        known: true,
                    });
                    out.extend(under);
                    return;
                }
            },
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(failed(e)),
        };
        out.push(Again {
            key,
            item,
            known: true,
        });
    }
}

impl FileSource {
    /// A place the walk could not read, as an item (see [`failed_item`]),
    /// noted for `--prune`.
    fn failed(&self, index: u32, root: &Path, err: dirwalk::Error) -> (ItemKey, FileItem) {
        let (key, mut item) = failed_item(index, root, err);
        self.met_failure(&item);
        item.tally = self.tally(&item.path, None);
        (key, item)
    }
}

/// True when every file under the directory `dir` is at or below the
/// watermark, so the walk need not enter it: the walk order is the key
/// order, and a directory sorts before everything in it.
fn dir_done(watermark: &ItemKey, dir: &ItemKey) -> bool {
    match (watermark, dir) {
        (ItemKey::Path { root: wr, path: wp }, ItemKey::Path { root, path }) => {
            dir < watermark && !(wr == root && wp.starts_with(path))
        }
        _ => false,
    }
}

/// The path below its root; a root that is itself a file is matched as given.
fn relative<'a>(root: &Path, path: &'a Path) -> &'a Path {
    // Every walked path is the root as given joined with listed names, so
    // the bytes after the root's are the relative path (Path::strip_prefix
    // parses both into components: a few percent of a walk, per entry).
    let (root_bytes, bytes) = (root.as_os_str().as_bytes(), path.as_os_str().as_bytes());
    if let Some(rest) = bytes.strip_prefix(root_bytes) {
        let rest = match rest.iter().position(|&b| b != b'/') {
            Some(at) if at > 0 || root_bytes.ends_with(b"/") => &rest[at..],
            // "root" + "x..." is a sibling ("rootx"), not below it.
            _ => &[][..],
        };
        if !rest.is_empty() {
            return Path::new(std::ffi::OsStr::from_bytes(rest));
        }
    }
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        _ => path,
    }
}

/// A place the walk could not read, as an item that fails with the reason.
fn failed_item(index: u32, root: &Path, err: dirwalk::Error) -> (ItemKey, FileItem) {
    let path = err.path().unwrap_or(root).to_path_buf();
    let error = match (err.loop_ancestor(), err.io_error()) {
        (Some(ancestor), _) => WalkError::Skip(format!(
            "symlink loop back to {} (skipped)",
            DisplayPath(ancestor)
        )),
        // A broken link is still there to lstat; a vanished file is not.
        (None, Some(io))
            if io.kind() == std::io::ErrorKind::NotFound && path.symlink_metadata().is_err() =>
        {
            WalkError::Skip("vanished before it was read".into())
        }
        (None, Some(io)) => WalkError::Failed(io.to_string()),
        (None, None) => WalkError::Failed(err.to_string()),
    };
    let item = FileItem {
        path,
        meta: None,
        walk_error: Some(error),
        tally: Tally::default(),
    };
    (ItemKey::path(index, &item.path), item)
}
