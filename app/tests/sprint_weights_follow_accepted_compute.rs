//! Chain side of the sprint (issue 4), driven through the real tx pipeline:
//! seven genesis hosts whose ML-ops hot keys send every sprint message through
//! `MsgExec`. Hosts commit Merkle roots over share leaves (simulated compute:
//! the leaves are built with the protocol crate, not by a transformer) with
//! a secret hash, reveal their secrets, open the challenged leaves (each
//! with its neighbour) with proofs, and validate each other by commit-reveal
//! votes that follow the spec's binomial verdict.
//!
//! Checked: accepted hosts get weight = share count (capped at 25% of the
//! total), a host fabricating 10% of its shares is voted invalid (weight 0,
//! reputation reset), a host that does not open gets 0, a reveal that differs
//! from its commitment is refused, a tree that counts a nonce twice cannot be
//! opened, and the SPEC §11 invariants (testkit `check_invariants`: supply,
//! consensus power = effective weights, power cap) hold every block.

use std::collections::BTreeMap;

use kiln_framework::Address;
use kiln_sprint::msgs::{
    vote_commitment, MsgSprintCommit, MsgSprintOpen, MsgSprintVoteCommit, MsgSprintVoteReveal,
};
use kiln_sprint_protocol::verdict;
use kiln_testkit::sprint::{commit_msg, host_challenge, opened_leaves, reveal_msg};
use kiln_testkit::{any_of, msg_exec, sign_tx, BlockDriver, TestKey};
use prost::Message;

const CHAIN: &str = "kiln-sprint-scenario";
const SAMPLES: u32 = 200;

struct Host {
    key: TestKey,
    hot: TestKey,
    /// (nonce, d_q, fabricated)
    leaves: Vec<(u64, u32, bool)>,
}

impl Host {
    /// The committed leaves `(nonce, d_q)`.
    fn shares(&self) -> Vec<(u64, u32)> {
        self.leaves.iter().map(|(n, d, _)| (*n, *d)).collect()
    }
}

/// `count` shares with strictly increasing nonces; every `fabricate_every`-th one is fabricated.
fn leaves(count: u64, seed: u64, fabricate_every: Option<u64>) -> Vec<(u64, u32, bool)> {
    (0..count)
        .map(|i| {
            (
                i * 16 + (seed % 16),
                12_000 + ((i * 7 + seed) % 1_400) as u32,
                fabricate_every.is_some_and(|k| i % k == 0),
            )
        })
        .collect()
}

fn genesis(hosts: &[Host]) -> serde_json::Value {
    let mut g = kiln_genesis::AppGenesis::default();
    g.epochs.params = kiln_epochs::EpochParams::devnet();
    g.sprint.params = kiln_sprint::SprintParams {
        sprint_samples: SAMPLES,
        ..kiln_sprint::SprintParams::devnet()
    };
    g.reputation.params = kiln_reputation::ReputationParams::devnet();
    for (i, h) in hosts.iter().enumerate() {
        g.add_balance(
            h.key.address,
            vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
        );
        g.add_balance(
            h.hot.address,
            vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
        );
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.key.address,
            worker_url: format!("http://host{i}.example:8080"),
            consensus_pubkey: hex::encode([i as u8 + 1; 32]),
            models: vec![],
            hardware: "test".into(),
            weight: 100,
        });
        g.add_ml_ops_grants(h.key.address, h.hot.address);
    }
    serde_json::to_value(g).unwrap()
}

/// The hot key sends `msg` on behalf of its host through MsgExec.
fn exec(d: &BlockDriver, h: &Host, msg: prost_types_any::Any) -> Vec<u8> {
    let mut opts = d.opts_for(&h.hot);
    opts.gas_limit = 2_000_000;
    opts.fee = 50_000;
    sign_tx(&h.hot, vec![msg_exec(&h.hot.address, vec![msg])], &opts)
}

mod prost_types_any {
    pub use cosmos_sdk_proto::Any;
}

fn deliver_all(
    d: &mut BlockDriver,
    txs: Vec<Vec<u8>>,
) -> Vec<tendermint_proto::v0_38::abci::ExecTxResult> {
    let out = d.deliver(txs).unwrap();
    // SPEC §11, every block: supply, consensus power = weights, power cap.
    d.check_invariants().unwrap();
    out.response.tx_results
}

