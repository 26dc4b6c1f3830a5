//! Issue 14, "Governance", through the real tx pipeline and FinalizeBlock,
//! with SPEC §11's invariants after every block (the governance account
//! holds exactly the open proposals' deposits):
//! - a parameter change (slashing and the epoch schedule), a community
//!   pool spend and a model registration and retirement pass by the
//!   hosts' weight; the spend and the registry act when voting ends, the
//!   params take effect at the next epoch start (the schedule re-anchored
//!   there: epoch 2 keeps its number and runs under the new length), the
//!   deposit comes back;
//! - a vetoed proposal's deposit is burned;
//! - a proposal below quorum is rejected and every depositor refunded; so
//!   is one whose deposit period ends below the minimum;
//! - a passed proposal with one failing message changes nothing and
//!   records which message failed and why;
//! - bad input is refused with a reason: messages not signed by the
//!   governance authority, invalid params, a vote by a non-host, a vote
//!   outside the voting period, weights not summing to 1, and a
//!   governance-only message sent directly.

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgCommunityPoolSpend;
use cosmos_sdk_proto::cosmos::gov::v1::{
    MsgDeposit, MsgSubmitProposal, MsgVote, MsgVoteWeighted, WeightedVoteOption,
};
use cosmos_sdk_proto::Any;
use kiln_framework::params::{gov_authority, MsgUpdateParams};
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_testkit::{any_of, msg_send, sign_tx, BlockDriver, TestKey};
use prost::Message;
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{ExecTxResult, RequestQuery};

const CHAIN: &str = "kiln-gov";
const KILN: u128 = 1_000_000;
/// The devnet's minimum deposit.
const MIN_DEPOSIT: u128 = 10 * KILN;

struct Net {
    d: BlockDriver,
    hosts: Vec<TestKey>,
    alice: TestKey,
    _dir: tempfile::TempDir,
}

/// Three genesis hosts with weights 50, 30 and 20, and alice (no host).
fn net(label: &str) -> Net {
    let hosts: Vec<TestKey> = (0..3)
        .map(|i| TestKey::from_label(&format!("{label}-host-{i}")))
        .collect();
    let alice = TestKey::from_label(&format!("{label}-alice"));
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    for (i, (h, weight)) in hosts.iter().zip([50u64, 30, 20]).enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 100 * KILN)]);
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://host{i}.test:8080"),
            consensus_pubkey: hex::encode([i as u8 + 1; 32]),
            models: vec![],
            hardware: "test".into(),
            weight,
        });
    }
    g.add_balance(alice.address, vec![Coin::new(BASE_DENOM, 100 * KILN)]);
    let dir = tempfile::tempdir().unwrap();
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    d.deliver(vec![]).unwrap();
    Net {
        d,
        hosts,
        alice,
        _dir: dir,
    }
}

fn ukiln(amount: u128) -> Vec<ProtoCoin> {
    vec![ProtoCoin {
        denom: BASE_DENOM.into(),
        amount: amount.to_string(),
    }]
}

fn update_params(type_url: &str, authority: &Address, params: &Value) -> Any {
    Any {
        type_url: type_url.into(),
        value: MsgUpdateParams {
            authority: authority.to_bech32(),
            params: params.to_string(),
        }
        .encode_to_vec(),
    }
}

fn submit(proposer: &TestKey, messages: Vec<Any>, deposit: u128) -> Any {
    any_of(&MsgSubmitProposal {
        messages,
        initial_deposit: ukiln(deposit),
        proposer: proposer.address.to_bech32(),
        metadata: String::new(),
        title: "test proposal".into(),
        summary: "what it changes".into(),
        expedited: false,
    })
}

fn vote(voter: &TestKey, id: u64, option: i32) -> Any {
    any_of(&MsgVote {
        proposal_id: id,
        voter: voter.address.to_bech32(),
        option,
        metadata: String::new(),
    })
}

impl Net {
    fn send(&mut self, key: &TestKey, msg: Any) -> ExecTxResult {
        let tx = sign_tx(key, vec![msg], &self.d.opts_for(key));
        let out = self.d.deliver(vec![tx]).unwrap();
        self.d.check_invariants().unwrap();
        out.response.tx_results[0].clone()
    }

    fn ok(&mut self, key: &TestKey, msg: Any) -> ExecTxResult {
        let r = self.send(key, msg);
        assert_eq!(r.code, 0, "{}", r.log);
        r
    }

