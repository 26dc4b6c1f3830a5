//! Issue 9 item 5 through the real tx pipeline: six genesis hosts whose hot
//! keys send every sprint message through `MsgExec`, committees of
//! `1 + ⌈log₃ 6⌉ = 3` members (so the escalation reaches hosts outside the
//! committee), and the SPEC §11 invariants (supply = genesis − burned, bond
//! escrow = recorded bonds, consensus power = weights) checked every block.

use std::collections::BTreeMap;

use cosmos_sdk_proto::Any;
use kiln_epochs::{EpochParams, Stage};
use kiln_framework::Address;
use kiln_sprint::msgs::{MsgSprintVoteCommit, MsgSprintVoteReveal};
use kiln_sprint::state::EpochResult;
use kiln_sprint_protocol::vote::vote_commitment;
use kiln_testkit::{any_of, msg_exec, sign_tx, BlockDriver, TestKey};

const CHAIN: &str = "kiln-sprint-escalation";
const SAMPLES: u32 = 16;
const FUNDS: u128 = 1_000_000_000;
const BOND: u64 = 1_000_000;

struct Host {
    key: TestKey,
    hot: TestKey,
    leaves: Vec<(u64, u32)>,
}

fn hosts(counts: &[u64]) -> Vec<Host> {
    counts
        .iter()
        .enumerate()
        .map(|(i, count)| Host {
            key: TestKey::from_label(&format!("esc-host-{i}")),
            hot: TestKey::from_label(&format!("esc-host-{i}-hot")),
            leaves: (0..*count)
                .map(|j| (j * 16 + i as u64, 12_000 + ((j * 7) % 1_400) as u32))
                .collect(),
        })
        .collect()
}

/// `weights[i]` is host i's genesis weight; `funds[i]` its account balance.
fn genesis(
    hosts: &[Host],
    weights: &[u64],
    funds: &[u128],
    sprint: kiln_sprint::SprintParams,
) -> serde_json::Value {
    let mut g = kiln_genesis::AppGenesis::default();
    g.epochs.params = EpochParams::devnet();
    g.sprint.params = sprint;
    g.reputation.params = kiln_reputation::ReputationParams::devnet();
    for (i, h) in hosts.iter().enumerate() {
        if funds[i] > 0 {
            g.add_balance(
                h.key.address,
                vec![kiln_framework::Coin::new("ukiln", funds[i])],
            );
        }
        g.add_balance(
            h.hot.address,
            vec![kiln_framework::Coin::new("ukiln", FUNDS)],
        );
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.key.address,
            worker_url: format!("http://esc{i}.example:8080"),
            consensus_pubkey: hex::encode([i as u8 + 40; 32]),
            models: vec![],
            hardware: "test".into(),
            weight: weights[i],
        });
        g.add_ml_ops_grants(h.key.address, h.hot.address);
    }
    serde_json::to_value(g).unwrap()
}

fn sprint_params() -> kiln_sprint::SprintParams {
    kiln_sprint::SprintParams {
        sprint_samples: SAMPLES,
        sprint_committee: 1,
        commit_bond: BOND,
        ..kiln_sprint::SprintParams::devnet()
    }
}

/// One tx from `h`'s hot key carrying `msgs` through MsgExec.
fn exec(d: &BlockDriver, h: &Host, msgs: Vec<Any>) -> Vec<u8> {
    let mut opts = d.opts_for(&h.hot);
    opts.gas_limit = 5_000_000;
    opts.fee = 150_000;
    sign_tx(&h.hot, vec![msg_exec(&h.hot.address, msgs)], &opts)
}

fn deliver(
    d: &mut BlockDriver,
    txs: Vec<Vec<u8>>,
) -> Vec<tendermint_proto::v0_38::abci::ExecTxResult> {
    let out = d.deliver(txs).unwrap();
    d.check_invariants().unwrap();
    out.response.tx_results
}

fn until(d: &mut BlockDriver, stage: Stage) {
    let height = EpochParams::devnet().stage_height(1, 1, stage);
    while d.height + 1 < height {
        deliver(d, vec![]);
    }
}

fn all_ok(r: &[tendermint_proto::v0_38::abci::ExecTxResult]) {
    assert!(
        r.iter().all(|r| r.code == 0),
        "{:?}",
        r.iter().map(|r| &r.log).collect::<Vec<_>>()
    );
}

fn commit_msg(h: &Host) -> Any {
    any_of(&kiln_testkit::sprint::commit_msg(
        &h.key.address,
        1,
        &h.leaves,
    ))
}

