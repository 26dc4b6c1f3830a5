//! kiln-state: the state-access seam every module uses — [`StateRead`] /
//! [`StateWrite`] and the in-memory [`Overlay`] that stacks uncommitted writes
//! on top of a read view. It owns no storage: `kiln-store` implements
//! [`StateRead`] over rocksdb for the app, so module crates (and the clients
//! that use their domain types) build without a storage engine.
//!
//! Consensus code never talks to rocksdb directly. A block executes in an
//! `Overlay` over the last committed snapshot; each transaction's messages run
//! in a nested `Overlay` over the block's overlay, whose changes are applied to
//! the block only if every message succeeded. All maps are `BTreeMap`, so every
//! iteration order is the byte order of keys (deterministic).

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
// Raw key/value lists (`Vec<(Vec<u8>, Vec<u8>)>`), as in kiln-store.
#![allow(clippy::type_complexity)]

use std::collections::BTreeMap;

/// An error reading the underlying storage. Reading committed state cannot fail
/// because of user input; this is an I/O or corruption problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

/// Pending writes: `Some(value)` sets, `None` deletes. Ordered by key.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Read access to a key-value state.
pub trait StateRead {
    /// The value at `key`, if any.
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every `(key, value)` whose key starts with `prefix`, in ascending key order.
    fn prefix_raw(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;
}

/// Write access. Writes are buffered by the implementor; nothing reaches disk
/// until the block is committed.
pub trait StateWrite: StateRead {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn delete_raw(&mut self, key: Vec<u8>);
}

impl<T: StateRead + ?Sized> StateRead for &T {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_raw(key)
    }
    fn prefix_raw(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        (**self).prefix_raw(prefix)
    }
}

impl<T: StateRead + ?Sized> StateRead for &mut T {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_raw(key)
    }
    fn prefix_raw(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        (**self).prefix_raw(prefix)
    }
}

impl<T: StateWrite + ?Sized> StateWrite for &mut T {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        (**self).put_raw(key, value)
    }
    fn delete_raw(&mut self, key: Vec<u8>) {
        (**self).delete_raw(key)
    }
}

/// An empty state (genesis before `InitChain`, and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct EmptyState;

impl StateRead for EmptyState {
    fn get_raw(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    fn prefix_raw(&self, _prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }
}

/// Buffered writes over a base view. Reads see the buffered writes first.
#[derive(Debug, Clone)]
pub struct Overlay<B> {
    base: B,
    changes: Changes,
}

impl<B: StateRead> Overlay<B> {
    pub fn new(base: B) -> Self {
        Self {
            base,
            changes: Changes::new(),
        }
    }

    /// An overlay that starts with `changes` already buffered.
    pub fn with_changes(base: B, changes: Changes) -> Self {
        Self { base, changes }
    }

    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    pub fn into_changes(self) -> Changes {
        self.changes
    }

    /// Applies the changes of a nested overlay (a transaction that succeeded).
    pub fn apply(&mut self, changes: Changes) {
        self.changes.extend(changes);
    }

    pub fn base(&self) -> &B {
        &self.base
    }
}

impl<B: StateRead> StateRead for Overlay<B> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get_raw(key),
        }
    }

    fn prefix_raw(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.base.prefix_raw(prefix)?.into_iter().collect();
        for (key, value) in self.changes.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

impl<B: StateRead> StateWrite for Overlay<B> {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }
    fn delete_raw(&mut self, key: Vec<u8>) {
        self.changes.insert(key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_overlay_reads_through_and_prefix_merges_deletes() {
        let mut block = Overlay::new(EmptyState);
        block.put_raw(b"a/1".to_vec(), b"x".to_vec());
        block.put_raw(b"a/2".to_vec(), b"y".to_vec());
        block.put_raw(b"b/1".to_vec(), b"z".to_vec());
        let changes = {
            let mut tx = Overlay::new(&block);
            tx.delete_raw(b"a/1".to_vec());
            tx.put_raw(b"a/3".to_vec(), b"w".to_vec());
            assert_eq!(tx.get_raw(b"a/2").unwrap(), Some(b"y".to_vec()));
            assert_eq!(tx.get_raw(b"a/1").unwrap(), None);
            tx.into_changes()
        };
        block.apply(changes);
        let keys: Vec<_> = block
            .prefix_raw(b"a/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a/2".to_vec(), b"a/3".to_vec()]);
    }
}
