//! Freezes the state layout: a fixed scenario that crosses every module
//! through one whole epoch, settle included, must produce this exact app hash.
//! If a change makes this fail, it is state-breaking — update the constant in
//! the same commit, say so in the commit message and in the README.
//!
//! The scenario: bank sends, an authz grant used through `MsgExec`, a genesis
//! host (alice) and a host registered by transaction (bob), ML-ops grants to
//! both hosts' hot keys, sprint commits, secret reveals and openings sent by
//! the hot keys,
//! alice's commit-reveal votes on both openings, the settle (raw weights →
//! power cap → weights in force and validator updates → reputation), and two
//! more blocks so CometBFT's H+2 validator set takes over; then a
//! governance proposal with its deposit and a weighted vote.

use kiln_epochs::Stage;
use kiln_framework::Address;
use kiln_sprint::msgs::{vote_commitment, MsgSprintVoteCommit, MsgSprintVoteReveal};
use kiln_testkit::sprint::{commit_msg, open_msg, reveal_msg};
use kiln_testkit::{any_of, msg_exec, msg_grant, msg_send, sign_tx, BlockDriver, TestKey};

const PINNED: &str = "c68313e0bd39f8f84c4cba0b2d6068010af834ecc5ec9543f8262ba7dfff07b9";
const CHAIN: &str = "kiln-pinned";

/// `count` share leaves (nonce, d_q) with strictly increasing nonces.
fn leaves(count: u64, seed: u64) -> Vec<(u64, u32)> {
    (0..count)
        .map(|i| (i * 16 + seed, 12_000 + ((i * 7 + seed) % 1_400) as u32))
        .collect()
}

fn deliver_ok(d: &mut BlockDriver, txs: Vec<Vec<u8>>) {
    let out = d.deliver(txs).unwrap();
    for r in &out.response.tx_results {
        assert_eq!(r.code, 0, "{}", r.log);
    }
    d.check_invariants().unwrap();
}

fn blocks_until(d: &mut BlockDriver, height: u64) {
    while d.height + 1 < height {
        deliver_ok(d, vec![]);
    }
}

/// `hot` sends `msgs` through `MsgExec`, fee-free (its host's ML-ops allowance).
fn exec(d: &BlockDriver, hot: &TestKey, msgs: Vec<cosmos_sdk_proto::Any>) -> Vec<u8> {
    let mut opts = d.opts_for(hot);
    opts.gas_limit = 3_000_000;
    opts.fee = 0;
    sign_tx(hot, vec![msg_exec(&hot.address, msgs)], &opts)
}

