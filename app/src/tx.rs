//! Transaction decoding (SPEC §2): `TxRaw` → body, auth info and typed
//! messages. Decoding is strict: every protobuf layer must be the canonical
//! encoding of what it decodes to (re-encoding gives the same bytes), which
//! rejects unknown fields, out-of-order fields, duplicated fields and
//! non-minimal varints in one rule. Signatures are later checked over the
//! bytes exactly as received.

use cosmos_sdk_proto::cosmos::authz::v1beta1::{MsgExec, MsgGrant, MsgRevoke};
use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{AuthInfo, TxBody, TxRaw};
use cosmos_sdk_proto::Any;
use kiln_authz::handler::{MSG_EXEC_TYPE_URL, MSG_GRANT_TYPE_URL, MSG_REVOKE_TYPE_URL};
use kiln_bank::handler::MSG_SEND_TYPE_URL;
use kiln_framework::{Address, TxError, TxResult};
use kiln_sprint::msgs::{
    MsgRegisterHost, MsgSprintCommit, MsgSprintOpen, MsgSprintVoteCommit, MsgSprintVoteReveal,
    MsgUpdateHost,
};

fn addr(text: &str, what: &str) -> TxResult<Address> {
    Address::parse(text).map_err(|e| TxError::invalid_address(format!("{what}: {e}")))
}
use prost::Message;
use sha2::{Digest, Sha256};

/// Largest transaction the chain accepts, in bytes.
pub const MAX_TX_BYTES: usize = 1 << 20;

/// A message the chain knows how to execute.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Send(MsgSend),
    Grant(MsgGrant),
    Revoke(MsgRevoke),
    /// `MsgExec` with its inner messages decoded (one level; nesting is refused).
    Exec {
        exec: MsgExec,
        inner: Vec<Msg>,
    },
    RegisterHost(MsgRegisterHost),
    UpdateHost(MsgUpdateHost),
    SprintCommit(MsgSprintCommit),
    SprintOpen(MsgSprintOpen),
    SprintVoteCommit(MsgSprintVoteCommit),
    SprintVoteReveal(MsgSprintVoteReveal),
}

impl Msg {
    pub fn type_url(&self) -> &'static str {
        match self {
            Msg::Send(_) => MSG_SEND_TYPE_URL,
            Msg::Grant(_) => MSG_GRANT_TYPE_URL,
            Msg::Revoke(_) => MSG_REVOKE_TYPE_URL,
            Msg::Exec { .. } => MSG_EXEC_TYPE_URL,
            Msg::RegisterHost(_) => "/kiln.host.v1.MsgRegisterHost",
            Msg::UpdateHost(_) => "/kiln.host.v1.MsgUpdateHost",
            Msg::SprintCommit(_) => "/kiln.sprint.v1.MsgSprintCommit",
            Msg::SprintOpen(_) => "/kiln.sprint.v1.MsgSprintOpen",
            Msg::SprintVoteCommit(_) => "/kiln.sprint.v1.MsgSprintVoteCommit",
            Msg::SprintVoteReveal(_) => "/kiln.sprint.v1.MsgSprintVoteReveal",
        }
    }

    /// The account that must sign this message.
    pub fn signer(&self) -> TxResult<Address> {
        match self {
            Msg::Send(m) => kiln_bank::handler::signer_of_send(m),
            Msg::Grant(m) => kiln_authz::handler::signer_of_grant(m),
            Msg::Revoke(m) => kiln_authz::handler::signer_of_revoke(m),
            Msg::Exec { exec, .. } => kiln_authz::handler::signer_of_exec(exec),
            Msg::RegisterHost(m) => addr(&m.owner, "owner"),
            Msg::UpdateHost(m) => addr(&m.owner, "owner"),
            Msg::SprintCommit(m) => addr(&m.host, "host"),
            Msg::SprintOpen(m) => addr(&m.host, "host"),
            Msg::SprintVoteCommit(m) => addr(&m.validator, "validator"),
            Msg::SprintVoteReveal(m) => addr(&m.validator, "validator"),
        }
    }

    /// Decodes an `Any` into a known message, canonically.
    pub fn from_any(any: &Any, depth: u32) -> TxResult<Msg> {
        fn strict<M: Message + Default>(any: &Any) -> TxResult<M> {
            let msg = M::decode(any.value.as_slice())
                .map_err(|e| TxError::tx_decode(format!("{}: {e}", any.type_url)))?;
            if msg.encode_to_vec() != any.value {
                return Err(TxError::tx_decode(format!(
                    "{}: non-canonical encoding or unknown fields",
                    any.type_url
                )));
            }
            Ok(msg)
        }
        match any.type_url.as_str() {
            MSG_SEND_TYPE_URL => Ok(Msg::Send(strict(any)?)),
            MSG_GRANT_TYPE_URL => Ok(Msg::Grant(strict(any)?)),
            MSG_REVOKE_TYPE_URL => Ok(Msg::Revoke(strict(any)?)),
            MSG_EXEC_TYPE_URL => {
                if depth > 0 {
                    return Err(TxError::invalid_request("nested MsgExec is not allowed"));
                }
                let exec: MsgExec = strict(any)?;
                if exec.msgs.is_empty() {
                    return Err(TxError::invalid_request("MsgExec carries no messages"));
                }
                let inner = exec
                    .msgs
                    .iter()
                    .map(|m| Msg::from_any(m, depth + 1))
                    .collect::<TxResult<Vec<_>>>()?;
                Ok(Msg::Exec { exec, inner })
            }
            "/kiln.host.v1.MsgRegisterHost" => Ok(Msg::RegisterHost(strict(any)?)),
            "/kiln.host.v1.MsgUpdateHost" => Ok(Msg::UpdateHost(strict(any)?)),
            "/kiln.sprint.v1.MsgSprintCommit" => Ok(Msg::SprintCommit(strict(any)?)),
            "/kiln.sprint.v1.MsgSprintOpen" => Ok(Msg::SprintOpen(strict(any)?)),
            "/kiln.sprint.v1.MsgSprintVoteCommit" => Ok(Msg::SprintVoteCommit(strict(any)?)),
            "/kiln.sprint.v1.MsgSprintVoteReveal" => Ok(Msg::SprintVoteReveal(strict(any)?)),
            other => Err(TxError::unknown_request(format!(
                "unrecognized message type {other:?}"
            ))),
        }
    }
}

