//! The genesis ceremony's signed host registrations (SPEC §10): each future
//! validator runs `kilnd genesis gentx` on its own machine, which signs its
//! genesis host entry twice — with its account key (so nobody can name an
//! account that did not agree) and with its consensus key (the proof of
//! possession a `MsgRegisterHost` carries, `kiln_hosts::pop`) — and the
//! coordinator's `kilnd genesis collect-gentxs` checks every signature and
//! writes the hosts into `app_state.hosts`. The validator set is then what
//! InitChain derives from those hosts.
//!
//! Account signature: secp256k1 ECDSA (SHA-256, low-S) by the account key
//! over `"kiln/gentx/v1" ‖ JSON of [chain_id, host, consensus_key_proof]`.

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use kiln_framework::Address;
use kiln_hosts::GenesisHost;

/// Domain tag of the account signature.
pub const DOMAIN: &[u8] = b"kiln/gentx/v1";

/// One signed genesis host registration (the file `gentx` writes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gentx {
    pub chain_id: String,
    pub host: GenesisHost,
    /// Hex of the consensus key's proof of possession over (chain id, owner).
    pub consensus_key_proof: String,
    /// Hex of the account's compressed secp256k1 public key.
    pub account_pubkey: String,
    /// Hex of the account key's 64-byte signature of [`sign_bytes`].
    pub account_signature: String,
}

/// The bytes the account key signs.
pub fn sign_bytes(chain_id: &str, host: &GenesisHost, consensus_key_proof: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&(chain_id, host, consensus_key_proof)).unwrap_or_default();
    [DOMAIN, body.as_slice()].concat()
}

impl Gentx {
    /// Signs `host` (whose `owner` and `consensus_pubkey` must be the two
    /// keys' own) for `chain_id`.
    pub fn sign(
        chain_id: &str,
        host: GenesisHost,
        consensus_key: &ed25519_dalek::SigningKey,
        account_key: &SigningKey,
    ) -> Result<Gentx, String> {
        use ed25519_dalek::Signer as _;
        let account_pubkey = account_key.verifying_key().to_encoded_point(true);
        let owner = Address(kiln_client::keyring::address_bytes_from_pubkey(
            account_pubkey.as_bytes(),
        ));
        if owner != host.owner {
            return Err(format!(
                "the account key is {owner}, not the host's owner {}",
                host.owner
            ));
        }
        if hex::encode(consensus_key.verifying_key().as_bytes()) != host.consensus_pubkey {
            return Err("the consensus key is not the host's consensus_pubkey".into());
        }
        let proof = consensus_key.sign(&kiln_hosts::pop::message(chain_id, &owner));
        let proof_hex = hex::encode(proof.to_bytes());
        let signature: Signature = account_key.sign(&sign_bytes(chain_id, &host, &proof_hex));
        let signature = signature.normalize_s().unwrap_or(signature);
        Ok(Gentx {
            chain_id: chain_id.to_string(),
            host,
            consensus_key_proof: proof_hex,
            account_pubkey: hex::encode(account_pubkey.as_bytes()),
            account_signature: hex::encode(signature.to_bytes()),
        })
    }

    /// Checks both signatures, that the account is the owner, the chain id
    /// and the host entry's own rules.
    pub fn verify(&self, chain_id: &str) -> Result<(), String> {
        if self.chain_id != chain_id {
            return Err(format!(
                "made for chain {:?}, not {chain_id:?}",
                self.chain_id
            ));
        }
        kiln_hosts::HostsGenesis {
            ml_nodes: Vec::new(),
            hosts: vec![self.host.clone()],
        }
        .validate()?;
        if self.host.weight == 0 {
            return Err("a genesis host needs a positive weight".into());
        }
        let pubkey = hex::decode(&self.account_pubkey)
            .map_err(|_| "account_pubkey is not hex".to_string())?;
        let owner = Address(kiln_client::keyring::address_bytes_from_pubkey(&pubkey));
        if owner != self.host.owner {
            return Err(format!(
                "signed by account {owner}, but the host's owner is {}",
                self.host.owner
            ));
        }
        let key = VerifyingKey::from_sec1_bytes(&pubkey)
            .map_err(|_| "account_pubkey is not a secp256k1 key".to_string())?;
        let sig_bytes = hex::decode(&self.account_signature)
            .map_err(|_| "account_signature is not hex".to_string())?;
        let signature = Signature::from_slice(&sig_bytes)
            .map_err(|_| "account_signature is not a 64-byte signature".to_string())?;
        if signature.normalize_s().is_some() {
            return Err("account_signature is high-S".into());
        }
        key.verify(
            &sign_bytes(chain_id, &self.host, &self.consensus_key_proof),
            &signature,
        )
        .map_err(|_| {
            "the account signature does not match the entry (was it edited after signing?)"
                .to_string()
        })?;
        let consensus = hex::decode(&self.host.consensus_pubkey)
            .map_err(|_| "consensus_pubkey is not hex".to_string())?;
        let proof = hex::decode(&self.consensus_key_proof)
            .map_err(|_| "consensus_key_proof is not hex".to_string())?;
        kiln_hosts::pop::verify(&consensus, &proof, chain_id, &self.host.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (ed25519_dalek::SigningKey, SigningKey, GenesisHost) {
        let consensus = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let account = SigningKey::from_slice(&[9; 32]).unwrap();
        let owner = Address(kiln_client::keyring::address_bytes_from_pubkey(
            account.verifying_key().to_encoded_point(true).as_bytes(),
        ));
        let host = GenesisHost {
            owner,
            worker_url: "http://127.0.0.1:8090".into(),
            consensus_pubkey: hex::encode(consensus.verifying_key().as_bytes()),
            models: vec![],
            hardware: "test".into(),
            weight: 100,
        };
        (consensus, account, host)
    }

    #[test]
    fn a_signed_gentx_verifies_and_any_edit_breaks_it() {
        let (consensus, account, host) = keys();
        let g = Gentx::sign("kiln-ceremony", host, &consensus, &account).unwrap();
        g.verify("kiln-ceremony").unwrap();
        assert!(g
            .verify("other-chain")
            .unwrap_err()
            .contains("made for chain"));
        let mut heavier = g.clone();
        heavier.host.weight = 1_000_000;
        assert!(heavier
            .verify("kiln-ceremony")
            .unwrap_err()
            .contains("edited after signing"));
        let mut stolen = g.clone();
        stolen.host.owner = Address([1; 20]);
        assert!(stolen
            .verify("kiln-ceremony")
            .unwrap_err()
            .contains("owner"));
        let mut bad_proof = g;
        bad_proof.consensus_key_proof = hex::encode([0u8; 64]);
        assert!(bad_proof.verify("kiln-ceremony").is_err());
    }

    #[test]
    fn signing_refuses_keys_that_are_not_the_hosts() {
        let (consensus, account, mut host) = keys();
        host.owner = Address([3; 20]);
        assert!(Gentx::sign("c", host, &consensus, &account).is_err());
    }
}
