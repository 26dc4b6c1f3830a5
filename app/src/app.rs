//! `KilnApp`: the ABCI 2.0 application. This is the only code that knows about
//! consensus; modules see a state view, a block context and messages.
//!
//! Block life cycle (ARCHITECTURE.md "Data flow of one block"):
//! * `FinalizeBlock` executes the block in an [`Overlay`] over the last
//!   committed snapshot and computes the new root with
//!   [`Storage::prepare_commit`] — nothing is persisted;
//! * `Commit` persists the prepared version in one rocksdb write batch;
//! * `InitChain` writes genesis into an in-memory base that the first block
//!   builds on, so genesis is persisted together with the first block (a
//!   crash before that replays InitChain, as CometBFT expects).

use std::sync::{Arc, Mutex, MutexGuard};

use kiln_framework::{BlockInfo, Event, StateReadExt, StateWriteExt, TxResult};
use kiln_store::{Changes, Overlay, PreparedCommit, StateRead, StateWrite, Storage};
use rayon::prelude::*;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    self as abci, response_process_proposal::ProposalStatus, RequestCheckTx, RequestFinalizeBlock,
    RequestInfo, RequestInitChain, RequestPrepareProposal, RequestProcessProposal, RequestQuery,
    ResponseCheckTx, ResponseCommit, ResponseFinalizeBlock, ResponseInfo, ResponseInitChain,
    ResponsePrepareProposal, ResponseProcessProposal, ResponseQuery,
};

use crate::ante::{signature_checks, SigCache};
use crate::exec::{execute_decoded, ExecMode, TxOutcome};
use crate::tx::{decode_tx, DecodedTx};

/// Application version reported in `Info` (bumped on state-breaking upgrades).
pub const APP_VERSION: u64 = 1;

/// Keys the app itself owns in the verifiable state.
pub mod keys {
    /// The one prefix the app itself owns.
    pub const PREFIX: &[u8] = b"app/";
    /// The chain id (UTF-8), written at InitChain.
    pub const CHAIN_ID: &[u8] = b"app/chain_id";
    /// Consensus max gas per block (i64 BE as u64; `-1` stored as u64::MAX = unlimited).
    pub const MAX_BLOCK_GAS: &[u8] = b"app/max_block_gas";
    /// Height and time of the last executed block (versioned value), for simulations and queries.
    pub const LAST_BLOCK: &[u8] = b"app/last_block";
    /// u64 BE: the height the test upgrade's migration ran at (builds with
    /// the `test-upgrade` feature only; see `crate::upgrades`).
    pub const TEST_UPGRADE_HEIGHT: &[u8] = b"app/test_upgrade_height";
}

#[derive(Debug, Clone, Default, borsh::BorshSerialize, borsh::BorshDeserialize)]
struct LastBlock {
    height: u64,
    time_seconds: i64,
    time_nanos: u32,
}
kiln_framework::stored_value!(LastBlock, "last block", 1);

/// What FinalizeBlock computed: tx results, block events, validator power
/// changes and the prepared (not yet persisted) commit.
type ExecutedBlock = (
    Vec<TxOutcome>,
    Vec<Event>,
    Vec<kiln_staking::PowerUpdate>,
    PreparedCommit,
);

/// What the consensus connection's block calls read from [`Inner`], copied
/// out under the lock so that the lock is not held while a block is
/// proposed, checked or executed: CheckTx on the mempool connection takes the
/// same lock and must answer while the consensus connection is busy.
struct BlockBase {
    chain_id: String,
    max_block_gas: Option<u64>,
    /// Genesis writes not yet persisted (empty after the first Commit).
    genesis_base: Changes,
}

struct PendingBlock {
    height: u64,
    prepared: PreparedCommit,
}

struct Inner {
    chain_id: String,
    /// Genesis writes not yet persisted (between InitChain and the first Commit).
    genesis_base: Changes,
    /// Mempool view: effects of accepted CheckTx on top of committed state.
    check: Changes,
    pending: Option<PendingBlock>,
    max_block_gas: Option<u64>,
}

/// The Kiln ABCI application. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct KilnApp {
    storage: Storage,
    inner: Arc<Mutex<Inner>>,
    sig_cache: Arc<SigCache>,
    /// Node configuration (Cosmos SDK's `min-retain-blocks`), not consensus
    /// state: only decides the `retain_height` Commit returns.
    min_retain_blocks: u64,
    /// State-sync snapshots (node configuration, not consensus state).
    snapshots: crate::snapshots::Snapshots,
    /// The software upgrades this build runs migrations for.
    upgrades: Arc<crate::upgrades::UpgradeHandlers>,
    /// Where `upgrade-info.json` goes when a planned upgrade halts the node
    /// (the node home's `data/`, as cosmovisor expects); none: not written.
    upgrade_info_dir: Option<std::path::PathBuf>,
    /// Called with the message when the node must halt for an upgrade
    /// (`kilnd` exits the process); by default the call panics.
    on_halt: Arc<dyn Fn(&str) + Send + Sync>,
}

