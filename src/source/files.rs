//! The `files` source: a sorted directory walk (walkdir) that yields regular
//! files only. Symlinks are followed only with `--follow` (walkdir detects
//! loops); FIFOs, sockets and devices are skipped, never opened. A directory
//! or link the walk cannot read becomes a failed item, so the error policy
//! decides what happens to it.

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use super::Source;
use crate::checkpoint::{Dispatch, ItemKey, Ledger, Seq};
use crate::pool::Cancel;

/// One file found by the walk, or a place the walk could not read.
#[derive(Debug, Clone)]
pub struct FileItem {
    /// The path as walked (it starts with the root as given, like `find`),
    /// with the index of that root: the item's place in the walk order.
    pub key: ItemKey,
    /// Metadata from the walk (of the link target when following links).
    pub meta: Option<Metadata>,
    /// Set when the walk failed here (unreadable directory, broken link, loop).
    pub walk_error: Option<String>,
}

/// `--include`/`--exclude` globs, gitignore-like: a glob without `/` matches
/// the file name; a glob with `/` matches the path relative to the root it
/// was found under (a leading `/` only anchors it, a trailing `/` is
/// dropped), and there `*` does not cross `/` (`**` does). Excludes also
/// prune directories.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// `None` when no `--include` was given: everything is included.
    include: Option<(GlobSet, GlobSet)>,
    exclude: (GlobSet, GlobSet),
}

impl Filters {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        Ok(Filters {
            include: if include.is_empty() {
                None
            } else {
                Some(split_globs(include)?)
            },
            exclude: split_globs(exclude)?,
        })
    }

    fn excluded(&self, rel: &Path) -> bool {
        matches(&self.exclude, rel)
    }

    fn included(&self, rel: &Path) -> bool {
        self.include.as_ref().is_none_or(|set| matches(set, rel))
    }
}

fn matches((name, path): &(GlobSet, GlobSet), rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| name.is_match(n)) || path.is_match(rel)
}

fn split_globs(globs: &[String]) -> Result<(GlobSet, GlobSet)> {
    let (mut name, mut path) = (GlobSetBuilder::new(), GlobSetBuilder::new());
    for g in globs {
        let trimmed = g.trim_end_matches('/');
        let anchored = trimmed.strip_prefix('/');
        let pattern = anchored.unwrap_or(trimmed);
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .with_context(|| format!("bad glob {g:?}"))?;
        if anchored.is_some() || pattern.contains('/') {
            path.add(glob);
        } else {
            name.add(glob);
        }
    }
    Ok((name.build()?, path.build()?))
}

/// The directory walk over one or more roots.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub roots: Vec<PathBuf>,
    pub filters: Filters,
    pub max_depth: Option<usize>,
    pub follow: bool,
    /// Files never to yield, by (device, inode): the sink's own files, so a
    /// run writing inside the tree it walks does not read its own output.
    pub exclude_files: HashSet<(u64, u64)>,
}

/// What the walk meets.
pub enum Visit {
    /// A regular file, or a place the walk could not read.
    Item(FileItem),
    /// A FIFO, socket, device, or a symlink not followed: never opened.
    Special(ItemKey),
}

impl FileSource {
    /// Walks every root in order, calling `visit` for each regular file,
    /// walk failure or special file until it returns false. Directories for
    /// which `skip_dir` is true are not entered.
    pub fn walk(&self, skip_dir: impl Fn(&ItemKey) -> bool, mut visit: impl FnMut(Visit) -> bool) {
        for (index, root) in self.roots.iter().enumerate() {
            let index = index as u32;
            let key = |path: &Path| ItemKey::path(index, path);
            let mut walk = WalkDir::new(root)
                .follow_links(self.follow)
                .sort_by_file_name();
            if let Some(depth) = self.max_depth {
                walk = walk.max_depth(depth);
            }
            let entries = walk.into_iter().filter_entry(|e| {
                e.depth() == 0
                    || !(self.filters.excluded(relative(root, e.path()))
                        || e.file_type().is_dir() && skip_dir(&key(e.path())))
            });
            for entry in entries {
                let visit_of = match entry {
                    Ok(e) if e.file_type().is_dir() => continue,
                    Ok(e) if !self.filters.included(relative(root, e.path())) => continue,
                    Ok(e) if !e.file_type().is_file() => Visit::Special(key(e.path())),
                    Ok(e) => match e.metadata() {
                        Ok(meta) if self.exclude_files.contains(&(meta.dev(), meta.ino())) => {
                            continue
                        }
                        Ok(meta) => Visit::Item(FileItem {
                            key: key(e.path()),
                            meta: Some(meta),
                            walk_error: None,
                        }),
                        Err(err) => Visit::Item(failed_item(index, root, err)),
                    },
                    Err(err) => Visit::Item(failed_item(index, root, err)),
                };
                if !visit(visit_of) {
                    return;
                }
            }
        }
    }
}

impl FileItem {
    pub fn path(&self) -> &Path {
        match &self.key {
            ItemKey::Path { path, .. } => path,
            _ => unreachable!("file items have path keys"),
        }
    }
}

impl Source for FileSource {
    type Item = FileItem;

    fn run(
        self,
        queue: Sender<Vec<(Seq, FileItem)>>,
        ledger: &Ledger,
        cancel: &Cancel,
    ) -> Result<()> {
        let after = ledger.resumed_after();
        self.walk(
            |dir| dir_done(after, dir),
            |visit| match visit {
                Visit::Special(key) => {
                    if !done_before(after, &key) {
                        ledger.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    !cancel.is_cancelled()
                }
                Visit::Item(item) if done_before(after, &item.key) => !cancel.is_cancelled(),
                Visit::Item(item) => match ledger.dispatch(item.key.clone(), cancel) {
                    Dispatch::Go(seq) => queue.send(vec![(seq, item)]).is_ok(),
                    Dispatch::Done => !cancel.is_cancelled(),
                    Dispatch::Cancelled => false,
                },
            },
        );
        Ok(())
    }
}

/// True when a resumed run's watermark is at or past `key`: the walk order
/// is the key order, so everything up to the watermark is committed.
pub fn done_before(watermark: Option<&ItemKey>, key: &ItemKey) -> bool {
    watermark.is_some_and(|w| key <= w)
}

/// True when every file under the directory `dir` is at or below the
/// watermark, so the walk need not enter it.
pub fn dir_done(watermark: Option<&ItemKey>, dir: &ItemKey) -> bool {
    match (watermark, dir) {
        (Some(w @ ItemKey::Path { root: wr, path: wp }), ItemKey::Path { root, path }) => {
            dir < w && !(wr == root && wp.starts_with(path))
        }
        _ => false,
    }
}

/// The path below its root; a root that is itself a file is matched as given.
fn relative<'a>(root: &Path, path: &'a Path) -> &'a Path {
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        _ => path,
    }
}

fn failed_item(index: u32, root: &Path, err: walkdir::Error) -> FileItem {
    let path = err.path().unwrap_or(root).to_path_buf();
    let message = match (err.loop_ancestor(), err.io_error()) {
        (Some(ancestor), _) => format!(
            "symlink loop back to {}",
            crate::record::DisplayPath(ancestor)
        ),
        (None, Some(io)) => io.to_string(),
        (None, None) => err.to_string(),
    };
    FileItem {
        key: ItemKey::path(index, path),
        meta: None,
        walk_error: Some(message),
    }
}
