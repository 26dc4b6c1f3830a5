//! Transactions over the network: account lookup, simulation and gas
//! estimation, broadcast (`broadcast_tx_sync`) and waiting for inclusion, and
//! the JSON forms of a tx and its result. Signing is in [`crate::sign`],
//! message builders in [`crate::msgs`]; both are re-exported here.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{SimulateRequest, SimulateResponse, Tx as ProtoTx};
use cosmos_sdk_proto::Any;
use k256::ecdsa::SigningKey;
use prost::Message;
use serde_json::{json, Value};

use crate::amount::{Coin, DecCoin};
use crate::msgs::{coins_json, describe_any};
use crate::rpc::{json_str, json_u64, RpcClient};

pub use crate::msgs::{
    check_address, msg_exec, msg_grant, msg_revoke, msg_send, msgs_grant_ml_ops,
    msgs_revoke_ml_ops, parse_exec_messages, parse_expiration,
};
pub use crate::sign::{build_signed_tx, tx_hash, SignedTx, SignerData};

pub const SIMULATE_PATH: &str = "/cosmos.tx.v1beta1.Service/Simulate";

/// How the fee of a tx is chosen.
#[derive(Clone, Debug)]
pub struct FeeSettings {
    /// Multiplier on the simulated gas.
    pub gas_adjustment: f64,
    pub gas_prices: DecCoin,
    /// Fixed fee (overrides gas × gas price).
    pub fees: Option<Vec<Coin>>,
}

/// Account number and sequence of `address`, with a clear error when the
/// account does not exist yet.
pub fn fetch_account(rpc: &RpcClient, address: &str) -> Result<(u64, u64, Option<Any>)> {
    match crate::query::account(rpc, address, 0)? {
        Some(acc) => Ok((acc.account_number, acc.sequence, acc.pub_key)),
        None => bail!("account {address} not found on chain: it has never received funds"),
    }
}

/// Simulates `tx_bytes` and returns the gas used.
pub fn simulate(rpc: &RpcClient, tx_bytes: &[u8]) -> Result<u64> {
    #[allow(deprecated)]
    let req = SimulateRequest {
        tx: None,
        tx_bytes: tx_bytes.to_vec(),
    };
    let res = rpc.abci_query(SIMULATE_PATH, &req.encode_to_vec(), 0)?;
    if res.code != 0 {
        bail!(
            "simulation failed (code {}{}): {}",
            res.code,
            if res.codespace.is_empty() {
                String::new()
            } else {
                format!(", codespace {}", res.codespace)
            },
            res.log
        );
    }
    let sim = SimulateResponse::decode(res.value.as_slice())
        .context("cannot decode the SimulateResponse")?;
    let gas = sim.gas_info.map(|g| g.gas_used).unwrap_or(0);
    Ok(gas)
}

/// The coins with a positive amount.
pub fn nonzero(coins: Vec<Coin>) -> Vec<Coin> {
    coins.into_iter().filter(|c| c.amount > 0).collect()
}

/// Simulates the tx (gas limit 0 = "unlimited" in simulation, as cosmjs does)
/// and returns `ceil(gas_used × gas_adjustment)`. Paying a fee costs gas too,
/// so unless `fee.fees` fixes the fee, a second simulation carries the fee
/// that the first estimate implies and the larger of both results is used.
pub fn estimate_gas(
    rpc: &RpcClient,
    key: &SigningKey,
    msgs: &[Any],
    memo: &str,
    timeout_height: u64,
    fee: &FeeSettings,
    signer: &SignerData,
) -> Result<u64> {
    if !(fee.gas_adjustment.is_finite() && fee.gas_adjustment > 0.0) {
        bail!("--gas-adjustment must be a positive number");
    }
    let adjust = |used: u64| ((used as f64) * fee.gas_adjustment).ceil() as u64;
    let first_fee = nonzero(fee.fees.clone().unwrap_or_default());
    let sim = build_signed_tx(
        key,
        msgs.to_vec(),
        memo,
        timeout_height,
        &first_fee,
        0,
        signer,
    )?;
    let mut used = simulate(rpc, &sim.tx_bytes)?;
    if fee.fees.is_none() {
        let implied = nonzero(vec![fee.gas_prices.fee_for_gas(adjust(used))?]);
        if !implied.is_empty() {
            let sim = build_signed_tx(
                key,
                msgs.to_vec(),
                memo,
                timeout_height,
                &implied,
                0,
                signer,
            )?;
            used = used.max(simulate(rpc, &sim.tx_bytes)?);
        }
    }
    Ok(adjust(used))
}

