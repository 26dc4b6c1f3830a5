//! Proof format: a JMT `SparseMerkleProof<Sha256>` serialized with borsh.

use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash};
use sha2::Sha256;

/// Checks a proof returned by [`Storage::get_with_proof`](super::Storage::get_with_proof):
/// `true` iff `proof` shows that, under `root`, `key` maps to `value`
/// (`Some`: inclusion) or is absent (`None`: exclusion). Any malformed proof
/// is simply `false`.
pub fn verify_proof(root: &[u8; 32], key: &[u8], value: Option<&[u8]>, proof: &[u8]) -> bool {
    let Ok(proof) = borsh::from_slice::<SparseMerkleProof<Sha256>>(proof) else {
        return false;
    };
    proof
        .verify(RootHash(*root), KeyHash::with::<Sha256>(key), value)
        .is_ok()
}
