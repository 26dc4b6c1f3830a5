//! Messages of the inference settlement (`kiln.inference.v1`), each declared
//! once ([`MsgKind`]). Both are ML-ops messages: the transfer agent's and the
//! executor's workers send them through `MsgExec` from their hosts' ML keys.
//! Hand-written prost types (no protoc): field numbers are the wire contract
//! with the worker.

use kiln_framework::msg::address_field;
use kiln_framework::{Address, ExecCtx, MsgKind, TxResult};
use kiln_state::StateWrite;
use serde_json::json;

use crate::handler::{self, codes, err};

/// Escrows `(prompt_tokens + max_tokens) × price` from the requester for a
/// request the transfer agent received (SPEC §5). The requester's
/// signature over the request ([`crate::request::RequestHeader`]) is
/// checked again here; `id` must be `SHA256(request_signature)`; `executor`
/// must be the host the draw seeded by `SHA256(hash of block seed_height ‖
/// request_signature)` picks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgStartInference {
    /// The host that received the request (the signer).
    #[prost(string, tag = "1")]
    pub transfer_agent: String,
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub requester: String,
    /// Compressed secp256k1 key of the requester (33 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub requester_pubkey: Vec<u8>,
    #[prost(string, tag = "5")]
    pub model: String,
    /// SHA-256 of the request body the requester signed.
    #[prost(bytes = "vec", tag = "6")]
    pub prompt_hash: Vec<u8>,
    #[prost(uint64, tag = "7")]
    pub prompt_tokens: u64,
    #[prost(uint64, tag = "8")]
    pub max_tokens: u64,
    #[prost(string, tag = "9")]
    pub executor: String,
    #[prost(uint64, tag = "10")]
    pub seed_height: u64,
    /// Unix seconds the requester signed at.
    #[prost(int64, tag = "11")]
    pub request_timestamp: i64,
    #[prost(bytes = "vec", tag = "12")]
    pub request_signature: Vec<u8>,
}
kiln_framework::proto_name!(MsgStartInference, "kiln.inference.v1");

/// The executor's report: pays `(prompt_tokens + completion_tokens) ×
/// price` from the escrow and refunds the rest. May arrive before the start.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgFinishInference {
    /// The executing host (the signer).
    #[prost(string, tag = "1")]
    pub executor: String,
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    /// SHA-256 of the response body's completion text as the executor kept it.
    #[prost(bytes = "vec", tag = "3")]
    pub response_hash: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub completion_tokens: u64,
    /// SHA-256 of the per-position top-k logprobs the validators replay against.
    #[prost(bytes = "vec", tag = "5")]
    pub top_logprobs_hash: Vec<u8>,
}
kiln_framework::proto_name!(MsgFinishInference, "kiln.inference.v1");

fn bytes32(value: &[u8], field: &str) -> TxResult<()> {
    if value.len() != 32 {
        return Err(err(
            codes::BAD_FIELD,
            format!("{field} must be 32 bytes, got {}", value.len()),
        ));
    }
    Ok(())
}

/// Declaration of `MsgStartInference`.
pub struct StartInference;

impl MsgKind for StartInference {
    type Proto = MsgStartInference;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgStartInference";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgStartInference) -> TxResult<Address> {
        address_field(&msg.transfer_agent, "transfer_agent")
    }

    fn validate_basic(msg: &MsgStartInference) -> TxResult<()> {
        bytes32(&msg.id, "id")?;
        bytes32(&msg.prompt_hash, "prompt_hash")?;
        address_field(&msg.requester, "requester")?;
        address_field(&msg.executor, "executor")?;
        if msg.requester_pubkey.len() != 33 {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "requester_pubkey must be 33 bytes (compressed secp256k1), got {}",
                    msg.requester_pubkey.len()
                ),
            ));
        }
        if msg.request_signature.len() != 64 {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "request_signature must be 64 bytes, got {}",
                    msg.request_signature.len()
                ),
            ));
        }
        if msg.model.is_empty() || msg.model.len() > crate::genesis::MAX_MODEL_ID_LEN {
            return Err(err(codes::BAD_FIELD, "model must be a registered model id"));
        }
        if msg.max_tokens == 0 {
            return Err(err(codes::BAD_FIELD, "max_tokens must be at least 1"));
        }
        if msg.id.as_slice() != crate::request::request_id(&msg.request_signature) {
            return Err(err(codes::BAD_ID, "id must be SHA256(request_signature)"));
        }
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgStartInference,
    ) -> TxResult<()> {
        handler::start(state, ctx, msg)
    }

    fn describe(msg: &MsgStartInference) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "transfer_agent": msg.transfer_agent,
            "id": hex::encode(&msg.id), "requester": msg.requester,
            "requester_pubkey": hex::encode(&msg.requester_pubkey), "model": msg.model,
            "prompt_hash": hex::encode(&msg.prompt_hash),
            "prompt_tokens": msg.prompt_tokens.to_string(),
            "max_tokens": msg.max_tokens.to_string(), "executor": msg.executor,
            "seed_height": msg.seed_height.to_string(),
            "request_timestamp": msg.request_timestamp.to_string(),
            "request_signature": hex::encode(&msg.request_signature)})
    }
}

/// Declaration of `MsgFinishInference`.
pub struct FinishInference;