/// Polls RPC `tx` every 500 ms until the tx is in a block or `timeout` passes.
pub fn wait_for_tx(rpc: &RpcClient, hash: &str, timeout: Duration) -> Result<Value> {
    let start = Instant::now();
    loop {
        if let Some(v) = rpc.tx(hash)? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(anyhow!(
                "transaction {hash} was accepted into the mempool but not included within {}s; check later with `kiln query tx {hash}`",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Summary JSON of an RPC `tx` result.
pub fn tx_result_json(res: &Value) -> Value {
    let r = &res["tx_result"];
    json!({
        "txhash": json_str(&res["hash"]).to_uppercase(),
        "height": json_str(&res["height"]),
        "code": json_u64(&r["code"]).unwrap_or(0),
        "codespace": json_str(&r["codespace"]),
        "raw_log": json_str(&r["log"]),
        "gas_wanted": json_str(&r["gas_wanted"]),
        "gas_used": json_str(&r["gas_used"]),
    })
}

/// Decodes a `Tx` (as returned base64 by RPC `tx`) into messages/memo/fee JSON.
pub fn decode_tx_json(tx_bytes: &[u8]) -> Result<Value> {
    let tx = ProtoTx::decode(tx_bytes).context("cannot decode the transaction")?;
    let body = tx.body.unwrap_or_default();
    let auth = tx.auth_info.unwrap_or_default();
    let fee = auth.fee.unwrap_or_default();
    Ok(json!({
        "body": {
            "messages": body.messages.iter().map(describe_any).collect::<Vec<_>>(),
            "memo": body.memo,
            "timeout_height": body.timeout_height.to_string(),
        },
        "auth_info": {
            "signer_infos": auth.signer_infos.iter().map(|s| json!({
                "public_key": s.public_key.as_ref().map(|pk| {
                    let key = cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey::decode(pk.value.as_slice()).map(|k| base64::engine::general_purpose::STANDARD.encode(k.key)).unwrap_or_default();
                    json!({"@type": pk.type_url, "key": key})
                }),
                "sequence": s.sequence.to_string(),
            })).collect::<Vec<_>>(),
            "fee": {"amount": coins_json(&fee.amount), "gas_limit": fee.gas_limit.to_string(), "payer": fee.payer, "granter": fee.granter},
        },
        "signatures": tx.signatures.iter().map(|s| base64::engine::general_purpose::STANDARD.encode(s)).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring;
    use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
    use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
    use k256::ecdsa::signature::Verifier;

    const MNEMONIC: &str =
        "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling";

    fn key() -> SigningKey {
        keyring::derive_signing_key(MNEMONIC).unwrap()
    }

    #[test]
    fn signed_tx_verifies_and_is_low_s() {
        let k = key();
        let from = keyring::address_from_mnemonic(MNEMONIC).unwrap();
        let to = keyring::bech32_encode("kiln", &[7u8; 20]);
        let signer = SignerData {
            chain_id: "kiln-devnet".into(),
            account_number: 7,
            sequence: 3,
        };
        let fee = vec![Coin {
            denom: "ukiln".into(),
            amount: 5000,
        }];
        let coins = vec![Coin {
            denom: "ukiln".into(),
            amount: 1_500_000,
        }];
        let tx = build_signed_tx(
            &k,
            vec![msg_send(&from, &to, &coins)],
            "hi",
            99,
            &fee,
            200_000,
            &signer,
        )
        .unwrap();

        // The SignDoc is exactly {body_bytes, auth_info_bytes, chain_id, account_number}.
        let sd =
            cosmos_sdk_proto::cosmos::tx::v1beta1::SignDoc::decode(tx.sign_doc_bytes.as_slice())
                .unwrap();
        assert_eq!(sd.body_bytes, tx.body_bytes);
        assert_eq!(sd.auth_info_bytes, tx.auth_info_bytes);
        assert_eq!(sd.chain_id, "kiln-devnet");
        assert_eq!(sd.account_number, 7);

        // Signature verifies over the SignDoc bytes and is low-S.
        let sig = k256::ecdsa::Signature::from_slice(&tx.signature).unwrap();
        assert!(sig.normalize_s().is_none(), "signature must be low-S");
        k.verifying_key().verify(&tx.sign_doc_bytes, &sig).unwrap();
        // ...and not over anything else (e.g. another chain id).
        let other = build_signed_tx(
            &k,
            vec![msg_send(&from, &to, &coins)],
            "hi",
            99,
            &fee,
            200_000,
            &SignerData {
                chain_id: "other".into(),
                ..signer.clone()
            },
        )
        .unwrap();
        assert!(k
            .verifying_key()
            .verify(&other.sign_doc_bytes, &sig)
            .is_err());

        // TxRaw round trip and body/auth contents.
        let raw =
            cosmos_sdk_proto::cosmos::tx::v1beta1::TxRaw::decode(tx.tx_bytes.as_slice()).unwrap();
        assert_eq!(raw.body_bytes, tx.body_bytes);
        assert_eq!(raw.signatures, vec![tx.signature.clone()]);
        let body = cosmos_sdk_proto::cosmos::tx::v1beta1::TxBody::decode(raw.body_bytes.as_slice())
            .unwrap();
        assert_eq!(body.memo, "hi");
        assert_eq!(body.timeout_height, 99);
        assert_eq!(body.messages[0].type_url, crate::msgs::MSG_SEND_URL);
        let send = MsgSend::decode(body.messages[0].value.as_slice()).unwrap();
        assert_eq!(send.from_address, from);
        assert_eq!(
            send.amount,
            vec![ProtoCoin {
                denom: "ukiln".into(),
                amount: "1500000".into()
            }]
        );
        let auth =
            cosmos_sdk_proto::cosmos::tx::v1beta1::AuthInfo::decode(raw.auth_info_bytes.as_slice())
                .unwrap();
        assert_eq!(auth.signer_infos[0].sequence, 3);
        assert_eq!(
            auth.signer_infos[0].public_key.as_ref().unwrap().type_url,
            keyring::SECP256K1_PUBKEY_TYPE_URL
        );
        let pk = cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey::decode(
            auth.signer_infos[0]
                .public_key
                .as_ref()
                .unwrap()
                .value
                .as_slice(),
        )
        .unwrap();
        assert_eq!(pk.key, keyring::compressed_pubkey(&k));
        let mode = auth.signer_infos[0].mode_info.clone().unwrap().sum.unwrap();
        match mode {
            cosmos_sdk_proto::cosmos::tx::v1beta1::mode_info::Sum::Single(s) => {
                assert_eq!(s.mode, 1)
            } // DIRECT
            _ => panic!("expected single mode"),
        }
        let f = auth.fee.unwrap();
        assert_eq!(f.gas_limit, 200_000);
        assert_eq!(
            f.amount,
            vec![ProtoCoin {
                denom: "ukiln".into(),
                amount: "5000".into()
            }]
        );
        assert_eq!(tx.hash().len(), 64);

        let decoded = decode_tx_json(&tx.tx_bytes).unwrap();
        assert_eq!(
            decoded["body"]["messages"][0]["amount"][0]["amount"],
            "1500000"
        );
    }

    #[test]
    fn many_signatures_are_all_low_s() {
        let k = key();
        let signer = SignerData {
            chain_id: "kiln-devnet".into(),
            account_number: 0,
            sequence: 0,
        };
        for i in 0..64u64 {
            let tx = build_signed_tx(&k, vec![], &format!("m{i}"), 0, &[], i, &signer).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&tx.signature).unwrap();
            assert!(sig.normalize_s().is_none());
            k.verifying_key().verify(&tx.sign_doc_bytes, &sig).unwrap();
        }
    }
}
