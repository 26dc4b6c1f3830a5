//! How the worker talks to the chain: a small trait ([`ChainClient`]) with a
//! CometBFT JSON-RPC implementation ([`RpcChain`]). Tests implement the same
//! trait over the in-process block driver, so the worker logic under test is
//! exactly the one that runs against a node.

use anyhow::{anyhow, Context, Result};
use cosmrs::Any;
use k256::ecdsa::SigningKey;
use kiln_client::rpc::RpcClient;
use kiln_client::tx::{build_signed_tx, simulate, SignerData};
use serde_json::Value;

/// Outcome of a CheckTx (broadcast_tx_sync).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TxReceipt {
    pub hash: String,
    pub code: u32,
    pub codespace: String,
    pub log: String,
}

impl TxReceipt {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// The chain as the worker needs it.
pub trait ChainClient {
    /// Chain id the signatures bind to.
    fn chain_id(&mut self) -> Result<String>;
    /// An ABCI query against the latest committed state; a non-zero
    /// response code is an error carrying the node's reason.
    fn query_raw(&mut self, path: &str, data: &[u8]) -> Result<Vec<u8>>;
    /// [`ChainClient::query_raw`] for Kiln's JSON queries.
    fn query_json(&mut self, path: &str, data: &[u8]) -> Result<Value> {
        let bytes = self.query_raw(path, data)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("query {path}: the node's answer is not JSON"))
    }
    /// The block result `(code, log)` of a transaction, `None` while it is
    /// not in a block (yet).
    fn tx_result(&mut self, hash: &str) -> Result<Option<(u32, String)>>;
    /// Signs `msgs` with the worker's ML operational key and submits them;
    /// returns CheckTx's verdict (a refused tx is `Ok` with a non-zero code).
    fn broadcast(&mut self, msgs: Vec<Any>) -> Result<TxReceipt>;
}

impl dyn ChainClient + '_ {
    /// A Kiln JSON query read into its typed answer (the module's own query
    /// type, e.g. `kiln_sprint::query::Duties`).
    pub fn query<T: serde::de::DeserializeOwned>(&mut self, path: &str, data: &[u8]) -> Result<T> {
        let bytes = self.query_raw(path, data)?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("query {path}: unexpected answer from the node"))
    }
}

/// Gas price the worker pays when it pays a fee (the chain's default
/// `min_gas_price`, 0.025 ukiln per gas, as a fraction).
const GAS_PRICE_NUM: u64 = 25;
const GAS_PRICE_DEN: u64 = 1000;
/// Gas limit used when simulation refuses the tx.
const FALLBACK_GAS: u64 = 400_000;
use kiln_framework::error::codes::{
    INSUFFICIENT_FEE as CODE_INSUFFICIENT_FEE, INSUFFICIENT_FUNDS as CODE_INSUFFICIENT_FUNDS,
    WRONG_SEQUENCE as CODE_WRONG_SEQUENCE,
};

/// A query the node answered with a non-zero code: the worker matches
/// `(codespace, code)` (the README's error table), never the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query {path} failed ({codespace} code {code}): {log}")]
pub struct QueryError {
    pub path: String,
    pub codespace: String,
    pub code: u32,
    pub log: String,
}

impl QueryError {
    /// The Cosmos SDK's "key not found" (an absent record).
    pub fn is_not_found(&self) -> bool {
        self.codespace == kiln_framework::error::SDK
            && self.code == kiln_framework::error::codes::KEY_NOT_FOUND
    }
}

/// A node reached over CometBFT JSON-RPC.
pub struct RpcChain {
    rpc: RpcClient,
    key: SigningKey,
    address: String,
    chain_id: Option<String>,
    account: Option<(u64, u64)>,
    /// The hot wallet could not pay last time: try the fee-free allowance first.
    prefer_fee_free: bool,
}

impl RpcChain {
    pub fn new(node_url: &str, key: SigningKey) -> Self {
        let pubkey = kiln_client::keyring::compressed_pubkey(&key);
        let address = kiln_client::keyring::address_from_pubkey(&pubkey);
        RpcChain {
            rpc: RpcClient::new(node_url),
            key,
            address,
            chain_id: None,
            account: None,
            prefer_fee_free: false,
        }
    }