/// In the secret-reveal stage, every host in `hosts` reveals its secret
/// (without it a host gets no weight and cannot open).
fn reveal_secrets(d: &mut BlockDriver, hosts: &[Host]) {
    until(d, Stage::SecretReveal);
    let txs = hosts
        .iter()
        .map(|h| {
            exec(
                d,
                h,
                vec![any_of(&kiln_testkit::sprint::reveal_msg(&h.key.address, 1))],
            )
        })
        .collect();
    all_ok(&deliver(d, txs));
}

fn open_msg(d: &BlockDriver, h: &Host) -> Any {
    any_of(&kiln_testkit::sprint::open_msg(
        &d.app.latest_view(),
        &h.key.address,
        1,
        &h.leaves,
        SAMPLES,
    ))
}

fn salt(voter: usize, host: &Address, round: &str) -> Vec<u8> {
    format!("{round}-{voter}-{host}").into_bytes()
}

/// Commits then (in the next stage) reveals one vote per (voter, host) pair
/// `vote` answers for, in the committee round or the escalation round.
fn vote_round(
    d: &mut BlockDriver,
    hosts: &[Host],
    pairs: &[(usize, Address)],
    vote: &dyn Fn(usize, &Address) -> bool,
    (commit_stage, reveal_stage): (Stage, Stage),
) {
    let round = if commit_stage == Stage::VoteCommit {
        "committee"
    } else {
        "escalation"
    };
    until(d, commit_stage);
    let mut by_voter: BTreeMap<usize, Vec<Any>> = BTreeMap::new();
    for (v, host) in pairs {
        by_voter
            .entry(*v)
            .or_default()
            .push(any_of(&MsgSprintVoteCommit {
                voter: hosts[*v].key.address.to_bech32(),
                epoch: 1,
                host: host.to_bech32(),
                commitment: vote_commitment(
                    CHAIN,
                    1,
                    host.as_bytes(),
                    hosts[*v].key.address.as_bytes(),
                    vote(*v, host),
                    &salt(*v, host, round),
                )
                .to_vec(),
            }));
    }
    let txs = by_voter
        .into_iter()
        .map(|(v, m)| exec(d, &hosts[v], m))
        .collect();
    all_ok(&deliver(d, txs));
    until(d, reveal_stage);
    let mut by_voter: BTreeMap<usize, Vec<Any>> = BTreeMap::new();
    for (v, host) in pairs {
        by_voter
            .entry(*v)
            .or_default()
            .push(any_of(&MsgSprintVoteReveal {
                voter: hosts[*v].key.address.to_bech32(),
                epoch: 1,
                host: host.to_bech32(),
                valid: vote(*v, host),
                salt: salt(*v, host, round),
            }));
    }
    let txs = by_voter
        .into_iter()
        .map(|(v, m)| exec(d, &hosts[v], m))
        .collect();
    all_ok(&deliver(d, txs));
}

fn result(d: &BlockDriver, h: &Host) -> EpochResult {
    kiln_sprint::state::result(&d.app.latest_view(), 1, &h.key.address)
        .unwrap()
        .unwrap()
}

fn supply(d: &BlockDriver) -> u128 {
    kiln_bank::state::total_supply_readonly(&d.app.latest_view())
        .unwrap()
        .iter()
        .find(|c| c.denom == "ukiln")
        .unwrap()
        .amount
}

