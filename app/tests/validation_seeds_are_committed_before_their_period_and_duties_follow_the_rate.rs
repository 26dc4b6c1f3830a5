//! Issue 12, "Validation" duties (chain side), through the real pipeline
//! with SPEC §11's invariants after every block: a host commits its
//! validation seed for the serving period in force or the next one only;
//! a second commitment, an early reveal, a stranger's commitment and a
//! malformed one are refused with their codes. A finished inference carries
//! its period and SPEC §5's rate (traffic 0 and reputation 0: one whole
//! expected validation), and a validation is counted toward the validator's
//! duty. (Reveals and the recompute at settle need settles with real
//! sprints: the devnet end-to-end test runs them; the recompute's
//! arithmetic is unit-tested in `kiln_inference::duties`.)

mod inference_net;

use inference_net::{assert_refused, net_with, Net};
use kiln_framework::StateReadExt;
use kiln_inference::duties::{self, DutyEntry};
use kiln_inference::handler::codes;
use kiln_inference::msgs::{MsgCommitValidationSeed, MsgRevealValidationSeed, MsgValidation};
use kiln_inference::{keys, query};
use kiln_testkit::inference::finish_msg;
use kiln_testkit::{any_of, TestKey};

fn commit(n: &mut Net, key: &TestKey, period: u64, seed: [u8; 32]) -> (u32, String, String) {
    let commitment = duties::seed_commitment(inference_net::CHAIN, period, &key.address, &seed);
    let msg = MsgCommitValidationSeed {
        host: key.address.to_bech32(),
        period,
        commitment: commitment.to_vec(),
    };
    let r = n.block(vec![n.tx(key, vec![any_of(&msg)])]).remove(0);
    (r.code, r.codespace, r.log)
}

#[test]
fn seeds_commit_for_open_periods_and_duties_follow_finishes() {
    let mut n = net_with(&[10, 20, 30]);
    let hosts = n.hosts.clone();

    // The serving period in force at genesis is 0: commit for 0 and 1.
    assert_eq!(commit(&mut n, &hosts[0], 0, [1; 32]).0, 0);
    assert_eq!(commit(&mut n, &hosts[0], 1, [2; 32]).0, 0);
    let (code, space, log) = commit(&mut n, &hosts[0], 2, [3; 32]);
    assert_eq!(
        (code, space.as_str()),
        (codes::SEED_OUT_OF_PERIOD, "inference"),
        "{log}"
    );
    assert!(log.contains("commit for 0 or 1"), "{log}");
    let (code, _, log) = commit(&mut n, &hosts[0], 0, [4; 32]);
    assert_eq!(code, codes::SEED_ALREADY_COMMITTED, "{log}");
    let stranger = n.requester.clone();
    let (code, _, log) = commit(&mut n, &stranger, 0, [5; 32]);
    assert_eq!(code, codes::NOT_A_HOST, "{log}");

    let bad = MsgCommitValidationSeed {
        host: hosts[1].address.to_bech32(),
        period: 0,
        commitment: vec![0; 31],
    };
    let r = n.block(vec![n.tx(&hosts[1], vec![any_of(&bad)])]).remove(0);
    assert_refused(&r, codes::BAD_FIELD, "commitment must be 32 bytes");

    // Period 0 still runs: its seed cannot be revealed yet.
    let reveal = MsgRevealValidationSeed {
        host: hosts[0].address.to_bech32(),
        period: 0,
        seed: vec![1; 32],
    };
    let r = n
        .block(vec![n.tx(&hosts[0], vec![any_of(&reveal)])])
        .remove(0);
    assert_refused(
        &r,
        codes::SEED_OUT_OF_PERIOD,
        "revealed while period 1 runs",
    );

    let (code, v, log) = n.query(query::VALIDATION_SEEDS_PATH, &hosts[0].address.to_bech32());
    assert_eq!(code, 0, "{log}");
    assert_eq!(v["period"], 0);
    let seeds = v["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 2, "{v}");
    assert_eq!(seeds[0]["period"], 0);
    assert_eq!(seeds[1]["period"], 1);
    assert_eq!(seeds[0]["revealed"], false);
    assert!(seeds[0]["commit_height"].as_u64().unwrap() > 0);

    // An inference finishes: its event carries the period and the rate
    // (no traffic last period, executor reputation 0 → m = 1).
    let requester = n.requester.clone();
    let ta = hosts[2].clone();
    let (r, executor) = n.request(&requester, ta.address, "duty", 10);
    let res = n.block(vec![
        n.tx(&ta, vec![any_of(&r.start_msg(4, executor, n.d.height))])
    ]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    let exec_key = n.host(executor).clone();
    let res = n.block(vec![n.tx(
        &exec_key,
        vec![any_of(&finish_msg(executor, r.id(), 3, b"ok"))],
    )]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    let finished = res[0]
        .events
        .iter()
        .find(|e| e.r#type == "kiln.inference.v1.EventInferenceFinished")
        .expect("a finished event");
    let attr = |k: &str| {
        finished
            .attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| a.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(attr("period"), "0");
    assert_eq!(attr("validation_rate_micro"), "1000000");
    assert_eq!(n.record(r.id())["period"], 0);

    // A validation by another host is counted toward its duty.
    let validator = hosts
        .iter()
        .find(|h| h.address != executor)
        .unwrap()
        .clone();
    let msg = MsgValidation {
        validator: validator.address.to_bech32(),
        id: r.id().to_vec(),
        score_micro: 999_999,
    };
    let res = n.block(vec![n.tx(&validator, vec![any_of(&msg)])]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    let entry: DutyEntry =
        n.d.app
            .latest_view()
            .get_value(&keys::duty(0, &r.id()))
            .unwrap()
            .expect("the inference is on period 0's duty list");
    assert_eq!(entry.executor, executor);
    assert_eq!(entry.rate_micro, duties::ONE);
    assert_eq!(entry.validators, vec![validator.address]);
}
