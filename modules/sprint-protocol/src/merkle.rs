//! Merkle commitment over leaf hashes (SPEC §4): inner node
//! `SHA256(0x01 ‖ left ‖ right)`; an odd node at the end of a level is carried
//! up unchanged. A proof is the list of siblings from the leaf upwards, only
//! for the levels where the node has a sibling; verification therefore needs
//! the committed `count` (it is in `MsgSprintCommit`). Integer-only and
//! panic-free.

use crate::Hash32;
use sha2::{Digest, Sha256};

/// `SHA256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("empty tree: count must be at least 1")]
    Empty,
    #[error("leaf index {index} out of range for count {count}")]
    IndexOutOfRange { index: u64, count: u64 },
    #[error("proof too short")]
    Truncated,
    #[error("proof too long")]
    TooLong,
    #[error("root mismatch")]
    RootMismatch,
}

/// A full tree (all levels), built by the worker.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash32>>,
}

impl MerkleTree {
    /// Build from leaf hashes. `None` when there are no leaves.
    pub fn new(leaf_hashes: Vec<Hash32>) -> Option<Self> {
        if leaf_hashes.is_empty() {
            return None;
        }
        let mut levels = vec![leaf_hashes];
        while levels.last().map_or(0, |l| l.len()) > 1 {
            let prev = levels.last().map(|l| l.as_slice()).unwrap_or(&[]);
            let next: Vec<Hash32> = prev
                .chunks(2)
                .map(|c| {
                    if c.len() == 2 {
                        node_hash(&c[0], &c[1])
                    } else {
                        c[0]
                    }
                })
                .collect();
            levels.push(next);
        }
        Some(MerkleTree { levels })
    }

    /// Number of leaves.
    pub fn count(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root.
    pub fn root(&self) -> Hash32 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0u8; 32])
    }

    /// Siblings of leaf `index`, bottom-up (levels where the node is a carried
    /// odd node contribute nothing).
    pub fn proof(&self, index: u64) -> Option<Vec<Hash32>> {
        if index >= self.count() {
            return None;
        }
        let mut idx = index as usize;
        let mut out = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sib = idx ^ 1;
            if sib < level.len() {
                out.push(level[sib]);
            }
            idx /= 2;
        }
        Some(out)
    }
}

/// Root of a list of leaf hashes (`None` when empty).
pub fn root_of(leaf_hashes: &[Hash32]) -> Option<Hash32> {
    MerkleTree::new(leaf_hashes.to_vec()).map(|t| t.root())
}

/// Verify that `leaf` sits at `index` in the tree of `count` leaves with
/// `root`. Rejects a wrong leaf, index, root or count and truncated or
/// over-long proofs. Never panics.
pub fn verify_proof(
    root: &Hash32,
    leaf: &Hash32,
    index: u64,
    count: u64,
    proof: &[Hash32],
) -> Result<(), MerkleError> {
    if count == 0 {
        return Err(MerkleError::Empty);
    }
    if index >= count {
        return Err(MerkleError::IndexOutOfRange { index, count });
    }
    let mut acc = *leaf;
    let mut idx = index;
    let mut n = count;
    let mut used = 0usize;
    while n > 1 {
        let sib = idx ^ 1;
        if sib < n {
            let s = proof.get(used).ok_or(MerkleError::Truncated)?;
            used += 1;
            acc = if idx & 1 == 0 {
                node_hash(&acc, s)
            } else {
                node_hash(s, &acc)
            };
        }
        idx /= 2;
        n = n.div_ceil(2);
    }
    if used != proof.len() {
        return Err(MerkleError::TooLong);
    }
    if &acc != root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}
