//! The sprint protocol's duties (SPEC §4), one [`Duty`]: every epoch the
//! host sprints from the seed block, streams Merkle commitments (with the
//! hash of a per-epoch random secret) before the deadline, reveals its secret
//! in the `SecretReveal` stage, opens the leaves its challenge (from the
//! epoch's beacon) picks — each with its right-hand neighbour — recomputes
//! the openings it is assigned to validate and commits then reveals its
//! votes.
//!
//! **ML nodes (issue 15).** A worker whose ML key is one of the host's
//! declared ML nodes sprints as that node: from its lane's first nonce, its
//! messages naming the node, its own tree opened from its own challenge.
//! Otherwise it is the host's own worker (lane 0). The host's committee
//! duties are spread over its enabled nodes by a hash of (epoch, judged
//! host) ([`UnitView::votes_on`]), so each opening is recomputed once per
//! host; a host without enabled nodes votes from its own worker.
//!
//! Each tick reads the host's duties (`/kiln.sprint.v1.Query/Duties`: its
//! commitment, opening, assigned openings with their leaves, which of its
//! votes are on chain, its settled result) and acts for the stage of the next
//! block. Decisions are re-derived from chain state every tick; the
//! [`journal`](super::journal) keeps what the chain cannot give back
//! (computed leaves, next nonce, the epoch's secret, vote salts). Nonces are computed on the
//! [`EngineExecutor`] — sprint slices one round of batches per work item at
//! [`Priority::Sprint`], validation recomputations at
//! [`Priority::Validation`] — where the sprint engine lives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::sprint::shares::recheck_near_boundary;
use anyhow::{anyhow, bail, Context, Result};
use kiln_epochs::Stage;
use kiln_sprint::msgs::{
    vote_commitment, MsgSprintCommit, MsgSprintOpen, MsgSprintRevealSecret, MsgSprintVoteCommit,
    MsgSprintVoteReveal, OpenedLeaf,
};
use kiln_sprint::query::{Duties, DUTIES_PATH};
use kiln_sprint::state::Opened;
use kiln_sprint::SprintParams;
use kiln_sprint_protocol::challenge::{
    opening_indices, sample_indices, secret_hash, unit_challenge_seed, SECRET_BYTES,
};
use kiln_sprint_protocol::leaf::{claims_share, leaf_hash, quantize_distance};
use kiln_sprint_protocol::merkle::MerkleTree;
use kiln_sprint_protocol::model::ModelConfig;
use kiln_sprint_protocol::seed::sprint_seed;
use kiln_sprint_protocol::verdict;
use kiln_sprint_protocol::{Address, Hash32};
use serde_json::{json, Value};

use super::journal::{EpochJournal, Journal, VoteRecord};
use super::{
    any_of, ChainTick, Duty, Misbehaviour, Outbox, Pace, SharedStatus, Tick, WorkerConfig,
    WorkerStatus,
};
use crate::executor::{EngineExecutor, ExecContext, Priority};
use crate::sprint::engine::SprintEngine;

/// The messages the sprint duty sends; the host must have granted all of them.
pub const SPRINT_MSG_TYPE_URLS: [&str; 5] = [
    <kiln_sprint::msgs::SprintCommit as kiln_framework::MsgKind>::TYPE_URL,
    <kiln_sprint::msgs::SprintRevealSecret as kiln_framework::MsgKind>::TYPE_URL,
    <kiln_sprint::msgs::SprintOpen as kiln_framework::MsgKind>::TYPE_URL,
    <kiln_sprint::msgs::SprintVoteCommit as kiln_framework::MsgKind>::TYPE_URL,
    <kiln_sprint::msgs::SprintVoteReveal as kiln_framework::MsgKind>::TYPE_URL,
];

/// Blocks to wait for a sent tx to show up in state before sending it again.
const RESEND_AFTER_BLOCKS: u64 = 3;

/// The sprint engine a work item needs: rebuilt on the executor when the
/// seed, the model or the batch size changes.
#[derive(Clone, Debug, PartialEq)]
struct EngineSpec {
    seed: Hash32,
    preset: String,
    cfg: ModelConfig,
    batch: Option<usize>,
}

/// Executor-side state: the current sprint engine, and its f32 twin when the
/// device computes in another precision (shares are decided in f32:
/// `crate::sprint::shares`).
#[derive(Default)]
struct SprintEngines {
    current: Option<(EngineSpec, SprintEngine)>,
    f32_twin: Option<(EngineSpec, SprintEngine)>,
}