/// Host 3 commits and never opens. Once committees are drawn, roles are
/// picked from them: an honest host H gets an `invalid` vote from a
/// slanderer S on its committee; a fabricator F gets a `valid` vote from an
/// accomplice A on its committee while its other members vote `invalid`;
/// everyone else is honest.
#[test]
fn an_invalid_vote_escalates_the_host_and_the_all_weight_tally_decides() {
    let hosts = hosts(&[300, 400, 350, 320, 310, 330]);
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(&hosts, &[100; 6], &[FUNDS; 6], sprint_params());
    let mut d = BlockDriver::open(dir.path(), CHAIN, &g, 0).unwrap();
    let unopened = 3usize;
    let supply_at_genesis = supply(&d);
    // Commits lock one bond each from the host accounts (not the hot keys).
    let txs = hosts
        .iter()
        .map(|h| exec(&d, h, vec![commit_msg(h)]))
        .collect();
    all_ok(&deliver(&mut d, txs));
    let escrow = Address::module(kiln_sprint::keys::BOND_ESCROW);
    assert_eq!(d.balance(&escrow), 6 * u128::from(BOND));
    assert_eq!(d.balance(&hosts[0].key.address), FUNDS - u128::from(BOND));
    // A second commitment in the epoch locks nothing more.
    let again = exec(&d, &hosts[0], vec![commit_msg(&hosts[0])]);
    all_ok(&deliver(&mut d, vec![again]));
    assert_eq!(d.balance(&escrow), 6 * u128::from(BOND));

    reveal_secrets(&mut d, &hosts);
    until(&mut d, Stage::Open);
    let txs = hosts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != unopened)
        .map(|(_, h)| exec(&d, h, vec![open_msg(&d, h)]))
        .collect();
    all_ok(&deliver(&mut d, txs));

    // Committee round: 3 of the other 5 hosts each (1 + ⌈log₃ 5⌉).
    until(&mut d, Stage::VoteCommit);
    let view = d.app.latest_view();
    let mut pairs = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        if i == unopened {
            continue;
        }
        let committee = kiln_sprint::handler::committee_of(&view, 1, &h.key.address).unwrap();
        assert_eq!(committee.len(), 3, "committee of host {i}");
        for m in committee {
            let v = hosts.iter().position(|x| x.key.address == m).unwrap();
            pairs.push((v, h.key.address));
        }
    }
    let member_of = |v: usize, host: usize| pairs.contains(&(v, hosts[host].key.address));
    let opened: Vec<usize> = (0..hosts.len()).filter(|i| *i != unopened).collect();
    let (honest, slanderer) = opened
        .iter()
        .flat_map(|h| (0..hosts.len()).map(move |v| (*h, v)))
        .find(|(h, v)| *v != unopened && member_of(*v, *h))
        .unwrap();
    let (fabricator, accomplice) = opened
        .iter()
        .filter(|f| ![honest, slanderer].contains(f))
        .flat_map(|f| (0..hosts.len()).map(move |v| (*f, v)))
        .find(|(f, v)| ![slanderer, unopened, honest].contains(v) && member_of(*v, *f))
        .unwrap();
    println!(
        "honest {honest}, slanderer {slanderer}, fabricator {fabricator}, accomplice {accomplice}"
    );
    let addr = |i: usize| hosts[i].key.address;
    let committee_vote = |v: usize, host: &Address| {
        if *host == addr(fabricator) {
            v == accomplice
        } else {
            !(v == slanderer && *host == addr(honest))
        }
    };
    vote_round(
        &mut d,
        &hosts,
        &pairs,
        &committee_vote,
        (Stage::VoteCommit, Stage::VoteReveal),
    );

    // Both hosts with an `invalid` vote are escalated, nobody else.
    let view = d.app.latest_view();
    let escalated = kiln_sprint::state::escalated_hosts(&view, 1).unwrap();
    let fabricator_escalated = escalated.contains(&addr(fabricator));
    assert!(escalated.contains(&addr(honest)));
    assert!(
        fabricator_escalated,
        "an honest member voted invalid on the fabricator"
    );

    // Escalation: every host with weight judges, committee or not.
    until(&mut d, Stage::EscalationCommit);
    let view = d.app.latest_view();
    let duties: kiln_sprint::query::Duties = serde_json::from_slice(
        &kiln_sprint::query::route(
            &view,
            kiln_sprint::query::DUTIES_PATH,
            format!(r#"{{"epoch":1,"address":"{}"}}"#, addr(unopened)).as_bytes(),
        )
        .unwrap()
        .unwrap(),
    )
    .unwrap();
    let judged: Vec<Address> = duties.escalations.iter().map(|e| e.host).collect();
    assert_eq!(
        judged, escalated,
        "Duties lists the escalated hosts to judge"
    );
    // A host may not vote in its own escalation, nor on a host not escalated.
    let own = exec(
        &d,
        &hosts[honest],
        vec![any_of(&MsgSprintVoteCommit {
            voter: addr(honest).to_bech32(),
            epoch: 1,
            host: addr(honest).to_bech32(),
            commitment: vec![0; 32],
        })],
    );
    let calm = opened
        .iter()
        .copied()
        .find(|i| !escalated.contains(&addr(*i)))
        .unwrap();
    let not_escalated = exec(
        &d,
        &hosts[unopened],
        vec![any_of(&MsgSprintVoteCommit {
            voter: addr(unopened).to_bech32(),
            epoch: 1,
            host: addr(calm).to_bech32(),
            commitment: vec![0; 32],
        })],
    );
    let r = deliver(&mut d, vec![own, not_escalated]);
    assert_eq!(
        (r[0].codespace.as_str(), r[0].code),
        ("sprint", 26),
        "{}",
        r[0].log
    );
    assert_eq!(
        (r[1].codespace.as_str(), r[1].code),
        ("sprint", 24),
        "{}",
        r[1].log
    );

    let mut pairs = Vec::new();
    for host in &escalated {
        for (v, h) in hosts.iter().enumerate() {
            if h.key.address != *host {
                pairs.push((v, *host));
            }
        }
    }
    // Same opinions as in the committee round: the slanderer and the
    // accomplice are outvoted by the honest weight.
    vote_round(
        &mut d,
        &hosts,
        &pairs,
        &committee_vote,
        (Stage::EscalationCommit, Stage::EscalationReveal),
    );
    until(&mut d, Stage::Settle);
    deliver(&mut d, vec![]);

    let view = d.app.latest_view();
    let weights = kiln_staking::StakingExt::weights_in_force(&view).unwrap();
    let ok = result(&d, &hosts[honest]);
    assert!(ok.accepted && ok.escalated, "{ok:?}");
    assert_eq!(
        ok.escalation_revealed_weight, 500,
        "five other hosts of weight 100 revealed"
    );
    assert_eq!(ok.escalation_valid_weight, 400);
    let fake = result(&d, &hosts[fabricator]);
    assert!(
        !fake.accepted && fake.escalated && fake.reason == "rejected",
        "{fake:?}"
    );
    assert_eq!(weights.get(&addr(fabricator)), None);
    assert!(
        kiln_store::StateRead::get_raw(&view, &kiln_staking::keys::weight(&addr(fabricator)))
            .unwrap()
            .is_none(),
        "a zero weight is deleted, not stored"
    );
    assert!(weights.contains_key(&addr(honest)));
    assert_eq!(result(&d, &hosts[unopened]).reason, "unopened");

    // Bonds: returned to the accepted (which is also paid its reward),
    // burned for the rejected and the unopened.
    let reward = kiln_rewards::epoch_reward(&view, 1, &addr(honest)).unwrap();
    assert!(reward > 0, "the accepted host is rewarded");
    assert_eq!(
        d.balance(&addr(honest)),
        FUNDS + reward,
        "accepted host gets its bond back"
    );
    assert_eq!(d.balance(&addr(fabricator)), FUNDS - u128::from(BOND));
    assert_eq!(d.balance(&addr(unopened)), FUNDS - u128::from(BOND));
    assert_eq!((fake.bond_burned, ok.bond_returned), (BOND, BOND));
    assert_eq!(d.balance(&escrow), 0);
    let minted: u128 = kiln_bank::state::total_minted_readonly(&view)
        .unwrap()
        .iter()
        .map(|c| c.amount)
        .sum();
    assert_eq!(
        supply(&d),
        supply_at_genesis - 2 * u128::from(BOND) + minted,
        "burned bonds leave the supply (the epoch's emission joins it)"
    );

    // Reputation: the slanderer (overturned) and the accomplice (vouched for
    // a rejected host) are reset like a rejected host; honest voters gained.
    let rep = |i: usize| kiln_reputation::good_epochs(&view, &addr(i)).unwrap();
    assert_eq!(rep(slanderer), 0);
    assert_eq!(rep(accomplice), 0);
    assert_eq!(rep(fabricator), 0);
    assert_eq!(rep(unopened), 0);
    assert_eq!(rep(honest), 1);
    for i in 0..hosts.len() {
        if ![honest, slanderer, fabricator, accomplice, unopened].contains(&i) {
            assert_eq!(rep(i), 1, "uninvolved host {i} gained a good epoch");
        }
    }
}