/// A decoded transaction, with its raw parts kept for signature checks.
#[derive(Debug, Clone)]
pub struct DecodedTx {
    /// SHA-256 of the tx bytes (CometBFT's tx hash).
    pub hash: [u8; 32],
    pub size: usize,
    pub raw: TxRaw,
    pub body: TxBody,
    pub auth_info: AuthInfo,
    pub msgs: Vec<Msg>,
}

fn canonical<M: Message + Default>(bytes: &[u8], what: &str) -> TxResult<M> {
    let msg = M::decode(bytes).map_err(|e| TxError::tx_decode(format!("{what}: {e}")))?;
    if msg.encode_to_vec() != bytes {
        return Err(TxError::tx_decode(format!(
            "{what}: non-canonical encoding or unknown fields"
        )));
    }
    Ok(msg)
}

pub fn tx_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Decodes and structurally validates a transaction. Never panics.
pub fn decode_tx(bytes: &[u8]) -> TxResult<DecodedTx> {
    if bytes.is_empty() {
        return Err(TxError::tx_decode("empty transaction"));
    }
    if bytes.len() > MAX_TX_BYTES {
        return Err(TxError::tx_too_large(format!(
            "{} bytes exceeds the limit of {MAX_TX_BYTES}",
            bytes.len()
        )));
    }
    let raw: TxRaw = canonical(bytes, "TxRaw")?;
    let body: TxBody = canonical(&raw.body_bytes, "TxBody")?;
    let auth_info: AuthInfo = canonical(&raw.auth_info_bytes, "AuthInfo")?;
    if body.messages.is_empty() {
        return Err(TxError::invalid_request("transaction has no messages"));
    }
    if !body.extension_options.is_empty() || !body.non_critical_extension_options.is_empty() {
        return Err(TxError::unknown_extension_options(
            "Kiln accepts no extension options",
        ));
    }
    #[allow(deprecated)]
    let has_tip = auth_info.tip.is_some();
    if has_tip {
        return Err(TxError::invalid_request("tips are not supported"));
    }
    if auth_info.fee.is_none() {
        return Err(TxError::insufficient_fee("transaction has no fee"));
    }
    let msgs = body
        .messages
        .iter()
        .map(|any| Msg::from_any(any, 0))
        .collect::<TxResult<Vec<_>>>()?;
    Ok(DecodedTx {
        hash: tx_hash(bytes),
        size: bytes.len(),
        raw,
        body,
        auth_info,
        msgs,
    })
}

impl DecodedTx {
    /// Required signers in order of first appearance (the SDK's rule); the
    /// first one pays the fee.
    pub fn signers(&self) -> TxResult<Vec<Address>> {
        let mut out: Vec<Address> = Vec::new();
        for msg in &self.msgs {
            let signer = msg.signer()?;
            if !out.contains(&signer) {
                out.push(signer);
            }
        }
        Ok(out)
    }

    pub fn gas_limit(&self) -> u64 {
        self.auth_info.fee.as_ref().map_or(0, |f| f.gas_limit)
    }
}
