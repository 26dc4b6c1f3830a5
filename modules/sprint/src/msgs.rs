//! Messages of the sprint (`kiln.sprint.v1`), each declared once with its
//! signer, stateless checks and handler ([`MsgKind`]). All five are ML-ops
//! messages: the worker sends them through `MsgExec` from the host's ML key.
//! Hand-written prost types (no protoc): field numbers are the wire contract
//! with the worker.

use kiln_framework::msg::address_field;
use kiln_framework::{Address, ExecCtx, MsgKind, TxResult};
use kiln_state::StateWrite;
use serde_json::json;

use crate::handler::{self, codes, err};

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
    /// `SHA256("kiln/sprint-secret/v1" ‖ secret)` of the 32-byte secret the
    /// host reveals after the deadline (`MsgSprintRevealSecret`); it feeds
    /// the epoch's challenge beacon.
    #[prost(bytes = "vec", tag = "5")]
    pub secret_hash: Vec<u8>,
    /// The ML node whose tree this is (its nonce lane), or empty for the
    /// host's own worker (lane 0). Each unit commits, reveals and opens
    /// its own tree; the host's raw weight sums its accepted units.
    #[prost(string, tag = "6")]
    pub ml_node: String,
}
kiln_framework::proto_name!(MsgSprintCommit, "kiln.sprint.v1");

/// Reveals the secret behind the host's `secret_hash`, in the `SecretReveal`
/// stage. A host that committed and does not reveal gets no weight.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintRevealSecret {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub secret: Vec<u8>,
    /// The ML node whose commitment's secret this is (empty: the host's own worker).
    #[prost(string, tag = "4")]
    pub ml_node: String,
}
kiln_framework::proto_name!(MsgSprintRevealSecret, "kiln.sprint.v1");

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

/// The challenged leaves: for each sampled index `i`, in the order the
/// challenge sampled them, leaf `i` and then leaf `i + 1` (when `i + 1 <
/// count`), each with its proof (`kiln_sprint_protocol::opening_indices`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintOpen {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(message, repeated, tag = "3")]
    pub leaves: Vec<OpenedLeaf>,
    /// The ML node whose tree is opened (empty: the host's own worker).
    #[prost(string, tag = "4")]
    pub ml_node: String,
}
kiln_framework::proto_name!(MsgSprintOpen, "kiln.sprint.v1");

/// `commitment = kiln_sprint_protocol::vote::vote_commitment(chain_id, epoch,
/// host, voter, vote, salt)`, vote = 1 (valid) or 0 (invalid). In the vote
/// stages it is a committee vote; in the escalation stages, an escalation
/// vote (stored apart).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintVoteCommit {
    /// The committee member casting the vote (wire field 1, formerly `validator`).
    #[prost(string, tag = "1")]
    pub voter: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(string, tag = "3")]
    pub host: String,
    #[prost(bytes = "vec", tag = "4")]
    pub commitment: Vec<u8>,
}
kiln_framework::proto_name!(MsgSprintVoteCommit, "kiln.sprint.v1");

#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSprintVoteReveal {
    /// The committee member casting the vote (wire field 1, formerly `validator`).
    #[prost(string, tag = "1")]
    pub voter: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(string, tag = "3")]
    pub host: String,
    #[prost(bool, tag = "4")]
    pub valid: bool,
    #[prost(bytes = "vec", tag = "5")]
    pub salt: Vec<u8>,
}
kiln_framework::proto_name!(MsgSprintVoteReveal, "kiln.sprint.v1");

/// The vote commitment a voter posts (bound to chain, epoch, host and voter).
pub use kiln_sprint_protocol::vote::vote_commitment;

/// Largest sprint commitment count: leaf indices are u32 on the wire of the
/// challenge (SPEC §4).
pub const MAX_COUNT: u64 = u32::MAX as u64;

/// An ML node id in a sprint message: empty (the host's own worker) or a
/// well-formed id.
fn check_ml_node(ml_node: &str) -> TxResult<()> {
    if ml_node.is_empty() {
        return Ok(());
    }
    kiln_hosts::mlnodes::check_id(ml_node)
        .map_err(|e| err(codes::BAD_ML_NODE, format!("ml_node: {}", e.log)))
}

fn with_ml_node(mut v: serde_json::Value, ml_node: &str) -> serde_json::Value {
    if !ml_node.is_empty() {
        v["ml_node"] = json!(ml_node);
    }
    v
}

/// Declaration of `MsgSprintCommit`.
pub struct SprintCommit;

impl MsgKind for SprintCommit {
    type Proto = MsgSprintCommit;
    const TYPE_URL: &'static str = "/kiln.sprint.v1.MsgSprintCommit";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgSprintCommit) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgSprintCommit) -> TxResult<()> {
        if msg.root.len() != 32 {
            return Err(err(
                codes::BAD_ROOT,
                format!("root must be 32 bytes, got {}", msg.root.len()),
            ));
        }
        if msg.count == 0 || msg.count > MAX_COUNT {
            return Err(err(codes::BAD_COUNT, "count must be between 1 and 2^32-1"));
        }
        if msg.secret_hash.len() != 32 {
            return Err(err(
                codes::BAD_SECRET_HASH,
                format!(
                    "secret_hash must be 32 bytes, got {}",
                    msg.secret_hash.len()
                ),
            ));
        }
        check_ml_node(&msg.ml_node)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSprintCommit,
    ) -> TxResult<()> {
        handler::commit(state, ctx, msg)
    }

    fn describe(msg: &MsgSprintCommit) -> serde_json::Value {
        with_ml_node(
            json!({"@type": Self::TYPE_URL, "host": msg.host, "epoch": msg.epoch.to_string(),
                "root": hex::encode(&msg.root), "count": msg.count.to_string(),
                "secret_hash": hex::encode(&msg.secret_hash)}),
            &msg.ml_node,
        )
    }
}

