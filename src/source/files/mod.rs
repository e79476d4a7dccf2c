//! The `files` source: every regular file under one or more directories,
//! walked in a sorted, repeatable order ([`walk`]), filtered by globs
//! ([`filters`]), and read once per file for the processors ([`read`]).
//! Items are keyed by `(root index, path as walked)`.

mod content;
mod dirwalk;
mod filters;
mod incremental;
mod read;
mod walk;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub(crate) use filters::Filters;
pub(crate) use incremental::Previous;
pub(crate) use read::FileWork;
pub(crate) use walk::FileItem;

use super::{Again, Items, Source};
use crate::checkpoint::{Fingerprint, ItemKey, Part};
use crate::processor::registry::Target;
use crate::processor::{registry, Fields};
use crate::record::DisplayPath;

/// The `files` source as configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
    pub(crate) roots: Vec<PathBuf>,
    pub(crate) include: Vec<String>,
    pub(crate) exclude: Vec<String>,
    pub(crate) max_depth: Option<usize>,
    pub(crate) follow: bool,
    /// `--incremental`: records carry the poison ledger's columns.
    pub(crate) ledger: bool,
}

impl Spec {
    /// Checks the roots and filters and binds the processors' placeholders
    /// (all usage errors); the source and the per-file work.
    pub(crate) fn open(
        self,
        processors: &[String],
        timeout: Option<std::time::Duration>,
    ) -> Result<(FileSource, FileWork)> {
        let roots = check_roots(self.roots)?;
        if self.max_depth == Some(0) {
            bail!("--max-depth must be at least 1");
        }
        let mut specs = registry::parse(processors, Target::Files)?;
        for spec in &mut specs {
            let text = spec.text();
            spec.processor.bind(&Fields::File).with_context(|| {
                format!(
                    "-p {}",
                    crate::record::Quoted(&crate::redact::redact(&text))
                )
            })?;
        }
        let source = FileSource {
            filters: Filters::new(&self.include, &self.exclude)?,
            roots,
            include: self.include,
            exclude: self.exclude,
            max_depth: self.max_depth,
            follow: self.follow,
            exclude_files: HashSet::new(),
            previous: None,
        };
        let work = FileWork::new(specs, self.follow, timeout, self.ledger);
        Ok((source, work))
    }
}

/// The directory walk over one or more roots.
#[derive(Debug, Clone)]
pub(crate) struct FileSource {
    roots: Vec<PathBuf>,
    filters: Filters,
    /// The globs as given, for the fingerprint.
    include: Vec<String>,
    exclude: Vec<String>,
    max_depth: Option<usize>,
    follow: bool,
    /// Files never to yield, by (device, inode): the sink's own files, so a
    /// run writing inside the tree it walks does not read its own output.
    exclude_files: HashSet<(u64, u64)>,
    /// `--incremental`: the rows of an earlier run, to pass files whose
    /// row is current and, with `--prune`, to find the rows of files gone.
    previous: Option<std::sync::Arc<Previous>>,
}

impl Source for FileSource {
    type Item = FileItem;

    fn items(&self, after: Option<&ItemKey>) -> Result<Items<'_, FileItem>> {
        Ok(Box::new(self.walk(after)))
    }

    fn again(&self, keys: Vec<ItemKey>, after: Option<&ItemKey>) -> Result<Vec<Again<FileItem>>> {
        let mut items = Vec::new();
        for key in keys {
            self.walk_again(key, after, &mut items);
        }
        Ok(items)
    }

    fn counts_by_reading(&self) -> bool {
        true
    }

    fn every_shard(item: &FileItem) -> bool {
        // Only a place the walk could not read, and of those only what may
        // be a directory (a broken link is one item): looked at for these
        // alone. A place whose type cannot be read (its parent is listable
        // but not searchable) may be a directory of any shard's files.
        matches!(item.walk_error, Some(walk::WalkError::Failed(_)))
            && match std::fs::metadata(&item.path) {
                Ok(meta) => meta.is_dir(),
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            }
    }

    fn label(&self, key: &ItemKey) -> String {
        key.to_string()
    }

    fn fingerprint(&self, fp: &mut Fingerprint) {
        fp.add("roots", Part::Paths(self.roots.clone()))
            .add("include", Part::Texts(self.include.clone()))
            .add("exclude", Part::Texts(self.exclude.clone()))
            .add("max_depth", Part::Depth(self.max_depth))
            .add("follow", Part::Flag(self.follow));
    }

    fn remember(&mut self, previous: Previous) {
        self.previous = Some(std::sync::Arc::new(previous));
    }

    fn gone(&self, resumed_after: Option<&ItemKey>) -> Result<Vec<crate::record::Value>, String> {
        self.gone_rows(resumed_after)
    }

    fn leave_out(&mut self, files: &[PathBuf]) {
        self.exclude_files = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
    }
}

/// Every root must exist, and no root may lie inside another (or be the
/// same directory spelt differently): its files would be processed twice.
fn check_roots(dirs: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    if dirs.is_empty() {
        bail!("no directory to walk");
    }
    let mut roots: Vec<(PathBuf, PathBuf)> = Vec::new();
    for dir in dirs {
        let canonical =
            std::fs::canonicalize(&dir).with_context(|| format!("{}", DisplayPath(&dir)))?;
        if roots.iter().any(|(given, _)| *given == dir) {
            continue;
        }
        for (given, other) in &roots {
            if canonical.starts_with(other) || other.starts_with(&canonical) {
                bail!(
                    "{} and {} overlap: give only one of them",
                    DisplayPath(given),
                    DisplayPath(&dir)
                );
            }
        }
        roots.push((dir, canonical));
    }
    Ok(roots.into_iter().map(|(given, _)| given).collect())
}
