//! Issue 12, "Validation" (chain side), through the real pipeline with SPEC
//! §11's invariants after every block: the model's hosts post replay scores
//! for finished inferences; a score below the threshold opens a dispute the
//! hosts vote by weight; an upheld dispute takes the executor's pay back to
//! the requester and counts an invalidation; enough invalidations (the SPRT
//! or the streak) make the executor INVALID, and it leaves the draw. A
//! dispute without a majority is rejected at its deadline. Bad validations
//! and votes are refused with their codes.

mod inference_net;

use inference_net::{assert_refused, net_with, Net, MODEL};
use kiln_framework::Address;
use kiln_inference::handler::codes;
use kiln_inference::msgs::{MsgDisputeVote, MsgValidation};
use kiln_inference::query;
use kiln_testkit::inference::finish_msg;
use kiln_testkit::{any_of, TestKey};
use serde_json::Value;

/// Weights 10, 20, 30, 40: the executor under test is the weight-10 host,
/// so the eligible weight of its disputes is 90 (a side needs > 45).
fn market() -> Net {
    net_with(&[10, 20, 30, 40])
}

/// Starts and finishes an inference drawn to `executor`; its id.
fn finished_by(n: &mut Net, executor: Address, tag: &str) -> [u8; 32] {
    let requester = n.requester.clone();
    let ta = n.hosts[3].clone();
    for i in 0..400 {
        let (r, drawn) = n.request(&requester, ta.address, &format!("{tag} {i}"), 10);
        if drawn != executor {
            continue;
        }
        let res = n.block(vec![
            n.tx(&ta, vec![any_of(&r.start_msg(5, drawn, n.d.height))])
        ]);
        assert_eq!(res[0].code, 0, "{}", res[0].log);
        let key = n.host(executor).clone();
        let res = n.block(vec![
            n.tx(&key, vec![any_of(&finish_msg(executor, r.id(), 5, b"x"))])
        ]);
        assert_eq!(res[0].code, 0, "{}", res[0].log);
        return r.id();
    }
    panic!("{executor} was never drawn");
}

fn validate(n: &mut Net, validator: &TestKey, id: [u8; 32], score_micro: u64) -> (u32, String) {
    let msg = MsgValidation {
        validator: validator.address.to_bech32(),
        id: id.to_vec(),
        score_micro,
    };
    let res = n.block(vec![n.tx(validator, vec![any_of(&msg)])]);
    (res[0].code, res[0].log.clone())
}

fn vote(n: &mut Net, voter: &TestKey, id: [u8; 32], invalid: bool) -> (u32, String) {
    let msg = MsgDisputeVote {
        voter: voter.address.to_bech32(),
        id: id.to_vec(),
        invalid,
    };
    let res = n.block(vec![n.tx(voter, vec![any_of(&msg)])]);
    (res[0].code, res[0].log.clone())
}

fn stats(n: &Net, host: Address) -> Value {
    n.query(query::HOST_STATS_PATH, &host.to_bech32()).1
}