/// Empty blocks (invariants checked after each) until the next block is `height`.
fn empty_blocks_until(d: &mut BlockDriver, height: u64) {
    while d.height + 1 < height {
        deliver_all(d, vec![]);
    }
}

#[test]
fn weights_follow_accepted_compute_and_cheaters_get_nothing() {
    let hosts: Vec<Host> = (0..7)
        .map(|i| {
            let key = TestKey::from_label(&format!("host-{i}"));
            let hot = TestKey::from_label(&format!("host-{i}-hot"));
            let leaves = match i {
                0 => leaves(4_000, 0, None), // big host: must be capped
                1 => leaves(1_500, 1, None),
                2 => leaves(1_000, 2, None),
                3 => leaves(800, 3, Some(10)), // fabricates 10% of its shares
                4 => leaves(600, 4, None),     // will not open
                5 => leaves(700, 5, None),
                _ => leaves(500, 6, None),
            };
            Host { key, hot, leaves }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(&hosts);
    let mut d = BlockDriver::open(dir.path(), CHAIN, &g, 0).unwrap();
    let params = kiln_epochs::EpochParams::devnet();
    let at = |stage| params.stage_height(1, 1, stage);

    // Sprint: every host commits (height 1).
    let txs = hosts
        .iter()
        .map(|h| exec(&d, h, any_of(&commit_msg(&h.key.address, 1, &h.shares()))))
        .collect();
    assert!(deliver_all(&mut d, txs).iter().all(|r| r.code == 0));

    // Secret reveal: every host reveals the secret behind its commitment.
    empty_blocks_until(&mut d, at(kiln_epochs::Stage::SecretReveal));
    let txs = hosts
        .iter()
        .map(|h| exec(&d, h, any_of(&reveal_msg(&h.key.address, 1))))
        .collect();
    let r = deliver_all(&mut d, txs);
    assert!(
        r.iter().all(|r| r.code == 0),
        "{:?}",
        r.iter().map(|r| &r.log).collect::<Vec<_>>()
    );

    // A commit after the deadline is refused.
    empty_blocks_until(&mut d, at(kiln_epochs::Stage::Challenge));
    let late = exec(
        &d,
        &hosts[0],
        any_of(&MsgSprintCommit {
            host: hosts[0].key.address.to_bech32(),
            ml_node: String::new(),
            epoch: 1,
            root: vec![0; 32],
            count: 1,
            secret_hash: vec![0; 32],
        }),
    );
    let r = deliver_all(&mut d, vec![late]);
    assert_ne!(r[0].code, 0);
    assert!(r[0].log.contains("deadline"), "{}", r[0].log);
    empty_blocks_until(&mut d, at(kiln_epochs::Stage::Open));

    // Open: everyone but host 4 opens the challenged leaves, each with its neighbour.
    let mut opened: BTreeMap<Address, Vec<(u64, u32, bool)>> = BTreeMap::new();
    let mut txs = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        if i == 4 {
            continue;
        }
        let challenge = host_challenge(&d.app.latest_view(), 1, &h.key.address);
        let leaves = opened_leaves(&h.shares(), &challenge, SAMPLES);
        // Validators recompute each distinct opened leaf once.
        let distinct: BTreeMap<u64, (u64, u32, bool)> = leaves
            .iter()
            .map(|l| (l.index, h.leaves[l.index as usize]))
            .collect();
        opened.insert(h.key.address, distinct.into_values().collect());
        // A wrong proof is refused first (tampered sibling).
        if i == 0 {
            let mut bad = leaves.clone();
            bad[0].proof[0][0] ^= 1;
            let tx = exec(
                &d,
                h,
                any_of(&MsgSprintOpen {
                    host: h.key.address.to_bech32(),
                    ml_node: String::new(),
                    epoch: 1,
                    leaves: bad,
                }),
            );
            let r = deliver_all(&mut d, vec![tx]);
            assert_eq!(r[0].codespace, "sprint", "{}", r[0].log);
        }
        txs.push(exec(
            &d,
            h,
            any_of(&MsgSprintOpen {
                host: h.key.address.to_bech32(),
                ml_node: String::new(),
                epoch: 1,
                leaves,
            }),
        ));
    }
    let r = deliver_all(&mut d, txs);
    assert!(
        r.iter().all(|r| r.code == 0),
        "{:?}",
        r.iter().map(|r| &r.log).collect::<Vec<_>>()
    );

    // Vote commit: every validator (all hosts with weight, committee = all) votes on every opened host,
    // deciding by the spec's verdict: invalid when mismatches ≥ critical count.
    empty_blocks_until(&mut d, at(kiln_epochs::Stage::VoteCommit));
    let critical = verdict::critical_count(SAMPLES, verdict::P0_DEFAULT, verdict::ALPHA_DEFAULT)
        .unwrap()
        .unwrap();
    let mut votes: BTreeMap<(usize, Address), (bool, Vec<u8>)> = BTreeMap::new();
    let mut pending: Vec<Vec<Vec<u8>>> = vec![Vec::new(); hosts.len()];
    for (v, validator) in hosts.iter().enumerate() {
        for (host, leaves) in &opened {
            if *host == validator.key.address {
                continue;
            }
            let mismatches = leaves
                .iter()
                .filter(|(_, _, fabricated)| *fabricated)
                .count() as u32;
            let valid = mismatches < critical;
            let salt = format!("salt-{v}-{host}").into_bytes();
            let msg = MsgSprintVoteCommit {
                voter: validator.key.address.to_bech32(),
                epoch: 1,
                host: host.to_bech32(),
                commitment: vote_commitment(
                    CHAIN,
                    1,
                    host.as_bytes(),
                    validator.key.address.as_bytes(),
                    valid,
                    &salt,
                )
                .to_vec(),
            };
            votes.insert((v, *host), (valid, salt));
            pending[v].push(any_of(&msg).encode_to_vec());
        }
    }
    // One MsgExec per validator carrying all its vote commits.
    let txs: Vec<Vec<u8>> = hosts
        .iter()
        .enumerate()
        .map(|(v, h)| {
            let msgs = pending[v]
                .iter()
                .map(|b| cosmos_sdk_proto::Any {
                    type_url: "/kiln.sprint.v1.MsgSprintVoteCommit".into(),
                    value: MsgSprintVoteCommit::decode(
                        cosmos_sdk_proto::Any::decode(b.as_slice())
                            .unwrap()
                            .value
                            .as_slice(),
                    )
                    .unwrap()
                    .encode_to_vec(),
                })
                .collect();
            let mut opts = d.opts_for(&h.hot);
            opts.gas_limit = 5_000_000;
            opts.fee = 150_000;
            sign_tx(&h.hot, vec![msg_exec(&h.hot.address, msgs)], &opts)
        })
        .collect();
    let r = deliver_all(&mut d, txs);
    assert!(
        r.iter().all(|r| r.code == 0),
        "{:?}",
        r.iter().map(|r| &r.log).collect::<Vec<_>>()
    );

    // Reveal: validator 5 tries to reveal a vote different from its commitment: refused.
    empty_blocks_until(&mut d, at(kiln_epochs::Stage::VoteReveal));
    let target = hosts[1].key.address;
    let (valid, salt) = votes[&(5, target)].clone();
    let flipped = exec(
        &d,
        &hosts[5],
        any_of(&MsgSprintVoteReveal {
            voter: hosts[5].key.address.to_bech32(),
            epoch: 1,
            host: target.to_bech32(),
            valid: !valid,
            salt: salt.clone(),
        }),
    );
    let r = deliver_all(&mut d, vec![flipped]);
    assert_eq!(
        (r[0].codespace.as_str(), r[0].code),
        ("sprint", 21),
        "{}",
        r[0].log
    );
    let txs: Vec<Vec<u8>> = hosts
        .iter()
        .enumerate()
        .map(|(v, h)| {
            let msgs: Vec<_> = votes
                .iter()
                .filter(|((vv, _), _)| *vv == v)
                .map(|((_, host), (valid, salt))| {
                    any_of(&MsgSprintVoteReveal {
                        voter: h.key.address.to_bech32(),
                        epoch: 1,
                        host: host.to_bech32(),
                        valid: *valid,
                        salt: salt.clone(),
                    })
                })
                .collect();
            let mut opts = d.opts_for(&h.hot);
            opts.gas_limit = 5_000_000;
            opts.fee = 150_000;
            sign_tx(&h.hot, vec![msg_exec(&h.hot.address, msgs)], &opts)
        })
        .collect();
    let r = deliver_all(&mut d, txs);
    assert!(
        r.iter().all(|r| r.code == 0),
        "{:?}",
        r.iter().map(|r| &r.log).collect::<Vec<_>>()
    );

    // Settle.
    let mut power_updates = Vec::new();
    while d.height < at(kiln_epochs::Stage::Settle) {
        let out = d.deliver(vec![]).unwrap();
        d.check_invariants().unwrap();
        power_updates.extend(out.response.validator_updates);
    }
    let view = d.app.latest_view();
    let weights = kiln_staking::StakingExt::weights_in_force(&view).unwrap();
    let w = |i: usize| weights.get(&hosts[i].key.address).copied().unwrap_or(0);
    assert_eq!(w(3), 0, "the fabricating host must get no weight");
    assert_eq!(w(4), 0, "the host that did not open must get no weight");
    let accepted_raw: u64 = [4_000u64, 1_500, 1_000, 700, 500].iter().sum();
    let total: u64 = weights.values().sum();
    assert_eq!(
        total, accepted_raw,
        "the cap redistributes, it does not destroy weight"
    );
    assert_eq!(
        w(0),
        accepted_raw * 2_500 / 10_000,
        "the big host is capped at 25%"
    );
    // Uncapped hosts keep proportions (within rounding).
    // a/b ≈ num/den within 1%, in integers: |a·den − b·num| ≤ b·num/100.
    let close = |a: usize, b: usize, num: u64, den: u64| {
        (w(a) * den).abs_diff(w(b) * num) * 100 <= w(b) * num
    };
    assert!(
        weights
            .values()
            .all(|v| *v <= accepted_raw * 2_500 / 10_000),
        "{weights:?}"
    );
    assert!(
        close(2, 5, 1_000, 700) && close(5, 6, 700, 500),
        "{weights:?}"
    );
    // Consensus power follows: the settle block's validator updates equal the effective weights.
    let powers: BTreeMap<Vec<u8>, i64> = power_updates
        .iter()
        .map(|u| match &u.pub_key.as_ref().unwrap().sum {
            Some(tendermint_proto::v0_38::crypto::public_key::Sum::Ed25519(k)) => {
                (k.to_vec(), u.power)
            }
            _ => panic!("not ed25519"),
        })
        .collect();
    let power_total: i64 = powers.values().sum();
    assert_eq!(power_total as u64, total);
    assert_eq!(powers[&vec![4u8; 32]], 0, "host 3 removed from consensus");
    // Reputation: accepted hosts gained, rejected and unopened were reset.
    assert!(kiln_reputation::reputation(&view, &hosts[0].key.address).unwrap() > 0);
    assert_eq!(
        kiln_reputation::reputation(&view, &hosts[3].key.address).unwrap(),
        0
    );
    assert_eq!(
        kiln_reputation::reputation(&view, &hosts[4].key.address).unwrap(),
        0
    );
}

#[test]
fn a_tree_that_counts_a_nonce_twice_cannot_be_opened() {
    let key = TestKey::from_label("dup-host");
    let hot = TestKey::from_label("dup-host-hot");
    // Every leaf repeats nonce 7: any two opened leaves expose it.
    let host = Host {
        key,
        hot,
        leaves: (0..50).map(|i| (7, 12_000 + i, false)).collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &genesis(std::slice::from_ref(&host)), 0).unwrap();
    let params = kiln_epochs::EpochParams::devnet();
    let commit = exec(
        &d,
        &host,
        any_of(&commit_msg(&host.key.address, 1, &host.shares())),
    );
    assert_eq!(deliver_all(&mut d, vec![commit])[0].code, 0);
    empty_blocks_until(
        &mut d,
        params.stage_height(1, 1, kiln_epochs::Stage::SecretReveal),
    );
    let reveal = exec(&d, &host, any_of(&reveal_msg(&host.key.address, 1)));
    assert_eq!(deliver_all(&mut d, vec![reveal])[0].code, 0);
    empty_blocks_until(&mut d, params.stage_height(1, 1, kiln_epochs::Stage::Open));
    let challenge = host_challenge(&d.app.latest_view(), 1, &host.key.address);
    let leaves = opened_leaves(&host.shares(), &challenge, SAMPLES);
    let open = exec(
        &d,
        &host,
        any_of(&MsgSprintOpen {
            host: host.key.address.to_bech32(),
            ml_node: String::new(),
            epoch: 1,
            leaves,
        }),
    );
    let r = deliver_all(&mut d, vec![open]);
    assert_eq!(
        (r[0].codespace.as_str(), r[0].code),
        ("sprint", 15),
        "{}",
        r[0].log
    );
}
