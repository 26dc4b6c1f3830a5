//! The chain-following worker (`kiln-mlworker run`): it follows the chain
//! and does the host's duties — today the sprint protocol's ([`SprintDuty`]:
//! sprint from the seed block, stream Merkle commitments before the deadline,
//! open the challenged leaves, recompute the openings it is assigned to
//! validate, commit then reveal its votes) — each message signed by the
//! host's ML operational key inside a `MsgExec` (the host's grant authorises
//! it).
//!
//! The worker is a step function ([`Worker::tick`]) over a [`ChainClient`]:
//! each tick reads the chain's epoch ([`ChainTick`]: height, stage of the
//! next block, seed and challenge hashes), follows up on the txs it sent,
//! and lets every [`Duty`] do its next piece of work, sending txs through the
//! [`Outbox`]. The main loop knows no protocol: a duty reads its own state
//! from the chain, computes on the shared [`EngineExecutor`] (which owns the
//! device) and decides what to send. Because decisions are re-derived from
//! chain state every tick, a worker killed at any point resumes where the
//! chain says it is; the [`journal`] keeps the only things the chain cannot
//! give back (computed leaves, next nonce, vote salts), so a restart never
//! recomputes a nonce, never loses its commitment and never double-submits.

pub mod chain;
pub mod follow;
pub mod http;
pub mod journal;
pub mod sprint_duty;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use cosmrs::Any;
use kiln_epochs::{EpochParams, Stage};
use prost::Message;
use serde::Serialize;
use serde_json::Value;

use crate::device::ComputeDevice;
use crate::executor::EngineExecutor;
use chain::{ChainClient, TxReceipt};
use journal::Journal;
pub use sprint_duty::SprintDuty;

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
    /// Never reveal the epoch's secret.
    pub skip_secret_reveal: bool,
    /// Reveal the opposite of every committed vote.
    pub flip_reveal: bool,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The host (account key) the worker works for.
    pub host: String,
    /// The ML operational key's address (grantee of the host's grant).
    pub operator: String,
    /// The device of the engine executor [`Worker::new`] starts.
    pub device: ComputeDevice,
    /// Torch intra-op threads on the executor (CPU: one batch stream per thread).
    pub threads: usize,
    pub batch: Option<usize>,
    pub pace: Pace,
    /// Re-commit a growing tree at most every this many blocks during the sprint.
    pub commit_every_blocks: u64,
    pub misbehaviour: Misbehaviour,
    /// `Some(id)`: this worker is the host's ML node `id` — it never acts
    /// as the host's own worker, and idles until that node, declared with
    /// this worker's key, is enabled in force. `None`: it finds out from
    /// its key (a declared node's, or else the host's own worker).
    pub ml_node: Option<String>,
    /// Drain before a clean stop: commit no new sprint, keep every other
    /// duty (reveal and open what was committed, vote, validate, serve),
    /// and report [`WorkerStatus::drained`] once a settle leaves the host
    /// with no weight in force.
    pub drain: bool,
}

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
    /// The inference validator duty (a worker that serves a model on chain).
    pub inference_validation: Option<crate::validator::ValidatorStatus>,
    /// Started with `--drain`: no new sprint commitments.
    pub draining: bool,
    /// Drained: a settle after the last sprint this worker committed left
    /// the host with weight 0 in force, so no committee duty comes next;
    /// `kiln-mlworker run --drain` exits then.
    pub drained: bool,
}

pub type SharedStatus = Arc<Mutex<WorkerStatus>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn any_of<M: prost::Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// The chain's epoch as one tick sees it; every duty gets the same one.
#[derive(Clone, Debug)]
pub struct ChainTick {
    pub chain_id: String,
    /// Latest committed height; the worker's txs land in `height + 1`.
    pub height: u64,
    /// Epoch of block `height + 1`.
    pub epoch: u64,
    /// Stage of block `height + 1`.
    pub stage: Stage,
    /// The epoch's seed block.
    pub start_height: u64,
    /// The epoch's settle block; its validator updates sign from `settle_height + 2`.
    pub settle_height: u64,
    /// Hash of the epoch's seed block; `None` when block `height + 1` starts
    /// a new epoch (its hash will be the seed).
    pub seed_hash: Option<Vec<u8>>,
    /// Hash of the epoch's challenge block, once on chain.
    pub challenge_hash: Option<Vec<u8>>,
}

