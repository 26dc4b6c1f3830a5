//! Embedded single-validator block producer ("devnet consensus").
//!
//! Drives an ABCI 2.0 [`Application`] exactly as CometBFT 0.38 does:
//! - **handshake**: `Info`; app height 0 → `InitChain` (genesis chain id,
//!   initial height, consensus params, validators, app_state bytes, time);
//!   block store ahead of the app → replay the missing blocks'
//!   `FinalizeBlock` + `Commit` (the crash-between-save-and-commit case),
//!   checking the app hash against the stored results;
//! - **per block**: reap mempool → `PrepareProposal` → `ProcessProposal`
//!   (reject ⇒ skip) → `FinalizeBlock` → persist block, commit signature,
//!   results and state in one rocksdb batch → `Commit` → mempool update
//!   (remove included, `CheckTx(Recheck)` the rest) → publish events.
//!
//! Blocks are real CometBFT blocks (header hash, part set, data hash, results
//! hash, consensus hash, validator hashes). Block `h`'s commit is signed with
//! our ed25519 key right after `h` is built; it becomes block `h+1`'s
//! LastCommit and its timestamp becomes block `h+1`'s time (BFT time with one
//! validator). Validator updates returned at height H take effect at H+2;
//! consensus param updates at H+1. Vote extensions are not supported.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tendermint::{block, chain, consensus, validator, AppHash, Block, Hash, Time};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, CheckTxType, CommitInfo, ExecTxResult,
    ExtendedCommitInfo, ExtendedVoteInfo, RequestCheckTx, RequestFinalizeBlock, RequestInfo,
    RequestInitChain, RequestPrepareProposal, RequestProcessProposal, RequestQuery,
    ResponseCheckTx, ResponseFinalizeBlock, ResponseInfo, ResponseQuery,
    Validator as AbciValidator, ValidatorUpdate, VoteInfo,
};
use tendermint_proto::v0_38::types::{BlockIdFlag, ConsensusParams as RawParams};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::blockstore::{BlockRecord, BlockStore, ChainState};
use crate::chain::{self as cb};
use crate::events::{flatten_events, BusEvent};
use crate::home::{self, Genesis, PrivValidatorKey};
use crate::mempool::{Mempool, MempoolConfig, MempoolError};
use crate::rpc::render;
use crate::rpc::view::{ChainView, MempoolTxs, MetricsSnapshot, NodeIdentity, RpcLimits};

// The JSON renderers moved to `rpc::render`; their old paths keep working.
pub use crate::rpc::render::{
    block_json, block_meta_json, events_json, exec_result_event_json, finalize_block_json,
    fix_header_json, header_json, params_json,
};

/// At most this many heights are pruned from the block store per committed
/// block, so a large first prune does not stall block production.
pub const PRUNE_BATCH: u64 = 2000;

/// Devnet configuration.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Node home (`config/genesis.json`, `config/priv_validator_key.json`, `data/`).
    pub home: PathBuf,
    /// JSON-RPC listen address (default 127.0.0.1:26657; port 0 = ephemeral).
    pub rpc_listen: SocketAddr,
    /// Time between blocks (default 1 s). Ignored when `manual_blocks`.
    pub block_time: Duration,
    /// Only produce blocks on [`DevnetHandle::produce_block_now`] (tests).
    pub manual_blocks: bool,
    /// Cap on the total tx bytes of a block (below the consensus-param limit).
    pub max_block_txs_bytes: Option<i64>,
    /// Mempool limits.
    pub mempool: MempoolConfig,
    /// Node moniker reported by `status`.
    pub moniker: String,
    /// How long `broadcast_tx_commit` waits for inclusion (CometBFT default 10 s).
    pub broadcast_tx_commit_timeout: Duration,
    /// JSON-RPC limits (CometBFT's defaults: 1 MB bodies, batches of 10,
    /// 100 websocket clients with 5 subscriptions each, paged tx search).
    pub rpc_limits: RpcLimits,
}

impl DevnetConfig {
    /// Defaults for `home`: 127.0.0.1:26657, 1 s blocks.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            rpc_listen: "127.0.0.1:26657".parse().expect("valid addr"),
            block_time: Duration::from_secs(1),
            manual_blocks: false,
            max_block_txs_bytes: None,
            mempool: MempoolConfig::default(),
            moniker: "kiln-devnet".into(),
            broadcast_tx_commit_timeout: Duration::from_secs(10),
            rpc_limits: RpcLimits::default(),
        }
    }
}

/// Prometheus-style counters.
#[derive(Default)]
pub struct Metrics {
    pub height: AtomicU64,
    pub total_txs: AtomicU64,
    pub last_block_txs: AtomicU64,
    /// Milliseconds between the last two blocks' times.
    pub last_block_interval_ms: AtomicU64,
    pub blocks_rejected: AtomicU64,
}

