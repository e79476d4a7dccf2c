//! Static shards (`--shard I/N`): N processes, on one host or many, each
//! handle the items whose key hashes to their shard, and together handle
//! every item once. Nothing is shared between them but the rule below, so
//! it must give the same answer on every host, version and platform: the
//! first 8 bytes, big-endian, of the SHA-256 of the key's stored bytes
//! ([`ItemKey::encode`]: a path as walked, an integer's decimal text, a
//! text's UTF-8), modulo N, plus one (docs/DESIGN.md writes it down; a test
//! checks it against Python's hashlib).
//!
//! The driver filters what the source yields here, before the ledger
//! numbers anything, so another shard's items are never queued, processed
//! or checkpointed. The count of a progress total, a dry run and `--prune`
//! ask the same [`Shard`].

use sha2::{Digest, Sha256};

use super::{Again, Found, Source};
use crate::checkpoint::ItemKey;
use crate::record::Value;

/// Shard `index` (from 1) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`: 1 <= index <= count.
    pub(crate) fn new(index: u32, count: u32) -> anyhow::Result<Shard> {
        if count == 0 {
            anyhow::bail!("shard {index}/{count}: there must be at least one shard");
        }
        if !(1..=count).contains(&index) {
            anyhow::bail!("shard {index}/{count}: shards are numbered 1 to {count}");
        }
        Ok(Shard { index, count })
    }

    /// Whether the item keyed `key` is this shard's.
    pub(crate) fn holds(&self, key: &ItemKey) -> bool {
        self.holds_bytes(&key.encode().1)
    }

    /// Whether the row a sink keys by `value` (a path as walked, as
    /// `--prune` names rows) is this shard's.
    pub(crate) fn holds_value(&self, value: &Value) -> bool {
        match value {
            Value::Text(text) => self.holds_bytes(text.as_bytes()),
            Value::Bytes(bytes) => self.holds_bytes(bytes),
            Value::Int(i) => self.holds_bytes(i.to_string().as_bytes()),
            // No key is of another type; a row not understood is left alone.
            _ => false,
        }
    }

    fn holds_bytes(&self, bytes: &[u8]) -> bool {
        of(bytes, self.count) == self.index
    }

    /// Whether the driver hands on what the source found: this shard's
    /// items, and what stands for items of any shard (a directory the walk
    /// could not read: every shard fails on it, and every shard's resume
    /// walks it for its own files). Skipped, unchanged and quarantined
    /// items are counted by their own shard only.
    pub(crate) fn keeps<S: Source>(&self, found: &Found<S::Item>) -> bool {
        match found {
            Found::Item(key, item) => self.holds(key) || S::every_shard(item),
            Found::Skipped(key) | Found::Unchanged(key) => self.holds(key),
            Found::Quarantined(q) => self.holds(&q.key),
            Found::Wait => true,
        }
    }

    /// Whether a resume retries `again`: an earlier failure of this run
    /// always (it was this shard's, or stood for every shard's items), an
    /// item found under one only when it is this shard's.
    pub(crate) fn keeps_again<T>(&self, again: &Again<T>) -> bool {
        again.known || self.holds(&again.key)
    }
}

/// `2/3`, as `--shard` takes it and `batchproc runs` shows it.
impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (from 1) of `count` that the key whose stored bytes are
/// `bytes` belongs to. Python: `int.from_bytes(hashlib.sha256(b).digest()[:8],
/// 'big') % count + 1`.
pub(crate) fn of(bytes: &[u8], count: u32) -> u32 {
    let digest = Sha256::digest(bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(count)) as u32 + 1
}

/// Counts what `source.items(after)` yields for `shard`, as
/// [`Source::count`] does for a whole source.
pub(crate) fn count<S: Source>(
    source: &S,
    shard: &Shard,
    after: Option<&ItemKey>,
    stop: &crate::pool::Cancel,
    report: &dyn Fn(u64),
) -> anyhow::Result<()> {
    super::count_found(source.items(after)?, stop, report, |found| {
        shard.keeps::<S>(found)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_one_written_down() {
        // Computed apart from this code, by Python's hashlib:
        // int.from_bytes(hashlib.sha256(b).digest()[:8], 'big') % n + 1.
        // Changing a value here moves items between shards of runs that
        // are under way on other hosts: never change it.
        let cases: [(&[u8], u32, u32); 6] = [
            (b"d/a.txt", 3, 2),
            (b"42", 7, 3),
            (b"", 5, 3),
            ("é".as_bytes(), 4, 4),
            (b"-5", 3, 3),
            (b"d/\xff name", 1000, 38),
        ];
        for (bytes, count, shard) in cases {
            assert_eq!(of(bytes, count), shard, "{bytes:?} of {count}");
        }
    }

    #[test]
    fn keys_hash_by_their_stored_bytes() {
        let shard = Shard::new(2, 3).unwrap();
        assert!(shard.holds(&ItemKey::path(0, "d/a.txt")));
        // The root index takes no part: the path as walked names the row.
        assert!(shard.holds(&ItemKey::path(1, "d/a.txt")));
        assert!(Shard::new(3, 3).unwrap().holds(&ItemKey::Int(-5)));
        assert!(Shard::new(3, 7).unwrap().holds(&ItemKey::Text("42".into())));
        assert!(Shard::new(3, 7).unwrap().holds(&ItemKey::Int(42)));
        assert!(shard.holds_value(&Value::Text("d/a.txt".into())));
    }

    #[test]
    fn every_key_is_in_exactly_one_shard() {
        let shards: Vec<Shard> = (1..=3).map(|i| Shard::new(i, 3).unwrap()).collect();
        for i in 0..1000 {
            let key = ItemKey::Int(i);
            assert_eq!(shards.iter().filter(|s| s.holds(&key)).count(), 1);
        }
        assert!(Shard::new(1, 1).unwrap().holds(&ItemKey::Int(7)));
    }

    #[test]
    fn shards_out_of_range_are_refused() {
        for (index, count) in [(0, 3), (4, 3), (1, 0), (0, 0)] {
            assert!(Shard::new(index, count).is_err(), "{index}/{count}");
        }
        assert_eq!(Shard::new(2, 3).unwrap().to_string(), "2/3");
    }
}
