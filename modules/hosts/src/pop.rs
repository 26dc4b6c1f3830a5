//! Proof of possession of a consensus key.
//!
//! Registering a host, or rotating its key, names an ed25519 consensus key.
//! Without a proof anyone could claim a key they do not hold — for instance
//! another operator's, before that operator registers (squatting). So the
//! message carries an ed25519 signature by the consensus key itself over
//!
//! ```text
//! "kiln/consensus-key/v1" ‖ u32 BE len(chain_id) ‖ chain_id ‖ owner's 20 address bytes
//! ```
//!
//! The domain tag keeps the signature from being a valid CometBFT vote or
//! anything else the key signs; the chain id and owner bind it to one chain
//! and one account, so it cannot be replayed by someone else or elsewhere.
//! Verification is ed25519-dalek's `verify_strict` (rejects non-canonical
//! and small-order keys and signatures).

use ed25519_dalek::{Signature, VerifyingKey};
use kiln_framework::Address;

/// Domain tag of the proof message.
pub const DOMAIN: &[u8] = b"kiln/consensus-key/v1";
/// Length of the proof: one ed25519 signature.
pub const PROOF_LEN: usize = 64;

/// The bytes the consensus key signs.
pub fn message(chain_id: &str, owner: &Address) -> Vec<u8> {
    let len = u32::try_from(chain_id.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(DOMAIN.len() + 4 + chain_id.len() + 20);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(owner.as_bytes());
    out
}

/// Whether `proof` is `pubkey`'s signature of [`message`] (strict ed25519).
pub fn verify(pubkey: &[u8], proof: &[u8], chain_id: &str, owner: &Address) -> Result<(), String> {
    let key_bytes = <[u8; 32]>::try_from(pubkey)
        .map_err(|_| format!("consensus key is {} bytes, expected 32", pubkey.len()))?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| "consensus key is not a valid ed25519 point".to_string())?;
    let sig_bytes = <[u8; PROOF_LEN]>::try_from(proof).map_err(|_| {
        format!(
            "consensus_key_proof is {} bytes, expected a {PROOF_LEN}-byte ed25519 signature",
            proof.len()
        )
    })?;
    let signature = Signature::from_bytes(&sig_bytes);
    key.verify_strict(&message(chain_id, owner), &signature)
        .map_err(|_| {
            format!(
                "consensus_key_proof is not the consensus key's signature over \"kiln/consensus-key/v1\" ‖ chain id {chain_id:?} ‖ owner {owner}: prove you hold the key (kiln tx host register --consensus-key-file priv_validator_key.json)"
            )
        })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    #[test]
    fn a_proof_verifies_only_for_its_key_chain_and_owner() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let owner = Address([1; 20]);
        let proof = key.sign(&message("kiln-1", &owner)).to_bytes();
        let pk = key.verifying_key().to_bytes();
        assert!(verify(&pk, &proof, "kiln-1", &owner).is_ok());
        assert!(verify(&pk, &proof, "kiln-2", &owner).is_err());
        assert!(verify(&pk, &proof, "kiln-1", &Address([2; 20])).is_err());
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(verify(&other, &proof, "kiln-1", &owner).is_err());
        assert!(verify(&pk, &proof[..63], "kiln-1", &owner).is_err());
        // The wire format: tag, u32 BE length, chain id, 20 address bytes.
        let m = message("ab", &owner);
        assert_eq!(&m[..21], DOMAIN);
        assert_eq!(&m[21..25], &[0, 0, 0, 2]);
        assert_eq!(&m[25..27], b"ab");
        assert_eq!(&m[27..], &[1; 20]);
    }
}
