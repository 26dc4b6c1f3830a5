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
use std::ops::ControlFlow;

/// An error reading the underlying storage. Reading committed state cannot fail
/// because of user input; this is an I/O or corruption problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

/// Pending writes: `Some(value)` sets, `None` deletes. Ordered by key.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Collected `(key, value)` pairs of a prefix scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Visits `(key, value)` pairs; returns `ControlFlow::Break(())` to stop early.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// Read access to a key-value state.
pub trait StateRead {
    /// The value at `key`, if any.
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Streams every `(key, value)` whose key starts with `prefix` to `visit`,
    /// in ascending key order, without collecting them; `visit` may stop the
    /// scan early. This is the primitive every implementor provides.
    fn prefix_visit(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError>;

    /// Every `(key, value)` whose key starts with `prefix`, in ascending key
    /// order, collected (for callers that need them all at once).
    fn prefix_raw(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        self.prefix_visit(prefix, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }
}

/// Streams `prefix` of `changes` laid over `base` (changes win; `None`
/// deletes): the merge every overlay-like view performs, one pass over each.
pub fn merged_prefix_visit<B: StateRead + ?Sized>(
    base: &B,
    changes: &Changes,
    prefix: &[u8],
    visit: &mut Visitor<'_>,
) -> Result<(), StoreError> {
    let mut pending = changes
        .range(prefix.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .peekable();
    let mut stopped = false;
    base.prefix_visit(prefix, &mut |key, value| {
        // Changed keys that sort before this base key come first.
        while let Some((changed, new)) = pending.peek() {
            if changed.as_slice() >= key {
                break;
            }
            if let Some(new) = new {
                if visit(changed, new).is_break() {
                    stopped = true;
                    return ControlFlow::Break(());
                }
            }
            pending.next();
        }
        let flow = match pending.peek() {
            Some((changed, new)) if changed.as_slice() == key => {
                let flow = match new {
                    Some(new) => visit(changed, new),
                    None => ControlFlow::Continue(()),
                };
                pending.next();
                flow
            }
            _ => visit(key, value),
        };
        if flow.is_break() {
            stopped = true;
        }
        flow
    })?;
    if !stopped {
        for (changed, new) in pending {
            if let Some(new) = new {
                if visit(changed, new).is_break() {
                    break;
                }
            }
        }
    }
    Ok(())
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
    fn prefix_visit(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        (**self).prefix_visit(prefix, visit)
    }
    fn prefix_raw(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        (**self).prefix_raw(prefix)
    }
}

impl<T: StateRead + ?Sized> StateRead for &mut T {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_raw(key)
    }
    fn prefix_visit(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        (**self).prefix_visit(prefix, visit)
    }
    fn prefix_raw(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
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
    fn prefix_visit(&self, _prefix: &[u8], _visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        Ok(())
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

    fn prefix_visit(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        merged_prefix_visit(&self.base, &self.changes, prefix, visit)
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

    /// The streaming merge agrees with a model (a BTreeMap with the changes
    /// applied) for every prefix, and stopping early visits a strict prefix
    /// of the full scan.
    #[test]
    fn streaming_merge_matches_the_model_and_stops_early() {
        let mut base = Overlay::new(EmptyState);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for i in 0u8..40 {
            let key = vec![b'k', i % 4, i];
            base.put_raw(key.clone(), vec![i]);
            model.insert(key, vec![i]);
        }
        let mut top = Overlay::new(&base);
        for i in (0u8..60).step_by(3) {
            let key = vec![b'k', i % 4, i];
            if i % 2 == 0 {
                top.delete_raw(key.clone());
                model.remove(&key);
            } else {
                top.put_raw(key.clone(), vec![i, i]);
                model.insert(key, vec![i, i]);
            }
        }
        for prefix in [
            &b"k"[..],
            &[b'k', 0],
            &[b'k', 1],
            &[b'k', 3],
            &b"z"[..],
            &[],
        ] {
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(top.prefix_raw(prefix).unwrap(), expected, "{prefix:?}");
            for stop_after in [0usize, 1, 5] {
                let mut seen = Vec::new();
                top.prefix_visit(prefix, &mut |k, _| {
                    seen.push(k.to_vec());
                    if seen.len() > stop_after {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap();
                let want: Vec<Vec<u8>> = expected
                    .iter()
                    .take(stop_after + 1)
                    .map(|(k, _)| k.clone())
                    .collect();
                assert_eq!(seen, want, "{prefix:?} stop after {stop_after}");
            }
        }
    }
}
