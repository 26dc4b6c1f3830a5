//! SIGN_MODE_DIRECT signing: the one implementation every Kiln signer uses
//! (`kiln`, `kiln-mlworker`, `kilnd`, the testkit and the fuzz targets).
//!
//! * [`tx_body`] and [`auth_info`] build the two signed parts of a standard
//!   single-signer transaction;
//! * [`sign_direct`] signs `SignDoc{body_bytes, auth_info_bytes, chain_id,
//!   account_number}` with secp256k1 (low-S);
//! * [`sign_tx_raw`] does both and returns the `TxRaw` bytes ([`SignedTx`]);
//! * [`build_signed_tx`] is the convenience form over messages, memo, fee and gas.
//!
//! Callers that need to build odd transactions on purpose (the fuzz targets)
//! encode their own parts and still sign through [`sign_direct`].

use anyhow::{anyhow, bail, Result};
use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey;
use cosmos_sdk_proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{
    mode_info, AuthInfo, Fee, ModeInfo, SignDoc, SignerInfo, TxBody, TxRaw,
};
use cosmos_sdk_proto::Any;
use k256::ecdsa::{Signature, SigningKey};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::amount::{validate_denom, Coin};
pub use crate::keyring::compressed_pubkey;

/// Type URL of a secp256k1 public key in Cosmos.
pub const SECP256K1_PUBKEY_TYPE_URL: &str = "/cosmos.crypto.secp256k1.PubKey";
/// Longest chain id CometBFT accepts.
pub const MAX_CHAIN_ID_LEN: usize = 50;

/// Account number, sequence and chain the signature binds to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerData {
    pub chain_id: String,
    pub account_number: u64,
    pub sequence: u64,
}

/// A signed transaction and the pieces it was made of.
#[derive(Clone, Debug)]
pub struct SignedTx {
    pub body_bytes: Vec<u8>,
    pub auth_info_bytes: Vec<u8>,
    pub sign_doc_bytes: Vec<u8>,
    /// 64-byte compact (r ‖ s), low-S.
    pub signature: Vec<u8>,
    /// `TxRaw` bytes, ready to broadcast.
    pub tx_bytes: Vec<u8>,
}

impl SignedTx {
    /// CometBFT tx hash (upper-case hex SHA-256 of the tx bytes).
    pub fn hash(&self) -> String {
        tx_hash(&self.tx_bytes)
    }
}

/// CometBFT tx hash: upper-case hex SHA-256 of the tx bytes.
pub fn tx_hash(tx_bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(tx_bytes))
}

/// `/cosmos.crypto.secp256k1.PubKey` `Any` of a compressed public key.
pub fn pubkey_any(compressed: &[u8]) -> Any {
    Any {
        type_url: SECP256K1_PUBKEY_TYPE_URL.to_string(),
        value: PubKey {
            key: compressed.to_vec(),
        }
        .encode_to_vec(),
    }
}

/// Coins in their protobuf form.
pub fn proto_coins(coins: &[Coin]) -> Vec<ProtoCoin> {
    coins.iter().map(Coin::to_proto).collect()
}

/// The body of a transaction: messages, memo, timeout height (0 = none).
pub fn tx_body(msgs: Vec<Any>, memo: &str, timeout_height: u64) -> TxBody {
    TxBody {
        messages: msgs,
        memo: memo.to_string(),
        timeout_height,
        ..Default::default()
    }
}

/// The auth info of a single-signer SIGN_MODE_DIRECT transaction.
pub fn auth_info(pubkey: Any, sequence: u64, fee: &[Coin], gas_limit: u64) -> AuthInfo {
    AuthInfo {
        signer_infos: vec![SignerInfo {
            public_key: Some(pubkey),
            mode_info: Some(ModeInfo {
                sum: Some(mode_info::Sum::Single(mode_info::Single {
                    mode: SignMode::Direct as i32,
                })),
            }),
            sequence,
        }],
        fee: Some(Fee {
            amount: proto_coins(fee),
            gas_limit,
            payer: String::new(),
            granter: String::new(),
        }),
        #[allow(deprecated)]
        tip: None,
    }
}

/// The encoded `SignDoc{body_bytes, auth_info_bytes, chain_id, account_number}`.
pub fn sign_doc_bytes(
    body_bytes: &[u8],
    auth_info_bytes: &[u8],
    chain_id: &str,
    account_number: u64,
) -> Vec<u8> {
    SignDoc {
        body_bytes: body_bytes.to_vec(),
        auth_info_bytes: auth_info_bytes.to_vec(),
        chain_id: chain_id.to_string(),
        account_number,
    }
    .encode_to_vec()
}

/// The SIGN_MODE_DIRECT signature of `key` over the sign doc of the parts:
/// secp256k1 ECDSA over SHA-256, deterministic (RFC 6979) and low-S.
pub fn sign_direct(
    key: &SigningKey,
    body_bytes: &[u8],
    auth_info_bytes: &[u8],
    chain_id: &str,
    account_number: u64,
) -> Signature {
    let doc = sign_doc_bytes(body_bytes, auth_info_bytes, chain_id, account_number);
    let sig: Signature = k256::ecdsa::signature::Signer::sign(key, &doc);
    // k256 already produces low-S signatures; normalise anyway (SPEC §2 rejects high-S).
    sig.normalize_s().unwrap_or(sig)
}