    /// Bech32 address of the ML operational key.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    fn signer(&mut self) -> Result<SignerData> {
        let chain_id = self.chain_id()?;
        if self.account.is_none() {
            let (number, sequence, _) = kiln_client::tx::fetch_account(&self.rpc, &self.address).with_context(|| {
                format!("the ML operational key {} has no account yet: the host's grant-ml-ops creates it (or send it some ukiln)", self.address)
            })?;
            self.account = Some((number, sequence));
        }
        let (account_number, sequence) = self.account.unwrap_or_default();
        Ok(SignerData {
            chain_id,
            account_number,
            sequence,
        })
    }

    fn sign_and_send(&mut self, msgs: &[Any], pay_fee: bool) -> Result<TxReceipt> {
        let signer = self.signer()?;
        // Simulate with an unlimited gas limit, then add a margin. A message
        // the chain would refuse fails simulation: send it with a fixed gas
        // limit anyway so CheckTx reports the real code and reason.
        let probe = build_signed_tx(&self.key, msgs.to_vec(), "", 0, &[], 0, &signer)?;
        let gas = match simulate(&self.rpc, &probe.tx_bytes) {
            Ok(used) => used.saturating_mul(13) / 10 + 20_000,
            Err(_) => FALLBACK_GAS,
        };
        let fee_amount = if pay_fee {
            gas.saturating_mul(GAS_PRICE_NUM).div_ceil(GAS_PRICE_DEN)
        } else {
            0
        };
        let fees = if fee_amount > 0 {
            vec![kiln_client::amount::Coin {
                denom: "ukiln".into(),
                amount: u128::from(fee_amount),
            }]
        } else {
            vec![]
        };
        let tx = build_signed_tx(&self.key, msgs.to_vec(), "", 0, &fees, gas, &signer)?;
        let res = self.rpc.broadcast_tx_sync(&tx.tx_bytes)?;
        Ok(TxReceipt {
            hash: if res.hash.is_empty() {
                tx.hash()
            } else {
                res.hash
            },
            code: res.code,
            codespace: res.codespace,
            log: res.log,
        })
    }
}

impl ChainClient for RpcChain {
    fn chain_id(&mut self) -> Result<String> {
        if let Some(id) = &self.chain_id {
            return Ok(id.clone());
        }
        let id = self.rpc.chain_id()?;
        self.chain_id = Some(id.clone());
        Ok(id)
    }

    fn query_raw(&mut self, path: &str, data: &[u8]) -> Result<Vec<u8>> {
        let res = self.rpc.abci_query(path, data, 0)?;
        if res.code != 0 {
            return Err(QueryError {
                path: path.to_string(),
                codespace: res.codespace,
                code: res.code,
                log: res.log,
            }
            .into());
        }
        Ok(res.value)
    }

    fn tx_result(&mut self, hash: &str) -> Result<Option<(u32, String)>> {
        Ok(self.rpc.tx(hash)?.map(|v| {
            let r = &v["tx_result"];
            let code = r["code"]
                .as_u64()
                .or_else(|| r["code"].as_str().and_then(|c| c.parse().ok()))
                .unwrap_or(0);
            (
                u32::try_from(code).unwrap_or(u32::MAX),
                r["log"].as_str().unwrap_or_default().to_string(),
            )
        }))
    }

    fn broadcast(&mut self, msgs: Vec<Any>) -> Result<TxReceipt> {
        // Pay the normal fee while the hot wallet can; when it runs dry the
        // chain's per-epoch ML-ops allowance carries fee-free txs (SPEC §2).
        // The worker remembers which way worked last and tries that first.
        let first_pays = !self.prefer_fee_free;
        let mut receipt = self.sign_and_send(&msgs, first_pays);
        if let Ok(r) = &receipt {
            if r.code == CODE_INSUFFICIENT_FUNDS || r.code == CODE_INSUFFICIENT_FEE {
                receipt = self.sign_and_send(&msgs, !first_pays);
                if receipt.as_ref().is_ok_and(|r| r.code == 0) {
                    self.prefer_fee_free = first_pays;
                }
            }
        }
        match receipt {
            Ok(r) if r.code == 0 => {
                if let Some((_, seq)) = self.account.as_mut() {
                    *seq += 1;
                }
                Ok(r)
            }
            Ok(r) => {
                if r.code == CODE_WRONG_SEQUENCE {
                    // Another process used the key, or a tx was dropped: re-read it.
                    self.account = None;
                }
                Ok(r)
            }
            Err(e) => {
                self.account = None;
                Err(anyhow!("{e:#}"))
            }
        }
    }
}