/// The `retain_height` Commit at `height` returns when the node keeps the last
/// `min_retain_blocks` blocks: `height - min_retain_blocks + 1`, or 0 (keep
/// everything) when `min_retain_blocks` is 0 or the chain is still shorter.
pub fn retain_height(height: u64, min_retain_blocks: u64) -> i64 {
    if min_retain_blocks == 0 || height < min_retain_blocks {
        return 0;
    }
    height
        .checked_sub(min_retain_blocks)
        .and_then(|h| h.checked_add(1))
        .and_then(|h| i64::try_from(h).ok())
        .unwrap_or(0)
}

fn now_block(
    chain_id: &str,
    height: u64,
    time: Option<&tendermint_proto::google::protobuf::Timestamp>,
) -> BlockInfo {
    BlockInfo {
        hash: Vec::new(),
        chain_id: chain_id.to_string(),
        height,
        time_seconds: time.map_or(0, |t| t.seconds),
        time_nanos: time.map_or(0, |t| u32::try_from(t.nanos).unwrap_or(0)),
    }
}

/// Event attributes CometBFT's tx indexer indexes (`tx_search` can find
/// txs by them): who and what — actors, actions, the objects a host or
/// client looks a tx up by. Amounts, weights, counts and other details ride
/// along unindexed: they were 7 of a `MsgSend`'s 20 attributes, and every
/// indexed attribute is a write into each node's tx index (the network
/// benchmark's CPU profile put CometBFT's kv indexer among its top costs).
const INDEXED_ATTRIBUTE_KEYS: &[&str] = &[
    "action",
    "module",
    "sender",
    "recipient",
    "spender",
    "receiver",
    "fee_payer",
    "acc_seq",
    "granter",
    "grantee",
    "owner",
    "host",
    "voter",
    "validator",
    "epoch",
    "model",
    "id",
    "requester",
    "executor",
    // Governance: a proposal's txs and who acted on it.
    "proposal_id",
    "proposer",
    "depositor",
];

/// Whether CometBFT indexes attribute `key` (see [`INDEXED_ATTRIBUTE_KEYS`]).
pub fn is_indexed_attribute(key: &str) -> bool {
    INDEXED_ATTRIBUTE_KEYS.contains(&key)
}

/// The app's events as ABCI events, each attribute marked indexed or not.
pub(crate) fn to_abci_events(events: &[Event]) -> Vec<abci::Event> {
    events
        .iter()
        .map(|e| abci::Event {
            r#type: e.kind.clone(),
            attributes: e
                .attributes
                .iter()
                .map(|(k, v)| abci::EventAttribute {
                    key: k.clone(),
                    value: v.clone(),
                    index: is_indexed_attribute(k),
                })
                .collect(),
        })
        .collect()
}

/// Reads `changes` over `base`, exactly like `Overlay::with_changes(base,
/// changes.clone())`, without copying the changes (CheckTx runs once per
/// transaction over the whole mempool view).
struct ChangesView<'a, B> {
    base: B,
    changes: &'a Changes,
}

