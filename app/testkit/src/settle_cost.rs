//! The settle-cost fixture shared by `make bench` (`app/benches/settle_cost.rs`)
//! and the regression test `settle_cost_grows_about_linearly_with_hosts`: a
//! chain with `hosts` genesis hosts with weight, each of which committed,
//! opened and was voted valid by its whole committee, stopped just before the
//! epoch-1 settle. The state lives where a node keeps it — committed in the
//! node's store (`kiln-store`: rocksdb under the Jellyfish Merkle tree) — and
//! each block executes as the node runs it, in a fresh overlay over the last
//! committed version. [`time_settle`] times the chain's own work for that
//! epoch's tally: the committee assignment at the start of the vote stages and
//! the settle pipeline, each on its own.

// Not consensus code: it reads the wall clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Duration;

/// CPU time of the calling thread: the work itself, without the time the
/// thread waits for a core (the machine is shared with other builds, and
/// wall-clock ratios moved by 2× with the load).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

use kiln_epochs::{EpochParams, Stage};
use kiln_framework::{Address, BlockInfo, GenesisCtx, StateWriteExt};
use kiln_sprint::state::{Commitment, Opened, OpenedLeaves};
use kiln_state::{EmptyState, Overlay, StateWrite};
use kiln_store::{Snapshot, Storage, StorageConfig};
use sha2::{Digest, Sha256};

/// Committed, opened and fully voted state of epoch 1, before its settle.
pub struct SettleFixture {
    /// The node's store; the fixture commits every block it runs into it.
    pub storage: Storage,
    pub hosts: Vec<Address>,
    pub params: EpochParams,
    _dir: tempfile::TempDir,
}

impl SettleFixture {
    /// A block's overlay: writes buffered over the last committed version.
    fn block_state(&self) -> Overlay<Snapshot> {
        Overlay::new(self.storage.latest())
    }

    /// Commits a block's changes as the next version (the app hash and the
    /// write to disk: not part of the timed block execution).
    fn commit(&mut self, changes: &kiln_state::Changes) -> anyhow::Result<()> {
        let version = self.storage.latest_version().map_or(1, |v| v + 1);
        let prepared = self.storage.prepare_commit(version, changes)?;
        self.storage.commit(prepared)?;
        Ok(())
    }
}

fn host_address(i: usize) -> Address {
    let d = Sha256::digest(format!("settle-cost-host-{i}").as_bytes());
    let mut a = [0u8; 20];
    a.copy_from_slice(&d[..20]);
    Address(a)
}

/// Builds the fixture with `hosts` hosts (mainnet-like sprint params, devnet
/// schedule); `committee_base` overrides `sprint_committee` when given.
pub fn settle_fixture(hosts: usize, committee_base: Option<u32>) -> anyhow::Result<SettleFixture> {
    settle_fixture_with_delegators(hosts, committee_base, 0, 0)
}

fn delegator_address(i: usize) -> Address {
    let d = Sha256::digest(format!("settle-cost-delegator-{i}").as_bytes());
    let mut a = [0u8; 20];
    a.copy_from_slice(&d[..20]);
    Address(a)
}

/// [`settle_fixture`] where every host has a self-bond and `delegators`
/// accounts each delegate to one host (round robin) at genesis, so the
/// settle's rewards step credits pools with delegators; `bystanders` more
/// funded accounts that delegate nothing (a control: the same state size
/// without delegations).
pub fn settle_fixture_with_delegators(
    hosts: usize,
    committee_base: Option<u32>,
    delegators: usize,
    bystanders: usize,
) -> anyhow::Result<SettleFixture> {
    let err = |e: kiln_framework::TxError| anyhow::anyhow!(e.log);
    let mut genesis = kiln_genesis::AppGenesis::default();
    genesis.epochs.params = EpochParams::devnet();
    if let Some(base) = committee_base {
        genesis.sprint.params.sprint_committee = base;
    }
    let addrs: Vec<Address> = (0..hosts).map(host_address).collect();
    for (i, a) in addrs.iter().enumerate() {
        let key: [u8; 32] = Sha256::digest(format!("settle-cost-key-{i}").as_bytes()).into();
        genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: *a,
            worker_url: format!("http://host{i}.example:8080"),
            consensus_pubkey: hex::encode(key),
            models: vec![],
            hardware: "bench".into(),
            weight: 100 + (i as u64 % 50),
        });
        // Pushed directly: `add_balance` searches the list (quadratic setup).
        genesis
            .bank
            .balances
            .push(kiln_bank::genesis::GenesisBalance {
                address: *a,
                coins: vec![kiln_framework::Coin::new(
                    kiln_framework::BASE_DENOM,
                    1_000_000_000_000,
                )],
            });
    }
    for (i, a) in addrs.iter().enumerate() {
        genesis
            .staking
            .bonds
            .push(kiln_staking::genesis::GenesisBond {
                delegator: *a,
                host: *a,
                amount: 1_000_000 + i as u128,
            });
    }
    for d in 0..delegators {
        let delegator = delegator_address(d);
        genesis
            .bank
            .balances
            .push(kiln_bank::genesis::GenesisBalance {
                address: delegator,
                coins: vec![kiln_framework::Coin::new(
                    kiln_framework::BASE_DENOM,
                    10_000_000,
                )],
            });
        genesis
            .staking
            .bonds
            .push(kiln_staking::genesis::GenesisBond {
                delegator,
                host: addrs[d % addrs.len().max(1)],
                amount: 1_000_000 + d as u128,
            });
    }
    for b in 0..bystanders {
        genesis
            .bank
            .balances
            .push(kiln_bank::genesis::GenesisBalance {
                address: delegator_address(delegators + b),
                coins: vec![kiln_framework::Coin::new(
                    kiln_framework::BASE_DENOM,
                    10_000_000,
                )],
            });
    }
    let mut state = Overlay::new(EmptyState);
    let ctx = GenesisCtx {
        chain_id: "kiln-settle-bench".into(),
        initial_height: 1,
    };
    kiln_app::components::init_genesis(&mut state, &genesis, &ctx).map_err(err)?;
    let params = genesis.epochs.params.clone();
    state.put_raw(
        kiln_epochs::keys::challenge_hash(1),
        Sha256::digest(b"settle-cost-challenge").to_vec(),
    );
    for (i, a) in addrs.iter().enumerate() {
        state
            .put_value(
                kiln_sprint::keys::commit(1, a),
                &Commitment {
                    root: hex::encode([7u8; 32]),
                    count: 150 + (i as u64 % 40),
                    height: 1,
                },
            )
            .map_err(err)?;
        let leaves = (0..16u64)
            .map(|j| Opened {
                index: j * 2,
                nonce: j * 32,
                distance_q: 12_000,
            })
            .collect();
        state
            .put_value(kiln_sprint::keys::open(1, a), &OpenedLeaves(leaves))
            .map_err(err)?;
    }
    let dir = tempfile::tempdir()?;
    let storage = Storage::open(dir.path(), StorageConfig { keep_recent: 0 })?;
    let mut fixture = SettleFixture {
        storage,
        hosts: addrs,
        params,
        _dir: dir,
    };
    fixture.commit(state.changes())?;
    Ok(fixture)
}