/// The running node: app + store + mempool + consensus state, shared by the
/// producer and the RPC server.
pub struct Node<A: Application> {
    /// The application (cloned per call; apps share state internally).
    app: Mutex<A>,
    pub store: BlockStore,
    pub genesis: Genesis,
    /// genesis.json as written (served by the `genesis` endpoint).
    pub genesis_raw: Value,
    pub key: PrivValidatorKey,
    pub node_id: String,
    pub moniker: String,
    pub home: PathBuf,
    pub mempool: Mutex<Mempool>,
    pub state: RwLock<ChainState>,
    pub events: broadcast::Sender<Arc<BusEvent>>,
    pub metrics: Metrics,
    pub rpc_addr: RwLock<Option<SocketAddr>>,
    pub max_block_txs_bytes: Option<i64>,
    pub broadcast_tx_commit_timeout: Duration,
    pub rpc_limits: RpcLimits,
    produce_lock: Mutex<()>,
    /// Why block production stopped for good (a block execution error, as
    /// CometBFT would halt on it); `None` while producing.
    halted: Mutex<Option<String>>,
    /// Set on shutdown; websocket sessions watch it.
    pub shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ts(t: Time) -> tendermint_proto::google::protobuf::Timestamp {
    t.into()
}

fn update_to_info(u: &ValidatorUpdate) -> anyhow::Result<validator::Info> {
    let upd = validator::Update::try_from(u.clone())
        .map_err(|e| anyhow!("invalid validator update: {e}"))?;
    Ok(validator::Info::new(upd.pub_key, upd.power))
}

fn info_to_update(v: &validator::Info) -> ValidatorUpdate {
    validator::Update {
        pub_key: v.pub_key,
        power: v.power,
    }
    .into()
}

/// The key type names `params.validator.pub_key_types` allows, as CometBFT
/// spells them (defaults to ed25519 when the list is empty).
pub fn allowed_key_types(params: &consensus::Params) -> Vec<&'static str> {
    let types: Vec<&'static str> = params
        .validator
        .pub_key_types
        .iter()
        .map(|t| match t {
            tendermint::public_key::Algorithm::Ed25519 => "ed25519",
            tendermint::public_key::Algorithm::Secp256k1 => "secp256k1",
        })
        .collect();
    if types.is_empty() {
        crate::validator_rules::DEFAULT_KEY_TYPES.to_vec()
    } else {
        types
    }
}

/// Apply ABCI validator updates to a set exactly as CometBFT 0.38 does
/// ([`crate::validator_rules`]): a list CometBFT would refuse (negative
/// power, duplicate key, removal of an unknown validator, unsupported key
/// type, total power above the max, empty result) is an error, which for
/// CometBFT is a block execution error that halts the chain.
pub fn apply_validator_updates(
    vals: &[validator::Info],
    updates: &[ValidatorUpdate],
    params: &consensus::Params,
) -> anyhow::Result<Vec<validator::Info>> {
    let current: crate::validator_rules::PowerSet = vals
        .iter()
        .map(|v| {
            let update = info_to_update(v);
            let key = crate::validator_rules::ConsensusKey::from_update(&update)?;
            Ok((key, update.power))
        })
        .collect::<Result<_, crate::validator_rules::ValidatorUpdateError>>()?;
    crate::validator_rules::apply_validator_updates(&current, updates, &allowed_key_types(params))?;
    // The list is valid: apply it (power 0 removes).
    let mut map: BTreeMap<tendermint::account::Id, validator::Info> =
        vals.iter().map(|v| (v.address, v.clone())).collect();
    for u in updates {
        let info = update_to_info(u)?;
        if info.power.value() == 0 {
            map.remove(&info.address);
        } else {
            map.insert(info.address, info);
        }
    }
    Ok(cb::sorted(&map.into_values().collect::<Vec<_>>()))
}

/// Apply partial consensus param updates.
pub fn apply_param_updates(
    p: &consensus::Params,
    upd: &Option<RawParams>,
) -> anyhow::Result<consensus::Params> {
    let Some(u) = upd else { return Ok(p.clone()) };
    let mut raw: RawParams = p.clone().into();
    if u.block.is_some() {
        raw.block = u.block;
    }
    if u.evidence.is_some() {
        raw.evidence = u.evidence;
    }
    if u.validator.is_some() {
        raw.validator = u.validator.clone();
    }
    if u.version.is_some() {
        raw.version = u.version;
    }
    if u.abci.is_some() {
        raw.abci = u.abci;
    }
    consensus::Params::try_from(raw).map_err(|e| anyhow!("invalid consensus param update: {e}"))
}