impl<B: StateRead> StateRead for ChangesView<'_, B> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, kiln_store::StoreError> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get_raw(key),
        }
    }

    fn prefix_visit(
        &self,
        prefix: &[u8],
        visit: &mut kiln_state::Visitor<'_>,
    ) -> Result<(), kiln_store::StoreError> {
        kiln_state::merged_prefix_visit(&self.base, self.changes, prefix, visit)
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl KilnApp {
    /// Opens (or creates) the application state in `storage`, with the
    /// upgrades this build knows ([`crate::upgrades::UpgradeHandlers::built_in`]).
    pub fn new(storage: Storage) -> anyhow::Result<Self> {
        Self::with_upgrades(storage, crate::upgrades::UpgradeHandlers::built_in())
    }

    /// [`Self::new`] with the given upgrade handlers. Refuses a state in
    /// which an upgrade they do not know was applied.
    pub fn with_upgrades(
        storage: Storage,
        upgrades: crate::upgrades::UpgradeHandlers,
    ) -> anyhow::Result<Self> {
        let latest = storage.latest();
        crate::upgrades::check_applied(&latest, &upgrades)?;
        let chain_id = latest
            .get_raw(keys::CHAIN_ID)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let max_block_gas = read_max_gas(&latest).map_err(|e| anyhow::anyhow!(e.log))?;
        Ok(KilnApp {
            storage,
            inner: Arc::new(Mutex::new(Inner {
                chain_id,
                genesis_base: Changes::new(),
                check: Changes::new(),
                pending: None,
                max_block_gas,
            })),
            sig_cache: Arc::new(SigCache::new(200_000)),
            min_retain_blocks: 0,
            snapshots: crate::snapshots::Snapshots::new(None),
            upgrades: Arc::new(upgrades),
            upgrade_info_dir: None,
            on_halt: Arc::new(|message: &str| {
                #[allow(clippy::panic)]
                {
                    panic!("{message}");
                }
            }),
        })
    }

    /// Write `upgrade-info.json` into `dir` when a planned upgrade halts the node.
    pub fn with_upgrade_info_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.upgrade_info_dir = Some(dir.into());
        self
    }

    /// What to do when the node must halt for an upgrade (after the log
    /// line and `upgrade-info.json`); `kilnd` exits the process.
    pub fn with_halt(mut self, on_halt: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_halt = Arc::new(on_halt);
        self
    }

    /// Stops this node at a planned upgrade it cannot run: writes
    /// `upgrade-info.json`, logs, and calls the halt action. Never returns.
    fn halt_for_upgrade(&self, needed: &kiln_gov::upgrade::UpgradeNeeded) -> ! {
        if let Some(dir) = &self.upgrade_info_dir {
            match crate::upgrades::write_upgrade_info(dir, &needed.plan) {
                Ok(path) => tracing::error!("wrote {}", path.display()),
                Err(e) => {
                    tracing::error!("cannot write upgrade-info.json in {}: {e}", dir.display())
                }
            }
        }
        let message = needed.to_string();
        tracing::error!("{message}");
        (self.on_halt)(&message);
        #[allow(clippy::panic)]
        {
            panic!("{message}");
        }
    }

    /// Take a snapshot every `config.interval` blocks and serve the kept ones
    /// to CometBFT's state sync (without this the node serves none, but can
    /// still restore one).
    pub fn with_snapshots(mut self, config: crate::snapshots::SnapshotConfig) -> Self {
        self.snapshots = crate::snapshots::Snapshots::new(Some(config));
        self
    }

    pub fn snapshots(&self) -> &crate::snapshots::Snapshots {
        &self.snapshots
    }

    /// Ask the node to keep only the last `n` blocks (0 = keep every block,
    /// the default): Commit answers with [`retain_height`]. Does not touch
    /// the state or the app hash.
    pub fn with_min_retain_blocks(mut self, n: u64) -> Self {
        self.min_retain_blocks = n;
        self
    }

    /// The configured `min_retain_blocks` (0 = keep every block).
    pub fn min_retain_blocks(&self) -> u64 {
        self.min_retain_blocks
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a previous call panicked mid-update; the state
        // in memory is still the last consistent one we wrote, so keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn chain_id(&self) -> String {
        self.lock().chain_id.clone()
    }

    /// A copy of what a block builds on. Only the consensus connection
    /// (InitChain, Commit) and state sync change these, and neither runs
    /// while that connection is inside a block call, so the copy stays
    /// current for the whole call.
    fn block_base(&self) -> BlockBase {
        let inner = self.lock();
        BlockBase {
            chain_id: inner.chain_id.clone(),
            max_block_gas: inner.max_block_gas,
            genesis_base: inner.genesis_base.clone(),
        }
    }

    /// Verifies the signatures of `txs` in parallel against `base`, filling
    /// the signature cache. Transactions whose signers do not exist yet are
    /// skipped here (they are verified during execution). Returns the index of
    /// the first transaction with a definitely invalid signature, if any.
    fn preverify<S: StateRead + Sync>(
        &self,
        base: &S,
        chain_id: &str,
        txs: &[TxResult<DecodedTx>],
    ) -> Option<usize> {
        let cache = &self.sig_cache;
        let bad: Vec<usize> = txs
            .par_iter()
            .enumerate()
            .filter_map(|(i, tx)| {
                let tx = tx.as_ref().ok()?;
                // Requesters' signatures in inference starts, too, into the
                // cache the serial execution reads (errors are its to report).
                let _ = check_request_signatures(chain_id, &tx.msgs);
                let signers = tx.signers().ok()?;
                let mut accounts = Vec::with_capacity(signers.len());
                for signer in &signers {
                    accounts.push(kiln_bank::state::AuthExt::account(base, signer).ok()??);
                }
                if tx.auth_info.signer_infos.len() != accounts.len()
                    || tx.raw.signatures.len() != accounts.len()
                {
                    return None;
                }
                let checks = signature_checks(tx, chain_id, &accounts).ok()?;
                checks.iter().any(|c| cache.verify(c).is_err()).then_some(i)
            })
            .collect();
        bad.into_iter().min()
    }

    /// Executes a block without persisting it; returns the tx results, block
    /// events and the prepared commit.
    fn execute_block(
        &self,
        genesis_base: Changes,
        block: &BlockInfo,
        txs: &[Vec<u8>],
        misbehavior: &[kiln_staking::misbehavior::Reported],
        commit_votes: &[kiln_slashing::CommitVote],
    ) -> anyhow::Result<ExecutedBlock> {
        let latest = self.storage.latest();
        let mut state = Overlay::with_changes(latest, genesis_base);
        let decoded: Vec<TxResult<DecodedTx>> =
            txs.par_iter().map(|bytes| decode_tx(bytes)).collect();
        let _ = self.preverify(&state, &block.chain_id, &decoded);

        // A software upgrade planned for this height: its migration runs
        // first, or this build cannot go on (crate::upgrades).
        let mut block_events = crate::upgrades::run_due(&mut state, block, &self.upgrades)?;
        // Begin-block hooks, in the fixed component order (components.rs).
        let (epoch, begin_events) = crate::components::begin_block(&mut state, block)
            .map_err(|e| anyhow::anyhow!(e.log))?;
        block_events.extend(begin_events);
        // Evidence CometBFT committed in this block and the previous block's
        // signatures, acted on before the txs.
        block_events.extend(
            crate::components::block_evidence(&mut state, block, &epoch, misbehavior, commit_votes)
                .map_err(|e| anyhow::anyhow!(e.log))?,
        );

        let mut outcomes = Vec::with_capacity(txs.len());
        for tx in &decoded {
            let outcome = match tx {
                Err(e) => TxOutcome::failed(e, 0, 0),
                Ok(tx) => {
                    execute_decoded(&mut state, block, tx, &self.sig_cache, ExecMode::Deliver)
                }
            };
            outcomes.push(outcome);
        }
        // End-block hooks and, on the settle block, the settle pipeline.
        let ended = crate::components::end_block(&mut state, block, &epoch)
            .map_err(|e| anyhow::anyhow!(e.log))?;
        block_events.extend(ended.events);
        let power_updates = ended.power_updates;
        let last = LastBlock {
            height: block.height,
            time_seconds: block.time_seconds,
            time_nanos: block.time_nanos,
        };
        state
            .put_value(keys::LAST_BLOCK.to_vec(), &last)
            .map_err(|e| anyhow::anyhow!(e.log))?;
        let changes = state.into_changes();
        let prepared = self.storage.prepare_commit(block.height, &changes)?;
        Ok((outcomes, block_events, power_updates, prepared))
    }

    /// A read view of the latest committed state plus uncommitted genesis.
    pub fn latest_view(&self) -> Overlay<kiln_store::storage::Snapshot> {
        let base = self.lock().genesis_base.clone();
        Overlay::with_changes(self.storage.latest(), base)
    }

    fn last_block_info(&self, chain_id: &str) -> BlockInfo {
        let view = self.latest_view();
        let last: LastBlock = view
            .get_value(keys::LAST_BLOCK)
            .ok()
            .flatten()
            .unwrap_or_default();
        BlockInfo {
            chain_id: chain_id.to_string(),
            height: last.height.saturating_add(1),
            time_seconds: last.time_seconds,
            time_nanos: last.time_nanos,
            hash: Vec::new(),
        }
    }

    /// Runs a transaction against the latest state without keeping anything
    /// (gas estimation for wallets).
    pub fn simulate(&self, tx_bytes: &[u8]) -> TxResult<TxOutcome> {
        let chain_id = self.chain_id();
        let block = self.last_block_info(&chain_id);
        let mut view = self.latest_view();
        let tx = decode_tx(tx_bytes)?;
        let outcome = execute_decoded(&mut view, &block, &tx, &self.sig_cache, ExecMode::Simulate);
        if outcome.is_ok() {
            Ok(outcome)
        } else {
            Err(kiln_framework::TxError {
                codespace: if outcome.codespace == "sdk" {
                    "sdk"
                } else {
                    "kiln"
                },
                code: outcome.code,
                log: outcome.log,
            })
        }
    }
}