/// Writes a revealed `valid` vote from every committee member of every host
/// (setup, not timed).
fn vote_everyone_valid(f: &mut SettleFixture) -> anyhow::Result<()> {
    let err = |e: kiln_framework::TxError| anyhow::anyhow!(e.log);
    let mut state = f.block_state();
    for host in &f.hosts {
        let committee = kiln_sprint::state::assigned_committee(&state, 1, host).map_err(err)?;
        let members = committee.0.len();
        for (position, (voter, _)) in committee.0.iter().enumerate() {
            state.put_raw(kiln_sprint::keys::vote_commit(1, host, voter), vec![0; 32]);
            state.put_raw(kiln_sprint::keys::vote_reveal(1, host, voter), vec![1]);
            kiln_sprint::state::record_member_vote(
                &mut state,
                1,
                host,
                members,
                position,
                kiln_sprint::state::MemberVoteState::RevealedValid,
            )
            .map_err(err)?;
        }
    }
    let changes = state.into_changes();
    f.commit(&changes)
}

fn block(height: u64) -> BlockInfo {
    BlockInfo {
        height,
        hash: Sha256::digest(height.to_le_bytes()).to_vec(),
        ..Default::default()
    }
}

/// Thread CPU time of the two blocks of an epoch's tally work.
#[derive(Clone, Copy, Debug, Default)]
pub struct TallyTimes {
    /// The first vote-commit block: committees drawn and stored for every
    /// committed host (h · committee writes; committees grow with ⌈log₃ h⌉).
    pub assignment: Duration,
    /// The escalation check and the settle block (raw weights → power cap →
    /// validator set → reputation).
    pub settle: Duration,
    /// Hosts the settle's rewards step credited.
    pub rewarded: usize,
}

/// How many hosts the settle rewarded (`EventHostRewarded`), from
/// [`time_settle`]'s events.
pub fn rewarded(events: &[kiln_framework::Event]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == "kiln.rewards.v1.EventHostRewarded")
        .count()
}

/// Times (thread CPU time) the chain's tally work for the fixture's epoch: the committee
/// assignment at the start of the vote stages and, separately, the settle
/// (with the escalation check before it). Returns (times, accepted hosts).
pub fn time_settle(f: &mut SettleFixture) -> anyhow::Result<(TallyTimes, usize)> {
    let err = |e: kiln_framework::TxError| anyhow::anyhow!(e.log);
    let vote_height = f.params.stage_height(1, 1, Stage::VoteCommit);
    let escalation_height = f.params.stage_height(1, 1, Stage::EscalationCommit);
    let settle_height = f.params.stage_height(1, 1, Stage::Settle);
    // Committee assignment at the first vote block (stage-start hooks).
    let mut vote_block = f.block_state();
    let t0 = thread_cpu_time();
    kiln_app::components::begin_block(&mut vote_block, &block(vote_height)).map_err(err)?;
    let assignment = thread_cpu_time().saturating_sub(t0);
    f.commit(&vote_block.into_changes())?;
    vote_everyone_valid(f)?;
    // Escalation check at the first escalation block, then the settle block.
    let mut escalation_block = f.block_state();
    let t1 = thread_cpu_time();
    kiln_app::components::begin_block(&mut escalation_block, &block(escalation_height))
        .map_err(err)?;
    let mut settle = thread_cpu_time().saturating_sub(t1);
    f.commit(&escalation_block.into_changes())?;
    let mut settle_block = f.block_state();
    let t2 = thread_cpu_time();
    let out = kiln_app::components::settle(&mut settle_block, 1, 1, settle_height).map_err(err)?;
    settle += thread_cpu_time().saturating_sub(t2);
    let accepted = out
        .events
        .iter()
        .filter(|e| {
            e.kind == "kiln.sprint.v1.EventSprintTally"
                && e.attributes
                    .iter()
                    .any(|(k, v)| k == "accepted" && v == "true")
        })
        .count();
    let rewarded = rewarded(&out.events);
    Ok((
        TallyTimes {
            assignment,
            settle,
            rewarded,
        },
        accepted,
    ))
}