/// Votes of `last_validators` in `commit` (ABCI CommitInfo).
fn commit_info(last_validators: &[validator::Info], commit: Option<&block::Commit>) -> CommitInfo {
    let Some(c) = commit else {
        return CommitInfo::default();
    };
    let vals = cb::sorted(last_validators);
    let votes = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let flag = match c.signatures.get(i) {
                Some(block::CommitSig::BlockIdFlagCommit { .. }) => BlockIdFlag::Commit,
                Some(block::CommitSig::BlockIdFlagNil { .. }) => BlockIdFlag::Nil,
                _ => BlockIdFlag::Absent,
            };
            VoteInfo {
                validator: Some(AbciValidator {
                    address: v.address.as_bytes().to_vec().into(),
                    power: v.power.value() as i64,
                }),
                block_id_flag: flag as i32,
            }
        })
        .collect();
    CommitInfo {
        round: c.round.value() as i32,
        votes,
    }
}

fn extended(ci: &CommitInfo) -> ExtendedCommitInfo {
    ExtendedCommitInfo {
        round: ci.round,
        votes: ci
            .votes
            .iter()
            .map(|v| ExtendedVoteInfo {
                validator: v.validator.clone(),
                block_id_flag: v.block_id_flag,
                ..Default::default()
            })
            .collect(),
    }
}

/// CometBFT `MaxDataBytes`: block max bytes minus header/commit overhead.
fn max_data_bytes(params: &consensus::Params, n_vals: usize) -> i64 {
    let max_bytes = if params.block.max_bytes == 0 || params.block.max_bytes > 104_857_600 {
        104_857_600
    } else {
        params.block.max_bytes as i64
    };
    max_bytes - 11 - 626 - (94 + 109 * n_vals as i64)
}

impl<A: Application> Node<A> {
    /// Open the home, run the ABCI handshake (InitChain / replay) and return
    /// the node, ready to produce blocks.
    pub fn open(app: A, cfg: &DevnetConfig) -> anyhow::Result<Arc<Self>> {
        let (genesis, genesis_raw) = home::load_genesis(&cfg.home)?;
        let key = home::load_priv_validator_key(&cfg.home)?;
        let node_id = match home::load_node_key(&cfg.home) {
            Ok(k) => k.node_id(),
            Err(_) => hex::encode(key.address().as_bytes()),
        };
        std::fs::create_dir_all(home::data_dir(&cfg.home))?;
        let store = BlockStore::open(&home::blockstore_path(&cfg.home))?;
        let state = handshake(&app, &store, &genesis)?;
        if !state.validators.iter().any(|v| v.address == key.address()) {
            warn!(
                address = %key.address(),
                "our consensus key is not in the validator set; the devnet still produces blocks, \
                 but their commits carry no validator signature"
            );
        }
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let metrics = Metrics::default();
        metrics
            .height
            .store(state.last_block_height, Ordering::Relaxed);
        Ok(Arc::new(Self {
            app: Mutex::new(app),
            store,
            genesis,
            genesis_raw,
            key,
            node_id,
            moniker: cfg.moniker.clone(),
            home: cfg.home.clone(),
            mempool: Mutex::new(Mempool::new(cfg.mempool.clone())),
            state: RwLock::new(state),
            events,
            metrics,
            rpc_addr: RwLock::new(None),
            max_block_txs_bytes: cfg.max_block_txs_bytes,
            broadcast_tx_commit_timeout: cfg.broadcast_tx_commit_timeout,
            rpc_limits: cfg.rpc_limits,
            produce_lock: Mutex::new(()),
            halted: Mutex::new(None),
            shutdown,
        }))
    }

    /// A handle to the application (a clone).
    pub fn app(&self) -> A {
        lock(&self.app).clone()
    }

