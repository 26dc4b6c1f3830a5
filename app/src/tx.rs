//! Transaction decoding (SPEC §2): `TxRaw` → body, auth info and typed
//! messages (the message list is `kiln-messages`). Decoding is strict: every
//! protobuf layer must be the canonical encoding of what it decodes to
//! (re-encoding gives the same bytes), which rejects unknown fields,
//! out-of-order fields, duplicated fields and non-minimal varints in one rule;
//! each message's stateless checks run here too, so CheckTx and
//! ProcessProposal refuse a malformed message before it reaches a block.
//! Signatures are later checked over the bytes exactly as received.

use cosmos_sdk_proto::cosmos::tx::v1beta1::{AuthInfo, TxBody, TxRaw};
use kiln_framework::{Address, TxError, TxResult};
pub use kiln_messages::Msg;
use prost::Message;
use sha2::{Digest, Sha256};

/// Largest transaction the chain accepts, in bytes.
pub const MAX_TX_BYTES: usize = 1 << 20;

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
