//! `--include`/`--exclude` globs, gitignore-like: a glob without `/` matches
//! the file name; a glob with `/` matches the path relative to the root it
//! was found under (a leading `/` only anchors it, a trailing `/` is
//! dropped), and there `*` does not cross `/` (`**` does). Excludes also
//! prune directories.

use std::path::Path;

use anyhow::{Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::record::Quoted;

#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    /// `None` when no `--include` was given: everything is included.
    include: Option<(GlobSet, GlobSet)>,
    exclude: (GlobSet, GlobSet),
}

impl Filters {
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        Ok(Filters {
            include: if include.is_empty() {
                None
            } else {
                Some(split_globs(include)?)
            },
            exclude: split_globs(exclude)?,
        })
    }

    pub(super) fn excluded(&self, rel: &Path) -> bool {
        matches(&self.exclude, rel)
    }

    pub(super) fn included(&self, rel: &Path) -> bool {
        self.include.as_ref().is_none_or(|set| matches(set, rel))
    }
}

fn matches((name, path): &(GlobSet, GlobSet), rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| name.is_match(n)) || path.is_match(rel)
}

/// Name globs and path globs, apart.
fn split_globs(globs: &[String]) -> Result<(GlobSet, GlobSet)> {
    let (mut name, mut path) = (GlobSetBuilder::new(), GlobSetBuilder::new());
    for g in globs {
        let trimmed = g.trim_end_matches('/');
        let anchored = trimmed.strip_prefix('/');
        let pattern = anchored.unwrap_or(trimmed);
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .with_context(|| format!("bad glob {}", Quoted(g)))?;
        if anchored.is_some() || pattern.contains('/') {
            path.add(glob);
        } else {
            name.add(glob);
        }
    }
    Ok((name.build()?, path.build()?))
}
