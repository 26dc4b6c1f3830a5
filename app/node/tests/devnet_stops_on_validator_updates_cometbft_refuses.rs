//! The devnet producer applies validator updates exactly as CometBFT 0.38
//! does: a list CometBFT refuses (here: removing a validator that is not in
//! the set) is a block execution error — the block is not committed, the
//! producer stops for good with the reason, and a valid list still works.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_stops_producing_on_validator_updates_cometbft_refuses() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();
    h.produce_block_now().await.unwrap().unwrap(); // 1

    // A valid update still applies.
    let added = kiln_node::home::PrivValidatorKey::from_seed([9u8; 32]);
    let tx = format!("val={}!25", b64(added.verifying_key().as_bytes()));
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(tx.as_bytes())})).await;
    assert_eq!(h.produce_block_now().await.unwrap(), Some(2));
    assert!(h.node().halted().is_none());

    // Removing a validator CometBFT does not have: every node would halt.
    let unknown = kiln_node::home::PrivValidatorKey::from_seed([7u8; 32]);
    let tx = format!("val={}!0", b64(unknown.verifying_key().as_bytes()));
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(tx.as_bytes())})).await;
    let e = h.produce_block_now().await.unwrap_err().to_string();
    assert!(e.contains("block execution failed at height 3"), "{e}");
    assert!(e.contains("failed to find validator"), "{e}");
    let reason = h
        .node()
        .halted()
        .expect("the producer records why it stopped");
    assert!(reason.contains("failed to find validator"), "{reason}");
    assert_eq!(h.height(), 2, "the refused block is not committed");

    // It stays stopped: no further block, same reason.
    let e = h.produce_block_now().await.unwrap_err().to_string();
    assert!(
        e.contains("the devnet has halted") && e.contains("failed to find validator"),
        "{e}"
    );
    assert_eq!(h.height(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_stops_on_a_duplicate_key_and_on_an_empty_set() {
    for (name, txs, want) in [
        (
            "duplicate",
            vec!["val={K}!5", "val={K}!6"],
            "duplicate entry",
        ),
        ("negative", vec!["val={K}!-3"], "can't be negative"),
        ("empty set", vec!["val={SELF}!0"], "empty set"),
        (
            "total above max",
            vec!["val={K}!1152921504606846975"],
            "max",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        init_home(dir.path());
        let app = KvApp::default();
        let h = start(app.clone(), dir.path()).await;
        let addr = h.rpc_addr();
        let me = kiln_node::home::load_priv_validator_key(dir.path()).unwrap();
        let k = kiln_node::home::PrivValidatorKey::from_seed([5u8; 32]);
        for tx in txs {
            let tx = tx
                .replace("{K}", &b64(k.verifying_key().as_bytes()))
                .replace("{SELF}", &b64(me.verifying_key().as_bytes()));
            rpc(addr, "broadcast_tx_sync", json!({"tx": b64(tx.as_bytes())})).await;
        }
        let e = h.produce_block_now().await.unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
        assert!(h.node().halted().is_some(), "{name}");
        assert_eq!(h.height(), 0, "{name}");
        h.stop().await;
    }
}