/// Declaration of `MsgSprintRevealSecret`.
pub struct SprintRevealSecret;

impl MsgKind for SprintRevealSecret {
    type Proto = MsgSprintRevealSecret;
    const TYPE_URL: &'static str = "/kiln.sprint.v1.MsgSprintRevealSecret";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgSprintRevealSecret) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgSprintRevealSecret) -> TxResult<()> {
        if msg.secret.len() != kiln_sprint_protocol::challenge::SECRET_BYTES {
            return Err(err(
                codes::BAD_SECRET,
                format!("secret must be 32 bytes, got {}", msg.secret.len()),
            ));
        }
        check_ml_node(&msg.ml_node)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSprintRevealSecret,
    ) -> TxResult<()> {
        handler::reveal_secret(state, ctx, msg)
    }

    fn describe(msg: &MsgSprintRevealSecret) -> serde_json::Value {
        with_ml_node(
            json!({"@type": Self::TYPE_URL, "host": msg.host, "epoch": msg.epoch.to_string(),
                "secret": hex::encode(&msg.secret)}),
            &msg.ml_node,
        )
    }
}

/// Declaration of `MsgSprintOpen`.
pub struct SprintOpen;

impl MsgKind for SprintOpen {
    type Proto = MsgSprintOpen;
    const TYPE_URL: &'static str = "/kiln.sprint.v1.MsgSprintOpen";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgSprintOpen) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgSprintOpen) -> TxResult<()> {
        for (i, leaf) in msg.leaves.iter().enumerate() {
            if let Some(j) = leaf.proof.iter().position(|p| p.len() != 32) {
                return Err(err(
                    codes::BAD_PROOF,
                    format!("leaf {i}: proof element {j} is not 32 bytes"),
                ));
            }
        }
        check_ml_node(&msg.ml_node)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSprintOpen,
    ) -> TxResult<()> {
        handler::open(state, ctx, msg)
    }

    fn describe(msg: &MsgSprintOpen) -> serde_json::Value {
        let leaves: Vec<_> = msg
            .leaves
            .iter()
            .map(|l| {
                json!({"index": l.index.to_string(), "nonce": l.nonce.to_string(),
                    "distance_q": l.distance_q,
                    "proof": l.proof.iter().map(hex::encode).collect::<Vec<_>>()})
            })
            .collect();
        with_ml_node(
            json!({"@type": Self::TYPE_URL, "host": msg.host, "epoch": msg.epoch.to_string(), "leaves": leaves}),
            &msg.ml_node,
        )
    }
}

/// Declaration of `MsgSprintVoteCommit`.
pub struct SprintVoteCommit;

impl MsgKind for SprintVoteCommit {
    type Proto = MsgSprintVoteCommit;
    const TYPE_URL: &'static str = "/kiln.sprint.v1.MsgSprintVoteCommit";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgSprintVoteCommit) -> TxResult<Address> {
        address_field(&msg.voter, "voter")
    }

    fn validate_basic(msg: &MsgSprintVoteCommit) -> TxResult<()> {
        address_field(&msg.host, "host")?;
        if msg.commitment.len() != 32 {
            return Err(err(
                codes::BAD_VOTE_COMMITMENT,
                "vote commitment must be 32 bytes",
            ));
        }
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSprintVoteCommit,
    ) -> TxResult<()> {
        handler::vote_commit(state, ctx, msg)
    }

    fn describe(msg: &MsgSprintVoteCommit) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "voter": msg.voter, "epoch": msg.epoch.to_string(),
            "host": msg.host, "commitment": hex::encode(&msg.commitment)})
    }
}

/// Declaration of `MsgSprintVoteReveal`.
pub struct SprintVoteReveal;

impl MsgKind for SprintVoteReveal {
    type Proto = MsgSprintVoteReveal;
    const TYPE_URL: &'static str = "/kiln.sprint.v1.MsgSprintVoteReveal";
    const ML_OPS: bool = true;

    fn signer(msg: &MsgSprintVoteReveal) -> TxResult<Address> {
        address_field(&msg.voter, "voter")
    }

    fn validate_basic(msg: &MsgSprintVoteReveal) -> TxResult<()> {
        address_field(&msg.host, "host")?;
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSprintVoteReveal,
    ) -> TxResult<()> {
        handler::vote_reveal(state, ctx, msg)
    }

    fn describe(msg: &MsgSprintVoteReveal) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "voter": msg.voter, "epoch": msg.epoch.to_string(),
            "host": msg.host, "valid": msg.valid, "salt": hex::encode(&msg.salt)})
    }
}