#[test]
fn upheld_disputes_refund_the_requester_and_three_make_the_executor_invalid() {
    let mut n = market();
    n.block(vec![]);
    let h = n.hosts.clone();
    let cheater = h[0].address;

    // A passing validation counts for the executor.
    let id = finished_by(&mut n, cheater, "ok");
    assert_eq!(validate(&mut n, &h[3], id, 999_000).0, 0);
    assert_eq!(stats(&n, cheater)["epoch_validated"], 1);
    assert_eq!(n.record(id)["status"], "finished");

    // Three low scores, each upheld by a second invalid vote (40 + 20 > 45).
    for round in 0..3 {
        let id = finished_by(&mut n, cheater, &format!("bad {round}"));
        let requester_before = n.d.balance(&n.requester.address);
        let executor_before = n.d.balance(&cheater);
        let paid: u128 = n.record(id)["paid"].as_str().unwrap().parse().unwrap();
        assert_eq!(paid, 10, "(5 + 5) tokens at 1 ukiln");
        assert_eq!(validate(&mut n, &h[3], id, 500_000).0, 0);
        let (code, log) = vote(&mut n, &h[1], id, true);
        assert_eq!(code, 0, "{log}");
        let rec = n.record(id);
        assert_eq!(rec["status"], "invalidated", "round {round}: {rec}");
        assert_eq!(rec["paid"], "0");
        assert_eq!(rec["refunded"], rec["escrow"]);
        assert_eq!(n.d.balance(&n.requester.address), requester_before + paid);
        assert_eq!(n.d.balance(&cheater), executor_before - paid);
        // The dispute is closed: a late vote finds none.
        assert_refused(
            &vote_result(&mut n, &h[2], id),
            codes::NO_DISPUTE,
            "no open dispute",
        );
        let s = stats(&n, cheater);
        assert_eq!(s["epoch_invalidated"], round + 1);
        // One passed validation and two upheld disputes are not yet enough
        // evidence (SPRT); the third is.
        assert_eq!(s["invalid"], round == 2, "round {round}: {s}");
    }
    // INVALID: out of the serving set's draws from now on.
    let (_, set, _) = n.query(query::EXECUTORS_PATH, MODEL);
    let entry = set["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["host"] == cheater.to_bech32())
        .unwrap()
        .clone();
    assert!(entry["dead_since"].is_u64(), "{set}");
    let requester = n.requester.clone();
    for i in 0..200 {
        let (_, drawn) = n.request(&requester, h[3].address, &format!("after {i}"), 5);
        assert_ne!(drawn, cheater, "an INVALID host was drawn");
    }
}

fn vote_result(
    n: &mut Net,
    voter: &TestKey,
    id: [u8; 32],
) -> tendermint_proto::v0_38::abci::ExecTxResult {
    let msg = MsgDisputeVote {
        voter: voter.address.to_bech32(),
        id: id.to_vec(),
        invalid: true,
    };
    n.block(vec![n.tx(voter, vec![any_of(&msg)])]).remove(0)
}

#[test]
fn a_majority_for_valid_or_no_majority_by_the_deadline_keeps_the_pay() {
    let mut n = market();
    n.block(vec![]);
    let h = n.hosts.clone();
    let executor = h[0].address;

    // Outvoted: 20 invalid against 30 + 40 valid.
    let id = finished_by(&mut n, executor, "outvoted");
    let before = n.d.balance(&executor);
    assert_eq!(validate(&mut n, &h[1], id, 100_000).0, 0);
    assert_eq!(vote(&mut n, &h[2], id, false).0, 0);
    assert_eq!(vote(&mut n, &h[3], id, false).0, 0);
    let rec = n.record(id);
    assert_eq!(rec["status"], "finished");
    assert_eq!(rec["paid"], "10");
    assert_eq!(n.d.balance(&executor), before);

    // No majority: 20 invalid, nobody else votes; rejected after 20 blocks.
    let id = finished_by(&mut n, executor, "silent");
    assert_eq!(validate(&mut n, &h[1], id, 100_000).0, 0);
    for _ in 0..20 {
        n.block(vec![]);
    }
    assert_eq!(n.record(id)["status"], "finished");
    assert_refused(
        &vote_result(&mut n, &h[2], id),
        codes::NO_DISPUTE,
        "no open dispute",
    );
    let s = stats(&n, executor);
    assert_eq!(s["epoch_invalidated"], 0);
    assert_eq!(s["invalid"], false);
}

#[test]
fn bad_validations_and_votes_are_refused() {
    let mut n = market();
    n.block(vec![]);
    let h = n.hosts.clone();
    let executor = h[0].address;
    let id = finished_by(&mut n, executor, "target");

    let (code, log) = validate(&mut n, &h[0], id, 999_000);
    assert_eq!(code, codes::OWN_WORK, "{log}");
    let outsider = n.requester.clone();
    let (code, log) = validate(&mut n, &outsider, id, 999_000);
    assert_eq!(code, codes::NOT_SERVING, "{log}");
    let (code, log) = validate(&mut n, &h[1], [7; 32], 999_000);
    assert_eq!(code, codes::UNKNOWN_INFERENCE, "{log}");
    assert_eq!(validate(&mut n, &h[1], id, 999_000).0, 0);
    let (code, log) = validate(&mut n, &h[1], id, 999_000);
    assert_eq!(code, codes::ALREADY_VALIDATED, "{log}");
    let (code, log) = vote(&mut n, &h[2], id, true);
    assert_eq!(code, codes::NO_DISPUTE, "{log}");

    // A score above 1 000 000 never reaches a block.
    let msg = MsgValidation {
        validator: h[1].address.to_bech32(),
        id: id.to_vec(),
        score_micro: 1_000_001,
    };
    let check = n.d.submit(n.tx(&h[1], vec![any_of(&msg)]));
    assert_eq!(check.code, codes::BAD_FIELD, "{}", check.log);

    // An open inference cannot be validated yet.
    let requester = n.requester.clone();
    let (r, drawn) = n.request(&requester, h[3].address, "open", 5);
    let res = n.block(vec![
        n.tx(&h[3], vec![any_of(&r.start_msg(5, drawn, n.d.height))])
    ]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    let validator = h.iter().find(|k| k.address != drawn).unwrap().clone();
    let (code, log) = validate(&mut n, &validator, r.id(), 999_000);
    assert_eq!(code, codes::NOT_FINISHED, "{log}");

    // In a dispute: the executor cannot vote, nor anyone twice.
    assert_eq!(validate(&mut n, &h[2], id, 1_000).0, 0);
    let (code, log) = vote(&mut n, &h[0], id, false);
    assert_eq!(code, codes::OWN_WORK, "{log}");
    let (code, log) = vote(&mut n, &h[2], id, true);
    assert_eq!(code, codes::ALREADY_VOTED, "{log}");
}
