//! Sprint message builders for scenario tests: deterministic per-host
//! secrets, commitments that carry their secret hash, secret reveals, and
//! openings in the wire shape the chain checks (each sampled leaf followed
//! by its right-hand neighbour, with proofs). Leaves are `(nonce, d_q)`.

use kiln_framework::Address;
use kiln_sprint::msgs::{MsgSprintCommit, MsgSprintOpen, MsgSprintRevealSecret, OpenedLeaf};
use kiln_sprint_protocol::{challenge, leaf, merkle, Hash32};
use kiln_store::StateRead;
use sha2::{Digest, Sha256};

/// A deterministic 32-byte secret for `host` in `epoch`.
pub fn test_secret(host: &Address, epoch: u64) -> Hash32 {
    node_test_secret(host, "", epoch)
}

/// A deterministic 32-byte secret for a sprint unit (`ml_node` empty: the
/// host's own worker, the same as [`test_secret`]).
pub fn node_test_secret(host: &Address, ml_node: &str, epoch: u64) -> Hash32 {
    Sha256::new()
        .chain_update(b"kiln-testkit/secret")
        .chain_update(host.as_bytes())
        .chain_update(ml_node.as_bytes())
        .chain_update(epoch.to_le_bytes())
        .finalize()
        .into()
}

/// The Merkle tree over `leaves`.
pub fn tree(leaves: &[(u64, u32)]) -> merkle::MerkleTree {
    merkle::MerkleTree::new(
        leaves
            .iter()
            .map(|(n, d)| leaf::leaf_hash(*n, *d))
            .collect(),
    )
    .expect("at least one leaf")
}

/// `MsgSprintCommit` over `leaves`, with the hash of [`test_secret`].
pub fn commit_msg(host: &Address, epoch: u64, leaves: &[(u64, u32)]) -> MsgSprintCommit {
    node_commit_msg(host, "", epoch, leaves)
}

/// `MsgSprintCommit` of one of `host`'s ML nodes over `leaves`, with the
/// hash of [`node_test_secret`].
pub fn node_commit_msg(
    host: &Address,
    ml_node: &str,
    epoch: u64,
    leaves: &[(u64, u32)],
) -> MsgSprintCommit {
    MsgSprintCommit {
        host: host.to_bech32(),
        epoch,
        root: tree(leaves).root().to_vec(),
        count: leaves.len() as u64,
        secret_hash: challenge::secret_hash(&node_test_secret(host, ml_node, epoch)).to_vec(),
        ml_node: ml_node.to_string(),
    }
}

/// `MsgSprintRevealSecret` of [`test_secret`].
pub fn reveal_msg(host: &Address, epoch: u64) -> MsgSprintRevealSecret {
    node_reveal_msg(host, "", epoch)
}

/// `MsgSprintRevealSecret` of [`node_test_secret`].
pub fn node_reveal_msg(host: &Address, ml_node: &str, epoch: u64) -> MsgSprintRevealSecret {
    MsgSprintRevealSecret {
        host: host.to_bech32(),
        epoch,
        secret: node_test_secret(host, ml_node, epoch).to_vec(),
        ml_node: ml_node.to_string(),
    }
}

/// `host`'s challenge in `epoch` as the chain computed it (after the
/// challenge block): `SHA256(beacon ‖ addr)`.
pub fn host_challenge<S: StateRead + ?Sized>(state: &S, epoch: u64, host: &Address) -> Hash32 {
    kiln_sprint::beacon::host_challenge(state, epoch, host)
        .expect("state read")
        .expect("beacon recorded at the challenge block")
}

/// The leaves to open for `challenge` (sampled, each followed by its
/// neighbour), with proofs over `leaves`.
pub fn opened_leaves(leaves: &[(u64, u32)], challenge: &Hash32, samples: u32) -> Vec<OpenedLeaf> {
    let count = leaves.len() as u32;
    let tree = tree(leaves);
    let sampled = challenge::sample_indices(challenge, count, samples);
    challenge::opening_indices(&sampled, count)
        .into_iter()
        .map(|ix| {
            let (nonce, d_q) = leaves[ix as usize];
            OpenedLeaf {
                index: u64::from(ix),
                nonce,
                distance_q: d_q,
                proof: tree
                    .proof(u64::from(ix))
                    .expect("index below count")
                    .iter()
                    .map(|p| p.to_vec())
                    .collect(),
            }
        })
        .collect()
}

/// `MsgSprintOpen` of [`opened_leaves`] for `host`'s challenge in the latest state.
pub fn open_msg<S: StateRead + ?Sized>(
    state: &S,
    host: &Address,
    epoch: u64,
    leaves: &[(u64, u32)],
    samples: u32,
) -> MsgSprintOpen {
    node_open_msg(state, host, "", epoch, leaves, samples)
}

/// `MsgSprintOpen` of one of `host`'s ML nodes, for its challenge
/// (`SHA256(beacon ‖ host ‖ node id)`) in the latest state.
pub fn node_open_msg<S: StateRead + ?Sized>(
    state: &S,
    host: &Address,
    ml_node: &str,
    epoch: u64,
    leaves: &[(u64, u32)],
    samples: u32,
) -> MsgSprintOpen {
    let challenge = kiln_sprint::beacon::unit_challenge(state, epoch, host, ml_node)
        .expect("state read")
        .expect("beacon recorded at the challenge block");
    MsgSprintOpen {
        host: host.to_bech32(),
        epoch,
        leaves: opened_leaves(leaves, &challenge, samples),
        ml_node: ml_node.to_string(),
    }
}
