//! Messages of the host registry (`kiln.host.v1`), sent by the host's account
//! key, with their stateless checks. Hand-written prost types (no protoc):
//! field numbers are the wire contract with wallets.

use kiln_framework::msg::address_field;
use kiln_framework::{Address, ExecCtx, MsgKind, TxError, TxResult};
use kiln_state::StateWrite;
use serde_json::json;

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
    /// Proof of possession of the consensus key: its ed25519 signature over
    /// `"kiln/consensus-key/v1" ‖ u32 BE len(chain_id) ‖ chain_id ‖ owner's
    /// 20 address bytes` (see [`crate::pop`]).
    #[prost(bytes = "vec", tag = "6")]
    pub consensus_key_proof: Vec<u8>,
}
kiln_framework::proto_name!(MsgRegisterHost, "kiln.host.v1");

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
    /// Proof of possession of the new consensus key (required when the
    /// key changes; same format as in [`MsgRegisterHost`]).
    #[prost(bytes = "vec", tag = "6")]
    pub consensus_key_proof: Vec<u8>,
}
kiln_framework::proto_name!(MsgUpdateHost, "kiln.host.v1");

/// Largest accepted worker URL, model list and hardware summary.
pub const MAX_URL_LEN: usize = 256;
pub const MAX_MODELS: usize = 32;
pub const MAX_TEXT_LEN: usize = 256;

/// The stateless rules of a host record (messages and genesis alike).
pub fn validate_host_fields(
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

fn describe_fields(
    type_url: &str,
    owner: &str,
    url: &str,
    pk: &[u8],
    models: &[String],
    hw: &str,
    proof: &[u8],
) -> serde_json::Value {
    json!({"@type": type_url, "owner": owner, "worker_url": url,
        "consensus_pubkey": hex::encode(pk), "models": models, "hardware": hw,
        "consensus_key_proof": hex::encode(proof)})
}

/// A proof, when given, is one ed25519 signature (checked against the key
/// and chain id at execution).
fn validate_proof_len(proof: &[u8], required: bool) -> TxResult<()> {
    if (required || !proof.is_empty()) && proof.len() != crate::pop::PROOF_LEN {
        return Err(TxError::invalid_request(format!(
            "consensus_key_proof must be a {}-byte ed25519 signature, got {} bytes",
            crate::pop::PROOF_LEN,
            proof.len()
        )));
    }
    Ok(())
}

/// Declaration of `MsgRegisterHost`.
pub struct RegisterHost;

impl MsgKind for RegisterHost {
    type Proto = MsgRegisterHost;
    const TYPE_URL: &'static str = "/kiln.host.v1.MsgRegisterHost";

    fn signer(msg: &MsgRegisterHost) -> TxResult<Address> {
        address_field(&msg.owner, "owner")
    }

    fn validate_basic(msg: &MsgRegisterHost) -> TxResult<()> {
        validate_host_fields(
            &msg.worker_url,
            &msg.consensus_pubkey,
            &msg.models,
            &msg.hardware,
            true,
        )?;
        validate_proof_len(&msg.consensus_key_proof, true)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgRegisterHost,
    ) -> TxResult<()> {
        crate::handler::register_host(state, ctx, msg)
    }

    fn describe(msg: &MsgRegisterHost) -> serde_json::Value {
        describe_fields(
            Self::TYPE_URL,
            &msg.owner,
            &msg.worker_url,
            &msg.consensus_pubkey,
            &msg.models,
            &msg.hardware,
            &msg.consensus_key_proof,
        )
    }
}

/// Declaration of `MsgUpdateHost`.
pub struct UpdateHost;

impl MsgKind for UpdateHost {
    type Proto = MsgUpdateHost;
    const TYPE_URL: &'static str = "/kiln.host.v1.MsgUpdateHost";

    fn signer(msg: &MsgUpdateHost) -> TxResult<Address> {
        address_field(&msg.owner, "owner")
    }

    fn validate_basic(msg: &MsgUpdateHost) -> TxResult<()> {
        validate_host_fields(
            &msg.worker_url,
            &msg.consensus_pubkey,
            &msg.models,
            &msg.hardware,
            false,
        )?;
        validate_proof_len(&msg.consensus_key_proof, false)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgUpdateHost,
    ) -> TxResult<()> {
        crate::handler::update_host(state, ctx, msg)
    }

    fn describe(msg: &MsgUpdateHost) -> serde_json::Value {
        describe_fields(
            Self::TYPE_URL,
            &msg.owner,
            &msg.worker_url,
            &msg.consensus_pubkey,
            &msg.models,
            &msg.hardware,
            &msg.consensus_key_proof,
        )
    }
}
