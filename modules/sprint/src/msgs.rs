//! Messages of the host registry (`kiln.host.v1`) and the sprint
//! (`kiln.sprint.v1`), with their stateless validation. Hand-written prost
//! types (no protoc): field numbers are the wire contract with the worker.

use kiln_framework::{Address, TxError, TxResult};

macro_rules! named {
    ($ty:ident, $package:literal) => {
        impl prost::Name for $ty {
            const NAME: &'static str = stringify!($ty);
            const PACKAGE: &'static str = $package;
            fn full_name() -> String {
                format!("{}.{}", $package, stringify!($ty))
            }
            fn type_url() -> String {
                format!("/{}.{}", $package, stringify!($ty))
            }
        }
    };
}

/// Registers the sender's account as a host (sent by the account key).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgRegisterHost {
    #[prost(string, tag = "1")]
    pub owner: String,
    /// Public URL of the host's worker API.
    #[prost(string, tag = "2")]
    pub worker_url: String,
    /// ed25519 consensus public key (32 bytes, CometBFT `priv_validator_key.json`).
    #[prost(bytes = "vec", tag = "3")]
    pub consensus_pubkey: Vec<u8>,
    #[prost(string, repeated, tag = "4")]
    pub models: Vec<String>,
    #[prost(string, tag = "5")]
    pub hardware: String,
}
named!(MsgRegisterHost, "kiln.host.v1");

/// Replaces a host's URL, models and hardware (and its consensus key if non-empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgUpdateHost {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub worker_url: String,
    #[prost(bytes = "vec", tag = "3")]
    pub consensus_pubkey: Vec<u8>,
    #[prost(string, repeated, tag = "4")]
    pub models: Vec<String>,
    #[prost(string, tag = "5")]
    pub hardware: String,
}
named!(MsgUpdateHost, "kiln.host.v1");

/// A host's Merkle commitment to its sprint shares (the last one before the deadline counts).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintCommit {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub root: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub count: u64,
}
named!(MsgSprintCommit, "kiln.sprint.v1");

/// One opened leaf with its Merkle proof (sibling hashes, leaf level first).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpenedLeaf {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    pub nonce: u64,
    #[prost(uint32, tag = "3")]
    pub distance_q: u32,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub proof: Vec<Vec<u8>>,
}

/// The challenged leaves, in the order the challenge sampled them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintOpen {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(message, repeated, tag = "3")]
    pub leaves: Vec<OpenedLeaf>,
}
named!(MsgSprintOpen, "kiln.sprint.v1");

/// `commitment = SHA256(vote ‖ salt)`, vote = 1 (valid) or 0 (invalid).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintVoteCommit {
    #[prost(string, tag = "1")]
    pub validator: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(string, tag = "3")]
    pub host: String,
    #[prost(bytes = "vec", tag = "4")]
    pub commitment: Vec<u8>,
}
named!(MsgSprintVoteCommit, "kiln.sprint.v1");

#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintVoteReveal {
    #[prost(string, tag = "1")]
    pub validator: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(string, tag = "3")]
    pub host: String,
    #[prost(bool, tag = "4")]
    pub valid: bool,
    #[prost(bytes = "vec", tag = "5")]
    pub salt: Vec<u8>,
}
named!(MsgSprintVoteReveal, "kiln.sprint.v1");

/// The vote commitment a validator posts: `SHA256(vote ‖ salt)`.
pub fn vote_commitment(valid: bool, salt: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([u8::from(valid)]);
    h.update(salt);
    h.finalize().into()
}

pub(crate) fn parse_addr(text: &str, what: &str) -> TxResult<Address> {
    Address::parse(text).map_err(|e| TxError::invalid_address(format!("{what}: {e}")))
}

/// Largest accepted worker URL, model list and hardware summary.
pub const MAX_URL_LEN: usize = 256;
pub const MAX_MODELS: usize = 32;
pub const MAX_TEXT_LEN: usize = 256;

pub(crate) fn validate_host_fields(
    worker_url: &str,
    pubkey: &[u8],
    models: &[String],
    hardware: &str,
    pubkey_required: bool,
) -> TxResult<()> {
    if worker_url.is_empty()
        || worker_url.len() > MAX_URL_LEN
        || !(worker_url.starts_with("http://") || worker_url.starts_with("https://"))
    {
        return Err(TxError::invalid_request(format!(
            "worker_url must be an http(s) URL of at most {MAX_URL_LEN} bytes"
        )));
    }
    if (pubkey_required || !pubkey.is_empty()) && pubkey.len() != 32 {
        return Err(TxError::invalid_pubkey(format!(
            "consensus_pubkey must be a 32-byte ed25519 key, got {} bytes",
            pubkey.len()
        )));
    }
    if models.len() > MAX_MODELS
        || models
            .iter()
            .any(|m| m.is_empty() || m.len() > MAX_TEXT_LEN)
    {
        return Err(TxError::invalid_request(format!(
            "models: at most {MAX_MODELS} non-empty ids"
        )));
    }
    if hardware.len() > MAX_TEXT_LEN {
        return Err(TxError::invalid_request(format!(
            "hardware summary longer than {MAX_TEXT_LEN} bytes"
        )));
    }
    Ok(())
}
