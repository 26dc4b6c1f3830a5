//! Issue 13's simulation: 20 epochs of a 4-host chain driven through real
//! blocks. Every epoch the hosts run the sprint (commit, reveal, open, vote;
//! simulated leaves, as in the sprint scenario test) so the settle accepts
//! them and the emission is paid; around it, six stakers and the hosts send
//! random bonds, unbonds, delegations, undelegations, redelegations,
//! withdrawals and commission changes (seeded, so every run is the same);
//! CometBFT reports double signs (epochs 4 and 11) and a host stops signing
//! (epochs 7 and 15), so slashes and jails happen; jailed hosts unjail.
//!
//! Checked after **every block**: SPEC §11's supply invariant (supply =
//! genesis + minted − burned, balances sum to supply, no negative or stored
//! zero balance) and the collateral invariants (testkit
//! `check_invariants`). At the end, every minted coin is accounted for:
//! minted = hosts' rewards + community pool; hosts' rewards = commission +
//! own parts + delegators' parts; delegators' parts = withdrawn + what the
//! distribution account holds; and what it holds beyond the pending rewards
//! (rounding dust) is at most one ukiln per delegation per settle. Burned =
//! the slashes' burns.

use std::collections::{BTreeMap, BTreeSet};

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgWithdrawDelegatorReward;
use cosmos_sdk_proto::cosmos::staking::v1beta1::{MsgBeginRedelegate, MsgDelegate, MsgUndelegate};
use kiln_epochs::Stage;
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_sprint::msgs::{vote_commitment, MsgSprintVoteCommit, MsgSprintVoteReveal};
use kiln_staking::misbehavior::consensus_address;
use kiln_staking::msgs::{MsgBond, MsgSetCommission, MsgUnbond, MsgUnjail};
use kiln_staking::pools::PoolsExt;
use kiln_testkit::sprint::{commit_msg, open_msg, reveal_msg};
use kiln_testkit::{any_of, msg_exec, sign_tx, BlockDriver, ConsensusTestKey, TestKey};
use tendermint_proto::v0_38::abci::{
    CommitInfo, Misbehavior, MisbehaviorType, ResponseFinalizeBlock, Validator, VoteInfo,
};
use tendermint_proto::v0_38::types::BlockIdFlag;

const CHAIN: &str = "kiln-economy-sim";
const EPOCHS: u64 = 20;
const HOSTS: usize = 4;
const STAKERS: usize = 6;
const SAMPLES: u32 = 16;

/// xorshift64*: a fixed seed, so the run is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Host {
    key: TestKey,
    hot: TestKey,
    consensus: [u8; 20],
}

#[derive(Default)]
struct Totals {
    minted: u128,
    host_rewards: u128,
    community: u128,
    commission: u128,
    own_parts: u128,
    delegators_parts: u128,
    withdrawn: u128,
    slashed: u128,
    settles_with_emission: u64,
    ops_ok: BTreeMap<&'static str, u64>,
    ops_refused: BTreeMap<&'static str, u64>,
}

struct Sim {
    d: BlockDriver,
    hosts: Vec<Host>,
    stakers: Vec<TestKey>,
    rng: Rng,
    totals: Totals,
    /// Delegations ever made (delegator, host), for the dust bound.
    delegations: BTreeSet<(Address, Address)>,
    /// Host index whose key signs no block this epoch (downtime).
    silent: Option<usize>,
    _dir: tempfile::TempDir,
}

fn coin(amount: u128) -> Option<ProtoCoin> {
    Some(ProtoCoin {
        denom: BASE_DENOM.into(),
        amount: amount.to_string(),
    })
}

fn amount_of(text: &str) -> u128 {
    text.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|_| panic!("not an amount: {text}"))
}