fn read_max_gas<S: StateRead>(state: &S) -> TxResult<Option<u64>> {
    Ok(state
        .get_u64(keys::MAX_BLOCK_GAS)?
        .filter(|g| *g != u64::MAX))
}

impl Application for KilnApp {
    fn info(&self, _request: RequestInfo) -> ResponseInfo {
        let height = self.storage.latest_version().unwrap_or(0);
        let app_hash = if height == 0 {
            Vec::new()
        } else {
            self.storage
                .root_hash(height)
                .map(|h| h.to_vec())
                .unwrap_or_default()
        };
        ResponseInfo {
            data: "kiln".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            app_version: APP_VERSION,
            last_block_height: to_i64(height),
            last_block_app_hash: app_hash.into(),
        }
    }

    fn init_chain(&self, request: RequestInitChain) -> ResponseInitChain {
        let mut inner = self.lock();
        // A malformed genesis must stop the node before any block: CometBFT
        // treats an InitChain failure as fatal, and `kilnd` validates the file
        // before starting, so reaching this with bad input means the operator
        // bypassed validation. Panicking here is the ABCI-sanctioned way to
        // refuse to start (there is no error field in ResponseInitChain).
        let genesis = match kiln_genesis::AppGenesis::from_json_bytes(&request.app_state_bytes) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("refusing to start: {e}");
                #[allow(clippy::panic)]
                {
                    panic!("invalid genesis: {e}");
                }
            }
        };
        let mut state = Overlay::new(self.storage.latest());
        state.put_raw(
            keys::CHAIN_ID.to_vec(),
            request.chain_id.as_bytes().to_vec(),
        );
        let max_gas = request
            .consensus_params
            .as_ref()
            .and_then(|p| p.block.as_ref())
            .map_or(-1, |b| b.max_gas);
        state.put_u64(
            keys::MAX_BLOCK_GAS.to_vec(),
            u64::try_from(max_gas).unwrap_or(u64::MAX),
        );
        let initial_height = u64::try_from(request.initial_height.max(1)).unwrap_or(1);
        let ctx = kiln_framework::GenesisCtx {
            chain_id: request.chain_id.clone(),
            initial_height,
        };
        let result = crate::components::init_genesis(&mut state, &genesis, &ctx).map_err(|e| e.log);
        if let Err(e) = result {
            tracing::error!("refusing to start: invalid genesis: {e}");
            #[allow(clippy::panic)]
            {
                panic!("invalid genesis: {e}");
            }
        }
        // The validator set is the app's: the genesis hosts with weight,
        // under their consensus keys, at their power-capped weights. A
        // genesis.json whose `validators` say otherwise is refused: CometBFT
        // would sign with a set the chain does not track, and the chain's
        // later updates would remove validators CometBFT never had.
        let validators = match genesis_validator_updates(&state, &request.validators) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("refusing to start: {e}");
                #[allow(clippy::panic)]
                {
                    panic!("invalid genesis: {e}");
                }
            }
        };
        let changes = state.into_changes();
        let app_hash = match self.storage.prepare_commit(initial_height, &changes) {
            Ok(prepared) => prepared.root.to_vec(),
            Err(e) => {
                tracing::error!("cannot compute genesis app hash: {e}");
                Vec::new()
            }
        };
        inner.chain_id = request.chain_id.clone();
        inner.max_block_gas = u64::try_from(max_gas).ok();
        inner.genesis_base = changes;
        inner.check = Changes::new();
        ResponseInitChain {
            consensus_params: None,
            validators,
            app_hash: app_hash.into(),
        }
    }

    fn query(&self, request: RequestQuery) -> ResponseQuery {
        crate::query::handle_query(self, request)
    }

    fn check_tx(&self, request: RequestCheckTx) -> ResponseCheckTx {
        let tx = match decode_tx(&request.tx) {
            Ok(tx) => tx,
            Err(e) => return check_response(&TxOutcome::failed(&e, 0, 0)),
        };
        // Requesters' signatures in inference starts need only the chain id:
        // checked (and cached for the block) before the mempool lock, so a
        // start with a bad signature never reaches a block.
        let chain_id = self.lock().chain_id.clone();
        if let Err(e) = check_request_signatures(&chain_id, &tx.msgs) {
            return check_response(&TxOutcome::failed(&e, 0, 0));
        }
        let mut inner = self.lock();
        let committed = ChangesView {
            base: self.storage.latest(),
            changes: &inner.genesis_base,
        };
        let block = {
            let last: LastBlock = committed
                .get_value(keys::LAST_BLOCK)
                .ok()
                .flatten()
                .unwrap_or_default();
            BlockInfo {
                chain_id: inner.chain_id.clone(),
                height: last.height.saturating_add(1),
                time_seconds: last.time_seconds,
                time_nanos: last.time_nanos,
                hash: Vec::new(),
            }
        };
        // The tx's writes go to their own overlay over the mempool view, and
        // are merged into it only if the tx is accepted.
        let mempool = ChangesView {
            base: &committed,
            changes: &inner.check,
        };
        let mut view = Overlay::new(&mempool);
        let mut outcome = execute_decoded(&mut view, &block, &tx, &self.sig_cache, ExecMode::Check);
        if outcome.is_ok() {
            if let Some(max) = inner.max_block_gas {
                if outcome.gas_wanted > max {
                    let e = kiln_framework::TxError::invalid_gas_limit(format!(
                        "gas wanted {} exceeds the block gas limit {max}",
                        outcome.gas_wanted
                    ));
                    outcome = TxOutcome::failed(&e, outcome.gas_wanted, outcome.gas_used);
                }
            }
        }
        if outcome.is_ok() {
            // The mempool view keeps this tx's fee and sequence effects so the
            // same account's next tx is checked against them.
            let changes = view.into_changes();
            inner.check.extend(changes);
        }
        check_response(&outcome)
    }

    fn commit(&self) -> ResponseCommit {
        let mut inner = self.lock();
        let Some(pending) = inner.pending.take() else {
            tracing::error!("Commit without a finalized block; nothing to persist");
            return ResponseCommit { retain_height: 0 };
        };
        match self.storage.commit(pending.prepared) {
            Ok(root) => {
                tracing::debug!(height = pending.height, app_hash = %hex::encode(root), "committed")
            }
            Err(e) => {
                // Losing a commit would fork this node from the network; stop
                // loudly so the operator sees it (CometBFT will replay on restart).
                tracing::error!("failed to persist block {}: {e}", pending.height);
                #[allow(clippy::panic)]
                {
                    panic!("failed to persist block {}: {e}", pending.height);
                }
            }
        }
        inner.genesis_base.clear();
        inner.check.clear();
        drop(inner);
        self.snapshots.after_commit(&self.storage, pending.height);
        // Never prune blocks below the oldest snapshot we serve: a node
        // restoring it block-syncs from there.
        let mut retain = retain_height(pending.height, self.min_retain_blocks);
        if let Some(oldest) = self.snapshots.oldest_height() {
            retain = retain.min(to_i64(oldest));
        }
        ResponseCommit {
            retain_height: retain,
        }
    }

    fn list_snapshots(&self) -> abci::ResponseListSnapshots {
        self.snapshots.list()
    }

    fn load_snapshot_chunk(
        &self,
        request: abci::RequestLoadSnapshotChunk,
    ) -> abci::ResponseLoadSnapshotChunk {
        self.snapshots.load_chunk(request)
    }

    fn offer_snapshot(&self, request: abci::RequestOfferSnapshot) -> abci::ResponseOfferSnapshot {
        self.snapshots.offer(&self.storage, request)
    }

    fn apply_snapshot_chunk(
        &self,
        request: abci::RequestApplySnapshotChunk,
    ) -> abci::ResponseApplySnapshotChunk {
        let (response, restored) = self.snapshots.apply(&self.storage, request);
        if restored.is_some() {
            // The restored state names the chain and its block gas limit.
            let latest = self.storage.latest();
            let mut inner = self.lock();
            if let Ok(Some(id)) = latest.get_raw(keys::CHAIN_ID) {
                inner.chain_id = String::from_utf8_lossy(&id).into_owned();
            }
            if let Ok(gas) = read_max_gas(&latest) {
                inner.max_block_gas = gas;
            }
            inner.check.clear();
            inner.genesis_base.clear();
        }
        response
    }

    fn prepare_proposal(&self, request: RequestPrepareProposal) -> ResponsePrepareProposal {
        let base = self.block_base();
        let height = u64::try_from(request.height).unwrap_or(0);
        let block = now_block(&base.chain_id, height, request.time.as_ref());
        let max_bytes = usize::try_from(request.max_tx_bytes).unwrap_or(usize::MAX);
        let mut view = Overlay::with_changes(self.storage.latest(), base.genesis_base);
        let mut bytes_used = 0usize;
        let mut gas_used: u64 = 0;
        let mut chosen = Vec::new();
        for tx_bytes in request.txs {
            if bytes_used.saturating_add(tx_bytes.len()) > max_bytes {
                continue;
            }
            let Ok(tx) = decode_tx(&tx_bytes) else {
                continue;
            };
            let gas = tx.gas_limit();
            if base
                .max_block_gas
                .is_some_and(|max| gas_used.saturating_add(gas) > max)
            {
                continue;
            }
            let mut scratch = Overlay::new(&view);
            let outcome = execute_decoded(
                &mut scratch,
                &block,
                &tx,
                &self.sig_cache,
                ExecMode::Propose,
            );
            if !outcome.is_ok() {
                continue;
            }
            let changes = scratch.into_changes();
            view.apply(changes);
            bytes_used = bytes_used.saturating_add(tx_bytes.len());
            gas_used = gas_used.saturating_add(gas);
            chosen.push(tx_bytes);
        }
        ResponsePrepareProposal { txs: chosen }
    }

    fn process_proposal(&self, request: RequestProcessProposal) -> ResponseProcessProposal {
        let base = self.block_base();
        let txs: Vec<Vec<u8>> = request.txs.iter().map(|t| t.to_vec()).collect();
        let decoded: Vec<TxResult<DecodedTx>> =
            txs.par_iter().map(|bytes| decode_tx(bytes)).collect();
        let reject = ResponseProcessProposal {
            status: ProposalStatus::Reject as i32,
        };
        if let Some((i, Err(e))) = decoded.iter().enumerate().find(|(_, d)| d.is_err()) {
            tracing::warn!(
                "rejecting proposal at height {}: tx {i} does not decode: {}",
                request.height,
                e.log
            );
            return reject;
        }
        let total_gas = decoded
            .iter()
            .flatten()
            .fold(0u64, |acc, tx| acc.saturating_add(tx.gas_limit()));
        if base.max_block_gas.is_some_and(|max| total_gas > max) {
            tracing::warn!(
                "rejecting proposal at height {}: gas {total_gas} over the block limit",
                request.height
            );
            return reject;
        }
        let view = Overlay::with_changes(self.storage.latest(), base.genesis_base);
        if let Some(i) = self.preverify(&view, &base.chain_id, &decoded) {
            tracing::warn!(
                "rejecting proposal at height {}: tx {i} has an invalid signature",
                request.height
            );
            return reject;
        }
        ResponseProcessProposal {
            status: ProposalStatus::Accept as i32,
        }
    }

    fn finalize_block(&self, request: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        // The lock is not held while the block executes (see `BlockBase`).
        let base = self.block_base();
        let height = u64::try_from(request.height).unwrap_or(0);
        let mut block = now_block(&base.chain_id, height, request.time.as_ref());
        block.hash = request.hash.to_vec();
        let txs: Vec<Vec<u8>> = request.txs.iter().map(|t| t.to_vec()).collect();
        let misbehavior: Vec<kiln_staking::misbehavior::Reported> = request
            .misbehavior
            .iter()
            .map(|m| kiln_staking::misbehavior::Reported {
                kind: match abci::MisbehaviorType::try_from(m.r#type) {
                    Ok(abci::MisbehaviorType::DuplicateVote) => "duplicate_vote",
                    Ok(abci::MisbehaviorType::LightClientAttack) => "light_client_attack",
                    _ => "unknown",
                }
                .to_string(),
                validator_address: m
                    .validator
                    .as_ref()
                    .map(|v| v.address.to_vec())
                    .unwrap_or_default(),
                power: m.validator.as_ref().map_or(0, |v| v.power),
                height: m.height,
            })
            .collect();
        let commit_votes: Vec<kiln_slashing::CommitVote> = request
            .decided_last_commit
            .as_ref()
            .map(|c| {
                c.votes
                    .iter()
                    .filter_map(|v| {
                        Some(kiln_slashing::CommitVote {
                            validator_address: v.validator.as_ref()?.address.to_vec(),
                            signed: v.block_id_flag
                                == tendermint_proto::v0_38::types::BlockIdFlag::Commit as i32,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        match self.execute_block(base.genesis_base, &block, &txs, &misbehavior, &commit_votes) {
            Ok((outcomes, events, power_updates, prepared)) => {
                let app_hash = prepared.root.to_vec();
                self.lock().pending = Some(PendingBlock { height, prepared });
                ResponseFinalizeBlock {
                    events: to_abci_events(&events),
                    tx_results: outcomes.iter().map(exec_result).collect(),
                    validator_updates: power_updates.iter().map(validator_update).collect(),
                    consensus_param_updates: None,
                    app_hash: app_hash.into(),
                }
            }
            Err(e) => {
                if let Some(needed) = e.downcast_ref::<kiln_gov::upgrade::UpgradeNeeded>() {
                    self.halt_for_upgrade(needed);
                }
                // Storage failure: this node cannot compute the state; halting
                // is the only safe answer (the block will be replayed).
                tracing::error!("cannot execute block {height}: {e}");
                #[allow(clippy::panic)]
                {
                    panic!("cannot execute block {height}: {e}");
                }
            }
        }
    }
}

/// InitChain's answer: the validator set staking's genesis recorded, as
/// CometBFT validator updates in key order. Errors when CometBFT's genesis
/// `validators` (`requested`, when not empty) are a different set.
pub fn genesis_validator_updates<S: StateRead>(
    state: &S,
    requested: &[abci::ValidatorUpdate],
) -> Result<Vec<abci::ValidatorUpdate>, String> {
    let given = kiln_staking::StakingExt::given_validators(state).map_err(|e| e.log)?;
    if given.is_empty() {
        return Err("the genesis hosts give no validator (total genesis weight is 0)".into());
    }
    let ours: std::collections::BTreeMap<Vec<u8>, i64> = given
        .iter()
        .map(|(key, v)| (key.clone(), to_i64(v.power)))
        .collect();
    if !requested.is_empty() {
        let mut theirs = std::collections::BTreeMap::new();
        for update in requested {
            let key = match update.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
                Some(tendermint_proto::v0_38::crypto::public_key::Sum::Ed25519(k)) => k.to_vec(),
                _ => return Err(format!("genesis.json validator {update:?} is not an ed25519 key; the validator set is derived from app_state.hosts")),
            };
            if theirs.insert(key.clone(), update.power).is_some() {
                return Err(format!(
                    "genesis.json lists validator {} twice",
                    hex::encode(&key)
                ));
            }
        }
        if theirs != ours {
            let show = |m: &std::collections::BTreeMap<Vec<u8>, i64>| {
                m.iter()
                    .map(|(k, p)| format!("{}={p}", hex::encode(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "genesis.json validators [{}] differ from the validators derived from app_state.hosts (hosts with weight, power-capped) [{}]",
                show(&theirs),
                show(&ours)
            ));
        }
    }
    Ok(given
        .iter()
        .map(|(key, v)| {
            validator_update(&kiln_staking::PowerUpdate {
                host: v.owner,
                consensus_pubkey: key.clone(),
                power: v.power,
            })
        })
        .collect())
}

/// A consensus power change as CometBFT's ValidatorUpdate (ed25519 key, power).
fn validator_update(update: &kiln_staking::PowerUpdate) -> abci::ValidatorUpdate {
    abci::ValidatorUpdate {
        pub_key: Some(tendermint_proto::v0_38::crypto::PublicKey {
            sum: Some(tendermint_proto::v0_38::crypto::public_key::Sum::Ed25519(
                update.consensus_pubkey.clone(),
            )),
        }),
        power: to_i64(update.power),
    }
}

fn check_response(outcome: &TxOutcome) -> ResponseCheckTx {
    ResponseCheckTx {
        code: outcome.code,
        data: Default::default(),
        log: outcome.log.clone(),
        info: String::new(),
        gas_wanted: to_i64(outcome.gas_wanted),
        gas_used: to_i64(outcome.gas_used),
        events: to_abci_events(&outcome.events),
        codespace: outcome.codespace.clone(),
    }
}

fn exec_result(outcome: &TxOutcome) -> abci::ExecTxResult {
    abci::ExecTxResult {
        code: outcome.code,
        data: Default::default(),
        log: outcome.log.clone(),
        info: String::new(),
        gas_wanted: to_i64(outcome.gas_wanted),
        gas_used: to_i64(outcome.gas_used),
        events: to_abci_events(&outcome.events),
        codespace: outcome.codespace.clone(),
    }
}

/// The first inference start in `msgs` (inner messages of `MsgExec`
/// included) whose requester signature does not verify, as the handler
/// would refuse it; verified ones are cached for the block.
fn check_request_signatures(
    chain_id: &str,
    msgs: &[kiln_messages::Msg],
) -> kiln_framework::TxResult<()> {
    for msg in msgs {
        match msg {
            kiln_messages::Msg::StartInference(start) => {
                kiln_inference::handler::check_start_signature(chain_id, start)?
            }
            kiln_messages::Msg::Exec { inner, .. } => check_request_signatures(chain_id, inner)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::retain_height;

    #[test]
    fn retain_height_keeps_the_last_min_retain_blocks() {
        // 0 = keep every block.
        assert_eq!(retain_height(1, 0), 0);
        assert_eq!(retain_height(1_000_000, 0), 0);
        // Chain shorter than the window: keep everything.
        assert_eq!(retain_height(1, 10), 0);
        assert_eq!(retain_height(9, 10), 0);
        // From H = min_retain_blocks on: H - N + 1, never below 1.
        assert_eq!(retain_height(10, 10), 1);
        assert_eq!(retain_height(11, 10), 2);
        assert_eq!(retain_height(30, 10), 21);
        assert_eq!(retain_height(1, 1), 1);
        assert_eq!(retain_height(7, 1), 7);
        // Extremes: no overflow, no panic.
        assert_eq!(retain_height(u64::MAX, u64::MAX), 1);
        assert_eq!(retain_height(u64::MAX, 1), 0); // does not fit in i64
        assert_eq!(retain_height(i64::MAX as u64, 1), i64::MAX);
    }
}
