//! The chain-following worker (`kiln-mlworker run`): every epoch it sprints
//! from the seed block, streams Merkle commitments before the deadline, opens
//! the challenged leaves, recomputes the openings it is assigned to validate
//! and commits then reveals its votes — each message signed by the host's ML
//! operational key inside a `MsgExec` (the host's grant authorises it).
//!
//! The worker is a step function ([`Worker::tick`]) over a [`ChainClient`]:
//! each tick reads the chain's view of the epoch (stage, seed, challenge, the
//! host's own commitment and opening, its validation duties and which votes
//! are already on chain) and does the next piece of work. Because decisions
//! are re-derived from chain state every tick, a worker killed at any point
//! resumes where the chain says it is; the [`journal`] keeps the only things
//! the chain cannot give back (computed leaves, next nonce, vote salts), so a
//! restart never recomputes a nonce, never loses its commitment and never
//! double-submits.

pub mod chain;
pub mod follow;
pub mod http;
pub mod journal;

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use cosmrs::Any;
use kiln_epochs::{EpochParams, Stage};
use kiln_sprint::msgs::{
    vote_commitment, MsgSprintCommit, MsgSprintOpen, MsgSprintVoteCommit, MsgSprintVoteReveal,
    OpenedLeaf,
};
use kiln_sprint::SprintParams;
use kiln_sprint_protocol::challenge::{challenge_seed, sample_indices};
use kiln_sprint_protocol::leaf::{claims_share, leaf_hash, quantize_distance};
use kiln_sprint_protocol::merkle::MerkleTree;
use kiln_sprint_protocol::model::ModelConfig;
use kiln_sprint_protocol::seed::sprint_seed;
use kiln_sprint_protocol::verdict;
use kiln_sprint_protocol::Hash32;
use prost::Message;
use serde::Serialize;
use serde_json::{json, Value};

use crate::sprint::device::ComputeDevice;
use crate::sprint::engine::SprintEngine;
use chain::{ChainClient, TxReceipt};
use journal::{EpochJournal, Journal, VoteRecord};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{0} is not a registered host: register it with `kiln tx host register` (account key), then grant this worker's key with `kiln tx authz grant-ml-ops`")]
    NotRegistered(String),
    #[error("host {host} has not granted the worker's ML key {operator} the messages {missing}: run `kiln tx authz grant-ml-ops {operator} --from <host key>`")]
    NotGranted {
        host: String,
        operator: String,
        missing: String,
    },
}

/// The messages the worker sends; the host must have granted all of them.
const WORKER_MSG_TYPE_URLS: [&str; 4] = [
    "/kiln.sprint.v1.MsgSprintCommit",
    "/kiln.sprint.v1.MsgSprintOpen",
    "/kiln.sprint.v1.MsgSprintVoteCommit",
    "/kiln.sprint.v1.MsgSprintVoteReveal",
];

/// Blocks to look for a sent tx's block result before giving up on it.
const TRACK_TX_BLOCKS: u64 = 10;

/// How much the worker computes.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as the device allows during the sprint stage, in slices of
    /// about `slice_seconds` between chain polls.
    Continuous { slice_seconds: f64 },
    /// A fixed compute budget: by the end of the block `S + i` the worker has
    /// computed `min(budget, nonces_per_block · (i + 1))` nonces. Used by
    /// simulations to give hosts different, reproducible compute power.
    PerBlock { nonces_per_block: u64, budget: u64 },
}

/// Deliberate misbehaviour, for network tests only (not exposed on the CLI).
#[derive(Clone, Copy, Debug, Default)]
pub struct Misbehaviour {
    /// Invent this many per mille of the committed leaves (non-shares claimed as shares).
    pub fabricate_permille: u32,
    /// Never open the commitment.
    pub skip_open: bool,
    /// Reveal the opposite of every committed vote.
    pub flip_reveal: bool,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The host (account key) the worker works for.
    pub host: String,
    /// The ML operational key's address (grantee of the host's grant).
    pub operator: String,
    pub device: ComputeDevice,
    /// Torch intra-op threads (CPU: one batch stream per thread).
    pub threads: usize,
    pub batch: Option<usize>,
    pub pace: Pace,
    /// Re-commit a growing tree at most every this many blocks during the sprint.
    pub commit_every_blocks: u64,
    pub misbehaviour: Misbehaviour,
}

/// Blocks to wait for a sent tx to show up in state before sending it again.
const RESEND_AFTER_BLOCKS: u64 = 3;

/// What a tick did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Computed something and has more to do now: tick again right away.
    Busy,
    /// Nothing to do until the next block.
    Idle,
}

