//! The bridge between the JMT and rocksdb: [`TreeDb`] serves jmt's
//! `TreeReader` from the node column family and the versioned values.

use std::collections::BTreeMap;

use jmt::storage::{LeafNode, Node, NodeBatch, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version};
use rocksdb::DB;
use sha2::Sha256;

use super::keys::{self, CF_NODES, CF_PREIMAGE, CF_VERSIONED};
use crate::StoreError;

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or_else(|| StoreError(format!("column family {name} is missing")))
}

pub(crate) fn db_err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{context}: {e}"))
}

/// Reads the newest entry of `raw_key` in the versioned keyspace whose version
/// is `<= max_version`. `Ok(None)` if the key is absent or deleted at that version.
pub(crate) fn versioned_get(
    db: &DB,
    raw_key: &[u8],
    max_version: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let cf = cf(db, CF_VERSIONED)?;
    let seek = keys::versioned_key(raw_key, max_version);
    let group_len = seek.len() - 8;
    let mut it = db.raw_iterator_cf(cf);
    it.seek(&seek);
    if let (Some(k), Some(v)) = (it.key(), it.value()) {
        if k.len() == seek.len() && k[..group_len] == seek[..group_len] {
            return keys::decode_value(v);
        }
        return Ok(None);
    }
    it.status()
        .map_err(|e| db_err("reading a versioned value", e))?;
    Ok(None)
}

/// A `TreeReader` over the store's rocksdb.
pub(crate) struct TreeDb<'a> {
    pub(crate) db: &'a DB,
    /// When the very first commit uses a version `v > 0`, jmt looks for the root
    /// of `v - 1`; this node key then reads as the empty (`Null`) tree.
    pub(crate) empty_root: Option<NodeKey>,
}

impl TreeDb<'_> {
    pub(crate) fn read_node(&self, node_key: &NodeKey) -> Result<Option<Node>, StoreError> {
        if self.empty_root.as_ref() == Some(node_key) {
            return Ok(Some(Node::Null));
        }
        let key = keys::node_key_bytes(node_key)?;
        let Some(bytes) = self
            .db
            .get_pinned_cf(cf(self.db, CF_NODES)?, key)
            .map_err(|e| db_err("reading a JMT node", e))?
        else {
            return Ok(None);
        };
        borsh::from_slice::<Node>(&bytes)
            .map(Some)
            .map_err(|e| db_err("decoding a JMT node", e))
    }
}

impl TreeReader for TreeDb<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.read_node(node_key)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let Some(raw_key) = self
            .db
            .get_cf(cf(self.db, CF_PREIMAGE)?, key_hash.0)
            .map_err(|e| db_err("reading a key preimage", e))?
        else {
            return Ok(None);
        };
        Ok(versioned_get(self.db, &raw_key, max_version)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("kiln-store does not support JMT restore (get_rightmost_leaf)")
    }
}

/// A `TreeReader` that sees a tree computed in memory for `version` (by an
/// earlier pass over the same version) as if it were the committed tree of
/// `version - 1`: the old root key reads as the new root, new nodes come from
/// memory, everything else from the base reader.
struct PassOverlay<'a> {
    base: &'a TreeDb<'a>,
    nodes: &'a BTreeMap<NodeKey, Node>,
    previous_root: NodeKey,
    new_root: NodeKey,
}

impl TreeReader for PassOverlay<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = if *node_key == self.previous_root {
            &self.new_root
        } else {
            node_key
        };
        match self.nodes.get(key) {
            Some(node) => Ok(Some(node.clone())),
            None if *node_key == self.previous_root => {
                anyhow::bail!("the first pass produced no root node")
            }
            None => self.base.get_node_option(key),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        self.base.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        self.base.get_rightmost_leaf()
    }
}

/// The reference update: jmt's one-key-at-a-time `put_value_set`. Handles
/// deletions and empty blocks; re-hashes the path to the root for every key.
pub(crate) fn sequential_update(
    reader: &TreeDb<'_>,
    value_set: &BTreeMap<KeyHash, Option<Vec<u8>>>,
    version: u64,
) -> Result<(RootHash, TreeUpdateBatch), StoreError> {
    JellyfishMerkleTree::<_, Sha256>::new(reader)
        .put_value_set(value_set.iter().map(|(k, v)| (*k, v.clone())), version)
        .map_err(|e| db_err(&format!("computing the tree of version {version}"), e))
}

/// The tree update of one version. jmt's `put_value_set` re-hashes every
/// internal node on the path of every key; its `batch_put_value_sets` hashes
/// each touched node once (about half the work for large blocks) but cannot
/// delete. So: deletions first with `put_value_set` (pass 1), then all sets
/// with `batch_put_value_sets` on top of pass 1's in-memory tree (pass 2), and
/// the two batches merged. Nodes created by pass 1 and replaced by pass 2 were
/// never persisted, so they are dropped rather than marked stale. The root only
/// depends on the final key set (the JMT is history-independent); unit tests
/// compare it with [`sequential_update`].
pub(crate) fn update(
    reader: &TreeDb<'_>,
    value_set: &BTreeMap<KeyHash, Option<Vec<u8>>>,
    version: u64,
    base: Option<u64>,
) -> Result<(RootHash, TreeUpdateBatch), StoreError> {
    let puts: Vec<(KeyHash, OwnedValue)> = value_set
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect();
    let has_deletes = puts.len() < value_set.len();
    if puts.is_empty() {
        return sequential_update(reader, value_set, version);
    }
    let err = |e: anyhow::Error| db_err(&format!("computing the tree of version {version}"), e);
    let (Some(previous), true) = (base, has_deletes) else {
        // No deletions (or an empty tree, where deletions are no-ops): one batch pass.
        let (roots, batch) = JellyfishMerkleTree::<_, Sha256>::new(reader)
            .batch_put_value_sets(vec![puts], None, version)
            .map_err(err)?;
        let root = roots
            .first()
            .copied()
            .ok_or_else(|| StoreError("jmt returned no root".into()))?;
        return Ok((root, batch));
    };
    let deletes: Vec<(KeyHash, Option<OwnedValue>)> = value_set
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| (*k, None))
        .collect();
    let (_, first) = JellyfishMerkleTree::<_, Sha256>::new(reader)
        .put_value_set(deletes, version)
        .map_err(err)?;
    let overlay = PassOverlay {
        base: reader,
        nodes: first.node_batch.nodes(),
        previous_root: keys::root_node_key(previous)?,
        new_root: keys::root_node_key(version)?,
    };
    let (roots, second) = JellyfishMerkleTree::<_, Sha256>::new(&overlay)
        .batch_put_value_sets(vec![puts], None, version)
        .map_err(err)?;
    let root = roots
        .first()
        .copied()
        .ok_or_else(|| StoreError("jmt returned no root".into()))?;

    let mut nodes = first.node_batch.nodes().clone();
    for stale in &second.stale_node_index_batch {
        if stale.node_key.version() == version {
            nodes.remove(&stale.node_key);
        }
    }
    nodes.extend(
        second
            .node_batch
            .nodes()
            .iter()
            .map(|(k, n)| (k.clone(), n.clone())),
    );
    let stale_node_index_batch = first
        .stale_node_index_batch
        .into_iter()
        .chain(second.stale_node_index_batch)
        .filter(|s| s.node_key.version() < version)
        .collect();
    let batch = TreeUpdateBatch {
        node_batch: NodeBatch::new(nodes, BTreeMap::new()),
        stale_node_index_batch,
        node_stats: Vec::new(),
    };
    Ok((root, batch))
}