    /// A snapshot of the consensus state.
    pub fn state(&self) -> ChainState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the devnet stopped producing blocks, if it has (a block execution
    /// error such as validator updates CometBFT refuses).
    pub fn halted(&self) -> Option<String> {
        lock(&self.halted).clone()
    }

    /// Latest block height (0 before the first block).
    pub fn height(&self) -> u64 {
        let st = self.state();
        if st.last_block_height < st.initial_height {
            0
        } else {
            st.last_block_height
        }
    }

    /// Produce one block. `Ok(None)` when ProcessProposal rejected it.
    pub fn produce_block(&self) -> anyhow::Result<Option<u64>> {
        let _g = lock(&self.produce_lock);
        if let Some(reason) = lock(&self.halted).clone() {
            bail!("the devnet has halted: {reason}");
        }
        let app = self.app();
        let st = self.state();
        let chain_id: chain::Id = st.chain_id.parse().map_err(|e| anyhow!("chain id: {e}"))?;
        let h = st.last_block_height + 1;
        let height = block::Height::try_from(h)?;
        let params = st.consensus_params.clone();
        let addr = self.key.address();

        let (last_commit, time) = if h == st.initial_height {
            (None, st.last_block_time)
        } else {
            let c = self
                .store
                .seen_commit(h - 1)?
                .ok_or_else(|| anyhow!("missing commit for block {}", h - 1))?;
            let t = c
                .signatures
                .iter()
                .filter_map(|s| match s {
                    block::CommitSig::BlockIdFlagCommit { timestamp, .. } => Some(*timestamp),
                    _ => None,
                })
                .max()
                // Our key signed no commit (it is not a validator): the
                // proposer's clock, as CometBFT's proposer would use.
                .unwrap_or_else(|| {
                    std::cmp::max(
                        Time::now(),
                        st.last_block_time
                            .checked_add(Duration::from_millis(1))
                            .unwrap_or(st.last_block_time),
                    )
                });
            (Some(c), t)
        };
        let ci = commit_info(&st.last_validators, last_commit.as_ref());
        let next_vals_hash = cb::validators_hash(&st.next_validators);

        let mut mempool = lock(&self.mempool);
        let mut max_data = max_data_bytes(&params, st.validators.len());
        if let Some(cap) = self.max_block_txs_bytes {
            max_data = max_data.min(cap);
        }
        let reaped = mempool.reap(max_data, params.block.max_gas);
        let prep = app.prepare_proposal(RequestPrepareProposal {
            max_tx_bytes: max_data,
            txs: reaped.into_iter().map(Into::into).collect(),
            local_last_commit: Some(extended(&ci)),
            misbehavior: vec![],
            height: h as i64,
            time: Some(ts(time)),
            next_validators_hash: next_vals_hash.as_bytes().to_vec().into(),
            proposer_address: addr.as_bytes().to_vec().into(),
        });
        let txs: Vec<Vec<u8>> = prep.txs.iter().map(|t| t.to_vec()).collect();
        let total: i64 = txs.iter().map(|t| t.len() as i64).sum();
        if total > max_data {
            bail!("PrepareProposal returned {total} tx bytes, more than max_tx_bytes {max_data}");
        }

        let header = block::Header {
            version: block::header::Version {
                block: crate::BLOCK_PROTOCOL,
                app: st.app_version,
            },
            chain_id: chain_id.clone(),
            height,
            time,
            last_block_id: st.last_block_id,
            last_commit_hash: Some(cb::commit_hash(last_commit.as_ref())),
            data_hash: Some(cb::txs_hash(&txs)),
            validators_hash: cb::validators_hash(&st.validators),
            next_validators_hash: next_vals_hash,
            consensus_hash: cb::params_hash(&params),
            app_hash: AppHash::try_from(st.app_hash.clone())
                .map_err(|e| anyhow!("app hash: {e}"))?,
            last_results_hash: Some(Hash::from_bytes(
                tendermint::hash::Algorithm::Sha256,
                &st.last_results_hash,
            )?),
            evidence_hash: Some(cb::empty_hash()),
            proposer_address: addr,
        };
        // Initial block: CometBFT's empty (non-nil) LastCommit.
        let blk_commit = Some(last_commit.clone().unwrap_or_else(cb::empty_commit));
        let blk = Block::new(
            header,
            txs.clone(),
            tendermint::evidence::List::default(),
            blk_commit,
        );
        let (bid, size) = cb::block_id(&blk);

        let pp = app.process_proposal(RequestProcessProposal {
            txs: prep.txs.clone(),
            proposed_last_commit: Some(ci.clone()),
            misbehavior: vec![],
            hash: bid.hash.as_bytes().to_vec().into(),
            height: h as i64,
            time: Some(ts(time)),
            next_validators_hash: next_vals_hash.as_bytes().to_vec().into(),
            proposer_address: addr.as_bytes().to_vec().into(),
        });
        if pp.status != ProposalStatus::Accept as i32 {
            warn!(
                height = h,
                status = pp.status,
                "ProcessProposal rejected our proposal; skipping this round"
            );
            self.metrics.blocks_rejected.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }

        let fin = app.finalize_block(RequestFinalizeBlock {
            txs: prep.txs.clone(),
            decided_last_commit: Some(ci),
            misbehavior: vec![],
            hash: bid.hash.as_bytes().to_vec().into(),
            height: h as i64,
            time: Some(ts(time)),
            next_validators_hash: next_vals_hash.as_bytes().to_vec().into(),
            proposer_address: addr.as_bytes().to_vec().into(),
        });
        if fin.tx_results.len() != txs.len() {
            bail!(
                "FinalizeBlock returned {} tx results for {} txs",
                fin.tx_results.len(),
                txs.len()
            );
        }

        // CometBFT checks the validator updates against the params in force
        // for this block, then applies the param updates.
        let next_validators = match apply_validator_updates(
            &st.next_validators,
            &fin.validator_updates,
            &params,
        ) {
            Ok(v) => v,
            Err(e) => {
                let reason = format!(
                    "block execution failed at height {h}: FinalizeBlock returned validator updates CometBFT refuses: {e:#}"
                );
                error!(
                    "{reason}; the devnet stops producing blocks (CometBFT halts every node here)"
                );
                *lock(&self.halted) = Some(reason.clone());
                bail!("{reason}");
            }
        };
        let new_params = apply_param_updates(&params, &fin.consensus_param_updates)?;
        let new_state = ChainState {
            chain_id: st.chain_id.clone(),
            initial_height: st.initial_height,
            last_block_height: h,
            last_block_id: Some(bid),
            last_block_time: time,
            app_hash: fin.app_hash.to_vec(),
            last_results_hash: cb::results_hash(&fin.tx_results),
            app_version: new_params
                .version
                .as_ref()
                .map(|v| v.app)
                .unwrap_or(st.app_version),
            last_validators: st.validators.clone(),
            validators: st.next_validators.clone(),
            next_validators,
            consensus_params: new_params,
        };
        let vote_time = std::cmp::max(
            Time::now(),
            time.checked_add(Duration::from_millis(1))
                .ok_or_else(|| anyhow!("time overflow"))?,
        );
        let seen = cb::sign_commit(&self.key, &chain_id, height, bid, vote_time, &st.validators);
        self.store.save_block(&BlockRecord {
            block: &blk,
            block_id: &bid,
            block_size: size,
            seen_commit: &seen,
            results: &fin,
            state_after: &new_state,
            validators: &st.validators,
            params: &params,
        })?;
        let retain_height = app.commit().retain_height;
        let _ = home::write_priv_validator_state(
            &self.home,
            &home::PrivValidatorState {
                height: h as i64,
                round: 0,
                step: 3,
                signature: None,
                signbytes: None,
            },
        );
        mempool.update(&app, &txs);
        drop(mempool);
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = new_state;

        self.metrics.height.store(h, Ordering::Relaxed);
        self.metrics
            .total_txs
            .fetch_add(txs.len() as u64, Ordering::Relaxed);
        self.metrics
            .last_block_txs
            .store(txs.len() as u64, Ordering::Relaxed);
        if let Ok(d) = time.duration_since(st.last_block_time) {
            self.metrics
                .last_block_interval_ms
                .store(d.as_millis() as u64, Ordering::Relaxed);
        }
        info!(height = h, txs = txs.len(), app_hash = %hex::encode_upper(&fin.app_hash), "committed block");
        self.prune_blocks(retain_height);
        self.publish(&blk, &bid, &fin);
        Ok(Some(h))
    }

    /// Prune the block store below the app's Commit `retain_height` (0 = keep
    /// everything), at most [`PRUNE_BATCH`] heights per block so a large first
    /// prune is spread over the next blocks. The block is already committed:
    /// a failure here is logged, not returned.
    fn prune_blocks(&self, retain_height: i64) {
        let Ok(retain) = u64::try_from(retain_height) else {
            return;
        };
        if retain == 0 {
            return;
        }
        let base = match self.store.base() {
            Ok(b) => b,
            Err(e) => {
                warn!("block pruning: reading the base: {e:#}");
                return;
            }
        };
        if retain <= base {
            return;
        }
        match self.store.prune(retain, PRUNE_BATCH) {
            Ok(new_base) => {
                debug!(
                    old_base = base,
                    new_base,
                    retain_height = retain,
                    "pruned blocks"
                )
            }
            Err(e) => warn!("block pruning below {retain}: {e:#}"),
        }
    }

    fn publish(&self, blk: &Block, bid: &block::Id, fin: &ResponseFinalizeBlock) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let h = blk.header.height.value();
        let mut evmap = BTreeMap::new();
        evmap.insert("tm.event".to_string(), vec!["NewBlock".to_string()]);
        flatten_events(&fin.events, &mut evmap);
        let data = render::new_block_event_json(blk, bid, fin);
        let mut hdr_events = evmap.clone();
        hdr_events.insert("tm.event".to_string(), vec!["NewBlockHeader".to_string()]);
        let _ = self.events.send(Arc::new(BusEvent {
            kind: "NewBlock",
            data,
            events: evmap,
            height: h,
            tx_hash: None,
            tx_result: None,
        }));
        let _ = self.events.send(Arc::new(BusEvent {
            kind: "NewBlockHeader",
            data: render::new_block_header_event_json(&blk.header),
            events: hdr_events,
            height: h,
            tx_hash: None,
            tx_result: None,
        }));
        for (i, (tx, res)) in blk.data.iter().zip(fin.tx_results.iter()).enumerate() {
            let hash = crate::tx_hash(tx);
            let mut evmap = BTreeMap::new();
            evmap.insert("tm.event".to_string(), vec!["Tx".to_string()]);
            evmap.insert("tx.hash".to_string(), vec![hex::encode_upper(hash)]);
            evmap.insert("tx.height".to_string(), vec![h.to_string()]);
            flatten_events(&res.events, &mut evmap);
            let data = render::tx_event_json(h, i, tx, res);
            let _ = self.events.send(Arc::new(BusEvent {
                kind: "Tx",
                data,
                events: evmap,
                height: h,
                tx_hash: Some(hash),
                tx_result: Some(res.clone()),
            }));
        }
    }
}