#[test]
fn a_host_that_cannot_pay_the_bond_cannot_commit() {
    let hosts = hosts(&[100, 100]);
    let dir = tempfile::tempdir().unwrap();
    let g = genesis(
        &hosts,
        &[100, 100],
        &[FUNDS, u128::from(BOND) - 1],
        sprint_params(),
    );
    let mut d = BlockDriver::open(dir.path(), CHAIN, &g, 0).unwrap();
    let commit = exec(&d, &hosts[1], vec![commit_msg(&hosts[1])]);
    let r = deliver(&mut d, vec![commit]);
    assert_eq!(
        (r[0].codespace.as_str(), r[0].code),
        ("sprint", 23),
        "{}",
        r[0].log
    );
    assert!(r[0].log.contains("fund the host account"), "{}", r[0].log);
    assert!(
        kiln_sprint::state::commitment(&d.app.latest_view(), 1, &hosts[1].key.address)
            .unwrap()
            .is_none()
    );
    assert_eq!(d.balance(&hosts[1].key.address), u128::from(BOND) - 1);
}

/// A host with weight 100 claims 10 000 shares; with growth 2× and a new-host
/// allowance of 50 it may reach 250, whatever its committee says.
#[test]
fn the_growth_cap_limits_a_jump_in_weight() {
    let hosts = hosts(&[10_000, 150]);
    let dir = tempfile::tempdir().unwrap();
    let params = kiln_sprint::SprintParams {
        sprint_committee: 8,
        max_weight_growth_bps: 20_000,
        new_host_weight_cap: 50,
        ..sprint_params()
    };
    let g = genesis(&hosts, &[100, 100], &[FUNDS, FUNDS], params);
    let mut d = BlockDriver::open(dir.path(), CHAIN, &g, 0).unwrap();
    let txs = hosts
        .iter()
        .map(|h| exec(&d, h, vec![commit_msg(h)]))
        .collect();
    all_ok(&deliver(&mut d, txs));
    reveal_secrets(&mut d, &hosts);
    until(&mut d, Stage::Open);
    let txs = hosts
        .iter()
        .map(|h| exec(&d, h, vec![open_msg(&d, h)]))
        .collect();
    all_ok(&deliver(&mut d, txs));
    let pairs = vec![(1, hosts[0].key.address), (0, hosts[1].key.address)];
    vote_round(
        &mut d,
        &hosts,
        &pairs,
        &|_, _| true,
        (Stage::VoteCommit, Stage::VoteReveal),
    );
    until(&mut d, Stage::Settle);
    deliver(&mut d, vec![]);
    let big = result(&d, &hosts[0]);
    assert!(big.accepted, "{big:?}");
    assert_eq!((big.claimed_count, big.raw_weight), (10_000, 250));
    assert_eq!(
        result(&d, &hosts[1]).raw_weight,
        150,
        "a claim under the cap is kept"
    );
    let weights = kiln_staking::StakingExt::weights_in_force(&d.app.latest_view()).unwrap();
    assert_eq!(weights[&hosts[0].key.address], 250);
}

