//! The in-process block driver and transaction builder used by scenario,
//! determinism and benchmark code (and by later modules' tests). It drives
//! [`KilnApp`] exactly as CometBFT would — PrepareProposal → ProcessProposal →
//! FinalizeBlock → Commit — with deterministic block times and hashes, so two
//! drivers fed the same transactions must reach the same app hashes.

use std::path::Path;

use cosmos_sdk_proto::cosmos::authz::v1beta1::{GenericAuthorization, Grant, MsgExec, MsgGrant, MsgRevoke};
use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey;
use cosmos_sdk_proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{mode_info, AuthInfo, Fee, ModeInfo, SignDoc, SignerInfo, TxBody, TxRaw};
use cosmos_sdk_proto::{Any, Timestamp};
use k256::ecdsa::{signature::Signer, Signature, SigningKey};
use kiln_framework::{Address, Coin};
use kiln_store::{Storage, StorageConfig};
use prost::Message;
use sha2::{Digest, Sha256};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, RequestFinalizeBlock, RequestInitChain, RequestPrepareProposal,
    RequestProcessProposal, ResponseFinalizeBlock,
};
use tendermint_proto::v0_38::types::{BlockParams, ConsensusParams};

use crate::ante::SECP256K1_PUBKEY_TYPE_URL;
use crate::KilnApp;

/// A secp256k1 account key for tests, derived from a label.
#[derive(Clone)]
pub struct TestKey {
    pub signing: SigningKey,
    pub address: Address,
}

impl TestKey {
    pub fn from_label(label: &str) -> Self {
        let mut seed: [u8; 32] = Sha256::digest(label.as_bytes()).into();
        loop {
            if let Ok(signing) = SigningKey::from_bytes(&seed.into()) {
                let address = Address::from_pubkey(&signing.verifying_key().to_encoded_point(true).to_bytes());
                return TestKey { signing, address };
            }
            seed = Sha256::digest(seed).into();
        }
    }

    pub fn pubkey_bytes(&self) -> Vec<u8> {
        self.signing.verifying_key().to_encoded_point(true).as_bytes().to_vec()
    }

    pub fn pubkey_any(&self) -> Any {
        Any { type_url: SECP256K1_PUBKEY_TYPE_URL.to_string(), value: PubKey { key: self.pubkey_bytes() }.encode_to_vec() }
    }
}

/// Fields of a transaction a test may want to vary.
#[derive(Clone, Debug)]
pub struct TxOptions {
    pub chain_id: String,
    pub account_number: u64,
    pub sequence: u64,
    pub gas_limit: u64,
    pub fee: u128,
    pub memo: String,
    pub timeout_height: u64,
}

impl TxOptions {
    pub fn new(chain_id: &str, account_number: u64, sequence: u64) -> Self {
        TxOptions { chain_id: chain_id.to_string(), account_number, sequence, gas_limit: 200_000, fee: 5_000, memo: String::new(), timeout_height: 0 }
    }
}

pub fn any_of<M: prost::Name>(msg: &M) -> Any {
    Any { type_url: M::type_url(), value: msg.encode_to_vec() }
}

pub fn msg_send(from: &Address, to: &Address, amount: u128) -> Any {
    any_of(&MsgSend {
        from_address: from.to_bech32(),
        to_address: to.to_bech32(),
        amount: vec![ProtoCoin { denom: kiln_framework::BASE_DENOM.into(), amount: amount.to_string() }],
    })
}

pub fn msg_grant(granter: &Address, grantee: &Address, type_url: &str, expiration: Option<i64>) -> Any {
    let authorization = Any { type_url: kiln_authz::state::GENERIC_AUTHORIZATION_TYPE_URL.to_string(), value: GenericAuthorization { msg: type_url.to_string() }.encode_to_vec() };
    any_of(&MsgGrant {
        granter: granter.to_bech32(),
        grantee: grantee.to_bech32(),
        grant: Some(Grant { authorization: Some(authorization), expiration: expiration.map(|seconds| Timestamp { seconds, nanos: 0 }) }),
    })
}

pub fn msg_revoke(granter: &Address, grantee: &Address, type_url: &str) -> Any {
    any_of(&MsgRevoke { granter: granter.to_bech32(), grantee: grantee.to_bech32(), msg_type_url: type_url.to_string() })
}