/// The last transaction the worker sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LastTx {
    pub kind: String,
    pub epoch: u64,
    pub height: u64,
    pub hash: String,
    pub code: u32,
    pub log: String,
}

/// What `/status`, `/metrics` and `kiln-mlworker status` show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStatus {
    pub host: String,
    pub operator: String,
    pub device: String,
    pub chain_id: String,
    pub height: u64,
    pub epoch: u64,
    /// Stage of the next block (the one the worker's txs land in).
    pub stage: String,
    pub nonces_done: u64,
    pub shares: u64,
    pub committed_shares: u64,
    pub opened: bool,
    pub duties: u64,
    pub votes_committed: u64,
    pub votes_revealed: u64,
    pub nonces_total: u64,
    pub nonces_per_second: f64,
    /// Accepted by CheckTx.
    pub txs_accepted: u64,
    /// Refused by CheckTx.
    pub txs_refused: u64,
    /// Accepted by CheckTx, then failed when the block executed it.
    pub txs_failed_in_block: u64,
    pub last_tx: Option<LastTx>,
    /// The last tx that was refused or failed in its block, with the chain's reason.
    pub last_failure: Option<LastTx>,
    pub last_result: Option<Value>,
    /// Weight in force, share, consensus power and reputation, read at the last settle.
    pub standing: Option<Value>,
    pub last_chain_contact_unix: u64,
    /// Whether the node's websocket announces new blocks (else the worker polls).
    pub websocket: bool,
    /// New-block events received over the websocket.
    pub new_block_events: u64,
    pub last_error: Option<String>,
    pub started_unix: u64,
}

pub type SharedStatus = Arc<Mutex<WorkerStatus>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn any_of<M: prost::Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// The chain's view of one epoch, read at the start of a tick.
struct View {
    height: u64,
    epoch: u64,
    /// Stage of block `height + 1`.
    stage: Stage,
    start_height: u64,
    /// The epoch's settle block; its validator updates sign from `settle_height + 2`.
    settle_height: u64,
    seed_hash: Option<Vec<u8>>,
    challenge_hash: Option<Vec<u8>>,
    duties: Value,
}

struct EngineSlot {
    seed: Hash32,
    engine: SprintEngine,
}

pub struct Worker {
    cfg: WorkerConfig,
    host_bytes: [u8; 20],
    journal: Journal,
    current: Option<EpochJournal>,
    engine: Option<EngineSlot>,
    params: Option<(u64, SprintParams)>,
    chain_id: Option<String>,
    status: SharedStatus,
    /// Seconds spent computing and nonces computed, for the rate.
    compute_seconds: f64,
    /// Txs accepted by CheckTx whose block result is not known yet.
    pending_txs: Vec<LastTx>,
    /// Epoch whose standing (weight, power, reputation) the status shows.
    standing_epoch: u64,
    /// Height at which CheckTx last refused each kind of tx: a refused
    /// message is tried again at the next block, not on every tick.
    refused_at: std::collections::BTreeMap<String, u64>,
}