/// One protocol's duties (sprint now; inference and validation later). The
/// worker ticks every duty once per [`Worker::tick`].
pub trait Duty {
    /// Short name, for logs.
    fn name(&self) -> &'static str;
    /// Message types the duty sends; preflight checks that the host granted
    /// every duty's types to the ML key.
    fn msg_type_urls(&self) -> &'static [&'static str];
    /// The next piece of work for the chain's current epoch: read the
    /// duty's state (`out.chain()`), compute on the engine executor, send
    /// txs (`out.send`). [`Tick::Busy`] asks to be ticked again right away.
    fn on_tick(&mut self, tick: &ChainTick, out: &mut Outbox<'_>) -> Result<Tick>;
    /// The duty's own progress (diagnostics; `/status` shows the shared
    /// [`WorkerStatus`] the duty updates).
    fn status(&self) -> Value;
}

/// How a duty reaches the chain during one tick: queries, and txs signed by
/// the ML key inside `MsgExec`, whose CheckTx refusals and block results the
/// worker tracks and counts for every duty.
pub struct Outbox<'a> {
    chain: &'a mut dyn ChainClient,
    txs: &'a mut TxTracker,
    height: u64,
    epoch: u64,
}

impl Outbox<'_> {
    /// The chain, for queries.
    pub fn chain(&mut self) -> &mut dyn ChainClient {
        &mut *self.chain
    }

    /// Sends `msgs` in one `MsgExec`; `kind` names the tx in logs and the
    /// status. A refused tx is `Ok` with a non-zero code; a kind refused at
    /// this height is held back until the next block.
    pub fn send(&mut self, kind: &str, msgs: Vec<Any>) -> Result<TxReceipt> {
        self.txs
            .send(&mut *self.chain, kind, self.height, self.epoch, msgs)
    }
}

/// The txs the worker sent: refusals per kind, block results still awaited.
struct TxTracker {
    operator: String,
    status: SharedStatus,
    /// Txs accepted by CheckTx whose block result is not known yet.
    pending: Vec<LastTx>,
    /// Height at which CheckTx last refused each kind of tx: a refused
    /// message is tried again at the next block, not on every tick.
    refused_at: BTreeMap<String, u64>,
}