/// The engine in `slot` for `spec` on `device`, (re)built when the spec
/// changed, pointed at `addr`.
fn cached_engine<'a>(
    slot: &'a mut Option<(EngineSpec, SprintEngine)>,
    spec: &EngineSpec,
    addr: Address,
    device: crate::device::ComputeDevice,
    threads: usize,
) -> Result<&'a mut SprintEngine> {
    if slot.as_ref().map(|(s, _)| s) != Some(spec) {
        *slot = None;
        // Earlier engines set torch's pool to one thread per stream; give the new one the full pool.
        tch::set_num_threads(threads.max(1) as i32);
        let t0 = Instant::now();
        let engine = SprintEngine::new(spec.seed, addr, spec.cfg, device, spec.batch)?;
        tracing::info!(seed = %hex::encode(spec.seed), preset = %spec.preset, device = %device, seconds = t0.elapsed().as_secs_f64(), "sprint model ready");
        *slot = Some((spec.clone(), engine));
    }
    let (_, engine) = slot.as_mut().ok_or_else(|| anyhow!("engine missing"))?;
    engine.addr = addr;
    Ok(engine)
}

/// The sprint engine for `spec` on the executor, built on first use.
fn sprint_engine<'a>(
    ctx: &'a mut ExecContext,
    spec: &EngineSpec,
    addr: Address,
) -> Result<&'a mut SprintEngine> {
    let (device, threads) = (ctx.device(), ctx.threads());
    cached_engine(
        &mut ctx.state::<SprintEngines>().current,
        spec,
        addr,
        device,
        threads,
    )
}

/// The engine that decides shares: the sprint engine itself when the device
/// computes in f32, else an f32 engine on the same device, built on first use
/// (twice the weights' memory in exchange for an f32 share predicate on
/// every device).
fn exact_engine<'a>(
    ctx: &'a mut ExecContext,
    spec: &EngineSpec,
    addr: Address,
) -> Result<&'a mut SprintEngine> {
    let (device, threads) = (ctx.device(), ctx.threads());
    if device.kind == tch::Kind::Float {
        return sprint_engine(ctx, spec, addr);
    }
    let f32_device = crate::device::ComputeDevice {
        kind: tch::Kind::Float,
        ..device
    };
    cached_engine(
        &mut ctx.state::<SprintEngines>().f32_twin,
        spec,
        addr,
        f32_device,
        threads,
    )
}

/// Which vote a duty is: the committee's, or the all-weight escalation's
/// (same messages, sent in the escalation stages; the chain keeps them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    Committee,
    Escalation,
}

impl Round {
    fn duties(self, duties: &Duties) -> Vec<kiln_sprint::query::Duty> {
        match self {
            Round::Committee => duties.duties.clone(),
            Round::Escalation => duties.escalations.clone(),
        }
    }

    fn votes(self, j: &mut EpochJournal) -> &mut std::collections::BTreeMap<String, VoteRecord> {
        match self {
            Round::Committee => &mut j.votes,
            Round::Escalation => &mut j.escalation_votes,
        }
    }

    fn label(self, stage: &'static str) -> &'static str {
        match (self, stage) {
            (Round::Committee, "commit") => "vote_commit",
            (Round::Committee, _) => "vote_reveal",
            (Round::Escalation, "commit") => "escalation_vote_commit",
            (Round::Escalation, _) => "escalation_vote_reveal",
        }
    }
}

/// Which sprint unit this worker is in an epoch, read from the host's
/// record once per epoch: the host's own worker (no ML node id, lane 0) or
/// one of its declared ML nodes.
#[derive(Clone, Debug, Default, PartialEq)]
struct UnitView {
    epoch: u64,
    /// Its ML node id; empty for the host's own worker.
    ml_node: String,
    lane: u32,
    /// False for a declared node that is not enabled in force: the chain
    /// refuses its sprint messages this epoch.
    enabled: bool,
    /// The host's ML nodes enabled in force, in id order: who votes on what.
    voting_nodes: Vec<String>,
}

impl UnitView {
    fn first_nonce(&self) -> u64 {
        u64::from(self.lane) << kiln_hosts::mlnodes::LANE_BITS
    }