/// Encodes `body` and `auth_info`, signs them for `chain_id` and
/// `account_number` ([`sign_direct`]) and returns the `TxRaw`.
pub fn sign_tx_raw(
    key: &SigningKey,
    body: &TxBody,
    auth_info: &AuthInfo,
    chain_id: &str,
    account_number: u64,
) -> SignedTx {
    let body_bytes = body.encode_to_vec();
    let auth_info_bytes = auth_info.encode_to_vec();
    let sign_doc_bytes = sign_doc_bytes(&body_bytes, &auth_info_bytes, chain_id, account_number);
    let signature = sign_direct(key, &body_bytes, &auth_info_bytes, chain_id, account_number)
        .to_bytes()
        .to_vec();
    let tx_bytes = TxRaw {
        body_bytes: body_bytes.clone(),
        auth_info_bytes: auth_info_bytes.clone(),
        signatures: vec![signature.clone()],
    }
    .encode_to_vec();
    SignedTx {
        body_bytes,
        auth_info_bytes,
        sign_doc_bytes,
        signature,
        tx_bytes,
    }
}

/// Checks a chain id the way CometBFT does (1 to 50 characters).
pub fn check_chain_id(chain_id: &str) -> Result<()> {
    if chain_id.is_empty() || chain_id.len() > MAX_CHAIN_ID_LEN {
        bail!("invalid chain id '{chain_id}': it must have 1 to {MAX_CHAIN_ID_LEN} characters");
    }
    Ok(())
}

/// Builds and signs a tx with SIGN_MODE_DIRECT over
/// `SignDoc{body_bytes, auth_info_bytes, chain_id, account_number}`, after
/// checking the timeout height, the fee denoms and the chain id.
pub fn build_signed_tx(
    key: &SigningKey,
    msgs: Vec<Any>,
    memo: &str,
    timeout_height: u64,
    fee_amount: &[Coin],
    gas_limit: u64,
    signer: &SignerData,
) -> Result<SignedTx> {
    if i64::try_from(timeout_height).is_err() {
        bail!("invalid timeout height {timeout_height}: it must fit in an i64");
    }
    if let Some(c) = fee_amount.iter().find(|c| !validate_denom(&c.denom)) {
        return Err(anyhow!("invalid fee denom '{}'", c.denom));
    }
    check_chain_id(&signer.chain_id)?;
    let body = tx_body(msgs, memo, timeout_height);
    let auth = auth_info(
        pubkey_any(&compressed_pubkey(key)),
        signer.sequence,
        fee_amount,
        gas_limit,
    );
    Ok(sign_tx_raw(
        key,
        &body,
        &auth,
        &signer.chain_id,
        signer.account_number,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::Verifier;

    #[test]
    fn one_signing_path_for_parts_and_whole_txs() {
        let key = SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        let signer = SignerData {
            chain_id: "kiln-test".into(),
            account_number: 4,
            sequence: 2,
        };
        let fee = [Coin::new("ukiln", 5_000)];
        let tx = build_signed_tx(&key, vec![], "m", 7, &fee, 100_000, &signer).unwrap();

        // The same parts signed through `sign_direct` give the same signature.
        let body = tx_body(vec![], "m", 7);
        let auth = auth_info(pubkey_any(&compressed_pubkey(&key)), 2, &fee, 100_000);
        assert_eq!(body.encode_to_vec(), tx.body_bytes);
        assert_eq!(auth.encode_to_vec(), tx.auth_info_bytes);
        let sig = sign_direct(&key, &tx.body_bytes, &tx.auth_info_bytes, "kiln-test", 4);
        assert_eq!(sig.to_bytes().to_vec(), tx.signature);
        assert!(sig.normalize_s().is_none(), "low-S");
        key.verifying_key()
            .verify(
                &sign_doc_bytes(&tx.body_bytes, &tx.auth_info_bytes, "kiln-test", 4),
                &sig,
            )
            .unwrap();
        let raw = TxRaw::decode(tx.tx_bytes.as_slice()).unwrap();
        assert_eq!(raw.signatures, vec![tx.signature.clone()]);
        assert_eq!(tx.hash(), tx_hash(&tx.tx_bytes));

        // Inputs the chain would refuse are refused before signing.
        let bad = |c: &str, t: u64, d: &str| {
            build_signed_tx(
                &key,
                vec![],
                "",
                t,
                &[Coin::new(d, 1)],
                1,
                &SignerData {
                    chain_id: c.into(),
                    ..signer.clone()
                },
            )
            .is_err()
        };
        assert!(bad("", 0, "ukiln"));
        assert!(bad(&"c".repeat(51), 0, "ukiln"));
        assert!(bad("kiln-test", u64::MAX, "ukiln"));
        assert!(bad("kiln-test", 0, "u!"));
        assert!(!bad("kiln-test", 0, "ukiln"));
    }
}