fn attr<'a>(e: &'a tendermint_proto::v0_38::abci::Event, key: &str) -> &'a str {
    e.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
        .unwrap_or_else(|| panic!("{} has no {key}", e.r#type))
}

fn leaves(count: u64, seed: u64) -> Vec<(u64, u32)> {
    (0..count)
        .map(|i| {
            (
                i * 16 + (seed % 16),
                12_000 + ((i * 7 + seed) % 1_400) as u32,
            )
        })
        .collect()
}

impl Sim {
    fn new() -> Sim {
        let hosts: Vec<Host> = (0..HOSTS)
            .map(|i| Host {
                key: TestKey::from_label(&format!("sim-host-{i}")),
                hot: TestKey::from_label(&format!("sim-host-{i}-hot")),
                consensus: consensus_address(
                    &ConsensusTestKey::from_label(&format!("sim-host-{i}")).public,
                ),
            })
            .collect();
        let stakers: Vec<TestKey> = (0..STAKERS)
            .map(|i| TestKey::from_label(&format!("sim-staker-{i}")))
            .collect();
        let mut g = kiln_genesis::AppGenesis::with_devnet_params();
        g.sprint.params.sprint_samples = SAMPLES;
        // A 10% commission step per epoch keeps commissions moving.
        g.staking.params.max_commission_change_bps = 1_000;
        g.staking.params.min_self_bond = 10_000;
        g.rewards.params.initial_emission = 50_000_000;
        for (i, h) in hosts.iter().enumerate() {
            g.add_balance(h.key.address, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
            g.add_balance(h.hot.address, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
            g.hosts.hosts.push(kiln_hosts::GenesisHost {
                owner: h.key.address,
                worker_url: format!("http://host{i}.sim:8080"),
                consensus_pubkey: hex::encode(
                    ConsensusTestKey::from_label(&format!("sim-host-{i}")).public,
                ),
                models: vec![],
                hardware: "test".into(),
                weight: 100,
            });
            g.add_ml_ops_grants(h.key.address, h.hot.address);
            g.staking.bonds.push(kiln_staking::genesis::GenesisBond {
                delegator: h.key.address,
                host: h.key.address,
                amount: 100_000,
            });
        }
        for s in &stakers {
            g.add_balance(s.address, vec![Coin::new(BASE_DENOM, 100_000_000)]);
        }
        let dir = tempfile::tempdir().unwrap();
        let d =
            BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
        Sim {
            d,
            hosts,
            stakers,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            totals: Totals::default(),
            delegations: BTreeSet::new(),
            silent: None,
            _dir: dir,
        }
    }

    fn hot_tx(&self, i: usize, msgs: Vec<cosmos_sdk_proto::Any>) -> Vec<u8> {
        let h = &self.hosts[i];
        let mut opts = self.d.opts_for(&h.hot);
        opts.gas_limit = 5_000_000;
        opts.fee = 150_000;
        sign_tx(&h.hot, vec![msg_exec(&h.hot.address, msgs)], &opts)
    }

    fn commit(&self) -> CommitInfo {
        CommitInfo {
            round: 0,
            votes: self
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| VoteInfo {
                    validator: Some(Validator {
                        address: h.consensus.to_vec().into(),
                        power: 1,
                    }),
                    block_id_flag: if Some(i) == self.silent {
                        BlockIdFlag::Absent as i32
                    } else {
                        BlockIdFlag::Commit as i32
                    },
                })
                .collect(),
        }
    }

    fn weight(&self, i: usize) -> u64 {
        kiln_staking::StakingExt::weight_in_force(
            &self.d.app.latest_view(),
            &self.hosts[i].key.address,
        )
        .unwrap()
    }

    fn jailed(&self, i: usize) -> bool {
        kiln_staking::jail::JailExt::is_jailed(
            &self.d.app.latest_view(),
            &self.hosts[i].key.address,
        )
        .unwrap()
    }

    /// One block: `txs` first, then random staking operations; with the
    /// commit and any evidence; invariants checked; totals accumulated.
    fn block(
        &mut self,
        mut txs: Vec<Vec<u8>>,
        evidence: Vec<Misbehavior>,
    ) -> ResponseFinalizeBlock {
        let sprint_txs = txs.len();
        let mut kinds = Vec::new();
        for _ in 0..self.rng.below(3) {
            if let Some((kind, tx)) = self.random_op() {
                kinds.push(kind);
                txs.push(tx);
            }
        }
        let commit = self.commit();
        let out = self
            .d
            .deliver_with_evidence(txs, evidence, Some(commit))
            .unwrap();
        self.d.check_invariants().unwrap();
        let r = out.response;
        for (i, result) in r.tx_results.iter().enumerate() {
            if i < sprint_txs {
                continue;
            }
            let kind = kinds[i - sprint_txs];
            if result.code == 0 {
                *self.totals.ops_ok.entry(kind).or_default() += 1;
            } else {
                // Refusals are the staking module's (or an empty wallet's).
                assert!(
                    result.codespace == "staking" || result.codespace == "sdk",
                    "{kind}: {} {}",
                    result.codespace,
                    result.log
                );
                *self.totals.ops_refused.entry(kind).or_default() += 1;
            }
        }
        let mut events: Vec<&tendermint_proto::v0_38::abci::Event> = r.events.iter().collect();
        for result in r.tx_results.iter().filter(|t| t.code == 0) {
            events.extend(result.events.iter());
        }
        for e in events {
            match e.r#type.as_str() {
                "kiln.rewards.v1.EventEmission" => {
                    self.totals.minted += amount_of(attr(e, "minted"));
                    self.totals.community += amount_of(attr(e, "community"));
                    self.totals.settles_with_emission += 1;
                }
                "kiln.rewards.v1.EventHostRewarded" => {
                    self.totals.host_rewards += amount_of(attr(e, "reward"));
                    self.totals.commission += amount_of(attr(e, "commission"));
                    self.totals.own_parts += amount_of(attr(e, "own_part"));
                    self.totals.delegators_parts += amount_of(attr(e, "delegators_part"));
                }
                "withdraw_rewards" => self.totals.withdrawn += amount_of(attr(e, "amount")),
                "kiln.slashing.v1.EventSlash" => {
                    self.totals.slashed += amount_of(attr(e, "bonded_burned"))
                        + amount_of(attr(e, "unbonding_burned"));
                }
                _ => {}
            }
        }
        r
    }

    fn random_op(&mut self) -> Option<(&'static str, Vec<u8>)> {
        let h = self.rng.below(HOSTS as u64) as usize;
        let other = (h + 1 + self.rng.below(HOSTS as u64 - 1) as usize) % HOSTS;
        let s = self.rng.below(STAKERS as u64) as usize;
        let amount = u128::from(1_000 + self.rng.below(200_000));
        let host = self.hosts[h].key.address;
        let staker = self.stakers[s].clone();
        let (kind, signer, msg) = match self.rng.below(10) {
            0 => (
                "bond",
                self.hosts[h].key.clone(),
                any_of(&MsgBond {
                    host: host.to_bech32(),
                    amount: amount.to_string(),
                }),
            ),
            1 => (
                "unbond",
                self.hosts[h].key.clone(),
                any_of(&MsgUnbond {
                    host: host.to_bech32(),
                    amount: (amount / 4).to_string(),
                }),
            ),
            2 | 3 => {
                self.delegations.insert((staker.address, host));
                (
                    "delegate",
                    staker.clone(),
                    any_of(&MsgDelegate {
                        delegator_address: staker.address.to_bech32(),
                        validator_address: host.to_valoper(),
                        amount: coin(amount),
                    }),
                )
            }
            4 => (
                "undelegate",
                staker.clone(),
                any_of(&MsgUndelegate {
                    delegator_address: staker.address.to_bech32(),
                    validator_address: host.to_valoper(),
                    amount: coin(amount / 2),
                }),
            ),
            5 => {
                let dst = self.hosts[other].key.address;
                self.delegations.insert((staker.address, dst));
                (
                    "redelegate",
                    staker.clone(),
                    any_of(&MsgBeginRedelegate {
                        delegator_address: staker.address.to_bech32(),
                        validator_src_address: host.to_valoper(),
                        validator_dst_address: dst.to_valoper(),
                        amount: coin(amount / 2),
                    }),
                )
            }
            6 | 7 => (
                "withdraw",
                staker.clone(),
                any_of(&MsgWithdrawDelegatorReward {
                    delegator_address: staker.address.to_bech32(),
                    validator_address: host.to_valoper(),
                }),
            ),
            8 => {
                let view = self.d.app.latest_view();
                let now = view.pool(&host).unwrap().commission_bps;
                let next = if self.rng.below(2) == 0 {
                    now.saturating_sub(500)
                } else {
                    (now + 500).min(5_000)
                };
                (
                    "commission",
                    self.hosts[h].key.clone(),
                    any_of(&MsgSetCommission {
                        host: host.to_bech32(),
                        commission_bps: next,
                    }),
                )
            }
            _ => {
                if !self.jailed(h) {
                    return None;
                }
                (
                    "unjail",
                    self.hosts[h].key.clone(),
                    any_of(&MsgUnjail {
                        host: host.to_bech32(),
                    }),
                )
            }
        };
        Some((kind, sign_tx(&signer, vec![msg], &self.d.opts_for(&signer))))
    }

    /// Empty (of sprint txs) blocks until the next block is `height`;
    /// a double sign of `double_signer` is reported at `report_at`.
    fn blocks_until(&mut self, height: u64, double_sign: Option<(usize, u64)>) {
        while self.d.height + 1 < height {
            let mut evidence = Vec::new();
            if let Some((i, at)) = double_sign {
                if self.d.height + 1 == at {
                    evidence.push(Misbehavior {
                        r#type: MisbehaviorType::DuplicateVote as i32,
                        validator: Some(Validator {
                            address: self.hosts[i].consensus.to_vec().into(),
                            power: 1,
                        }),
                        height: i64::try_from(at - 1).unwrap(),
                        time: None,
                        total_voting_power: 4,
                    });
                }
            }
            self.block(vec![], evidence);
        }
    }

    /// One epoch of honest sprints by every host (votes only from hosts
    /// with weight in force), with random staking around it.
    fn run_epoch(&mut self, epoch: u64, double_sign: Option<(usize, u64)>) {
        let params = kiln_epochs::EpochParams::devnet();
        let at = |stage| params.stage_height(1, epoch, stage);
        let shares: Vec<Vec<(u64, u32)>> = (0..HOSTS)
            .map(|i| leaves(40 + self.rng.below(120), i as u64 + epoch))
            .collect();
        self.blocks_until(at(Stage::Sprint), None);
        let txs = (0..HOSTS)
            .map(|i| {
                self.hot_tx(
                    i,
                    vec![any_of(&commit_msg(
                        &self.hosts[i].key.address,
                        epoch,
                        &shares[i],
                    ))],
                )
            })
            .collect();
        let r = self.block(txs, vec![]);
        assert!(
            r.tx_results[..HOSTS].iter().all(|t| t.code == 0),
            "{:?}",
            r.tx_results
        );
        self.blocks_until(at(Stage::SecretReveal), None);
        let txs = (0..HOSTS)
            .map(|i| {
                self.hot_tx(
                    i,
                    vec![any_of(&reveal_msg(&self.hosts[i].key.address, epoch))],
                )
            })
            .collect();
        let r = self.block(txs, vec![]);
        assert!(
            r.tx_results[..HOSTS].iter().all(|t| t.code == 0),
            "{:?}",
            r.tx_results
        );
        self.blocks_until(at(Stage::Open), None);
        let view = self.d.app.latest_view();
        let txs = (0..HOSTS)
            .map(|i| {
                let msg = open_msg(
                    &view,
                    &self.hosts[i].key.address,
                    epoch,
                    &shares[i],
                    SAMPLES,
                );
                self.hot_tx(i, vec![any_of(&msg)])
            })
            .collect();
        drop(view);
        let r = self.block(txs, vec![]);
        assert!(
            r.tx_results[..HOSTS].iter().all(|t| t.code == 0),
            "{:?}",
            r.tx_results
        );
        self.blocks_until(at(Stage::VoteCommit), None);
        let voters: Vec<usize> = (0..HOSTS).filter(|v| self.weight(*v) > 0).collect();
        let salt = |v: usize, h: usize| format!("sim-{epoch}-{v}-{h}").into_bytes();
        let txs = voters
            .iter()
            .map(|&v| {
                let msgs = (0..HOSTS)
                    .filter(|h| *h != v)
                    .map(|h| {
                        let (voter, host) = (self.hosts[v].key.address, self.hosts[h].key.address);
                        any_of(&MsgSprintVoteCommit {
                            voter: voter.to_bech32(),
                            epoch,
                            host: host.to_bech32(),
                            commitment: vote_commitment(
                                CHAIN,
                                epoch,
                                host.as_bytes(),
                                voter.as_bytes(),
                                true,
                                &salt(v, h),
                            )
                            .to_vec(),
                        })
                    })
                    .collect();
                self.hot_tx(v, msgs)
            })
            .collect();
        let r = self.block(txs, vec![]);
        assert!(
            r.tx_results[..voters.len()].iter().all(|t| t.code == 0),
            "{:?}",
            r.tx_results
        );
        self.blocks_until(at(Stage::VoteReveal), None);
        let txs = voters
            .iter()
            .map(|&v| {
                let msgs = (0..HOSTS)
                    .filter(|h| *h != v)
                    .map(|h| {
                        any_of(&MsgSprintVoteReveal {
                            voter: self.hosts[v].key.address.to_bech32(),
                            epoch,
                            host: self.hosts[h].key.address.to_bech32(),
                            valid: true,
                            salt: salt(v, h),
                        })
                    })
                    .collect();
                self.hot_tx(v, msgs)
            })
            .collect();
        let r = self.block(txs, vec![]);
        assert!(
            r.tx_results[..voters.len()].iter().all(|t| t.code == 0),
            "{:?}",
            r.tx_results
        );
        // Through the settle and the inference stage, where the double sign
        // (if any) is reported.
        self.blocks_until(
            params.stage_height(1, epoch + 1, Stage::Sprint),
            double_sign,
        );
    }
}

#[test]
fn twenty_epochs_of_random_staking_and_slashes_keep_every_coin_accounted() {
    let mut sim = Sim::new();
    let genesis_supply = sim.d.genesis_supply.get(BASE_DENOM).copied().unwrap();
    let params = kiln_epochs::EpochParams::devnet();
    for epoch in 1..=EPOCHS {
        sim.silent = match epoch {
            7 => Some(3),
            15 => Some(1),
            _ => None,
        };
        let double_sign = match epoch {
            4 => Some((2, params.stage_height(1, epoch, Stage::Settle) + 5)),
            11 => Some((0, params.stage_height(1, epoch, Stage::Settle) + 5)),
            _ => None,
        };
        sim.run_epoch(epoch, double_sign);
    }
    let view = sim.d.app.latest_view();
    let t = &sim.totals;
    println!("operations accepted: {:?}", t.ops_ok);
    println!("operations refused: {:?}", t.ops_refused);

    // The simulation did what it claims.
    for kind in [
        "bond",
        "unbond",
        "delegate",
        "undelegate",
        "redelegate",
        "withdraw",
        "commission",
        "unjail",
    ] {
        assert!(
            t.ops_ok.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} succeeded: {:?}",
            t.ops_ok
        );
    }
    assert_eq!(
        t.settles_with_emission, EPOCHS,
        "every epoch paid an emission"
    );
    let slashes: Vec<kiln_slashing::SlashRecord> = kiln_slashing::recent(&view, None, 100).unwrap();
    let kinds: Vec<&str> = slashes
        .iter()
        .rev()
        .map(|s| s.infraction.as_str())
        .collect();
    assert_eq!(
        kinds,
        vec!["double_sign", "downtime", "double_sign", "downtime"],
        "{slashes:?}"
    );

    // Every minted coin is accounted for.
    let minted = kiln_bank::state::total_minted_readonly(&view)
        .unwrap()
        .iter()
        .find(|c| c.denom == BASE_DENOM)
        .map_or(0, |c| c.amount);
    assert_eq!(minted, t.minted);
    assert_eq!(
        t.minted,
        t.host_rewards + t.community,
        "minted = hosts + community pool"
    );
    assert_eq!(
        t.host_rewards,
        t.commission + t.own_parts + t.delegators_parts
    );
    let balance = |name: &str| sim.d.balance(&Address::module(name));
    assert_eq!(balance(kiln_rewards::COMMUNITY_POOL_ACCOUNT), t.community);
    assert_eq!(balance(kiln_rewards::EMISSION_ACCOUNT), 0);
    let distribution = balance(kiln_staking::pools::DISTRIBUTION_ACCOUNT);
    assert_eq!(t.delegators_parts, t.withdrawn + distribution);
    let mut pending = 0u128;
    for (delegator, host) in &sim.delegations {
        pending += view.pending_rewards(host, delegator).unwrap();
    }
    let dust = distribution - pending;
    let bound = (sim.delegations.len() as u128 + HOSTS as u128) * u128::from(EPOCHS);
    println!(
        "minted {minted}; community {}; hosts {}; delegators {} (withdrawn {}, pending {pending}, dust {dust} ≤ {bound}); slashed {}",
        t.community, t.host_rewards, t.delegators_parts, t.withdrawn, t.slashed
    );
    assert!(dust <= bound, "rounding dust {dust} above {bound}");
    // Burned = the slashes' burns; supply = genesis + minted − burned.
    let burned = kiln_bank::state::total_burned_readonly(&view)
        .unwrap()
        .iter()
        .find(|c| c.denom == BASE_DENOM)
        .map_or(0, |c| c.amount);
    assert_eq!(burned, t.slashed);
    assert!(t.slashed > 0);
    let supply = kiln_bank::state::BankExt::supply_of(&view, BASE_DENOM).unwrap();
    assert_eq!(supply, genesis_supply + minted - burned);
}