/// Issue 9 item 10, "bound the work per block": at most
/// `max_hosts_per_epoch` hosts commit per epoch. Two hosts with weight hold
/// reserved places, so a limit of 3 leaves one place for a new host: the
/// first new host takes it, the second is refused with a clear error (and
/// pays no bond), and the hosts with weight still commit after the epoch is
/// full.
#[test]
fn a_full_epoch_refuses_new_hosts_and_keeps_places_for_hosts_with_weight() {
    let hosts = hosts(&[100, 100, 100, 100]);
    let dir = tempfile::tempdir().unwrap();
    let params = kiln_sprint::SprintParams {
        max_hosts_per_epoch: 3,
        ..sprint_params()
    };
    let g = genesis(&hosts, &[100, 100, 0, 0], &[FUNDS; 4], params);
    let mut d = BlockDriver::open(dir.path(), CHAIN, &g, 0).unwrap();
    let committed = |d: &BlockDriver, i: usize| {
        kiln_sprint::state::commitment(&d.app.latest_view(), 1, &hosts[i].key.address)
            .unwrap()
            .is_some()
    };
    // The first new host takes the one free place.
    let tx = exec(&d, &hosts[2], vec![commit_msg(&hosts[2])]);
    let r = deliver(&mut d, vec![tx]);
    all_ok(&r);
    // The second new host finds the epoch full.
    let tx = exec(&d, &hosts[3], vec![commit_msg(&hosts[3])]);
    let r = deliver(&mut d, vec![tx]);
    assert_eq!(
        (r[0].codespace.as_str(), r[0].code),
        ("sprint", 35),
        "{}",
        r[0].log
    );
    assert!(
        r[0].log.contains("epoch 1 is full") && r[0].log.contains("2 places are reserved"),
        "{}",
        r[0].log
    );
    assert!(!committed(&d, 3));
    assert_eq!(d.balance(&hosts[3].key.address), FUNDS, "no bond taken");
    // Hosts with weight keep their places, and a new host already admitted
    // may commit again (a later root replaces the earlier one).
    let txs = vec![
        exec(&d, &hosts[0], vec![commit_msg(&hosts[0])]),
        exec(&d, &hosts[1], vec![commit_msg(&hosts[1])]),
    ];
    let r = deliver(&mut d, txs);
    all_ok(&r);
    let tx = exec(&d, &hosts[2], vec![commit_msg(&hosts[2])]);
    let r = deliver(&mut d, vec![tx]);
    all_ok(&r);
    assert!((0..3).all(|i| committed(&d, i)));
    let tx = exec(&d, &hosts[3], vec![commit_msg(&hosts[3])]);
    let r = deliver(&mut d, vec![tx]);
    assert_eq!(r[0].code, 35, "{}", r[0].log);
}
