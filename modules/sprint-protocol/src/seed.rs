//! Seed and key derivation (SPEC §4). All keys are SHA-256 digests over a plain
//! concatenation of the listed parts (no length prefixes).

use crate::{Address, Hash32};
use sha2::{Digest, Sha256};

/// Domain tag of the v1 sprint.
pub const SPRINT_DOMAIN: &[u8] = b"kiln/sprint/v1";

fn sha(parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `seed = SHA256("kiln/sprint/v1" ‖ chain_id ‖ epoch u64 LE ‖ hash of block S)`.
pub fn sprint_seed(chain_id: &str, epoch: u64, block_hash: &[u8]) -> Hash32 {
    sha(&[
        SPRINT_DOMAIN,
        chain_id.as_bytes(),
        &epoch.to_le_bytes(),
        block_hash,
    ])
}

/// Key of the weight tensor `name`: `SHA256(seed ‖ name)`.
pub fn tensor_key(seed: &Hash32, name: &str) -> Hash32 {
    sha(&[seed, name.as_bytes()])
}

/// Key of the target vector: `SHA256(seed ‖ "target")`.
pub fn target_key(seed: &Hash32) -> Hash32 {
    sha(&[seed, b"target"])
}

/// `nkey = SHA256(seed ‖ addr ‖ n u64 LE)`.
pub fn nonce_key(seed: &Hash32, addr: &Address, nonce: u64) -> Hash32 {
    sha(&[seed, addr, &nonce.to_le_bytes()])
}

/// Key of the output permutation: `SHA256(nkey ‖ "perm")`.
pub fn perm_key(nkey: &Hash32) -> Hash32 {
    sha(&[nkey, b"perm"])
}

/// Plain SHA-256 (exposed for callers that hash other protocol objects).
pub fn sha256(data: &[u8]) -> Hash32 {
    sha(&[data])
}
