//! The bridge between the JMT and rocksdb: [`TreeDb`] serves jmt's
//! `TreeReader` from the node column family and the versioned values.

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use rocksdb::DB;

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
    it.status().map_err(|e| db_err("reading a versioned value", e))?;
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
