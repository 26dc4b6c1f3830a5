//! Block pruning driven by the app's Commit `retain_height` (CometBFT 0.38):
//! the base advances, pruned heights answer with CometBFT's error, recent
//! ones are served, and the base survives a restart.

mod common;

use common::*;
use serde_json::{json, Value};

async fn produce(h: &kiln_node::DevnetHandle<KvApp>, n: u64) {
    for _ in 0..n {
        assert!(h.produce_block_now().await.unwrap().is_some());
    }
}

async fn send_tx(h: &kiln_node::DevnetHandle<KvApp>, tx: &str) -> String {
    let r = rpc(
        h.rpc_addr(),
        "broadcast_tx_sync",
        json!({"tx": b64(tx.as_bytes())}),
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
    r["hash"].as_str().unwrap().to_string()
}

/// The JSON-RPC error (CometBFT shape) of a call expected to fail.
async fn rpc_err(addr: std::net::SocketAddr, method: &str, params: Value) -> Value {
    let v = rpc_raw(addr, method, params).await;
    assert!(v.get("result").is_none(), "{method} should fail: {v}");
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert_eq!(v["error"]["message"], "Internal error", "{v}");
    v["error"].clone()
}

fn pruned_app(min_retain_blocks: i64) -> KvApp {
    let app = KvApp::default();
    app.s.lock().unwrap().min_retain_blocks = min_retain_blocks;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_retain_blocks_prunes_old_heights_and_keeps_the_base_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = pruned_app(10);
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();

    produce(&h, 1).await;
    let old_tx = send_tx(&h, "old=1").await;
    produce(&h, 1).await; // block 2 holds old=1
    let old_hash = rpc(addr, "block", json!({"height": 2})).await["block_id"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    produce(&h, 7).await; // height 9: still below the window
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["earliest_block_height"], "1");
    produce(&h, 1).await; // height 10: retain_height 1, nothing to prune
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["earliest_block_height"], "1");
    produce(&h, 1).await; // height 11: retain_height 2
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["earliest_block_height"], "2");

    produce(&h, 13).await; // height 24
    let new_tx = send_tx(&h, "new=1").await;
    produce(&h, 6).await; // block 25 holds new=1; height 30
    assert_eq!(h.height(), 30);

    // base = 30 - 10 + 1
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["latest_block_height"], "30");
    assert_eq!(st["sync_info"]["earliest_block_height"], "21");
    let b21 = rpc(addr, "block", json!({"height": 21})).await;
    assert_eq!(
        st["sync_info"]["earliest_block_hash"],
        b21["block_id"]["hash"]
    );
    assert_eq!(
        st["sync_info"]["earliest_block_time"],
        b21["block"]["header"]["time"]
    );

    // Below the base: CometBFT's error, for every per-height endpoint.
    let msg = "height 5 is not available, lowest height is 21";
    for method in [
        "block",
        "block_results",
        "commit",
        "header",
        "validators",
        "consensus_params",
    ] {
        let e = rpc_err(addr, method, json!({"height": 5})).await;
        assert_eq!(e["data"], msg, "{method}: {e}");
    }
    let e = rpc_err(addr, "block", json!({"height": 20})).await;
    assert_eq!(e["data"], "height 20 is not available, lowest height is 21");
    // URI form too.
    let v = get(addr, "/block?height=3").await;
    assert_eq!(
        v["error"]["data"],
        "height 3 is not available, lowest height is 21"
    );
    // A tx in a pruned block: the tx index keeps the tx and its result (as
    // CometBFT 0.38's indexer does), the block is gone.
    let t = rpc(addr, "tx", json!({"hash": old_tx})).await;
    assert_eq!(t["height"], "2", "{t}");
    assert_eq!(t["tx"], b64(b"old=1"));
    assert_eq!(t["tx_result"]["code"], 0);
    // A pruned block's hash is unknown.
    let by_hash = rpc(addr, "block_by_hash", json!({"hash": old_hash})).await;
    assert!(by_hash["block"].is_null(), "{by_hash}");

    // From the base up: served.
    for height in [21, 25, 29, 30] {
        let b = rpc(addr, "block", json!({"height": height})).await;
        assert_eq!(b["block"]["header"]["height"], height.to_string());
        let r = rpc(addr, "block_results", json!({"height": height})).await;
        assert_eq!(r["height"], height.to_string());
        let v = rpc(addr, "validators", json!({"height": height})).await;
        assert_eq!(v["total"], "1");
        rpc(addr, "commit", json!({"height": height})).await;
        rpc(addr, "consensus_params", json!({"height": height})).await;
    }
    let t = rpc(addr, "tx", json!({"hash": new_tx})).await;
    assert_eq!(t["height"], "25");
    // tx_search finds txs in pruned blocks too, by event, height and hash.
    let found = rpc(addr, "tx_search", json!({"query": "message.action='set'"})).await;
    assert_eq!(found["total_count"], "2", "{found}");
    assert_eq!(found["txs"][0]["hash"], old_tx.as_str());
    assert_eq!(found["txs"][1]["hash"], new_tx.as_str());
    let at2 = rpc(addr, "tx_search", json!({"query": "tx.height=2"})).await;
    assert_eq!(at2["total_count"], "1", "{at2}");
    assert_eq!(at2["txs"][0]["hash"], old_tx.as_str());
    let by_hash_and_event = rpc(
        addr,
        "tx_search",
        json!({"query": format!("tx.hash='{old_tx}' AND tx.height<10"), "order_by": "desc"}),
    )
    .await;
    assert_eq!(by_hash_and_event["total_count"], "1", "{by_hash_and_event}");

    // blockchain clamps to the base.
    let bc = rpc(
        addr,
        "blockchain",
        json!({"minHeight": "1", "maxHeight": "30"}),
    )
    .await;
    let metas = bc["block_metas"].as_array().unwrap();
    assert_eq!(metas.len(), 10);
    assert_eq!(metas[0]["header"]["height"], "30");
    assert_eq!(metas[9]["header"]["height"], "21");
    let e = rpc_err(
        addr,
        "blockchain",
        json!({"minHeight": "1", "maxHeight": "5"}),
    )
    .await;
    assert_eq!(
        e["data"],
        "min height 21 can't be greater than max height 5"
    );

    // Restart (without a graceful stop): the base is kept, blocks go on.
    drop(h);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["latest_block_height"], "30");
    assert_eq!(st["sync_info"]["earliest_block_height"], "21");
    let e = rpc_err(addr, "block", json!({"height": 20})).await;
    assert_eq!(e["data"], "height 20 is not available, lowest height is 21");
    assert_eq!(h.produce_block_now().await.unwrap(), Some(31));
    assert_eq!(h.produce_block_now().await.unwrap(), Some(32));
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["earliest_block_height"], "23");
    let b = rpc(addr, "block", json!({"height": 23})).await;
    assert_eq!(b["block"]["header"]["height"], "23");
    rpc_err(addr, "block", json!({"height": 22})).await;
    h.stop().await;

    // A wiped app cannot be replayed over a pruned store: clear error.
    let err = kiln_node::DevnetHandle::start(KvApp::default(), config(dir.path()))
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("lowest height is 23"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retain_height_keeps_every_block() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let h = start(KvApp::default(), dir.path()).await;
    produce(&h, 15).await;
    let st = rpc(h.rpc_addr(), "status", json!({})).await;
    assert_eq!(st["sync_info"]["earliest_block_height"], "1");
    let b = rpc(h.rpc_addr(), "block", json!({"height": 1})).await;
    assert_eq!(b["block"]["header"]["height"], "1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_is_bounded_per_call_and_never_removes_the_latest_block() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    produce(&h, 12).await;
    h.stop().await;

    let path = kiln_node::home::data_dir(dir.path()).join("blockstore.db");
    let store = kiln_node::blockstore::BlockStore::open(&path).unwrap();
    assert_eq!(store.base().unwrap(), 1);
    // At most 4 heights per call.
    assert_eq!(store.prune(10, 4).unwrap(), 5);
    assert_eq!(store.base().unwrap(), 5);
    assert!(store.block(4).unwrap().is_none());
    assert!(store.block_meta(4).unwrap().is_none());
    assert!(store.seen_commit(4).unwrap().is_none());
    assert!(store.results(4).unwrap().is_none());
    assert!(store.validators(4).unwrap().is_none());
    assert!(store.consensus_params(4).unwrap().is_none());
    assert!(store.block(5).unwrap().is_some());
    assert_eq!(store.prune(10, 4).unwrap(), 9);
    assert_eq!(store.prune(10, 4).unwrap(), 10);
    // Nothing below the base left to do.
    assert_eq!(store.prune(10, 4).unwrap(), 10);
    assert_eq!(store.prune(3, 4).unwrap(), 10);
    // A retain height past the chain keeps the latest block.
    assert_eq!(store.prune(1_000, 1_000).unwrap(), 12);
    assert!(store.block(12).unwrap().is_some());
    assert!(store.latest_state().unwrap().is_some());
    assert!(store.genesis_state().unwrap().is_some());
    drop(store);

    // The node restarts on the pruned store and keeps producing.
    let h = start(app, dir.path()).await;
    let st = rpc(h.rpc_addr(), "status", json!({})).await;
    assert_eq!(st["sync_info"]["earliest_block_height"], "12");
    assert_eq!(h.produce_block_now().await.unwrap(), Some(13));
    rpc(h.rpc_addr(), "commit", json!({"height": 12})).await;
    h.stop().await;
}