/// The RPC's view of the devnet node: its block store, mempool, application
/// and event bus.
impl<A: Application> ChainView for Node<A> {
    fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            id: self.node_id.clone(),
            moniker: self.moniker.clone(),
            validator_pub_key: self.key.public_key(),
            rpc_address: *self.rpc_addr.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn genesis(&self) -> Value {
        self.genesis_raw.clone()
    }

    fn state(&self) -> ChainState {
        Node::state(self)
    }

    fn height(&self) -> u64 {
        Node::height(self)
    }

    fn base(&self) -> anyhow::Result<u64> {
        self.store.base()
    }

    fn block(&self, height: u64) -> anyhow::Result<Option<Block>> {
        self.store.block(height)
    }

    fn block_meta(&self, height: u64) -> anyhow::Result<Option<block::Meta>> {
        self.store.block_meta(height)
    }

    fn height_by_hash(&self, hash: &[u8]) -> anyhow::Result<Option<u64>> {
        self.store.height_by_hash(hash)
    }

    fn seen_commit(&self, height: u64) -> anyhow::Result<Option<block::Commit>> {
        self.store.seen_commit(height)
    }

    fn results(&self, height: u64) -> anyhow::Result<Option<ResponseFinalizeBlock>> {
        self.store.results(height)
    }