impl Worker {
    pub fn new(cfg: WorkerConfig, journal: Journal) -> Result<Self> {
        let host_bytes: [u8; 20] = kiln_client::keyring::parse_address(&cfg.host)
            .with_context(|| format!("--host {}", cfg.host))?
            .try_into()
            .map_err(|_| anyhow!("--host must be a 20-byte account address"))?;
        kiln_client::keyring::parse_address(&cfg.operator)
            .with_context(|| format!("operator key address {}", cfg.operator))?;
        let status = WorkerStatus {
            host: cfg.host.clone(),
            operator: cfg.operator.clone(),
            device: cfg.device.to_string(),
            started_unix: unix_now(),
            ..Default::default()
        };
        Ok(Worker {
            cfg,
            host_bytes,
            journal,
            current: None,
            engine: None,
            params: None,
            chain_id: None,
            status: Arc::new(Mutex::new(status)),
            compute_seconds: 0.0,
            pending_txs: Vec::new(),
            refused_at: std::collections::BTreeMap::new(),
            standing_epoch: 0,
        })
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Checks that the node answers and the host is registered. `Err` when
    /// the node cannot answer yet (retry); [`PreflightError::NotRegistered`]
    /// inside it when the host does not exist (do not retry).
    pub fn preflight(&mut self, chain: &mut dyn ChainClient) -> Result<()> {
        let id = chain.chain_id()?;
        self.chain_id = Some(id.clone());
        self.set_status(|s| s.chain_id = id);
        match chain.query_json("/kiln.sprint.v1.Query/Host", self.cfg.host.as_bytes()) {
            Ok(_) => {}
            Err(e) if format!("{e:#}").contains("no such host") => {
                return Err(PreflightError::NotRegistered(self.cfg.host.clone()).into())
            }
            Err(e) => return Err(e),
        }
        let granted = self.granted_types(chain)?;
        let missing: Vec<&str> = WORKER_MSG_TYPE_URLS
            .iter()
            .copied()
            .filter(|t| !granted.iter().any(|g| g == t))
            .collect();
        if !missing.is_empty() {
            return Err(PreflightError::NotGranted {
                host: self.cfg.host.clone(),
                operator: self.cfg.operator.clone(),
                missing: missing.join(", "),
            }
            .into());
        }
        Ok(())
    }

    /// Message types the host granted the operator key (generic grants).
    fn granted_types(&self, chain: &mut dyn ChainClient) -> Result<Vec<String>> {
        use cosmrs::proto::cosmos::authz::v1beta1::{
            GenericAuthorization, QueryGrantsRequest, QueryGrantsResponse,
        };
        let request = QueryGrantsRequest {
            granter: self.cfg.host.clone(),
            grantee: self.cfg.operator.clone(),
            msg_type_url: String::new(),
            pagination: None,
        };
        let bytes = chain.query_raw(
            "/cosmos.authz.v1beta1.Query/Grants",
            &request.encode_to_vec(),
        )?;
        let response = QueryGrantsResponse::decode(bytes.as_slice())
            .context("cannot decode the Grants query answer")?;
        Ok(response
            .grants
            .into_iter()
            .filter_map(|g| g.authorization)
            .filter(|a| a.type_url == "/cosmos.authz.v1beta1.GenericAuthorization")
            .filter_map(|a| GenericAuthorization::decode(a.value.as_slice()).ok())
            .map(|a| a.msg)
            .collect())
    }

    /// Reads the block results of txs CheckTx accepted: a tx that failed in
    /// its block is counted and logged with the chain's reason.
    fn track_sent_txs(&mut self, chain: &mut dyn ChainClient, height: u64) {
        let mut still_pending = Vec::new();
        for tx in std::mem::take(&mut self.pending_txs) {
            if height <= tx.height {
                still_pending.push(tx);
                continue;
            }
            match chain.tx_result(&tx.hash) {
                Ok(Some((0, _))) => {}
                Ok(Some((code, log))) => {
                    tracing::warn!(kind = %tx.kind, epoch = tx.epoch, hash = %tx.hash, code, log = %log, "tx failed in its block");
                    let failed = LastTx { code, log, ..tx };
                    self.set_status(|s| {
                        s.txs_failed_in_block += 1;
                        s.last_failure = Some(failed);
                    });
                }
                Ok(None) if height < tx.height.saturating_add(TRACK_TX_BLOCKS) => {
                    still_pending.push(tx)
                }
                Ok(None) => {
                    tracing::warn!(kind = %tx.kind, hash = %tx.hash, "tx never reached a block (dropped from the mempool?); the worker re-sends what the chain still lacks")
                }
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "cannot read a tx result yet");
                    still_pending.push(tx);
                }
            }
        }
        self.pending_txs = still_pending;
    }

    fn read_view(&mut self, chain: &mut dyn ChainClient) -> Result<Option<View>> {
        if self.chain_id.is_none() {
            self.chain_id = Some(chain.chain_id()?);
        }
        let ep = chain.query_json("/kiln.epochs.v1.Query/Epoch", b"")?;
        let num = |k: &str| {
            ep[k]
                .as_u64()
                .ok_or_else(|| anyhow!("epoch query: missing {k}"))
        };
        let height = num("height")?;
        let first = num("first_height")?;
        let params: EpochParams =
            serde_json::from_value(ep["params"].clone()).context("epoch query: params")?;
        let next = params.info(first, height.saturating_add(1));
        let unhex = |k: &str| ep[k].as_str().and_then(|s| hex::decode(s).ok());
        let same_epoch = num("epoch")? == next.epoch;
        let (seed_hash, challenge_hash) = if same_epoch {
            (unhex("seed_hash"), unhex("challenge_hash"))
        } else {
            (None, None)
        };
        self.set_status(|s| {
            if s.epoch != next.epoch {
                // A new epoch: per-epoch progress starts from zero.
                s.nonces_done = 0;
                s.shares = 0;
                s.committed_shares = 0;
                s.opened = false;
                s.duties = 0;
                s.votes_committed = 0;
                s.votes_revealed = 0;
            }
            s.height = height;
            s.epoch = next.epoch;
            s.stage = next.stage.as_str().to_string();
            s.last_chain_contact_unix = unix_now();
        });
        if seed_hash.is_none() {
            // The next block starts a new epoch: its hash will be the seed.
            return Ok(None);
        }
        let req = json!({"epoch": next.epoch, "address": self.cfg.host}).to_string();
        let duties = chain.query_json("/kiln.sprint.v1.Query/Duties", req.as_bytes())?;
        Ok(Some(View {
            height,
            epoch: next.epoch,
            stage: next.stage,
            start_height: next.start_height,
            settle_height: params.stage_height(first, next.epoch, Stage::Settle),
            seed_hash,
            challenge_hash,
            duties,
        }))
    }

    fn sprint_params(&mut self, chain: &mut dyn ChainClient, epoch: u64) -> Result<SprintParams> {
        if let Some((e, p)) = &self.params {
            if *e == epoch {
                return Ok(p.clone());
            }
        }
        let p: SprintParams =
            serde_json::from_value(chain.query_json("/kiln.sprint.v1.Query/Params", b"")?)
                .context("sprint params")?;
        self.params = Some((epoch, p.clone()));
        Ok(p)
    }

    /// One step of work; see the module docs.
    pub fn tick(&mut self, chain: &mut dyn ChainClient) -> Result<Tick> {
        let view = self.read_view(chain)?;
        if let Some(h) = self.status.lock().ok().map(|s| s.height) {
            self.track_sent_txs(chain, h);
        }
        let Some(view) = view else {
            return Ok(Tick::Idle);
        };
        let chain_id = self.chain_id.clone().unwrap_or_default();
        let seed = sprint_seed(
            &chain_id,
            view.epoch,
            view.seed_hash.as_deref().unwrap_or_default(),
        );
        self.load_epoch(view.epoch, &seed)?;
        let params = self.sprint_params(chain, view.epoch)?;
        self.refresh_status(&view);
        match view.stage {
            Stage::Sprint => {
                let busy = self.compute(&view, &seed, &params)?;
                self.maybe_commit(chain, &view, false)?;
                Ok(if busy { Tick::Busy } else { Tick::Idle })
            }
            Stage::CommitGrace => {
                self.maybe_commit(chain, &view, true)?;
                Ok(Tick::Idle)
            }
            Stage::Challenge => Ok(Tick::Idle),
            Stage::Open => {
                self.maybe_open(chain, &view, &params)?;
                Ok(Tick::Idle)
            }
            Stage::VoteCommit => {
                self.commit_votes(chain, &view, &seed, &params)?;
                Ok(Tick::Idle)
            }
            Stage::VoteReveal => {
                self.reveal_votes(chain, &view)?;
                Ok(Tick::Idle)
            }
            Stage::Settle | Stage::Inference => {
                self.record_result(&view)?;
                self.refresh_standing(chain, &view);
                Ok(Tick::Idle)
            }
        }
    }

    fn load_epoch(&mut self, epoch: u64, seed: &Hash32) -> Result<()> {
        let seed_hex = hex::encode(seed);
        if self
            .current
            .as_ref()
            .is_some_and(|j| j.epoch == epoch && j.seed == seed_hex)
        {
            return Ok(());
        }
        let journal = match self.journal.load(epoch)? {
            Some(j) if j.seed == seed_hex => {
                tracing::info!(
                    epoch,
                    next_nonce = j.next_nonce,
                    leaves = j.leaves.len(),
                    votes = j.votes.len(),
                    "resuming the epoch from the journal"
                );
                j
            }
            Some(_) => {
                tracing::warn!(
                    epoch,
                    "journal is for another chain or seed; starting the epoch afresh"
                );
                EpochJournal {
                    epoch,
                    seed: seed_hex,
                    ..Default::default()
                }
            }
            None => EpochJournal {
                epoch,
                seed: seed_hex,
                ..Default::default()
            },
        };
        self.journal.save(&journal)?;
        self.journal.prune(epoch);
        self.current = Some(journal);
        Ok(())
    }

    fn journal_mut(&mut self) -> Result<&mut EpochJournal> {
        self.current
            .as_mut()
            .ok_or_else(|| anyhow!("no epoch loaded"))
    }

    fn save(&self) -> Result<()> {
        match &self.current {
            Some(j) => self.journal.save(j),
            None => Ok(()),
        }
    }

    fn refresh_status(&self, view: &View) {
        let Some(j) = &self.current else { return };
        let duties = view.duties["duties"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let flag = |k: &str| {
            duties
                .iter()
                .filter(|d| d[k].as_bool() == Some(true))
                .count() as u64
        };
        let committed = view.duties["commitment"]["count"].as_u64().unwrap_or(0);
        let (next, shares) = (j.next_nonce, j.leaves.len() as u64);
        let opened = view.duties["opened"].as_bool() == Some(true);
        let (c, r) = (flag("vote_committed"), flag("vote_revealed"));
        self.set_status(|s| {
            s.nonces_done = next;
            s.shares = shares;
            s.committed_shares = committed;
            s.opened = opened;
            s.duties = duties.len() as u64;
            s.votes_committed = c;
            s.votes_revealed = r;
        });
    }

    fn engine(&mut self, seed: &Hash32, params: &SprintParams) -> Result<&mut SprintEngine> {
        if self.engine.as_ref().map(|s| s.seed) != Some(*seed) {
            self.engine = None;
            let cfg = ModelConfig::preset(&params.preset).ok_or_else(|| {
                anyhow!(
                    "the chain asks for model preset {:?}, which this worker does not know",
                    params.preset
                )
            })?;
            // Earlier engines set torch's pool to one thread per stream; give the new one the full pool.
            tch::set_num_threads(self.cfg.threads.max(1) as i32);
            let t0 = Instant::now();
            let engine =
                SprintEngine::new(*seed, self.host_bytes, cfg, self.cfg.device, self.cfg.batch)?;
            tracing::info!(seed = %hex::encode(seed), preset = %params.preset, device = %self.cfg.device, seconds = t0.elapsed().as_secs_f64(), "sprint model ready");
            self.engine = Some(EngineSlot {
                seed: *seed,
                engine,
            });
        }
        Ok(&mut self
            .engine
            .as_mut()
            .ok_or_else(|| anyhow!("engine missing"))?
            .engine)
    }

    /// Computes the next slice of nonces; true when more remains right now.
    fn compute(&mut self, view: &View, seed: &Hash32, params: &SprintParams) -> Result<bool> {
        let next = self.journal_mut()?.next_nonce;
        let (target, more_after) = match self.cfg.pace {
            Pace::PerBlock {
                nonces_per_block,
                budget,
            } => {
                let blocks = view
                    .height
                    .saturating_sub(view.start_height)
                    .saturating_add(1);
                (nonces_per_block.saturating_mul(blocks).min(budget), false)
            }
            Pace::Continuous { slice_seconds } => {
                let rate = if self.compute_seconds > 0.5 {
                    self.status
                        .lock()
                        .map(|s| s.nonces_per_second)
                        .unwrap_or(0.0)
                } else {
                    0.0
                };
                let engine = self.engine(seed, params)?;
                // Whole rounds of batches: every CPU stream busy until the slice ends.
                let round = (engine.batch * engine.workers()).max(1) as u64;
                let slice = ((rate * slice_seconds) as u64).div_ceil(round).max(1) * round;
                (next.saturating_add(slice), true)
            }
        };
        if target <= next {
            return Ok(false);
        }
        let r_target = params.r_target_micro;
        let fabricate = self.cfg.misbehaviour.fabricate_permille;
        let nonces: Vec<u64> = (next..target).collect();
        let t0 = Instant::now();
        let distances = self.engine(seed, params)?.distances(&nonces);
        if distances.len() != nonces.len() {
            bail!(
                "the engine returned {} distances for {} nonces",
                distances.len(),
                nonces.len()
            );
        }
        let seconds = t0.elapsed().as_secs_f64();
        let j = self.journal_mut()?;
        for (&n, &d) in nonces.iter().zip(&distances) {
            let d_q = quantize_distance(d);
            if claims_share(d_q, r_target) {
                j.leaves.push((n, d_q));
            } else if fabricate > 0
                && (j.fabricated + 1) * 1000 <= u64::from(fabricate) * (j.leaves.len() as u64 + 1)
            {
                // Misbehaviour (tests): claim a non-share as a share.
                j.leaves
                    .push((n, u32::try_from(r_target / 200).unwrap_or(0)));
                j.fabricated += 1;
            }
        }
        j.next_nonce = target;
        let (done, shares) = (j.next_nonce, j.leaves.len());
        self.save()?;
        self.compute_seconds += seconds;
        let computed = nonces.len() as u64;
        self.set_status(|s| {
            s.nonces_total = s.nonces_total.saturating_add(computed);
            if seconds > 0.0 {
                let now = computed as f64 / seconds;
                s.nonces_per_second = if s.nonces_per_second > 0.0 {
                    0.7 * s.nonces_per_second + 0.3 * now
                } else {
                    now
                };
            }
            s.nonces_done = done;
            s.shares = shares as u64;
        });
        tracing::debug!(
            epoch = view.epoch,
            height = view.height,
            nonces = done,
            shares,
            "sprint slice"
        );
        Ok(more_after)
    }

    fn send(
        &mut self,
        chain: &mut dyn ChainClient,
        kind: &str,
        view: &View,
        msgs: Vec<Any>,
    ) -> Result<TxReceipt> {
        if self.refused_at.get(kind) == Some(&view.height) {
            // Refused at this height already: the next block may change the answer.
            return Ok(TxReceipt {
                hash: String::new(),
                code: u32::MAX,
                codespace: String::new(),
                log: "held back until the next block after a refusal".into(),
            });
        }
        let exec = kiln_client::tx::msg_exec(&self.cfg.operator, msgs);
        let receipt = chain.broadcast(vec![exec])?;
        if receipt.ok() {
            tracing::info!(kind, epoch = view.epoch, height = view.height, hash = %receipt.hash, "tx accepted");
        } else {
            tracing::warn!(kind, epoch = view.epoch, height = view.height, code = receipt.code, log = %receipt.log, "tx refused");
        }
        let last = LastTx {
            kind: kind.into(),
            epoch: view.epoch,
            height: view.height,
            hash: receipt.hash.clone(),
            code: receipt.code,
            log: receipt.log.clone(),
        };
        if !receipt.ok() {
            self.refused_at.insert(kind.to_string(), view.height);
        }
        let ok = receipt.ok();
        if ok {
            self.pending_txs.push(last.clone());
        }
        self.set_status(|s| {
            if ok {
                s.txs_accepted += 1;
            } else {
                s.txs_refused += 1;
                s.last_failure = Some(last.clone());
            }
            s.last_tx = Some(last);
        });
        Ok(receipt)
    }

    fn maybe_commit(
        &mut self,
        chain: &mut dyn ChainClient,
        view: &View,
        deadline_stage: bool,
    ) -> Result<()> {
        let j = self
            .current
            .as_ref()
            .ok_or_else(|| anyhow!("no epoch loaded"))?;
        let count = j.leaves.len() as u64;
        if count == 0 {
            return Ok(());
        }
        let on_chain = view.duties["commitment"]["count"].as_u64();
        if on_chain == Some(count) {
            return Ok(());
        }
        let budget_spent =
            matches!(self.cfg.pace, Pace::PerBlock { budget, .. } if j.next_nonce >= budget);
        if let Some((sent_count, sent_height)) = j.commit_sent {
            let in_flight = view.height < sent_height.saturating_add(RESEND_AFTER_BLOCKS);
            if sent_count == count && in_flight {
                return Ok(());
            }
            let due = deadline_stage
                || budget_spent
                || view.height.saturating_add(1)
                    >= sent_height.saturating_add(self.cfg.commit_every_blocks.max(1));
            if !due && in_flight {
                return Ok(());
            }
        }
        let tree = MerkleTree::new(j.leaves.iter().map(|(n, d)| leaf_hash(*n, *d)).collect())
            .ok_or_else(|| anyhow!("empty tree"))?;
        let msg = MsgSprintCommit {
            host: self.cfg.host.clone(),
            epoch: view.epoch,
            root: tree.root().to_vec(),
            count,
        };
        let receipt = self.send(chain, "sprint_commit", view, vec![any_of(&msg)])?;
        if receipt.ok() {
            self.journal_mut()?.commit_sent = Some((count, view.height));
            self.save()?;
        }
        Ok(())
    }

    fn maybe_open(
        &mut self,
        chain: &mut dyn ChainClient,
        view: &View,
        params: &SprintParams,
    ) -> Result<()> {
        if view.duties["opened"].as_bool() == Some(true) || self.cfg.misbehaviour.skip_open {
            return Ok(());
        }
        let commitment = &view.duties["commitment"];
        let (Some(count), Some(root)) = (commitment["count"].as_u64(), commitment["root"].as_str())
        else {
            return Ok(()); // nothing committed this epoch
        };
        let j = self
            .current
            .as_ref()
            .ok_or_else(|| anyhow!("no epoch loaded"))?;
        if j.open_sent_height
            .is_some_and(|h| view.height < h.saturating_add(RESEND_AFTER_BLOCKS))
        {
            return Ok(());
        }
        let count_usize = usize::try_from(count)?;
        if count_usize > j.leaves.len() {
            bail!("the chain holds a commitment to {count} leaves but the journal has only {}; the journal was lost, this epoch's commitment cannot be opened", j.leaves.len());
        }
        // Leaves only grow, so the committed tree is the first `count` leaves.
        let leaves = &j.leaves[..count_usize];
        let tree = MerkleTree::new(leaves.iter().map(|(n, d)| leaf_hash(*n, *d)).collect())
            .ok_or_else(|| anyhow!("empty tree"))?;
        if hex::encode(tree.root()) != root {
            bail!("the chain's commitment root {root} is not the root of the journal's first {count} leaves; cannot open");
        }
        let challenge_hash = view
            .challenge_hash
            .as_deref()
            .ok_or_else(|| anyhow!("challenge block hash not on chain yet"))?;
        let ch = challenge_seed(challenge_hash, &self.host_bytes);
        let indices = sample_indices(&ch, u32::try_from(count)?, params.sprint_samples);
        let mut opened = Vec::with_capacity(indices.len());
        for i in indices {
            let (nonce, d_q) = leaves[i as usize];
            let proof = tree
                .proof(u64::from(i))
                .ok_or_else(|| anyhow!("no proof for index {i}"))?;
            opened.push(OpenedLeaf {
                index: u64::from(i),
                nonce,
                distance_q: d_q,
                proof: proof.iter().map(|h| h.to_vec()).collect(),
            });
        }
        let msg = MsgSprintOpen {
            host: self.cfg.host.clone(),
            epoch: view.epoch,
            leaves: opened,
        };
        let receipt = self.send(chain, "sprint_open", view, vec![any_of(&msg)])?;
        if receipt.ok() {
            self.journal_mut()?.open_sent_height = Some(view.height);
            self.save()?;
        }
        Ok(())
    }

    /// Recomputes `leaves` of `host` and applies the binomial verdict.
    fn judge(
        &mut self,
        seed: &Hash32,
        params: &SprintParams,
        host: &str,
        leaves: &[Value],
    ) -> Result<VoteRecord> {
        let host_bytes: [u8; 20] = kiln_client::keyring::parse_address(host)?
            .try_into()
            .map_err(|_| anyhow!("bad host address"))?;
        let mut nonces = Vec::with_capacity(leaves.len());
        let mut claimed = Vec::with_capacity(leaves.len());
        for l in leaves {
            nonces.push(
                l["nonce"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("opened leaf without nonce"))?,
            );
            claimed.push(u32::try_from(
                l["distance_q"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("opened leaf without distance_q"))?,
            )?);
        }
        let own = self.host_bytes;
        let engine = self.engine(seed, params)?;
        engine.addr = host_bytes;
        let distances = engine.distances(&nonces);
        engine.addr = own;
        let mut mismatches = 0u32;
        for (d, c) in distances.iter().zip(&claimed) {
            if verdict::is_mismatch(
                verdict::distance_to_micro(*d),
                *c,
                params.r_target_micro,
                params.sprint_tolerance_micro,
            ) {
                mismatches += 1;
            }
        }
        let k = u32::try_from(nonces.len())?;
        let critical = verdict::critical_count(k, verdict::P0_DEFAULT, verdict::ALPHA_DEFAULT)
            .map_err(|e| anyhow!("{e}"))?;
        let invalid =
            verdict::invalid_by_critical(mismatches, critical) || distances.len() != nonces.len();
        let mut salt = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        tracing::info!(
            host,
            opened = k,
            mismatches,
            valid = !invalid,
            "validated an opening"
        );
        Ok(VoteRecord {
            valid: !invalid,
            mismatches,
            opened: k,
            salt: hex::encode(salt),
            commit_sent_height: None,
            reveal_sent_height: None,
        })
    }

    fn commit_votes(
        &mut self,
        chain: &mut dyn ChainClient,
        view: &View,
        seed: &Hash32,
        params: &SprintParams,
    ) -> Result<()> {
        let duties = view.duties["duties"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut msgs = Vec::new();
        let mut hosts = Vec::new();
        for duty in &duties {
            let host = duty["host"].as_str().unwrap_or_default().to_string();
            if duty["vote_committed"].as_bool() == Some(true) {
                continue;
            }
            let existing = self.journal_mut()?.votes.get(&host).cloned();
            let vote = match existing {
                Some(v) => v,
                None => {
                    let leaves = duty["leaves"].as_array().cloned().unwrap_or_default();
                    let v = self.judge(seed, params, &host, &leaves)?;
                    // The salt is on disk before its commitment can reach the chain.
                    self.journal_mut()?.votes.insert(host.clone(), v.clone());
                    self.save()?;
                    v
                }
            };
            if vote
                .commit_sent_height
                .is_some_and(|h| view.height < h.saturating_add(RESEND_AFTER_BLOCKS))
            {
                continue;
            }
            let salt = hex::decode(&vote.salt)?;
            msgs.push(any_of(&MsgSprintVoteCommit {
                validator: self.cfg.host.clone(),
                epoch: view.epoch,
                host: host.clone(),
                commitment: vote_commitment(vote.valid, &salt).to_vec(),
            }));
            hosts.push(host);
        }
        if msgs.is_empty() {
            return Ok(());
        }
        let receipt = self.send(chain, "vote_commit", view, msgs)?;
        if receipt.ok() {
            let j = self.journal_mut()?;
            for h in hosts {
                if let Some(v) = j.votes.get_mut(&h) {
                    v.commit_sent_height = Some(view.height);
                }
            }
            self.save()?;
        }
        Ok(())
    }

    fn reveal_votes(&mut self, chain: &mut dyn ChainClient, view: &View) -> Result<()> {
        let duties = view.duties["duties"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let flip = self.cfg.misbehaviour.flip_reveal;
        let mut msgs = Vec::new();
        let mut hosts = Vec::new();
        for duty in &duties {
            let host = duty["host"].as_str().unwrap_or_default().to_string();
            if duty["vote_committed"].as_bool() != Some(true)
                || duty["vote_revealed"].as_bool() == Some(true)
            {
                continue;
            }
            let Some(vote) = self.journal_mut()?.votes.get(&host).cloned() else {
                tracing::error!(host, epoch = view.epoch, "a committed vote has no salt in the journal (journal lost?); it cannot be revealed");
                continue;
            };
            if vote
                .reveal_sent_height
                .is_some_and(|h| view.height < h.saturating_add(RESEND_AFTER_BLOCKS))
            {
                continue;
            }
            msgs.push(any_of(&MsgSprintVoteReveal {
                validator: self.cfg.host.clone(),
                epoch: view.epoch,
                host: host.clone(),
                valid: vote.valid != flip,
                salt: hex::decode(&vote.salt)?,
            }));
            hosts.push(host);
        }
        if msgs.is_empty() {
            return Ok(());
        }
        let receipt = self.send(chain, "vote_reveal", view, msgs)?;
        if !receipt.ok() {
            return Ok(());
        }
        let j = self.journal_mut()?;
        for h in hosts {
            if let Some(v) = j.votes.get_mut(&h) {
                v.reveal_sent_height = Some(view.height);
            }
        }
        self.save()
    }

    fn record_result(&mut self, view: &View) -> Result<()> {
        let result = &view.duties["result"];
        if result.is_null() {
            return Ok(());
        }
        let epoch = view.epoch;
        let shown = self
            .status
            .lock()
            .ok()
            .and_then(|s| s.last_result.as_ref().and_then(|r| r["epoch"].as_u64()));
        if shown == Some(epoch) {
            return Ok(());
        }
        let j = self.journal_mut()?;
        if j.result.as_ref() != Some(result) {
            j.result = Some(result.clone());
            tracing::info!(epoch, result = %result, "epoch settled");
            self.save()?;
        }
        let r = result.clone();
        self.set_status(|s| s.last_result = Some(json!({"epoch": epoch, "result": r})));
        Ok(())
    }

    /// Once the settle's power updates sign (settle + 2), shows the host's
    /// standing in the status.
    fn refresh_standing(&mut self, chain: &mut dyn ChainClient, view: &View) {
        if self.standing_epoch == view.epoch || view.height < view.settle_height.saturating_add(2) {
            return;
        }
        match self.standing(chain) {
            Ok(v) => {
                self.standing_epoch = view.epoch;
                self.set_status(|s| s.standing = Some(v));
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "cannot read the host's standing"),
        }
    }

    /// The host's weight in force, share, consensus power and reputation.
    fn standing(&self, chain: &mut dyn ChainClient) -> Result<Value> {
        let weights = chain.query_json("/kiln.sprint.v1.Query/Weights", b"")?;
        let row = weights
            .as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["host"].as_str() == Some(self.cfg.host.as_str()))
            })
            .cloned()
            .unwrap_or(Value::Null);
        let rep = chain.query_json(
            "/kiln.reputation.v1.Query/Reputation",
            self.cfg.host.as_bytes(),
        )?;
        Ok(json!({
            "weight": row["weight"].as_u64().unwrap_or(0),
            "share_bps": row["share_bps"].as_u64().unwrap_or(0),
            "consensus_power": row["consensus_power"].as_u64().unwrap_or(0),
            "reputation": rep["reputation"].as_u64().unwrap_or(0),
            "good_epochs": rep["good_epochs"].as_u64().unwrap_or(0),
        }))
    }
}
