//! CometBFT's tx indexer writes one entry per indexed event attribute, so
//! the app marks indexed only what txs are looked up by (actors, actions,
//! hosts, epochs, models): a `MsgSend`'s senders, recipients and action are
//! searchable, its amounts and fee ride along unindexed.

use kiln_testkit::{msg_send, sign_tx, BlockDriver, TestKey};

#[test]
fn a_sends_actors_are_indexed_and_its_amounts_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("ev-alice");
    let bob = TestKey::from_label("ev-bob");
    let mut d = BlockDriver::open(
        dir.path(),
        "kiln-events",
        &BlockDriver::genesis_funding(&[&alice], 1_000_000_000),
        0,
    )
    .unwrap();
    let o = d.opts_for(&alice);
    let tx = sign_tx(&alice, vec![msg_send(&alice.address, &bob.address, 7)], &o);
    let out = d.deliver(vec![tx]).unwrap();
    let result = &out.response.tx_results[0];
    assert_eq!(result.code, 0, "{}", result.log);
    let mut indexed = Vec::new();
    let mut unindexed = Vec::new();
    for e in &result.events {
        for a in &e.attributes {
            let name = format!("{}.{}", e.r#type, a.key);
            if a.index {
                indexed.push(name);
            } else {
                unindexed.push(name);
            }
        }
    }
    for name in [
        "message.action",
        "message.sender",
        "transfer.recipient",
        "transfer.sender",
        "tx.fee_payer",
        "tx.acc_seq",
    ] {
        assert!(
            indexed.contains(&name.to_string()),
            "{name} not indexed: {indexed:?}"
        );
    }
    for name in [
        "transfer.amount",
        "coin_spent.amount",
        "coin_received.amount",
        "tx.fee",
    ] {
        assert!(
            unindexed.contains(&name.to_string()),
            "{name} indexed: {indexed:?}"
        );
    }
    assert!(kiln_app::app::is_indexed_attribute("host"));
    assert!(!kiln_app::app::is_indexed_attribute("amount"));
}