    /// Whether this worker casts its host's vote on `judged`'s opening:
    /// with enabled ML nodes, the one `SHA256("kiln/vote-node/v1" ‖ epoch ‖
    /// judged)` picks among them; without, the host's own worker.
    fn votes_on(&self, judged: &kiln_framework::Address) -> bool {
        use sha2::Digest;
        if self.voting_nodes.is_empty() {
            return self.ml_node.is_empty();
        }
        let digest = sha2::Sha256::new()
            .chain_update(b"kiln/vote-node/v1")
            .chain_update(self.epoch.to_be_bytes())
            .chain_update(judged.as_bytes())
            .finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        let pick = u64::from_be_bytes(word) % self.voting_nodes.len() as u64;
        self.voting_nodes.get(pick as usize) == Some(&self.ml_node)
    }
}

/// The sprint protocol's view of one tick: the chain's epoch plus the host's
/// sprint duties.
struct View {
    chain_id: String,
    height: u64,
    epoch: u64,
    start_height: u64,
    settle_height: u64,
    /// The typed `/kiln.sprint.v1.Query/Duties` answer.
    duties: Duties,
}

pub struct SprintDuty {
    host: String,
    /// The worker's ML key (bech32): how it finds its ML node on chain.
    operator: String,
    /// The ML node this worker must be (`--ml-node`), if it was told.
    expected_node: Option<String>,
    unit: UnitView,
    host_bytes: [u8; 20],
    batch: Option<usize>,
    pace: Pace,
    commit_every_blocks: u64,
    misbehaviour: Misbehaviour,
    journal: Journal,
    current: Option<EpochJournal>,
    params: Option<(u64, SprintParams)>,
    status: SharedStatus,
    executor: EngineExecutor,
    /// Nonces per round of batches (every CPU stream busy) of the engine.
    round: Option<(EngineSpec, u64)>,
    /// Seconds spent computing, for the rate.
    compute_seconds: f64,
    /// Epoch whose per-epoch progress the status shows.
    status_epoch: u64,
    /// Epoch whose standing (weight, power, reputation) the status shows.
    standing_epoch: u64,
    /// `--drain`: no new sprint commitments (see [`WorkerConfig::drain`]).
    drain: bool,
}

impl Duty for SprintDuty {
    fn name(&self) -> &'static str {
        "sprint"
    }

    fn msg_type_urls(&self) -> &'static [&'static str] {
        &SPRINT_MSG_TYPE_URLS
    }

    fn on_tick(&mut self, tick: &ChainTick, out: &mut Outbox<'_>) -> Result<Tick> {
        if self.status_epoch != tick.epoch {
            // A new epoch: per-epoch progress starts from zero.
            self.status_epoch = tick.epoch;
            self.set_status(|s| {
                s.nonces_done = 0;
                s.shares = 0;
                s.committed_shares = 0;
                s.opened = false;
                s.duties = 0;
                s.votes_committed = 0;
                s.votes_revealed = 0;
            });
        }
        let Some(seed_hash) = tick.seed_hash.as_deref() else {
            // The next block starts a new epoch: its hash will be the seed.
            return Ok(Tick::Idle);
        };
        self.refresh_unit(out, tick.epoch)?;
        if !self.unit.enabled {
            // A declared node that is not enabled in force has no duty this epoch.
            return Ok(Tick::Idle);
        }
        let req = json!({"epoch": tick.epoch, "address": self.host, "ml_node": self.unit.ml_node})
            .to_string();
        let duties: Duties = out.chain().query(DUTIES_PATH, req.as_bytes())?;
        let view = View {
            chain_id: tick.chain_id.clone(),
            height: tick.height,
            epoch: tick.epoch,
            start_height: tick.start_height,
            settle_height: tick.settle_height,
            duties,
        };
        let seed = sprint_seed(&tick.chain_id, view.epoch, seed_hash);
        let first_nonce = self.unit.first_nonce();
        self.load_epoch(view.epoch, &seed, first_nonce)?;
        let params = self.sprint_params(out, view.epoch)?;
        self.refresh_status(&view);
        match tick.stage {
            // Draining: what was committed before is still revealed and
            // opened below; nothing new is computed or committed.
            Stage::Sprint | Stage::CommitGrace if self.drain => Ok(Tick::Idle),
            Stage::Sprint => {
                let busy = self.compute(&view, &seed, &params)?;
                self.maybe_commit(out, &view, false)?;
                Ok(if busy { Tick::Busy } else { Tick::Idle })
            }
            Stage::CommitGrace => {
                self.maybe_commit(out, &view, true)?;
                Ok(Tick::Idle)
            }
            Stage::SecretReveal => {
                self.maybe_reveal_secret(out, &view)?;
                Ok(Tick::Idle)
            }
            Stage::Challenge => Ok(Tick::Idle),
            Stage::Open => {
                self.maybe_open(out, &view, &params)?;
                Ok(Tick::Idle)
            }
            Stage::VoteCommit => {
                self.commit_votes(out, &view, &seed, &params, Round::Committee)?;
                Ok(Tick::Idle)
            }
            Stage::VoteReveal => {
                self.reveal_votes(out, &view, Round::Committee)?;
                Ok(Tick::Idle)
            }
            Stage::EscalationCommit => {
                self.commit_votes(out, &view, &seed, &params, Round::Escalation)?;
                Ok(Tick::Idle)
            }
            Stage::EscalationReveal => {
                self.reveal_votes(out, &view, Round::Escalation)?;
                Ok(Tick::Idle)
            }
            Stage::Settle | Stage::Inference => {
                self.record_result(&view)?;
                self.refresh_standing(out, &view);
                Ok(Tick::Idle)
            }
        }
    }

    fn status(&self) -> Value {
        match &self.current {
            Some(j) => json!({
                "epoch": j.epoch,
                "ml_node": self.unit.ml_node,
                "lane": self.unit.lane,
                "next_nonce": j.next_nonce,
                "leaves": j.leaves.len(),
                "commit_sent": j.commit_sent,
                "secret_reveal_sent_height": j.secret_reveal_sent_height,
                "open_sent_height": j.open_sent_height,
                "votes": j.votes.len(),
                "settled": j.result.is_some(),
            }),
            None => Value::Null,
        }
    }
}

