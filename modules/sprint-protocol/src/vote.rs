//! The sprint vote commitment (SPEC §4 "Validation"), shared by the chain
//! (which checks reveals) and the worker (which commits).
//!
//! `SHA256("kiln/vote/v1" ‖ len(chain_id) u64 LE ‖ chain_id ‖ epoch u64 LE ‖
//! host 20 bytes ‖ voter 20 bytes ‖ vote byte ‖ salt)`, vote byte 1 = valid.
//! Binding the voter (and host, epoch, chain) means a commitment copied from
//! another voter can never be revealed by the copier.

use crate::{Address, Hash32};
use sha2::{Digest, Sha256};

/// Domain tag of the v1 vote commitment.
pub const VOTE_DOMAIN: &[u8] = b"kiln/vote/v1";

/// The commitment `voter` posts for its vote on `host`'s opening.
pub fn vote_commitment(
    chain_id: &str,
    epoch: u64,
    host: &Address,
    voter: &Address,
    valid: bool,
    salt: &[u8],
) -> Hash32 {
    let mut h = Sha256::new();
    h.update(VOTE_DOMAIN);
    h.update((chain_id.len() as u64).to_le_bytes());
    h.update(chain_id.as_bytes());
    h.update(epoch.to_le_bytes());
    h.update(host);
    h.update(voter);
    h.update([u8::from(valid)]);
    h.update(salt);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commitment_binds_every_field() {
        let base = vote_commitment("c", 1, &[1; 20], &[2; 20], true, b"salt");
        assert_ne!(
            base,
            vote_commitment("d", 1, &[1; 20], &[2; 20], true, b"salt")
        );
        assert_ne!(
            base,
            vote_commitment("c", 2, &[1; 20], &[2; 20], true, b"salt")
        );
        assert_ne!(
            base,
            vote_commitment("c", 1, &[3; 20], &[2; 20], true, b"salt")
        );
        assert_ne!(
            base,
            vote_commitment("c", 1, &[1; 20], &[3; 20], true, b"salt")
        );
        assert_ne!(
            base,
            vote_commitment("c", 1, &[1; 20], &[2; 20], false, b"salt")
        );
        assert_ne!(
            base,
            vote_commitment("c", 1, &[1; 20], &[2; 20], true, b"salT")
        );
    }
}