impl MsgKind for FinishInference {
    type Proto = MsgFinishInference;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgFinishInference";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgFinishInference) -> TxResult<Address> {
        address_field(&msg.executor, "executor")
    }

    fn validate_basic(msg: &MsgFinishInference) -> TxResult<()> {
        bytes32(&msg.id, "id")?;
        bytes32(&msg.response_hash, "response_hash")?;
        bytes32(&msg.top_logprobs_hash, "top_logprobs_hash")
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgFinishInference,
    ) -> TxResult<()> {
        handler::finish(state, ctx, msg)
    }

    fn describe(msg: &MsgFinishInference) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "executor": msg.executor, "id": hex::encode(&msg.id),
            "response_hash": hex::encode(&msg.response_hash),
            "completion_tokens": msg.completion_tokens.to_string(),
            "top_logprobs_hash": hex::encode(&msg.top_logprobs_hash)})
    }
}

/// A host's replay of a finished inference it validated: `score_micro` in
/// millionths (1 000 000 = identical top-k logprobs). Below the model's
/// `validation_threshold_micro` it opens a dispute.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgValidation {
    #[prost(string, tag = "1")]
    pub validator: String,
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub score_micro: u64,
}
kiln_framework::proto_name!(MsgValidation, "kiln.inference.v1");

/// A vote on an open dispute by a host serving the model: `invalid` = the
/// executor's work is not the registered model's.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgDisputeVote {
    #[prost(string, tag = "1")]
    pub voter: String,
    #[prost(bytes = "vec", tag = "2")]
    pub id: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub invalid: bool,
}
kiln_framework::proto_name!(MsgDisputeVote, "kiln.inference.v1");

/// Declaration of `MsgValidation`.
pub struct Validation;

impl MsgKind for Validation {
    type Proto = MsgValidation;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgValidation";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgValidation) -> TxResult<Address> {
        address_field(&msg.validator, "validator")
    }

    fn validate_basic(msg: &MsgValidation) -> TxResult<()> {
        bytes32(&msg.id, "id")?;
        if msg.score_micro > 1_000_000 {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "score_micro must be at most 1000000, got {}",
                    msg.score_micro
                ),
            ));
        }
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgValidation,
    ) -> TxResult<()> {
        crate::validation::validate(state, ctx, msg)
    }

    fn describe(msg: &MsgValidation) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "validator": msg.validator, "id": hex::encode(&msg.id),
            "score_micro": msg.score_micro.to_string()})
    }
}

/// Declaration of `MsgDisputeVote`.
pub struct DisputeVote;

impl MsgKind for DisputeVote {
    type Proto = MsgDisputeVote;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgDisputeVote";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgDisputeVote) -> TxResult<Address> {
        address_field(&msg.voter, "voter")
    }

    fn validate_basic(msg: &MsgDisputeVote) -> TxResult<()> {
        bytes32(&msg.id, "id")
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgDisputeVote,
    ) -> TxResult<()> {
        crate::validation::vote(state, ctx, msg)
    }

    fn describe(msg: &MsgDisputeVote) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "voter": msg.voter, "id": hex::encode(&msg.id),
            "invalid": msg.invalid})
    }
}

/// A host's commitment to its validation seed for serving period `period`
/// ([`crate::duties::seed_commitment`]); sent while period `period − 1` or
/// `period` runs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgCommitValidationSeed {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint64, tag = "2")]
    pub period: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub commitment: Vec<u8>,
}
kiln_framework::proto_name!(MsgCommitValidationSeed, "kiln.inference.v1");

/// The seed behind a host's commitment for `period`; sent while period
/// `period + 1` runs. The settle closing that period recomputes the
/// host's duties from it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgRevealValidationSeed {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint64, tag = "2")]
    pub period: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub seed: Vec<u8>,
}
kiln_framework::proto_name!(MsgRevealValidationSeed, "kiln.inference.v1");

/// Declaration of `MsgCommitValidationSeed`.
pub struct CommitValidationSeed;

impl MsgKind for CommitValidationSeed {
    type Proto = MsgCommitValidationSeed;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgCommitValidationSeed";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgCommitValidationSeed) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgCommitValidationSeed) -> TxResult<()> {
        bytes32(&msg.commitment, "commitment")
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgCommitValidationSeed,
    ) -> TxResult<()> {
        crate::duties::commit(state, ctx, msg)
    }

    fn describe(msg: &MsgCommitValidationSeed) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "host": msg.host, "period": msg.period.to_string(),
            "commitment": hex::encode(&msg.commitment)})
    }
}

/// Declaration of `MsgRevealValidationSeed`.
pub struct RevealValidationSeed;

impl MsgKind for RevealValidationSeed {
    type Proto = MsgRevealValidationSeed;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgRevealValidationSeed";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgRevealValidationSeed) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgRevealValidationSeed) -> TxResult<()> {
        bytes32(&msg.seed, "seed")
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgRevealValidationSeed,
    ) -> TxResult<()> {
        crate::duties::reveal(state, ctx, msg)
    }

    fn describe(msg: &MsgRevealValidationSeed) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "host": msg.host, "period": msg.period.to_string(),
            "seed": hex::encode(&msg.seed)})
    }
}