impl TxTracker {
    fn set_status(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn send(
        &mut self,
        chain: &mut dyn ChainClient,
        kind: &str,
        height: u64,
        epoch: u64,
        msgs: Vec<Any>,
    ) -> Result<TxReceipt> {
        if self.refused_at.get(kind) == Some(&height) {
            // Refused at this height already: the next block may change the answer.
            return Ok(TxReceipt {
                hash: String::new(),
                code: u32::MAX,
                codespace: String::new(),
                log: "held back until the next block after a refusal".into(),
            });
        }
        let exec = kiln_client::tx::msg_exec(&self.operator, msgs);
        let receipt = chain.broadcast(vec![exec])?;
        if receipt.ok() {
            tracing::info!(kind, epoch, height, hash = %receipt.hash, "tx accepted");
        } else {
            tracing::warn!(kind, epoch, height, code = receipt.code, log = %receipt.log, "tx refused");
        }
        let last = LastTx {
            kind: kind.into(),
            epoch,
            height,
            hash: receipt.hash.clone(),
            code: receipt.code,
            log: receipt.log.clone(),
        };
        if !receipt.ok() {
            self.refused_at.insert(kind.to_string(), height);
        }
        let ok = receipt.ok();
        if ok {
            self.pending.push(last.clone());
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

    /// Reads the block results of txs CheckTx accepted: a tx that failed in
    /// its block is counted and logged with the chain's reason.
    fn track(&mut self, chain: &mut dyn ChainClient, height: u64) {
        let mut still_pending = Vec::new();
        for tx in std::mem::take(&mut self.pending) {
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
        self.pending = still_pending;
    }
}

pub struct Worker {
    cfg: WorkerConfig,
    executor: EngineExecutor,
    duties: Vec<Box<dyn Duty>>,
    txs: TxTracker,
    chain_id: Option<String>,
    status: SharedStatus,
}

impl Worker {
    /// A worker with its own engine executor on `cfg.device`.
    pub fn new(cfg: WorkerConfig, journal: Journal) -> Result<Self> {
        let executor = EngineExecutor::start(cfg.device, cfg.threads)?;
        Self::with_executor(cfg, journal, executor)
    }

    /// A worker whose duties compute on `executor` (which may serve other
    /// engines too); `cfg.device` and `cfg.threads` are the executor's.
    pub fn with_executor(
        cfg: WorkerConfig,
        journal: Journal,
        executor: EngineExecutor,
    ) -> Result<Self> {
        let host_bytes: [u8; 20] = kiln_client::keyring::parse_address(&cfg.host)
            .with_context(|| format!("--host {}", cfg.host))?
            .try_into()
            .map_err(|_| anyhow!("--host must be a 20-byte account address"))?;
        kiln_client::keyring::parse_address(&cfg.operator)
            .with_context(|| format!("operator key address {}", cfg.operator))?;
        let status = WorkerStatus {
            host: cfg.host.clone(),
            operator: cfg.operator.clone(),
            device: executor.device().to_string(),
            started_unix: unix_now(),
            draining: cfg.drain,
            ..Default::default()
        };
        let status = Arc::new(Mutex::new(status));
        let sprint = SprintDuty::new(&cfg, host_bytes, journal, status.clone(), executor.clone());
        Ok(Worker {
            txs: TxTracker {
                operator: cfg.operator.clone(),
                status: status.clone(),
                pending: Vec::new(),
                refused_at: BTreeMap::new(),
            },
            cfg,
            executor,
            duties: vec![Box::new(sprint)],
            chain_id: None,
            status,
        })
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    /// Adds a duty (the inference duty of a worker that serves a model);
    /// preflight then checks its message types are granted too.
    pub fn add_duty(&mut self, duty: Box<dyn Duty>) {
        self.duties.push(duty);
    }

    /// Removes the duty named `name` (a worker that only serves inference
    /// drops the sprint).
    pub fn remove_duty(&mut self, name: &str) {
        self.duties.retain(|d| d.name() != name);
    }

    /// The engine executor the duties compute on.
    pub fn executor(&self) -> &EngineExecutor {
        &self.executor
    }

    /// Each duty's own progress, by name.
    pub fn duty_status(&self) -> Value {
        Value::Object(
            self.duties
                .iter()
                .map(|d| (d.name().to_string(), d.status()))
                .collect(),
        )
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
            Err(e)
                if e.downcast_ref::<chain::QueryError>()
                    .is_some_and(chain::QueryError::is_not_found) =>
            {
                return Err(PreflightError::NotRegistered(self.cfg.host.clone()).into())
            }
            Err(e) => return Err(e),
        }
        let granted = self.granted_types(chain)?;
        let mut missing: Vec<&str> = Vec::new();
        for t in self.duties.iter().flat_map(|d| d.msg_type_urls().iter()) {
            if !granted.iter().any(|g| g == t) && !missing.contains(t) {
                missing.push(t);
            }
        }
        if !missing.is_empty() {
            return Err(PreflightError::NotGranted {
                host: self.cfg.host.clone(),
                operator: self.cfg.operator.clone(),
                missing: missing.join(", "),
            }
            .into());
        }
        self.warn_without_allowance(chain);
        self.warn_if_ml_node_is_off(chain);
        Ok(())
    }

    /// When the worker's key is one of the host's declared ML nodes, the
    /// chain accepts its messages only while that node is enabled in force
    /// (issue 15): say so at start instead of letting every tx be refused.
    /// Best effort, like [`Self::warn_without_allowance`].
    fn warn_if_ml_node_is_off(&self, chain: &mut dyn ChainClient) {
        let host = self.cfg.host.as_str();
        let Ok(record) = chain.query_json(kiln_hosts::query::HOST_PATH, host.as_bytes()) else {
            return;
        };
        let nodes = record["ml_nodes"].as_array().cloned().unwrap_or_default();
        let Some(node) = nodes
            .iter()
            .find(|n| n["ml_key"].as_str() == Some(self.cfg.operator.as_str()))
        else {
            return;
        };
        let id = node["id"].as_str().unwrap_or("?");
        let state = node["state"].as_str().unwrap_or("?");
        if state != "enabled" {
            tracing::warn!(
                host,
                ml_node = id,
                state,
                "this worker's key is ML node {id:?} of the host, which is {state}: the chain refuses its duties until an epoch starts with it enabled (kiln tx host mlnode enable {id} --from <host key>)"
            );
        } else {
            tracing::info!(host, ml_node = id, "working as the host's ML node {id:?}");
        }
    }

    /// A host with neither weight in force nor a self-bond gets no fee-free
    /// ML-ops allowance (issue 13): say so at start, since every tx of an
    /// unfunded ML key would then be refused. Best effort: a node that does
    /// not answer these queries gets no warning.
    fn warn_without_allowance(&self, chain: &mut dyn ChainClient) {
        let host = self.cfg.host.as_str();
        let Ok(pool) = chain.query_json(kiln_staking::query::HOST_POOL_PATH, host.as_bytes())
        else {
            return;
        };
        if pool["self_bond"].as_str().is_some_and(|b| b != "0") {
            return;
        }
        let Ok(weights) = chain.query_json(kiln_staking::query::WEIGHTS_PATH, b"") else {
            return;
        };
        let has_weight = weights.as_array().into_iter().flatten().any(|w| {
            w["host"].as_str() == Some(host) && w["weight"].as_u64().is_some_and(|w| w > 0)
        });
        if !has_weight {
            tracing::warn!(
                host,
                ml_key = %self.cfg.operator,
                "the host has no weight in force and no self-bond, so its ML key's transactions are not fee-free: fund the ML key, or bond (kiln tx staking bond 1kiln --from <host key>)"
            );
        }
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

    /// Reads the chain's epoch (`/kiln.epochs.v1.Query/Epoch`) and shows it in
    /// the status.
    fn read_tick(&mut self, chain: &mut dyn ChainClient) -> Result<ChainTick> {
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
        // Absent before governance could re-anchor the schedule: epoch 1.
        let first_epoch = ep["first_epoch"].as_u64().unwrap_or(1);
        let params: EpochParams =
            serde_json::from_value(ep["params"].clone()).context("epoch query: params")?;
        let next = params.info_from(first, first_epoch, height.saturating_add(1));
        let unhex = |k: &str| ep[k].as_str().and_then(|s| hex::decode(s).ok());
        let same_epoch = num("epoch")? == next.epoch;
        let (seed_hash, challenge_hash) = if same_epoch {
            (unhex("seed_hash"), unhex("challenge_hash"))
        } else {
            (None, None)
        };
        self.set_status(|s| {
            s.height = height;
            s.epoch = next.epoch;
            s.stage = next.stage.as_str().to_string();
            s.last_chain_contact_unix = unix_now();
        });
        Ok(ChainTick {
            chain_id: self.chain_id.clone().unwrap_or_default(),
            height,
            epoch: next.epoch,
            stage: next.stage,
            start_height: next.start_height,
            settle_height: params.stage_height_from(first, first_epoch, next.epoch, Stage::Settle),
            seed_hash,
            challenge_hash,
        })
    }

    /// One step of work; see the module docs. Every duty is ticked; the
    /// first duty error is returned.
    pub fn tick(&mut self, chain: &mut dyn ChainClient) -> Result<Tick> {
        let tick = self.read_tick(chain)?;
        self.txs.track(chain, tick.height);
        let (mut busy, mut failure) = (false, None);
        let several = self.duties.len() > 1;
        for duty in &mut self.duties {
            let mut out = Outbox {
                chain: &mut *chain,
                txs: &mut self.txs,
                height: tick.height,
                epoch: tick.epoch,
            };
            match duty.on_tick(&tick, &mut out) {
                Ok(Tick::Busy) => busy = true,
                Ok(Tick::Idle) => {}
                Err(e) => {
                    if several {
                        tracing::debug!(duty = duty.name(), error = %format!("{e:#}"), "duty failed");
                    }
                    if failure.is_none() {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(if busy { Tick::Busy } else { Tick::Idle }),
        }
    }
}

/// Runs `f` with an [`Outbox`] over `chain` at `height`, as [`Worker::tick`]
/// gives one to each duty (for duties' unit tests).
#[cfg(test)]
pub(crate) fn with_test_outbox<R>(
    chain: &mut dyn ChainClient,
    height: u64,
    f: impl FnOnce(&ChainTick, &mut Outbox<'_>) -> R,
) -> R {
    let mut txs = TxTracker {
        operator: "kiln1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqxuf43p".into(),
        status: Arc::new(Mutex::new(WorkerStatus::default())),
        pending: Vec::new(),
        refused_at: BTreeMap::new(),
    };
    let tick = ChainTick {
        chain_id: "test".into(),
        height,
        epoch: 1,
        stage: Stage::Sprint,
        start_height: 1,
        settle_height: 100,
        seed_hash: None,
        challenge_hash: None,
    };
    let mut out = Outbox {
        chain,
        txs: &mut txs,
        height,
        epoch: 1,
    };
    f(&tick, &mut out)
}
