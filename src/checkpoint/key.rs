//! Item keys: an item's identity in its source, as checkpointed, and the
//! stored form of a key (a small integer tag and bytes), which the
//! bookkeeping tables of both databases hold the same way.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// An item's identity in the source. Within one run all keys are of one
/// kind, and the source yields them in a deterministic order: for files
/// `(root index, path)`, where `PathBuf`'s component-wise order is exactly
/// the order of a depth-first walk with sorted siblings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ItemKey {
    Path { root: u32, path: PathBuf },
    Int(i64),
    Text(String),
}

impl ItemKey {
    /// The integer of an integer key.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            ItemKey::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub(crate) fn path(root: u32, path: impl Into<PathBuf>) -> Self {
        ItemKey::Path {
            root,
            path: path.into(),
        }
    }

    /// The stored form: a small kind tag (the root index for paths, -1 for
    /// integers, -2 for text) and the key's bytes.
    pub(crate) fn encode(&self) -> (i64, Vec<u8>) {
        match self {
            ItemKey::Path { root, path } => (*root as i64, path.as_os_str().as_bytes().to_vec()),
            ItemKey::Int(i) => (-1, i.to_string().into_bytes()),
            ItemKey::Text(s) => (-2, s.as_bytes().to_vec()),
        }
    }

    pub(crate) fn decode(tag: i64, bytes: Vec<u8>) -> Option<Self> {
        Some(match tag {
            -1 => ItemKey::Int(String::from_utf8(bytes).ok()?.parse().ok()?),
            -2 => ItemKey::Text(String::from_utf8(bytes).ok()?),
            root => ItemKey::Path {
                root: u32::try_from(root).ok()?,
                path: PathBuf::from(OsString::from_vec(bytes)),
            },
        })
    }
}

/// The key as a person reads it: a path with control characters escaped,
/// a number, or a quoted text.
impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKey::Path { path, .. } => crate::record::DisplayPath(path).fmt(f),
            ItemKey::Int(i) => write!(f, "{i}"),
            ItemKey::Text(s) => write!(f, "{}", crate::record::Quoted(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> ItemKey {
        ItemKey::path(0, p)
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
    fn keys_print_for_people() {
        assert_eq!(ItemKey::Int(2).to_string(), "2");
        assert_eq!(ItemKey::Text("a\"b".into()).to_string(), "\"a\\\"b\"");
        assert_eq!(key("d/x\ny").to_string(), "d/x\\ny");
    }
}