    fn validators(&self, height: u64) -> anyhow::Result<Option<Vec<validator::Info>>> {
        self.store.validators(height)
    }

    fn consensus_params(&self, height: u64) -> anyhow::Result<Option<consensus::Params>> {
        self.store.consensus_params(height)
    }

    fn tx_position(&self, hash: &[u8]) -> anyhow::Result<Option<(u64, u32)>> {
        self.store.tx_position(hash)
    }

    fn tx(&self, height: u64, index: u32) -> anyhow::Result<(Vec<u8>, ExecTxResult)> {
        self.store.tx_with_result(height, index)
    }

    fn search_txs(&self, query: &tendermint_rpc::query::Query) -> anyhow::Result<Vec<(u64, u32)>> {
        self.store
            .search_txs(query, Node::height(self), &self.rpc_limits.tx_search)
    }

    fn abci_info(&self) -> ResponseInfo {
        self.app().info(RequestInfo {
            version: crate::COMETBFT_VERSION.into(),
            block_version: crate::BLOCK_PROTOCOL,
            p2p_version: crate::P2P_PROTOCOL,
            abci_version: crate::ABCI_VERSION.into(),
        })
    }

    fn abci_query(&self, req: RequestQuery) -> ResponseQuery {
        self.app().query(req)
    }

    fn check_tx(&self, tx: Vec<u8>) -> ResponseCheckTx {
        self.app().check_tx(RequestCheckTx {
            tx: tx.into(),
            r#type: CheckTxType::New as i32,
        })
    }

    fn submit_tx(&self, tx: Vec<u8>) -> Result<ResponseCheckTx, MempoolError> {
        let app = self.app();
        lock(&self.mempool).check_tx(&app, tx)
    }