impl SprintDuty {
    pub fn new(
        cfg: &WorkerConfig,
        host_bytes: [u8; 20],
        journal: Journal,
        status: SharedStatus,
        executor: EngineExecutor,
    ) -> Self {
        SprintDuty {
            host: cfg.host.clone(),
            operator: cfg.operator.clone(),
            expected_node: cfg.ml_node.clone(),
            unit: UnitView::default(),
            host_bytes,
            batch: cfg.batch,
            pace: cfg.pace,
            commit_every_blocks: cfg.commit_every_blocks,
            misbehaviour: cfg.misbehaviour,
            journal,
            current: None,
            params: None,
            status,
            executor,
            round: None,
            compute_seconds: 0.0,
            status_epoch: 0,
            standing_epoch: 0,
            drain: cfg.drain,
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn sprint_params(&mut self, out: &mut Outbox<'_>, epoch: u64) -> Result<SprintParams> {
        if let Some((e, p)) = &self.params {
            if *e == epoch {
                return Ok(p.clone());
            }
        }
        let p: SprintParams = serde_json::from_value(
            out.chain()
                .query_json("/kiln.sprint.v1.Query/Params", b"")?,
        )
        .context("sprint params")?;
        self.params = Some((epoch, p.clone()));
        Ok(p)
    }

    /// The worker's sprint unit for `epoch`, from the host's record (read
    /// once per epoch: nodes switch only at epoch starts).
    fn refresh_unit(&mut self, out: &mut Outbox<'_>, epoch: u64) -> Result<()> {
        if self.unit.epoch == epoch && epoch != 0 {
            return Ok(());
        }
        let record = out
            .chain()
            .query_json(kiln_hosts::query::HOST_PATH, self.host.as_bytes())
            .context("the host's record (its ML nodes)")?;
        let nodes = record["ml_nodes"].as_array().cloned().unwrap_or_default();
        let mut unit = UnitView {
            epoch,
            enabled: true,
            ..Default::default()
        };
        for n in &nodes {
            let id = n["id"].as_str().unwrap_or_default().to_string();
            let enabled = n["enabled"].as_bool().unwrap_or(false);
            if enabled {
                unit.voting_nodes.push(id.clone());
            }
            if n["ml_key"].as_str() == Some(self.operator.as_str()) {
                unit.ml_node = id;
                unit.lane = n["lane"]
                    .as_u64()
                    .and_then(|l| u32::try_from(l).ok())
                    .ok_or_else(|| {
                        anyhow!("the host's record gives ML node {:?} no lane", n["id"])
                    })?;
                unit.enabled = enabled;
            }
        }
        unit.voting_nodes.sort();
        if let Some(expected) = &self.expected_node {
            if unit.ml_node != *expected {
                // Not (yet) that node with this key: never the host's own worker.
                if self.unit.epoch != epoch || self.unit.enabled {
                    tracing::warn!(epoch, ml_node = %expected, "the host declares no ML node {expected:?} with this worker's key (yet): no sprint duty (kiln tx host mlnode add {expected} --ml-key <this key>)");
                }
                unit.ml_node = expected.clone();
                unit.enabled = false;
            }
        }
        if unit != self.unit {
            if unit.ml_node.is_empty() {
                tracing::info!(epoch, voting_nodes = ?unit.voting_nodes, "sprinting as the host's own worker (lane 0)");
            } else if unit.enabled {
                tracing::info!(epoch, ml_node = %unit.ml_node, lane = unit.lane, voting_nodes = ?unit.voting_nodes, "sprinting as the host's ML node");
            } else {
                tracing::warn!(epoch, ml_node = %unit.ml_node, "this worker's ML node is not enabled in force: no sprint duty this epoch");
            }
        }
        self.unit = unit;
        Ok(())
    }

    /// The duties of `round` this worker votes on (its share of its host's).
    fn my_duties(&self, view: &View, round: Round) -> Vec<kiln_sprint::query::Duty> {
        round
            .duties(&view.duties)
            .into_iter()
            .filter(|d| self.unit.votes_on(&d.host))
            .collect()
    }

    fn load_epoch(&mut self, epoch: u64, seed: &Hash32, first_nonce: u64) -> Result<()> {
        let seed_hex = hex::encode(seed);
        if self
            .current
            .as_ref()
            .is_some_and(|j| j.epoch == epoch && j.seed == seed_hex)
        {
            return Ok(());
        }
        let fresh = EpochJournal {
            epoch,
            seed: seed_hex.clone(),
            next_nonce: first_nonce,
            ..Default::default()
        };
        let journal = match self.journal.load(epoch)? {
            Some(j) if j.seed == seed_hex && j.next_nonce >= first_nonce => {
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
                    "journal is for another chain, seed or nonce lane; starting the epoch afresh"
                );
                fresh
            }
            None => fresh,
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
        let duties = self.my_duties(view, Round::Committee);
        let c = duties.iter().filter(|d| d.vote_committed).count() as u64;
        let r = duties.iter().filter(|d| d.vote_revealed).count() as u64;
        let committed = view.duties.commitment.as_ref().map_or(0, |c| c.count);
        let next = j.next_nonce.saturating_sub(self.unit.first_nonce());
        let shares = j.leaves.len() as u64;
        let opened = view.duties.opened;
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

    fn engine_spec(&self, seed: &Hash32, params: &SprintParams) -> Result<EngineSpec> {
        let cfg = ModelConfig::preset(&params.preset).ok_or_else(|| {
            anyhow!(
                "the chain asks for model preset {:?}, which this worker does not know",
                params.preset
            )
        })?;
        Ok(EngineSpec {
            seed: *seed,
            preset: params.preset.clone(),
            cfg,
            batch: self.batch,
        })
    }

    /// Nonces per round of batches (every CPU stream busy) of the engine for
    /// `spec`; builds the engine on the executor the first time.
    fn round(&mut self, spec: &EngineSpec) -> Result<u64> {
        if let Some((s, r)) = &self.round {
            if s == spec {
                return Ok(*r);
            }
        }
        let (s, addr) = (spec.clone(), self.host_bytes);
        let r = self.executor.run(Priority::Sprint, move |ctx| {
            let engine = sprint_engine(ctx, &s, addr)?;
            Ok((engine.batch * engine.workers()).max(1) as u64)
        })?;
        self.round = Some((spec.clone(), r));
        Ok(r)
    }

    /// Distances of `nonces` (in order) for `addr`, computed on the executor
    /// one round of batches per work item, so more urgent work can run
    /// between rounds. `exact`: in f32 whatever the device's precision (what
    /// shares are decided on).
    fn distances(
        &mut self,
        spec: &EngineSpec,
        addr: Address,
        nonces: &[u64],
        priority: Priority,
        exact: bool,
    ) -> Result<Vec<f64>> {
        let round = usize::try_from(self.round(spec)?)?.max(1);
        // After a failed round the remaining ones are skipped, not computed.
        let abort = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = nonces
            .chunks(round)
            .map(|chunk| {
                let (spec, chunk, abort) = (spec.clone(), chunk.to_vec(), abort.clone());
                self.executor.submit(priority, move |ctx| {
                    if abort.load(Ordering::Relaxed) {
                        bail!("skipped: an earlier round of this computation failed");
                    }
                    let engine = if exact {
                        exact_engine(ctx, &spec, addr)?
                    } else {
                        sprint_engine(ctx, &spec, addr)?
                    };
                    Ok(engine.distances(&chunk))
                })
            })
            .collect();
        let mut out = Vec::with_capacity(nonces.len());
        let mut failure = None;
        for h in handles {
            match h.wait() {
                Ok(d) => out.extend(d),
                Err(e) => {
                    abort.store(true, Ordering::Relaxed);
                    if failure.is_none() {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Computes the next slice of nonces; true when more remains right now.
    fn compute(&mut self, view: &View, seed: &Hash32, params: &SprintParams) -> Result<bool> {
        let next = self.journal_mut()?.next_nonce;
        let spec = self.engine_spec(seed, params)?;
        let (target, more_after) = match self.pace {
            Pace::PerBlock {
                nonces_per_block,
                budget,
            } => {
                let blocks = view
                    .height
                    .saturating_sub(view.start_height)
                    .saturating_add(1);
                // Counted from the lane's first nonce.
                let done = nonces_per_block.saturating_mul(blocks).min(budget);
                (self.unit.first_nonce().saturating_add(done), false)
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
                // Whole rounds of batches: every CPU stream busy until the slice ends.
                let round = self.round(&spec)?;
                let slice = ((rate * slice_seconds) as u64).div_ceil(round).max(1) * round;
                (next.saturating_add(slice), true)
            }
        };
        if target <= next {
            return Ok(false);
        }
        let r_target = params.r_target_micro;
        let fabricate = self.misbehaviour.fabricate_permille;
        let nonces: Vec<u64> = (next..target).collect();
        let t0 = Instant::now();
        let mut distances =
            self.distances(&spec, self.host_bytes, &nonces, Priority::Sprint, false)?;
        if distances.len() != nonces.len() {
            bail!(
                "the engine returned {} distances for {} nonces",
                distances.len(),
                nonces.len()
            );
        }
        if self.executor.device().kind != tch::Kind::Float {
            let (addr, spec2) = (self.host_bytes, spec.clone());
            let rechecked = recheck_near_boundary(&nonces, &mut distances, r_target, |near| {
                self.distances(&spec2, addr, near, Priority::Sprint, true)
            })?;
            tracing::debug!(rechecked, "near-boundary nonces recomputed in f32");
        }
        let seconds = t0.elapsed().as_secs_f64();
        let first_nonce = self.unit.first_nonce();
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
        let (done, shares) = (j.next_nonce.saturating_sub(first_nonce), j.leaves.len());
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

    fn maybe_commit(
        &mut self,
        out: &mut Outbox<'_>,
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
        let on_chain = view.duties.commitment.as_ref().map(|c| c.count);
        if on_chain == Some(count) {
            return Ok(());
        }
        let first = self.unit.first_nonce();
        let budget_spent = matches!(self.pace, Pace::PerBlock { budget, .. } if j.next_nonce.saturating_sub(first) >= budget);
        if let Some((sent_count, sent_height)) = j.commit_sent {
            let in_flight = view.height < sent_height.saturating_add(RESEND_AFTER_BLOCKS);
            if sent_count == count && in_flight {
                return Ok(());
            }
            let due = deadline_stage
                || budget_spent
                || view.height.saturating_add(1)
                    >= sent_height.saturating_add(self.commit_every_blocks.max(1));
            if !due && in_flight {
                return Ok(());
            }
        }
        let tree = MerkleTree::new(j.leaves.iter().map(|(n, d)| leaf_hash(*n, *d)).collect())
            .ok_or_else(|| anyhow!("empty tree"))?;
        let root = tree.root().to_vec();
        let secret = self.epoch_secret()?;
        let msg = MsgSprintCommit {
            host: self.host.clone(),
            epoch: view.epoch,
            root,
            count,
            secret_hash: secret_hash(&secret).to_vec(),
            ml_node: self.unit.ml_node.clone(),
        };
        let receipt = out.send("sprint_commit", vec![any_of(&msg)])?;
        if receipt.ok() {
            self.journal_mut()?.commit_sent = Some((count, view.height));
            self.save()?;
        }
        Ok(())
    }

    /// The epoch's secret, drawn on first use and on disk before any
    /// commitment carrying its hash can reach the chain (so a restarted
    /// worker can still reveal it).
    fn epoch_secret(&mut self) -> Result<Vec<u8>> {
        if let Some(secret) = &self.journal_mut()?.secret {
            return Ok(hex::decode(secret)?);
        }
        let mut secret = [0u8; SECRET_BYTES];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        self.journal_mut()?.secret = Some(hex::encode(secret));
        self.save()?;
        Ok(secret.to_vec())
    }

    /// In the `SecretReveal` stage: reveals the secret behind the
    /// commitment's `secret_hash` (without it the host gets no weight).
    fn maybe_reveal_secret(&mut self, out: &mut Outbox<'_>, view: &View) -> Result<()> {
        if view.duties.commitment.is_none()
            || view.duties.secret_revealed
            || self.misbehaviour.skip_secret_reveal
        {
            return Ok(());
        }
        let j = self.journal_mut()?;
        let Some(secret) = j.secret.clone() else {
            bail!("the chain holds a commitment for epoch {} but the journal has no secret (journal lost?); the host gets no weight this epoch", view.epoch);
        };
        if j.secret_reveal_sent_height
            .is_some_and(|h| view.height < h.saturating_add(RESEND_AFTER_BLOCKS))
        {
            return Ok(());
        }
        let msg = MsgSprintRevealSecret {
            host: self.host.clone(),
            epoch: view.epoch,
            secret: hex::decode(secret)?,
            ml_node: self.unit.ml_node.clone(),
        };
        let receipt = out.send("secret_reveal", vec![any_of(&msg)])?;
        if receipt.ok() {
            self.journal_mut()?.secret_reveal_sent_height = Some(view.height);
            self.save()?;
        }
        Ok(())
    }

    fn maybe_open(
        &mut self,
        out: &mut Outbox<'_>,
        view: &View,
        params: &SprintParams,
    ) -> Result<()> {
        if view.duties.opened || self.misbehaviour.skip_open {
            return Ok(());
        }
        if view.duties.commitment.is_some() && !view.duties.secret_revealed {
            tracing::warn!(
                epoch = view.epoch,
                "the host's secret was not revealed: the chain refuses its opening, no weight this epoch"
            );
            return Ok(());
        }
        let Some(commitment) = &view.duties.commitment else {
            return Ok(()); // nothing committed this epoch
        };
        let (count, root) = (commitment.count, commitment.root.as_str());
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
        let beacon = view
            .duties
            .beacon
            .as_deref()
            .ok_or_else(|| anyhow!("the epoch's beacon is not on chain yet"))?;
        let ch = unit_challenge_seed(&hex::decode(beacon)?, &self.host_bytes, &self.unit.ml_node);
        let count_u32 = u32::try_from(count)?;
        let sampled = sample_indices(&ch, count_u32, params.sprint_samples);
        // Each sampled leaf is opened with its right-hand neighbour.
        let indices = opening_indices(&sampled, count_u32);
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
            host: self.host.clone(),
            epoch: view.epoch,
            leaves: opened,
            ml_node: self.unit.ml_node.clone(),
        };
        let receipt = out.send("sprint_open", vec![any_of(&msg)])?;
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
        leaves: &[Opened],
    ) -> Result<VoteRecord> {
        let host_bytes: [u8; 20] = kiln_client::keyring::parse_address(host)?
            .try_into()
            .map_err(|_| anyhow!("bad host address"))?;
        let nonces: Vec<u64> = leaves.iter().map(|l| l.nonce).collect();
        let claimed: Vec<u32> = leaves.iter().map(|l| l.distance_q).collect();
        let spec = self.engine_spec(seed, params)?;
        // Recomputed in f32 on every device: shares are f32's (sprint::shares).
        let distances = self.distances(&spec, host_bytes, &nonces, Priority::Validation, true)?;
        let mut mismatches = 0u32;
        for (d, c) in distances.iter().zip(&claimed) {
            if verdict::is_mismatch(
                verdict::distance_to_micro(*d),
                *c,
                params.r_target_micro,
                params.sprint_tolerance_micro,
                params.share_slack_micro,
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
        out: &mut Outbox<'_>,
        view: &View,
        seed: &Hash32,
        params: &SprintParams,
        round: Round,
    ) -> Result<()> {
        let duties = self.my_duties(view, round);
        let mut msgs = Vec::new();
        let mut hosts = Vec::new();
        for duty in &duties {
            let host = duty.host.to_bech32();
            if duty.vote_committed {
                continue;
            }
            let existing = round.votes(self.journal_mut()?).get(&host).cloned();
            let vote = match existing {
                Some(v) => v,
                None => {
                    // An escalated host this worker already judged on its
                    // committee keeps that verdict (same leaves) with a fresh salt.
                    let judged = match round {
                        Round::Escalation => self.journal_mut()?.votes.get(&host).cloned(),
                        Round::Committee => None,
                    };
                    let v = match judged {
                        Some(mut v) => {
                            let mut salt = [0u8; 32];
                            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
                            v.salt = hex::encode(salt);
                            v.commit_sent_height = None;
                            v.reveal_sent_height = None;
                            v
                        }
                        None => self.judge(seed, params, &host, &duty.leaves)?,
                    };
                    // The salt is on disk before its commitment can reach the chain.
                    round
                        .votes(self.journal_mut()?)
                        .insert(host.clone(), v.clone());
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
            let commitment = vote_commitment(
                &view.chain_id,
                view.epoch,
                duty.host.as_bytes(),
                &self.host_bytes,
                vote.valid,
                &salt,
            );
            msgs.push(any_of(&MsgSprintVoteCommit {
                voter: self.host.clone(),
                epoch: view.epoch,
                host: host.clone(),
                commitment: commitment.to_vec(),
            }));
            hosts.push(host);
        }
        if msgs.is_empty() {
            return Ok(());
        }
        let receipt = out.send(round.label("commit"), msgs)?;
        if receipt.ok() {
            let votes = round.votes(self.journal_mut()?);
            for h in hosts {
                if let Some(v) = votes.get_mut(&h) {
                    v.commit_sent_height = Some(view.height);
                }
            }
            self.save()?;
        }
        Ok(())
    }

    fn reveal_votes(&mut self, out: &mut Outbox<'_>, view: &View, round: Round) -> Result<()> {
        let duties = self.my_duties(view, round);
        let flip = self.misbehaviour.flip_reveal;
        let mut msgs = Vec::new();
        let mut hosts = Vec::new();
        for duty in &duties {
            let host = duty.host.to_bech32();
            if !duty.vote_committed || duty.vote_revealed {
                continue;
            }
            let Some(vote) = round.votes(self.journal_mut()?).get(&host).cloned() else {
                tracing::error!(host, epoch = view.epoch, ?round, "a committed vote has no salt in the journal (journal lost?); it cannot be revealed");
                continue;
            };
            if vote
                .reveal_sent_height
                .is_some_and(|h| view.height < h.saturating_add(RESEND_AFTER_BLOCKS))
            {
                continue;
            }
            msgs.push(any_of(&MsgSprintVoteReveal {
                voter: self.host.clone(),
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
        let receipt = out.send(round.label("reveal"), msgs)?;
        if !receipt.ok() {
            return Ok(());
        }
        let votes = round.votes(self.journal_mut()?);
        for h in hosts {
            if let Some(v) = votes.get_mut(&h) {
                v.reveal_sent_height = Some(view.height);
            }
        }
        self.save()
    }

    fn record_result(&mut self, view: &View) -> Result<()> {
        let Some(result) = &view.duties.result else {
            return Ok(());
        };
        let result = serde_json::to_value(result)?;
        let result = &result;
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
    fn refresh_standing(&mut self, out: &mut Outbox<'_>, view: &View) {
        if self.standing_epoch == view.epoch || view.height < view.settle_height.saturating_add(2) {
            return;
        }
        match self.standing(out) {
            Ok(v) => {
                self.standing_epoch = view.epoch;
                // Drained once this epoch's settle found no commitment of
                // ours and left the host without weight in force.
                let drained = self.drain
                    && view.duties.commitment.is_none()
                    && v["weight"].as_u64() == Some(0);
                self.set_status(|s| {
                    s.standing = Some(v);
                    s.drained |= drained;
                });
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "cannot read the host's standing"),
        }
    }

    /// The host's weight in force, share, consensus power and reputation.
    fn standing(&self, out: &mut Outbox<'_>) -> Result<Value> {
        let chain = out.chain();
        let rows: Vec<kiln_staking::query::WeightRow> =
            chain.query(kiln_staking::query::WEIGHTS_PATH, b"")?;
        let row = rows.iter().find(|r| r.host.to_bech32() == self.host);
        let rep: kiln_reputation::ReputationAnswer =
            chain.query(kiln_reputation::QUERY_PATH, self.host.as_bytes())?;
        Ok(json!({
            "weight": row.map_or(0, |r| r.weight),
            "share_bps": row.map_or(0, |r| r.share_bps),
            "consensus_power": row.map_or(0, |r| r.consensus_power),
            "reputation": rep.reputation,
            "good_epochs": rep.good_epochs,
        }))
    }
}

#[cfg(test)]
mod message_list_tests {
    /// The worker only sends what a host can grant its ML key: every sprint
    /// duty message is in the chain's ML-ops set (the one message list).
    #[test]
    fn sprint_duty_messages_are_ml_ops_messages_of_the_list() {
        for url in super::SPRINT_MSG_TYPE_URLS {
            assert!(kiln_messages::is_ml_ops_type_url(url), "{url}");
        }
    }
}