#[test]
fn fixed_scenario_produces_the_pinned_app_hash() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("pinned-alice");
    let alice_hot = TestKey::from_label("pinned-alice-hot");
    let bob = TestKey::from_label("pinned-bob");
    let bob_hot = TestKey::from_label("pinned-bob-hot");
    let mut g = kiln_genesis::AppGenesis::default();
    for k in [&alice, &bob] {
        g.add_balance(
            k.address,
            vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
        );
    }
    g.epochs.params = kiln_epochs::EpochParams::devnet();
    g.sprint.params = kiln_sprint::SprintParams::devnet();
    g.reputation.params = kiln_reputation::ReputationParams::devnet();
    g.gov.params = kiln_gov::GovParams::devnet();
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: alice.address,
        worker_url: "http://alice.example:8547".into(),
        consensus_pubkey: hex::encode([1u8; 32]),
        models: vec!["smollm2-135m".into()],
        hardware: "cpu".into(),
        weight: 10,
    });
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    let at = |stage| kiln_epochs::EpochParams::devnet().stage_height(1, 1, stage);

    // Block 1: a send, a MsgSend grant, bob's registration, both ML-ops grants.
    let o = d.opts_for(&alice);
    let mut alice_msgs = vec![
        msg_send(&alice.address, &bob.address, 12_345),
        msg_grant(
            &alice.address,
            &bob.address,
            kiln_bank::handler::MSG_SEND_TYPE_URL,
            None,
        ),
    ];
    alice_msgs.extend(
        kiln_messages::ml_ops_type_urls()
            .iter()
            .map(|url| msg_grant(&alice.address, &alice_hot.address, url, None)),
    );
    let mut o_big = o.clone();
    o_big.gas_limit = 2_000_000;
    o_big.fee = 50_000;
    let alice_tx = sign_tx(&alice, alice_msgs, &o_big);
    let bob_consensus = kiln_testkit::ConsensusTestKey::from_label("pinned-bob");
    let mut bob_msgs = vec![any_of(&kiln_hosts::msgs::MsgRegisterHost {
        owner: bob.address.to_bech32(),
        worker_url: "http://bob.example:8547".into(),
        consensus_pubkey: bob_consensus.public.to_vec(),
        models: vec!["smollm2-135m".into()],
        hardware: "cpu".into(),
        consensus_key_proof: bob_consensus.proof(CHAIN, &bob.address),
    })];
    // A self-bond: without one (or weight) bob's hot key gets no fee-free
    // allowance.
    bob_msgs.push(any_of(&kiln_staking::msgs::MsgBond {
        host: bob.address.to_bech32(),
        amount: "1000".into(),
    }));
    bob_msgs.extend(
        kiln_messages::ml_ops_type_urls()
            .iter()
            .map(|url| msg_grant(&bob.address, &bob_hot.address, url, None)),
    );
    let mut ob = d.opts_for(&bob);
    ob.gas_limit = 2_000_000;
    ob.fee = 50_000;
    let bob_tx = sign_tx(&bob, bob_msgs, &ob);
    deliver_ok(&mut d, vec![alice_tx, bob_tx]);

    // Block 2: bob spends alice's coins through his MsgSend grant; both hosts commit.
    // (host, its hot key, its share leaves)
    let host_leaves = vec![
        (alice.clone(), alice_hot.clone(), leaves(40, 1)),
        (bob.clone(), bob_hot.clone(), leaves(30, 2)),
    ];
    let ob = d.opts_for(&bob);
    let mut txs = vec![sign_tx(
        &bob,
        vec![msg_exec(
            &bob.address,
            vec![msg_send(&alice.address, &bob.address, 55)],
        )],
        &ob,
    )];
    for (host, hot, l) in &host_leaves {
        txs.push(exec(
            &d,
            hot,
            vec![any_of(&commit_msg(&host.address, 1, l))],
        ));
    }
    deliver_ok(&mut d, txs);

    // Secret reveal: both hosts reveal the secrets behind their commitments.
    blocks_until(&mut d, at(Stage::SecretReveal));
    let txs = host_leaves
        .iter()
        .map(|(host, hot, _)| exec(&d, hot, vec![any_of(&reveal_msg(&host.address, 1))]))
        .collect();
    deliver_ok(&mut d, txs);

    // Open: both hosts open their challenged leaves (each with its neighbour).
    blocks_until(&mut d, at(Stage::Open));
    let samples = kiln_sprint::SprintParams::devnet().sprint_samples;
    let mut txs = Vec::new();
    for (host, hot, l) in &host_leaves {
        let msg = open_msg(&d.app.latest_view(), &host.address, 1, l, samples);
        txs.push(exec(&d, hot, vec![any_of(&msg)]));
    }
    deliver_ok(&mut d, txs);

    // Votes: alice, the only host with weight, is on both committees.
    let hosts: Vec<Address> = host_leaves.iter().map(|(h, _, _)| h.address).collect();
    blocks_until(&mut d, at(Stage::VoteCommit));
    let salt = |h: &Address| format!("pinned-salt-{h}").into_bytes();
    let commits = hosts
        .iter()
        .map(|h| {
            any_of(&MsgSprintVoteCommit {
                voter: alice.address.to_bech32(),
                epoch: 1,
                host: h.to_bech32(),
                commitment: vote_commitment(
                    CHAIN,
                    1,
                    h.as_bytes(),
                    alice.address.as_bytes(),
                    true,
                    &salt(h),
                )
                .to_vec(),
            })
        })
        .collect();
    let tx = exec(&d, &alice_hot, commits);
    deliver_ok(&mut d, vec![tx]);
    blocks_until(&mut d, at(Stage::VoteReveal));
    let reveals = hosts
        .iter()
        .map(|h| {
            any_of(&MsgSprintVoteReveal {
                voter: alice.address.to_bech32(),
                epoch: 1,
                host: h.to_bech32(),
                valid: true,
                salt: salt(h),
            })
        })
        .collect();
    let tx = exec(&d, &alice_hot, reveals);
    deliver_ok(&mut d, vec![tx]);

    // Settle, then two blocks for CometBFT's H+2.
    blocks_until(&mut d, at(Stage::Settle) + 3);
    let weights = kiln_staking::StakingExt::weights_in_force(&d.app.latest_view()).unwrap();
    assert_eq!(weights.get(&alice.address), Some(&40));
    assert_eq!(weights.get(&bob.address), Some(&30));
    assert_eq!(d.validators.len(), 2, "bob joined the validator set");
    assert!(
        kiln_reputation::reputation(&d.app.latest_view(), &bob.address).unwrap() > 0,
        "an accepted epoch raises reputation"
    );
    // Governance: a proposal (a gov params change) with its deposit, in
    // its voting period, and alice's weighted vote.
    let gov = kiln_framework::params::gov_authority();
    let mut gov_params = kiln_gov::GovParams::devnet();
    gov_params.voting_period_blocks = 30;
    let update = cosmos_sdk_proto::Any {
        type_url: "/kiln.gov.v1.MsgUpdateParams".into(),
        value: prost::Message::encode_to_vec(&kiln_framework::params::MsgUpdateParams {
            authority: gov.to_bech32(),
            params: serde_json::to_string(&gov_params).unwrap(),
        }),
    };
    let submit = any_of(&cosmos_sdk_proto::cosmos::gov::v1::MsgSubmitProposal {
        messages: vec![update],
        initial_deposit: vec![cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
            denom: "ukiln".into(),
            amount: "10000000".into(),
        }],
        proposer: alice.address.to_bech32(),
        metadata: "ipfs://pinned".into(),
        title: "Longer votes".into(),
        summary: "30 blocks".into(),
        expedited: false,
    });
    let mut o = d.opts_for(&alice);
    o.gas_limit = 1_000_000;
    o.fee = 25_000;
    deliver_ok(&mut d, vec![sign_tx(&alice, vec![submit], &o)]);
    let vote = any_of(&cosmos_sdk_proto::cosmos::gov::v1::MsgVoteWeighted {
        proposal_id: 1,
        voter: alice.address.to_bech32(),
        options: vec![
            cosmos_sdk_proto::cosmos::gov::v1::WeightedVoteOption {
                option: 1,
                weight: "0.75".into(),
            },
            cosmos_sdk_proto::cosmos::gov::v1::WeightedVoteOption {
                option: 2,
                weight: "0.25".into(),
            },
        ],
        metadata: String::new(),
    });
    let o = d.opts_for(&alice);
    deliver_ok(&mut d, vec![sign_tx(&alice, vec![vote], &o)]);

    // Every key belongs to exactly one module's prefix.
    let state = kiln_store::StateRead::prefix_raw(&d.app.latest_view(), b"").unwrap();
    assert!(state.len() > 40, "the scenario wrote {} keys", state.len());
    for (key, _) in &state {
        let owners: Vec<&str> = kiln_app::components::KEY_PREFIXES
            .iter()
            .filter(|(_, p)| key.starts_with(p))
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "key {:?} is owned by {owners:?}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(
        hex::encode(&d.last_app_hash),
        PINNED,
        "state layout changed: this is a state-breaking change"
    );
}

#[test]
fn module_key_prefixes_are_disjoint() {
    let prefixes = kiln_app::components::KEY_PREFIXES;
    for (i, (a, pa)) in prefixes.iter().enumerate() {
        for (b, pb) in &prefixes[i + 1..] {
            assert!(
                !pa.starts_with(pb) && !pb.starts_with(pa),
                "{a} and {b} overlap"
            );
        }
    }
}