    fn unconfirmed_txs(&self, limit: usize) -> MempoolTxs {
        let mp = lock(&self.mempool);
        MempoolTxs {
            txs: mp.txs().take(limit).map(|t| t.tx.clone()).collect(),
            total: mp.len(),
            total_bytes: mp.total_bytes(),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.events.subscribe()
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn rpc_limits(&self) -> RpcLimits {
        self.rpc_limits
    }

    fn broadcast_tx_commit_timeout(&self) -> Duration {
        self.broadcast_tx_commit_timeout
    }

    fn metrics(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        let (mempool_size, mempool_bytes) = {
            let mp = lock(&self.mempool);
            (mp.len(), mp.total_bytes())
        };
        MetricsSnapshot {
            height: m.height.load(Ordering::Relaxed),
            total_txs: m.total_txs.load(Ordering::Relaxed),
            last_block_txs: m.last_block_txs.load(Ordering::Relaxed),
            last_block_interval_ms: m.last_block_interval_ms.load(Ordering::Relaxed),
            blocks_rejected: m.blocks_rejected.load(Ordering::Relaxed),
            mempool_size,
            mempool_bytes,
        }
    }
}

/// The handshake: bring the app to the block store's height and return the
/// consensus state to continue from.
fn handshake<A: Application>(
    app: &A,
    store: &BlockStore,
    genesis: &Genesis,
) -> anyhow::Result<ChainState> {
    let info = app.info(RequestInfo {
        version: crate::COMETBFT_VERSION.into(),
        block_version: crate::BLOCK_PROTOCOL,
        p2p_version: crate::P2P_PROTOCOL,
        abci_version: crate::ABCI_VERSION.into(),
    });
    let app_h = info.last_block_height.max(0) as u64;
    let store_h = store.height()?;
    let base = store.base()?;
    info!(app_height = app_h, store_height = store_h, "ABCI handshake");
    if app_h > store_h {
        bail!(
            "the app is at height {app_h} but the block store only has {store_h} blocks; \
             the node home does not belong to this app state (wipe one of them)"
        );
    }
    let mut replay_from = app_h + 1;
    let first_needed = if app_h == 0 {
        u64::try_from(genesis.initial_height).unwrap_or(1).max(1)
    } else {
        replay_from
    };
    if store_h > 0 && first_needed <= store_h && first_needed < base {
        bail!(
            "the app is at height {app_h} but the block store was pruned: its lowest height \
             is {base} and replaying needs block {first_needed}; restore the app state or \
             wipe the node home"
        );
    }
    if app_h == 0 {
        let gst = init_chain(app, genesis, info.app_version)?;
        if store_h == 0 {
            store.save_genesis_state(&gst)?;
            return Ok(gst);
        }
        replay_from = base.max(gst.initial_height);
    }
    for h in replay_from..=store_h {
        replay_block(app, store, h)?;
    }
    let st = store
        .latest_state()?
        .ok_or_else(|| anyhow!("block store has no saved state"))?;
    if st.chain_id != genesis.chain_id.as_str() {
        bail!(
            "block store is for chain {} but genesis.json says {}",
            st.chain_id,
            genesis.chain_id
        );
    }
    if store_h > 0
        && app_h == store_h
        && !info.last_block_app_hash.is_empty()
        && info.last_block_app_hash.as_ref() != st.app_hash.as_slice()
    {
        bail!(
            "app hash mismatch at height {store_h}: app reports {}, block store has {}",
            hex::encode_upper(&info.last_block_app_hash),
            hex::encode_upper(&st.app_hash)
        );
    }
    Ok(st)
}

fn init_chain<A: Application>(
    app: &A,
    g: &Genesis,
    app_version: u64,
) -> anyhow::Result<ChainState> {
    let app_state_bytes = if g.app_state.is_null() {
        vec![]
    } else {
        serde_json::to_vec(&g.app_state)?
    };
    let resp = app.init_chain(RequestInitChain {
        time: Some(ts(g.genesis_time)),
        chain_id: g.chain_id.to_string(),
        consensus_params: Some(g.consensus_params.clone().into()),
        validators: g.validators.iter().map(info_to_update).collect(),
        app_state_bytes: app_state_bytes.into(),
        initial_height: g.initial_height,
    });
    let params = match resp.consensus_params {
        Some(p) => apply_param_updates(&g.consensus_params, &Some(p))?,
        None => g.consensus_params.clone(),
    };
    let vals = if resp.validators.is_empty() {
        cb::sorted(&g.validators)
    } else {
        // CometBFT's NewValidatorSet: the update rules, no removals.
        crate::validator_rules::genesis_validator_set(
            &resp.validators,
            &allowed_key_types(&params),
        )
        .map_err(|e| anyhow!("InitChain returned a validator set CometBFT refuses: {e}"))?;
        apply_validator_updates(&[], &resp.validators, &params)?
    };
    if vals.is_empty() {
        bail!("genesis.json has no validators and InitChain returned none: the chain would have no validator");
    }
    let app_hash = if resp.app_hash.is_empty() {
        g.app_hash.as_bytes().to_vec()
    } else {
        resp.app_hash.to_vec()
    };
    info!(chain_id = %g.chain_id, validators = vals.len(), "InitChain done");
    Ok(ChainState {
        chain_id: g.chain_id.to_string(),
        initial_height: g.initial_height as u64,
        last_block_height: g.initial_height as u64 - 1,
        last_block_id: None,
        last_block_time: g.genesis_time,
        app_hash,
        last_results_hash: cb::empty_hash().as_bytes().to_vec(),
        app_version: if app_version != 0 {
            app_version
        } else {
            params.version.as_ref().map(|v| v.app).unwrap_or(0)
        },
        last_validators: vec![],
        validators: vals.clone(),
        next_validators: vals,
        consensus_params: params,
    })
}

/// Re-run a stored block through FinalizeBlock + Commit (crash recovery).
fn replay_block<A: Application>(app: &A, store: &BlockStore, h: u64) -> anyhow::Result<()> {
    let blk = store
        .block(h)?
        .ok_or_else(|| anyhow!("replay: block {h} missing from the block store"))?;
    let meta = store
        .block_meta(h)?
        .ok_or_else(|| anyhow!("replay: block meta {h} missing"))?;
    let stored = store
        .results(h)?
        .ok_or_else(|| anyhow!("replay: results {h} missing"))?;
    let last_vals = if h > 1 {
        store.validators(h - 1)?.unwrap_or_default()
    } else {
        vec![]
    };
    let vals_next = store.validators(h + 1)?;
    let next_vals_hash = match vals_next {
        Some(v) => cb::validators_hash(&v),
        None => blk.header.next_validators_hash,
    };
    let _ = next_vals_hash;
    info!(
        height = h,
        "replaying block (block store is ahead of the app)"
    );
    let fin = app.finalize_block(RequestFinalizeBlock {
        txs: blk.data.iter().map(|t| t.clone().into()).collect(),
        decided_last_commit: Some(commit_info(&last_vals, blk.last_commit.as_ref())),
        misbehavior: vec![],
        hash: meta.block_id.hash.as_bytes().to_vec().into(),
        height: h as i64,
        time: Some(ts(blk.header.time)),
        next_validators_hash: blk.header.next_validators_hash.as_bytes().to_vec().into(),
        proposer_address: blk.header.proposer_address.as_bytes().to_vec().into(),
    });
    if fin.app_hash != stored.app_hash {
        bail!(
            "replay of block {h}: app hash {} differs from the stored {} (non-deterministic app?)",
            hex::encode_upper(&fin.app_hash),
            hex::encode_upper(&stored.app_hash)
        );
    }
    app.commit();
    Ok(())
}

/// A running devnet (tests and embedding): RPC server + optional block timer.
pub struct DevnetHandle<A: Application> {
    node: Option<Arc<Node<A>>>,
    rpc_addr: SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<A: Application> DevnetHandle<A> {
    /// Open the home, handshake, bind the RPC server (port 0 = ephemeral)
    /// and, unless `manual_blocks`, start producing a block every `block_time`.
    pub async fn start(app: A, cfg: DevnetConfig) -> anyhow::Result<Self> {
        let cfg2 = cfg.clone();
        let node = tokio::task::spawn_blocking(move || Node::open(app, &cfg2)).await??;
        let listener = tokio::net::TcpListener::bind(cfg.rpc_listen)
            .await
            .with_context(|| format!("binding RPC on {}", cfg.rpc_listen))?;
        let rpc_addr = listener.local_addr()?;
        *node.rpc_addr.write().unwrap_or_else(|e| e.into_inner()) = Some(rpc_addr);
        info!(%rpc_addr, "JSON-RPC listening");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut tasks = vec![];
        let mut sd = node.shutdown.subscribe();
        let server_node = node.clone();
        tasks.push(tokio::spawn(async move {
            let router = crate::rpc::router(server_node);
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = sd.wait_for(|v| *v).await;
                })
                .await;
        }));
        if !cfg.manual_blocks {
            let pnode = node.clone();
            let block_time = cfg.block_time;
            tasks.push(tokio::spawn(async move {
                let mut stop_rx = stop_rx;
                let mut iv = tokio::time::interval(block_time);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                iv.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        _ = iv.tick() => {
                            let n = pnode.clone();
                            match tokio::task::spawn_blocking(move || n.produce_block()).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) if pnode.halted().is_some() => {
                                    error!("block production stopped: {e:#}");
                                    break;
                                }
                                Ok(Err(e)) => warn!("block production failed: {e:#}"),
                                Err(e) => warn!("block production panicked: {e}"),
                            }
                        }
                    }
                }
            }));
        } else {
            drop(stop_rx);
        }
        Ok(Self {
            node: Some(node),
            rpc_addr,
            stop_tx: Some(stop_tx),
            tasks,
        })
    }

    /// The bound RPC address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// The node (state, store, mempool).
    pub fn node(&self) -> &Arc<Node<A>> {
        self.node.as_ref().expect("node present until stop")
    }

    /// Latest committed height.
    pub fn height(&self) -> u64 {
        self.node().height()
    }

    /// Produce one block now. Returns its height (`None` if ProcessProposal rejected it).
    pub async fn produce_block_now(&self) -> anyhow::Result<Option<u64>> {
        let n = self.node().clone();
        tokio::task::spawn_blocking(move || n.produce_block()).await?
    }

    /// Stop producing, close the RPC server and all websocket sessions, and
    /// close the block store. Returns once the store is closed.
    pub async fn stop(mut self) {
        self.shutdown_inner().await;
    }

    async fn shutdown_inner(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(node) = self.node.take() {
            let _ = node.shutdown.send(true);
            for t in self.tasks.drain(..) {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
            // Wait for in-flight requests / sessions to drop their references.
            for _ in 0..500 {
                if Arc::strong_count(&node) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _lock = lock(&node.produce_lock);
            drop(_lock);
            drop(node);
        }
    }
}

impl<A: Application> Drop for DevnetHandle<A> {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(node) = &self.node {
            let _ = node.shutdown.send(true);
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Run a devnet until `shutdown` resolves (what `kilnd devnet` calls).
///
/// Requires `<home>/config/genesis.json` and `priv_validator_key.json`
/// (see [`home::init_home`]).
pub async fn run_devnet<A: Application>(
    app: A,
    config: DevnetConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let h = DevnetHandle::start(app, config).await?;
    info!(rpc = %h.rpc_addr(), height = h.height(), "devnet running");
    shutdown.await;
    info!("devnet shutting down");
    h.stop().await;
    Ok(())
}
