//! Freezes the state layout: a fixed scenario must produce this exact app hash.
//! If a change makes this fail, it is state-breaking — update the constant in
//! the same commit and say so in the commit message.

use kiln_testkit::{msg_exec, msg_grant, msg_send, sign_tx, BlockDriver, TestKey};

const PINNED: &str = "23510415e72987bf61e2361f9e032bf51093a8c77f070b30875db7a37b1f2c14";

#[test]
fn fixed_scenario_produces_the_pinned_app_hash() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("pinned-alice");
    let bob = TestKey::from_label("pinned-bob");
    let genesis = BlockDriver::genesis_funding(&[&alice, &bob], 1_000_000_000);
    let mut d = BlockDriver::open(dir.path(), "kiln-pinned", &genesis, 0).unwrap();
    let o = d.opts_for(&alice);
    d.deliver(vec![sign_tx(
        &alice,
        vec![msg_send(&alice.address, &bob.address, 12_345)],
        &o,
    )])
    .unwrap();
    let o = d.opts_for(&alice);
    d.deliver(vec![sign_tx(
        &alice,
        vec![msg_grant(
            &alice.address,
            &bob.address,
            kiln_bank::handler::MSG_SEND_TYPE_URL,
            None,
        )],
        &o,
    )])
    .unwrap();
    let o = d.opts_for(&bob);
    let out = d
        .deliver(vec![sign_tx(
            &bob,
            vec![msg_exec(
                &bob.address,
                vec![msg_send(&alice.address, &bob.address, 55)],
            )],
            &o,
        )])
        .unwrap();
    assert!(out.response.tx_results.iter().all(|r| r.code == 0));
    assert_eq!(
        hex::encode(&d.last_app_hash),
        PINNED,
        "state layout changed: this is a state-breaking change"
    );
}