    fn refused(&mut self, key: &TestKey, msg: Any, reason: &str) {
        let r = self.send(key, msg);
        assert_ne!(r.code, 0, "accepted; expected a refusal about {reason:?}");
        assert!(
            r.log.contains(reason),
            "{:?} does not mention {reason:?}",
            r.log
        );
    }

    /// Submits and returns the new proposal's id.
    fn propose(&mut self, key: &TestKey, messages: Vec<Any>, deposit: u128) -> u64 {
        let r = self.ok(&key.clone(), submit(key, messages, deposit));
        r.events
            .iter()
            .find(|e| e.r#type == "submit_proposal")
            .and_then(|e| e.attributes.iter().find(|a| a.key == "proposal_id"))
            .map(|a| a.value.parse().unwrap())
            .expect("submit_proposal event with the id")
    }

    fn query(&self, path: &str, data: &str) -> Value {
        let r = self.d.app.query(RequestQuery {
            path: path.into(),
            data: data.as_bytes().to_vec().into(),
            height: 0,
            prove: false,
        });
        assert_eq!(r.code, 0, "{path} {data}: {}", r.log);
        serde_json::from_slice(&r.value).unwrap()
    }

    fn proposal(&self, id: u64) -> Value {
        self.query(kiln_gov::PROPOSAL_PATH, &id.to_string())
    }

    fn params(&self, module: &str) -> Value {
        self.query("/kiln.app.v1.Query/Params", module)
    }

    fn empty_blocks_until(&mut self, height: u64) {
        while self.d.height < height {
            self.d.deliver(vec![]).unwrap();
            self.d.check_invariants().unwrap();
        }
    }

    fn until_voting_ends(&mut self, id: u64) {
        let end = self.proposal(id)["voting_end_height"].as_u64().unwrap();
        self.empty_blocks_until(end);
        assert_ne!(self.proposal(id)["status"], "voting_period");
    }

    fn burned(&self) -> u128 {
        kiln_bank::state::total_burned_readonly(&self.d.app.latest_view())
            .unwrap()
            .into_iter()
            .find(|c| c.denom == BASE_DENOM)
            .map_or(0, |c| c.amount)
    }
}

#[test]
fn passed_changes_take_effect_params_at_the_next_epoch_start() {
    let mut n = net("gov-pass");
    let gov = gov_authority();
    let (h0, h1) = (n.hosts[0].clone(), n.hosts[1].clone());
    let alice = n.alice.clone();

    // The community pool holds what was sent to it.
    let pool = Address::module(kiln_rewards::COMMUNITY_POOL_ACCOUNT);
    n.ok(&alice, msg_send(&alice.address, &pool, 7 * KILN));

    let mut slashing = n.params("slashing")["params"].clone();
    assert_eq!(slashing["downtime_bps"], 1000);
    slashing["downtime_bps"] = 1500.into();
    let mut epochs = n.params("epochs")["params"].clone();
    let old_length = epochs["epoch_length"].as_u64().unwrap();
    epochs["epoch_length"] = (old_length + 10).into();
    let new_model = serde_json::json!({
        "id": "tiny-test-model",
        "gguf_sha256": "11".repeat(32),
        "tokenizer_sha256": "22".repeat(32),
        "price_floor_pkiln": 5,
    });
    let messages = vec![
        update_params("/kiln.slashing.v1.MsgUpdateParams", &gov, &slashing),
        update_params("/kiln.epochs.v1.MsgUpdateParams", &gov, &epochs),
        any_of(&MsgCommunityPoolSpend {
            authority: gov.to_bech32(),
            recipient: alice.address.to_bech32(),
            amount: ukiln(3 * KILN),
        }),
        any_of(&kiln_inference::registry::MsgRegisterModel {
            authority: gov.to_bech32(),
            model: new_model.to_string(),
        }),
        any_of(&kiln_inference::registry::MsgRetireModel {
            authority: gov.to_bech32(),
            model_id: "smollm2-135m".into(),
        }),
    ];
    let before = n.d.balance(&h0.address);
    let id = n.propose(&h0, messages, MIN_DEPOSIT);
    let p = n.proposal(id);
    assert_eq!(p["status"], "voting_period", "{p}");
    assert_eq!(p["messages"][0]["params"]["downtime_bps"], 1500, "{p}");

    // 50 + 30 of 100 vote yes.
    n.ok(&h0, vote(&h0, id, 1));
    n.ok(&h1, vote(&h1, id, 1));
    let tally = n.query(kiln_gov::TALLY_PATH, &id.to_string());
    assert_eq!(tally["tally"]["yes"], "80", "{tally}");
    assert_eq!(tally["would_be"], "pass");

    let alice_before = n.d.balance(&alice.address);
    n.until_voting_ends(id);
    let p = n.proposal(id);
    assert_eq!(p["status"], "passed", "{p}");
    assert_eq!(p["final_tally"]["yes"], "80");
    // The deposit is back; only fees were spent.
    let fees = before - n.d.balance(&h0.address);
    assert!(
        fees < KILN,
        "h0 lost {fees} ukiln: the deposit did not come back"
    );
    // The spend and the registry act at once.
    assert_eq!(n.d.balance(&alice.address), alice_before + 3 * KILN);
    let models = n.query(kiln_inference::query::MODELS_PATH, "");
    let models = models.as_array().unwrap();
    let by_id = |id: &str| models.iter().find(|m| m["id"] == id).unwrap().clone();
    assert!(by_id("tiny-test-model")["retired_height"].is_null());
    assert!(by_id("smollm2-135m")["retired_height"].is_u64());
    // The params wait for the next epoch.
    let now = n.params("slashing");
    assert_eq!(now["params"]["downtime_bps"], 1000);
    assert_eq!(now["pending"]["downtime_bps"], 1500);

    let epoch2 = old_length + 1;
    n.empty_blocks_until(epoch2 - 1);
    assert_eq!(n.params("slashing")["params"]["downtime_bps"], 1000);
    n.empty_blocks_until(epoch2);
    let now = n.params("slashing");
    assert_eq!(now["params"]["downtime_bps"], 1500, "{now}");
    assert!(now["pending"].is_null());
    let epoch = n.query("/kiln.epochs.v1.Query/Epoch", "");
    assert_eq!(epoch["epoch"], 2, "{epoch}");
    assert_eq!(epoch["start_height"], epoch2);
    assert_eq!(epoch["first_epoch"], 2);
    assert_eq!(epoch["params"]["epoch_length"], old_length + 10);
    // Epoch 2 is 10 blocks longer: epoch 3 starts at epoch2 + old + 10.
    n.empty_blocks_until(epoch2 + old_length + 9);
    assert_eq!(n.query("/kiln.epochs.v1.Query/Epoch", "")["epoch"], 2);
    n.empty_blocks_until(epoch2 + old_length + 10);
    let epoch = n.query("/kiln.epochs.v1.Query/Epoch", "");
    assert_eq!(epoch["epoch"], 3, "{epoch}");
    assert_eq!(epoch["stage"], "sprint");
}

#[test]
fn a_vetoed_proposal_burns_its_deposit() {
    let mut n = net("gov-veto");
    let (h0, h1, h2) = (n.hosts[0].clone(), n.hosts[1].clone(), n.hosts[2].clone());
    let id = n.propose(&h0, vec![], MIN_DEPOSIT + 1);
    n.ok(&h0, vote(&h0, id, 1));
    // 30 + 20 = half of the votes say no-with-veto: at least 33.4%.
    n.ok(&h1, vote(&h1, id, 4));
    n.ok(&h2, vote(&h2, id, 4));
    let burned = n.burned();
    let before = n.d.balance(&h0.address);
    n.until_voting_ends(id);
    let p = n.proposal(id);
    assert_eq!(p["status"], "rejected", "{p}");
    assert_eq!(p["deposits_burned"], true);
    assert!(p["reason"].as_str().unwrap().contains("vetoed"), "{p}");
    assert_eq!(n.burned(), burned + MIN_DEPOSIT + 1);
    assert_eq!(
        n.d.balance(&h0.address),
        before,
        "a vetoed deposit is not refunded"
    );
}

#[test]
fn below_quorum_or_without_the_deposit_a_proposal_fails_and_refunds() {
    let mut n = net("gov-quorum");
    let (h0, h2) = (n.hosts[0].clone(), n.hosts[2].clone());
    let alice = n.alice.clone();
    // Half the deposit: the proposal waits.
    let id = n.propose(&h0, vec![], MIN_DEPOSIT / 2);
    assert_eq!(n.proposal(id)["status"], "deposit_period");
    n.refused(&h0, vote(&h0, id, 1), "not being voted on");
    // alice brings the rest: voting starts.
    let (h0_before, alice_before) = (n.d.balance(&h0.address), n.d.balance(&alice.address));
    let r = n.ok(
        &alice,
        any_of(&MsgDeposit {
            proposal_id: id,
            depositor: alice.address.to_bech32(),
            amount: ukiln(MIN_DEPOSIT / 2),
        }),
    );
    let fee = alice_before - MIN_DEPOSIT / 2 - n.d.balance(&alice.address);
    assert!(r
        .events
        .iter()
        .any(|e| e.r#type == "kiln.gov.v1.EventVotingStarted"));
    assert_eq!(n.proposal(id)["status"], "voting_period");
    // Only 20 of 100 vote: under the 33.4% quorum.
    n.ok(&h2, vote(&h2, id, 1));
    let burned = n.burned();
    n.until_voting_ends(id);
    let p = n.proposal(id);
    assert_eq!(p["status"], "rejected", "{p}");
    assert!(p["reason"].as_str().unwrap().contains("no quorum"), "{p}");
    assert_eq!(n.burned(), burned, "nothing burned");
    assert_eq!(n.d.balance(&h0.address), h0_before + MIN_DEPOSIT / 2);
    assert_eq!(n.d.balance(&alice.address), alice_before - fee);

    // A deposit that never reaches the minimum: rejected when the
    // deposit period ends, refunded.
    let before = n.d.balance(&alice.address);
    let id = n.propose(&alice, vec![], KILN);
    let fee = before - KILN - n.d.balance(&alice.address);
    let end = n.proposal(id)["deposit_end_height"].as_u64().unwrap();
    n.empty_blocks_until(end);
    let p = n.proposal(id);
    assert_eq!(p["status"], "rejected", "{p}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("deposit period ended"),
        "{p}"
    );
    assert_eq!(n.d.balance(&alice.address), before - fee);
}

#[test]
fn a_passed_proposal_with_one_failing_message_changes_nothing_and_says_why() {
    let mut n = net("gov-atomic");
    let gov = gov_authority();
    let (h0, h1) = (n.hosts[0].clone(), n.hosts[1].clone());
    let alice = n.alice.clone();
    let mut slashing = n.params("slashing")["params"].clone();
    slashing["downtime_bps"] = 1234.into();
    // The first message alone would succeed; the second spends more than
    // the (empty) community pool holds.
    let messages = vec![
        update_params("/kiln.slashing.v1.MsgUpdateParams", &gov, &slashing),
        any_of(&MsgCommunityPoolSpend {
            authority: gov.to_bech32(),
            recipient: alice.address.to_bech32(),
            amount: ukiln(1_000 * KILN),
        }),
    ];
    let id = n.propose(&h0, messages, MIN_DEPOSIT);
    n.ok(&h0, vote(&h0, id, 1));
    n.ok(&h1, vote(&h1, id, 1));
    let alice_before = n.d.balance(&alice.address);
    n.until_voting_ends(id);
    let p = n.proposal(id);
    assert_eq!(p["status"], "failed", "{p}");
    let reason = p["reason"].as_str().unwrap();
    assert!(
        reason.contains("message 1") && reason.contains("community pool"),
        "{reason}"
    );
    // Nothing of it applied: no scheduled params, no payment.
    assert!(n.params("slashing")["pending"].is_null());
    assert_eq!(n.d.balance(&alice.address), alice_before);
}

#[test]
fn bad_proposals_and_votes_are_refused_with_reasons() {
    let mut n = net("gov-bad");
    let gov = gov_authority();
    let (h0, h1) = (n.hosts[0].clone(), n.hosts[1].clone());
    let alice = n.alice.clone();
    let slashing = n.params("slashing")["params"].clone();

    // A message that does not act as the governance authority.
    n.refused(
        &h0,
        submit(
            &h0,
            vec![update_params(
                "/kiln.slashing.v1.MsgUpdateParams",
                &alice.address,
                &slashing,
            )],
            MIN_DEPOSIT,
        ),
        "only governance",
    );
    n.refused(
        &h0,
        submit(
            &h0,
            vec![msg_send(&h0.address, &alice.address, 1)],
            MIN_DEPOSIT,
        ),
        "cannot be proposed",
    );
    // Not even a send from the governance account: it holds the deposits.
    n.refused(
        &h0,
        submit(&h0, vec![msg_send(&gov, &alice.address, 1)], MIN_DEPOSIT),
        "cannot be proposed",
    );
    // Invalid params.
    let mut bad = slashing.clone();
    bad["invalid_bps"] = 10_000.into();
    n.refused(
        &h0,
        submit(
            &h0,
            vec![update_params(
                "/kiln.slashing.v1.MsgUpdateParams",
                &gov,
                &bad,
            )],
            MIN_DEPOSIT,
        ),
        "must be below 10000",
    );
    let mut unknown = slashing.clone();
    unknown["no_such_field"] = 1.into();
    n.refused(
        &h0,
        submit(
            &h0,
            vec![update_params(
                "/kiln.slashing.v1.MsgUpdateParams",
                &gov,
                &unknown,
            )],
            MIN_DEPOSIT,
        ),
        "unknown field",
    );
    // A proposal inside a proposal.
    n.refused(
        &h0,
        submit(&h0, vec![submit(&h0, vec![], MIN_DEPOSIT)], MIN_DEPOSIT),
        "cannot be proposed",
    );
    // A governance-only message sent directly: nobody holds the
    // governance authority's key, so its signature cannot be checked.
    let direct = sign_tx(
        &h0,
        vec![update_params(
            "/kiln.slashing.v1.MsgUpdateParams",
            &gov,
            &slashing,
        )],
        &n.d.opts_for(&h0),
    );
    let r = n.d.deliver(vec![direct]).unwrap().response.tx_results[0].clone();
    assert_ne!(r.code, 0, "a direct MsgUpdateParams was accepted");

    let id = n.propose(&h0, vec![], MIN_DEPOSIT);
    // alice is no host: she has no voting power.
    n.refused(&alice, vote(&alice, id, 1), "not a registered host");
    n.refused(&h0, vote(&h0, id + 7, 1), "no proposal");
    n.refused(&h0, vote(&h0, id, 9), "unknown vote option");
    let weighted = |options: Vec<(i32, &str)>| {
        any_of(&MsgVoteWeighted {
            proposal_id: id,
            voter: h1.address.to_bech32(),
            options: options
                .into_iter()
                .map(|(option, weight)| WeightedVoteOption {
                    option,
                    weight: weight.into(),
                })
                .collect(),
            metadata: String::new(),
        })
    };
    n.refused(&h1, weighted(vec![(1, "0.5"), (3, "0.4")]), "sum to 1");
    n.refused(&h1, weighted(vec![(1, "0.5"), (1, "0.5")]), "appears twice");
    // cosmjs sends weights as 18-decimal atomics.
    n.ok(&h1, weighted(vec![(1, "600000000000000000"), (3, "0.4")]));
    let votes = n.query(kiln_gov::VOTES_PATH, &id.to_string());
    assert_eq!(votes[0]["options"][0]["option"], "yes", "{votes}");
    let tally = n.query(kiln_gov::TALLY_PATH, &id.to_string());
    assert_eq!(tally["tally"]["yes"], "18", "{tally}");
    assert_eq!(tally["tally"]["no"], "12", "{tally}");
    // Queries refuse nonsense too.
    let r = n.d.app.query(RequestQuery {
        path: kiln_gov::PROPOSAL_PATH.into(),
        data: b"seven".to_vec().into(),
        height: 0,
        prove: false,
    });
    assert_ne!(r.code, 0);
    assert!(r.log.contains("not a proposal id"), "{}", r.log);
}

/// cosmjs's `gas: "auto"` simulates with an empty fee and multiplies by
/// 1.3: the estimate must include moving the fee the delivered tx pays.
#[test]
fn a_fee_less_simulation_of_a_vote_covers_the_delivered_gas() {
    let mut n = net("gov-simulate");
    let h0 = n.hosts[0].clone();
    let id = n.propose(&h0, vec![], MIN_DEPOSIT);
    let mut free = n.d.opts_for(&h0);
    free.fee = 0;
    let simulated =
        n.d.app
            .simulate(&sign_tx(&h0, vec![vote(&h0, id, 1)], &free))
            .unwrap();
    assert_eq!(simulated.code, 0, "{}", simulated.log);
    let delivered = n.ok(&h0, vote(&h0, id, 1));
    assert!(
        simulated.gas_used >= delivered.gas_used as u64,
        "simulated {} < delivered {}",
        simulated.gas_used,
        delivered.gas_used
    );
}