pub fn msg_exec(grantee: &Address, msgs: Vec<Any>) -> Any {
    any_of(&MsgExec { grantee: grantee.to_bech32(), msgs })
}

/// The body and auth-info bytes of an unsigned transaction.
pub fn tx_parts(key: &TestKey, msgs: Vec<Any>, opts: &TxOptions) -> (Vec<u8>, Vec<u8>) {
    let body = TxBody { messages: msgs, memo: opts.memo.clone(), timeout_height: opts.timeout_height, ..Default::default() };
    let auth_info = AuthInfo {
        signer_infos: vec![SignerInfo {
            public_key: Some(key.pubkey_any()),
            mode_info: Some(ModeInfo { sum: Some(mode_info::Sum::Single(mode_info::Single { mode: SignMode::Direct as i32 })) }),
            sequence: opts.sequence,
        }],
        fee: Some(Fee {
            amount: if opts.fee == 0 { vec![] } else { vec![ProtoCoin { denom: kiln_framework::BASE_DENOM.into(), amount: opts.fee.to_string() }] },
            gas_limit: opts.gas_limit,
            payer: String::new(),
            granter: String::new(),
        }),
        #[allow(deprecated)]
        tip: None,
    };
    (body.encode_to_vec(), auth_info.encode_to_vec())
}

/// The SIGN_MODE_DIRECT signature (low-S, as k256 produces) over the parts.
pub fn sign_parts(key: &TestKey, body_bytes: &[u8], auth_info_bytes: &[u8], opts: &TxOptions) -> Vec<u8> {
    let doc = SignDoc { body_bytes: body_bytes.to_vec(), auth_info_bytes: auth_info_bytes.to_vec(), chain_id: opts.chain_id.clone(), account_number: opts.account_number };
    let signature: Signature = key.signing.sign(&doc.encode_to_vec());
    signature.to_bytes().to_vec()
}

/// A signed transaction's bytes.
pub fn sign_tx(key: &TestKey, msgs: Vec<Any>, opts: &TxOptions) -> Vec<u8> {
    let (body_bytes, auth_info_bytes) = tx_parts(key, msgs, opts);
    let signature = sign_parts(key, &body_bytes, &auth_info_bytes, opts);
    TxRaw { body_bytes, auth_info_bytes, signatures: vec![signature] }.encode_to_vec()
}

/// Genesis time of test chains (2026-01-01T00:00:00Z) and seconds per block.
pub const GENESIS_TIME: i64 = 1_767_225_600;
pub const BLOCK_SECONDS: i64 = 1;

/// Drives a [`KilnApp`] block by block, as CometBFT would.
pub struct BlockDriver {
    pub app: KilnApp,
    pub chain_id: String,
    pub height: u64,
    pub last_app_hash: Vec<u8>,
    /// Transactions waiting for the next block (CheckTx-accepted).
    pub mempool: Vec<Vec<u8>>,
}

pub struct BlockOutcome {
    pub height: u64,
    pub response: ResponseFinalizeBlock,
    pub included: Vec<Vec<u8>>,
}

impl BlockDriver {
    /// Opens (or re-opens) an app at `path`. A fresh app gets `InitChain` with `genesis_json`.
    pub fn open(path: &Path, chain_id: &str, genesis_json: &serde_json::Value, keep_recent: u64) -> anyhow::Result<Self> {
        let storage = Storage::open(path, StorageConfig { keep_recent })?;
        let app = KilnApp::new(storage)?;
        let info = app.info(Default::default());
        let height = u64::try_from(info.last_block_height).unwrap_or(0);
        let mut driver = BlockDriver { app, chain_id: chain_id.to_string(), height, last_app_hash: info.last_block_app_hash.to_vec(), mempool: Vec::new() };
        if height == 0 {
            let response = driver.app.init_chain(RequestInitChain {
                time: Some(Timestamp { seconds: GENESIS_TIME, nanos: 0 }),
                chain_id: chain_id.to_string(),
                consensus_params: Some(ConsensusParams { block: Some(BlockParams { max_bytes: 4 << 20, max_gas: 100_000_000 }), ..Default::default() }),
                validators: Vec::new(),
                app_state_bytes: serde_json::to_vec(genesis_json)?.into(),
                initial_height: 1,
            });
            driver.last_app_hash = response.app_hash.to_vec();
        }
        Ok(driver)
    }

    /// Genesis JSON funding each key with `amount` ukiln.
    pub fn genesis_funding(keys: &[&TestKey], amount: u128) -> serde_json::Value {
        let mut genesis = kiln_genesis::AppGenesis::default();
        for key in keys {
            genesis.add_balance(key.address, vec![Coin::new(kiln_framework::BASE_DENOM, amount)]);
        }
        serde_json::to_value(genesis).unwrap_or_default()
    }

    /// CheckTx; accepted transactions wait in the driver's mempool.
    pub fn submit(&mut self, tx: Vec<u8>) -> tendermint_proto::v0_38::abci::ResponseCheckTx {
        let response = self.app.check_tx(tendermint_proto::v0_38::abci::RequestCheckTx { tx: tx.clone().into(), r#type: 0 });
        if response.code == 0 {
            self.mempool.push(tx);
        }
        response
    }

    fn block_hash(&self, height: u64) -> Vec<u8> {
        Sha256::new().chain_update(self.chain_id.as_bytes()).chain_update(height.to_le_bytes()).chain_update(&self.last_app_hash).finalize().to_vec()
    }

    /// Produces one block from the mempool through PrepareProposal and ProcessProposal.
    pub fn produce_block(&mut self) -> anyhow::Result<BlockOutcome> {
        let height = self.height + 1;
        let time = Timestamp { seconds: GENESIS_TIME + BLOCK_SECONDS * i64::try_from(height)?, nanos: 0 };
        let candidates: Vec<_> = std::mem::take(&mut self.mempool).into_iter().map(Into::into).collect();
        let prepared = self.app.prepare_proposal(RequestPrepareProposal { max_tx_bytes: 4 << 20, txs: candidates, height: i64::try_from(height)?, time: Some(time), ..Default::default() });
        let txs: Vec<Vec<u8>> = prepared.txs.iter().map(|t| t.to_vec()).collect();
        let status = self.app.process_proposal(RequestProcessProposal { txs: prepared.txs.clone(), height: i64::try_from(height)?, time: Some(time), hash: self.block_hash(height).into(), ..Default::default() });
        anyhow::ensure!(status.status == ProposalStatus::Accept as i32, "the app rejected its own proposal at height {height}");
        self.deliver(txs)
    }

    /// Executes a block with exactly `txs` (no PrepareProposal filtering), then commits.
    pub fn deliver(&mut self, txs: Vec<Vec<u8>>) -> anyhow::Result<BlockOutcome> {
        let height = self.height + 1;
        let time = Timestamp { seconds: GENESIS_TIME + BLOCK_SECONDS * i64::try_from(height)?, nanos: 0 };
        let response = self.app.finalize_block(RequestFinalizeBlock {
            txs: txs.iter().cloned().map(Into::into).collect(),
            hash: self.block_hash(height).into(),
            height: i64::try_from(height)?,
            time: Some(time),
            ..Default::default()
        });
        self.app.commit();
        self.height = height;
        self.last_app_hash = response.app_hash.to_vec();
        Ok(BlockOutcome { height, response, included: txs })
    }

    /// The current state of an account (number, sequence), if it exists.
    pub fn account(&self, addr: &Address) -> Option<(u64, u64)> {
        let snapshot = self.app.latest_view();
        kiln_bank::state::AuthExt::account(&snapshot, addr).ok().flatten().map(|a| (a.account_number, a.sequence))
    }

    pub fn balance(&self, addr: &Address) -> u128 {
        let snapshot = self.app.latest_view();
        kiln_bank::state::balance_readonly(&snapshot, addr, kiln_framework::BASE_DENOM).unwrap_or(0)
    }

    /// Options for the next tx from `key` with the committed sequence.
    pub fn opts_for(&self, key: &TestKey) -> TxOptions {
        let (number, sequence) = self.account(&key.address).unwrap_or((0, 0));
        TxOptions::new(&self.chain_id, number, sequence)
    }
}
